"""Every configuration file the repository ships resolves against its task's run type.

`make demo` and `make quality` read them; a misspelt key or a value out of range must
fail here, not an hour into a benchmark.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from rnnkit import tasks
from rnnkit.configuration import merge

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = sorted([*ROOT.glob("examples/*.toml"), *ROOT.glob("benchmarks/configs/*.toml")])


def test_the_demo_and_every_quality_row_have_a_config() -> None:
    names = {path.name for path in SHIPPED}
    assert {"shakespeare.toml", "ptb_word.toml", "ptb_char.toml", "cmudict.toml"} <= names


@pytest.mark.parametrize("path", SHIPPED, ids=[p.name for p in SHIPPED])
def test_a_shipped_config_resolves(path: Path) -> None:
    data = tomllib.loads(path.read_text())
    task = tasks.get(data["kind"])
    run = merge(task.run_type(), data, where=str(path))
    assert run.kind == data["kind"]
    for section, values in data.items():
        if isinstance(values, dict):  # every key given is the value the run holds
            resolved = getattr(run, section)
            for key, value in values.items():
                if not isinstance(value, dict):
                    held = getattr(resolved, key)
                    assert (list(held) if isinstance(held, tuple) else held) == value, key
