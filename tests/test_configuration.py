"""Configurations to and from TOML: round trips, unknown keys and wrong types refused."""

from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass, field
from typing import Literal

import pytest

from rnnkit.configuration import (
    MAX_WIDTH,
    ConfigError,
    check_finite,
    check_range,
    check_seed,
    check_sizes,
    from_mapping,
    replace,
    to_toml,
)
from rnnkit.training.trainer import TrainerConfig


@dataclass(frozen=True)
class Inner:
    rate: float = 0.1
    kind: Literal["a", "b"] = "a"


@dataclass(frozen=True)
class Outer:
    name: str = "run"
    steps: int | None = None
    flag: bool = False
    pair: tuple[float, float] = (0.9, 0.99)
    inner: Inner = field(default_factory=Inner)


def test_round_trip_through_toml() -> None:
    config = Outer(
        name='a "quoted"\\name', steps=3, flag=True, pair=(0.5, 2.0), inner=Inner(2.0, "b")
    )
    text = to_toml(config, header="made by a test")
    assert text.startswith("# made by a test\n")
    assert from_mapping(Outer, tomllib.loads(text)) == config
    assert "steps" not in to_toml(Outer())  # None is an absent key


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"nmae": "x"}, "nmae: unknown key (expected one of: name, steps, flag, pair, inner)"),
        ({"steps": "3"}, "steps: expected an integer, got '3'"),
        ({"flag": 1}, "flag: expected true or false, got 1"),
        ({"inner": {"kind": "c"}}, "inner.kind: expected one of 'a', 'b', got 'c'"),
        ({"inner": {"rte": 1}}, "inner.rte: unknown key"),
        ({"pair": [1.0]}, "pair: expected 2 items, got 1"),
    ],
)
def test_errors_name_the_key_and_what_was_expected(data: dict, message: str) -> None:
    with pytest.raises(ConfigError) as error:
        from_mapping(Outer, data, where="")
    assert message in str(error.value)


def test_replace_with_dotted_keys() -> None:
    changed = replace(Outer(), {"steps": 5, "inner.rate": 3})
    assert changed == Outer(steps=5, inner=Inner(rate=3.0))
    with pytest.raises(ConfigError, match=r"inner\.nope: unknown key"):
        replace(Outer(), {"inner.nope": 1})


# --------------------------------------------------------------------------- numeric checks


@dataclass(frozen=True)
class _Numbers:
    rate: float | None = 1.0
    count: int = 3
    seed: int = 0


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf, "1", True, 0.0, 10.5])
def test_check_range_refuses_non_finite_and_out_of_range_values(value: object) -> None:
    with pytest.raises(ValueError, match=r"^rate: expected a finite number in \(0, 10\], got "):
        check_range(_Numbers(rate=value), "rate", 0.0, 10.0, open_low=True)  # type: ignore[arg-type]


def test_check_range_takes_its_bounds_and_none() -> None:
    for value in (None, 1e-300, 10.0, 10):
        check_range(_Numbers(rate=value), "rate", 0.0, 10.0, open_low=True)
    check_range(_Numbers(rate=-5.0), "rate")  # only finiteness without bounds
    with pytest.raises(ValueError, match=r"\[-1, 1\)"):
        check_range(_Numbers(rate=1.0), "rate", -1.0, 1.0, open_high=True)
    with pytest.raises(ValueError, match=r"^rate: expected a finite number in \[-inf, inf\]"):
        check_finite(_Numbers(rate=math.nan), "count", "rate")


def test_check_sizes_and_check_seed() -> None:
    check_sizes(_Numbers(count=MAX_WIDTH), "count")
    with pytest.raises(ValueError, match=r"^count: expected at most 65,536, got 65,537$"):
        check_sizes(_Numbers(count=MAX_WIDTH + 1), "count")
    with pytest.raises(ValueError, match=r"^count: expected a positive int"):
        check_sizes(_Numbers(count=0), "count")
    check_seed(_Numbers(seed=2**63 - 1))
    for seed in (-1, 2**63, True):
        with pytest.raises(ValueError, match=r"^seed: expected an int in \[0, 2\*\*63\)"):
            check_seed(_Numbers(seed=seed))


@dataclass(frozen=True)
class _Run:
    trainer: TrainerConfig = field(default_factory=TrainerConfig)


def test_a_value_refused_by_a_nested_table_names_its_full_key() -> None:
    with pytest.raises(ConfigError, match=r"^trainer\.optimizer\.lr: expected a finite number"):
        from_mapping(_Run, {"trainer": {"optimizer": {"lr": math.inf}}})
    with pytest.raises(ConfigError, match=r"^trainer\.epochs: expected a positive int"):
        from_mapping(_Run, {"trainer": {"epochs": -1}})
    with pytest.raises(ConfigError, match=r"^epochs: expected a positive int"):
        from_mapping(TrainerConfig, {"epochs": -1})
