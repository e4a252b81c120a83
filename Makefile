# Two commands on a fresh machine with only Python 3.11: `make demo` and `make test`.
# The virtual environment is built once; re-running is quick because the stamp file
# only goes stale when pyproject.toml changes.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.rnnkit-installed
LOOPS  := $(VENV)/.rnnkit-loops
# The CPU wheel of this exact version is on the machine; a bare or ranged torch
# would pull several GB of CUDA packages, so it is installed first and pinned.
TORCH  := torch==2.13.0

.PHONY: setup browser demo test lint format bench quality clean

setup: $(STAMP) $(LOOPS)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet $(TORCH)
	$(PY) -m pip install --quiet -e '.[dev,report,export]'
	touch $(STAMP)

# The fused backend's C++ loops, compiled here rather than at the first training
# step (about 15 s, once per version of the sources; rnnkit.bptt.compiled caches
# the build by the sources' hash, so clones share it). Without a compiler this
# prints that the Python loops are used and set-up goes on.
$(LOOPS): $(STAMP) $(wildcard src/rnnkit/bptt/*.cpp src/rnnkit/bptt/*.h)
	$(PY) -m rnnkit.bptt.compiled
	touch $(LOOPS)

# The main job: a character-level LSTM on Shakespeare for a few minutes, its
# validation bits per character, and three samples. The run folder stays in
# runs/shakespeare with its page, report.html; running the demo again resumes it
# (nothing left to do).
demo: $(STAMP) $(LOOPS)
	$(VENV)/bin/rnnkit train lm --config examples/shakespeare.toml --out runs/shakespeare \
		$(if $(wildcard runs/shakespeare/checkpoints/last/manifest.json),--resume)
	$(VENV)/bin/rnnkit evaluate runs/shakespeare --split valid
	$(VENV)/bin/rnnkit generate runs/shakespeare --start "ROMEO." --length 300 \
		--temperature 0.8 --num-samples 3 --seed 1
	@echo "the run's page: runs/shakespeare/report.html"

test: $(STAMP) $(LOOPS)
	$(PY) -m pytest -n 2 -q

# Headless Chromium for the report page's browser test (Debian's chromium and
# chromium-driver). Installed here, visibly, only when missing and only as root with
# apt-get; otherwise this says so and the test skips (or fails under CI) naming why.
BROWSER_PACKAGES := chromium chromium-driver
browser:
	@if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then \
		echo "browser: chromium and chromedriver are installed"; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "browser: installing $(BROWSER_PACKAGES) with apt-get"; \
		apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(BROWSER_PACKAGES); \
	else \
		echo "browser: chromium or chromedriver is missing; install $(BROWSER_PACKAGES) as root"; \
	fi

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/ruff format --check src tests benchmarks
	$(VENV)/bin/mypy src

format: $(STAMP)
	$(VENV)/bin/ruff format src tests benchmarks
	$(VENV)/bin/ruff check --fix src tests benchmarks

# `auto` measures its choices into a fresh table for the run (not the user's cache),
# so the speed rows show what a first run on this machine chooses.
bench: $(STAMP) $(LOOPS)
	export RNNKIT_CACHE_DIR="$$(mktemp -d)" && \
	$(PY) benchmarks/speed.py --memory --inference --write BENCHMARKS.md && \
	$(PY) benchmarks/profile_step.py --configs a,b,c --write BENCHMARKS.md && \
	$(PY) benchmarks/generation.py --write BENCHMARKS.md && \
	$(PY) benchmarks/scan.py --write BENCHMARKS.md && \
	$(PY) benchmarks/compile.py --write BENCHMARKS.md && \
	$(PY) benchmarks/drop_in.py --write BENCHMARKS.md && \
	$(PY) benchmarks/end_to_end.py --write BENCHMARKS.md && \
	$(PY) benchmarks/trainer_overhead.py --write BENCHMARKS.md && \
	$(PY) benchmarks/stream_memory.py --write BENCHMARKS.md && \
	$(PY) benchmarks/gradient_flow.py --out docs

# Quality on real data: each row one `rnnkit train` command, up to an hour each on a
# 2-core CPU (benchmarks/quality.py --list shows them; --only NAME runs one).
quality: $(STAMP)
	$(PY) benchmarks/quality.py --write BENCHMARKS.md

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache .mypy_cache .ruff_cache .hypothesis
