"""Shared test set-up: deterministic, small, and the same on 2-core CI."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile

import torch
from hypothesis import HealthCheck, settings

# CI has two cores and runs two pytest workers; one intra-op thread each keeps them
# from fighting over the cores.
torch.set_num_threads(1)

# The measured backend choice (rnnkit.tuning) would time the backends at every new
# shape and write its table into the user's cache: the suite keeps its tables in a
# folder of its own (subprocesses inherit it) and runs `auto` by the static rule, so
# that every machine runs the same backends (timings differ between machines); tests
# of the tuner switch it on.
os.environ["RNNKIT_CACHE_DIR"] = tempfile.mkdtemp(prefix="rnnkit-test-cache-")
atexit.register(shutil.rmtree, os.environ["RNNKIT_CACHE_DIR"], ignore_errors=True)
os.environ["RNNKIT_TUNE"] = "0"

settings.register_profile(
    "rnnkit",
    deadline=None,  # timings belong to benchmarks/, never to tests
    max_examples=int(os.environ.get("RNNKIT_HYPOTHESIS_EXAMPLES", "40")),
    suppress_health_check=[HealthCheck.too_slow],
    derandomize=True,  # the same examples on every run and machine
)
settings.load_profile("rnnkit")

# The fused backend compiles its time loops on first use (rnnkit.bptt.compiled).
# Build them once here, before any test runs, so no test's time includes the
# build; without a C++ compiler the Python loops are tested alone and the tests
# of the compiled loops skip, saying why.
if shutil.which(os.environ.get("CXX", "c++")) is None:
    os.environ.setdefault("RNNKIT_COMPILED_LOOPS", "0")
else:
    from rnnkit.bptt import compiled

    compiled.load()
