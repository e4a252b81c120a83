"""Configurations to and from TOML: round trips, unknown keys and wrong types refused."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from typing import Literal

import pytest

from rnnkit.configuration import ConfigError, from_mapping, replace, to_toml


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
