"""Frozen dataclass configurations to and from TOML, with unknown keys refused.

Every configuration in rnnkit is a frozen, typed dataclass that sits next to what it
configures. This module turns one into a TOML document (the resolved config saved
with every run) and builds one back from a parsed TOML mapping, checking every key
and every value's type on the way, so a typo in a config file is a one-line error
that names the key, never a silently ignored setting.

Supported field types: ``bool``, ``int``, ``float``, ``str``, ``Literal[...]`` of
those, ``tuple[T, ...]``/``tuple[T, U]`` of scalars, nested dataclasses (TOML
tables), and ``X | None`` of any of these (``None`` is written as an absent key,
since TOML has no null).
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")


class ConfigError(ValueError):
    """A configuration value or key that is not what the dataclass expects."""


# --------------------------------------------------------------------------- validation


def check_positive_ints(config: Any, *names: str) -> None:
    """Each named field is an int ≥ 1 (``None`` allowed: optional fields)."""
    for name in names:
        value = getattr(config, name)
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, int) or value < 1
        ):
            raise ValueError(f"{name}: expected a positive int, got {value!r}")


# Bounds a mature library holds every configuration to. Widths past 2^16 make one
# recurrent weight matrix alone 2^32·4 bytes per gate; deeper than 64 stacked layers
# no recurrent network trains (and building it is already slow), and a seed or a
# count must fit the int64 that torch and NumPy take.
MAX_WIDTH = 2**16
MAX_LAYERS = 64
MAX_INT = 2**63 - 1


def check_sizes(config: Any, *names: str, at_most: int = MAX_WIDTH) -> None:
    """Each named field is an int in 1 … ``at_most`` (``None`` allowed)."""
    check_positive_ints(config, *names)
    for name in names:
        value = getattr(config, name)
        if value is not None and value > at_most:
            raise ValueError(f"{name}: expected at most {at_most:,}, got {value:,}")


def check_range(
    config: Any,
    name: str,
    low: float | None = None,
    high: float | None = None,
    *,
    open_low: bool = False,
    open_high: bool = False,
) -> None:
    """The named field is a finite number (``None`` allowed) in ``low … high``; the
    bounds are closed unless ``open_low``/``open_high``. NaN and ±inf are refused
    always: a non-finite rate or bias trains into NaN weights, found only at save time.
    """
    value = getattr(config, name)
    if value is None:
        return
    left = "(" if open_low else "["
    right = ")" if open_high else "]"
    expected = (
        f"a finite number in {left}{'-inf' if low is None else f'{low:g}'}, "
        f"{'inf' if high is None else f'{high:g}'}{right}"
    )
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{name}: expected {expected}, got {value!r}")
    if (
        not math.isfinite(value)
        or (low is not None and (value <= low if open_low else value < low))
        or (high is not None and (value >= high if open_high else value > high))
    ):
        raise ValueError(f"{name}: expected {expected}, got {value!r}")


def check_finite(config: Any, *names: str) -> None:
    """Each named field is a finite number (``None`` allowed)."""
    for name in names:
        check_range(config, name)


def check_seed(config: Any, name: str = "seed") -> None:
    """The named field is an int in [0, 2^63): what torch.manual_seed takes."""
    value = getattr(config, name)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_INT:
        raise ValueError(f"{name}: expected an int in [0, 2**63), got {value!r}")


def check_dropout(value: object) -> None:
    """A dropout probability: a number in [0, 1)."""
    number = isinstance(value, int | float) and not isinstance(value, bool)
    if not number or not 0.0 <= value < 1.0:  # type: ignore[operator]
        raise ValueError(f"dropout: expected a number in [0, 1), got {value!r}")


# --------------------------------------------------------------------------- writing


def to_toml(config: Any, *, header: str = "") -> str:
    """The TOML text of a dataclass instance (nested dataclasses become tables)."""
    if not dataclasses.is_dataclass(config) or isinstance(config, type):
        raise TypeError(f"expected a dataclass instance, got {type(config).__name__}")
    lines = [f"# {line}" if line else "#" for line in header.splitlines()]
    _write_table(config, [], lines)
    return "\n".join(lines).strip("\n") + "\n"


def write_toml(config: Any, path: Path | str, *, header: str = "") -> None:
    Path(path).write_text(to_toml(config, header=header), encoding="utf-8")


def _write_table(config: Any, prefix: list[str], lines: list[str]) -> None:
    tables = []
    for field in dataclasses.fields(config):
        value = getattr(config, field.name)
        if value is None:
            continue
        if dataclasses.is_dataclass(value):
            tables.append((field.name, value))
        else:
            lines.append(f"{field.name} = {_scalar(value, '.'.join([*prefix, field.name]))}")
    for name, value in tables:
        lines.append("")
        lines.append(f"[{'.'.join([*prefix, name])}]")
        _write_table(value, [*prefix, name], lines)


def _scalar(value: Any, key: str) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
        return f'"{escaped}"'
    if isinstance(value, tuple | list):
        return "[" + ", ".join(_scalar(item, key) for item in value) + "]"
    raise ConfigError(f"{key}: cannot write a {type(value).__name__} to TOML")


# --------------------------------------------------------------------------- reading


def from_mapping(cls: type[T], data: Mapping[str, Any], *, where: str = "") -> T:
    """Build ``cls`` from a parsed TOML mapping; unknown keys and wrong types raise.

    ``where`` prefixes key names in error messages (a file name or a table).
    """
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where or cls.__name__}: expected a table, got {data!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - set(fields))
    if unknown:
        known = ", ".join(fields)
        raise ConfigError(f"{_key(where, unknown[0])}: unknown key (expected one of: {known})")
    values = {name: _coerce(hints[name], value, _key(where, name)) for name, value in data.items()}
    try:
        return cls(**values)
    except TypeError as error:  # a required field is missing
        raise ConfigError(f"{where or cls.__name__}: {error}") from error
    except ConfigError:
        raise  # a nested table's: it names its key already
    except ValueError as error:  # __post_init__ names the field: say which table it is in
        raise ConfigError(f"{where}.{error}" if where else str(error)) from None


def replace(config: T, changes: Mapping[str, Any], *, where: str = "") -> T:
    """``config`` with ``changes`` applied (dotted keys reach nested dataclasses)."""
    nested: dict[str, dict[str, Any]] = {}
    flat: dict[str, Any] = {}
    for key, value in changes.items():
        head, _, rest = key.partition(".")
        if rest:
            nested.setdefault(head, {})[rest] = value
        else:
            flat[head] = value
    merged = _as_dict(config)
    for head, sub in nested.items():
        inner = getattr(config, head, None)
        if head not in merged:
            known = ", ".join(merged)
            raise ConfigError(f"{_key(where, head)}: unknown key (expected one of: {known})")
        if inner is None:
            # An optional table that is off (``early_stopping``, ``tbptt``): a dotted
            # key turns it on with its defaults, then sets the key.
            inner = _default_table(type(config), head)
            if isinstance(inner, dict):  # a table without defaults: its keys are all given
                merged[head] = sub
                continue
        if not dataclasses.is_dataclass(inner):
            raise ConfigError(f"{_key(where, head)}: not a table")
        merged[head] = _as_dict(replace(inner, sub, where=_key(where, head)))
    merged.update(flat)
    merged = {k: v for k, v in merged.items() if v is not None}
    return from_mapping(type(config), merged, where=where)


def merge(config: T, data: Mapping[str, Any], *, where: str = "") -> T:
    """``config`` with a parsed TOML mapping laid over it (a config file over defaults).

    Only the keys present change; nested tables merge key by key; unknown keys raise.
    """
    return replace(config, flatten(data, where=where), where=where)


def flatten(data: Mapping[str, Any], *, where: str = "", prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` → ``{"a.b": 1}``: the dotted changes :func:`replace` takes."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where or 'config'}: expected a table, got {data!r}")
    flat: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, where=where, prefix=f"{name}."))
        else:
            flat[name] = value
    return flat


def _default_table(cls: type, name: str) -> Any:
    fields = {f.name for f in dataclasses.fields(cls)}
    if name not in fields:
        return None  # reported as an unknown key by from_mapping
    hint = typing.get_type_hints(cls)[name]
    for option in typing.get_args(hint) or (hint,):
        if dataclasses.is_dataclass(option):
            try:
                return option()  # type: ignore[operator]
            except TypeError:  # a table without defaults (``tbptt``): needs its keys
                return {}
    return None


def _as_dict(config: Any) -> dict[str, Any]:
    result: dict[str, Any] = dataclasses.asdict(config)
    return result


def _key(where: str, name: str) -> str:
    return f"{where}.{name}" if where else name


def _coerce(hint: Any, value: Any, key: str) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        options = [a for a in args if a is not type(None)]
        errors = []
        for option in options:
            try:
                return _coerce(option, value, key)
            except ConfigError as error:
                errors.append(str(error))
        raise ConfigError(
            errors[0] if len(errors) == 1 else f"{key}: {value!r} fits none of {hint}"
        )
    if origin is typing.Literal:
        if value not in args or type(value) is not type(args[args.index(value)]):
            choices = ", ".join(repr(a) for a in args)
            raise ConfigError(f"{key}: expected one of {choices}, got {value!r}")
        return value
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(args[0], item, f"{key}[{i}]") for i, item in enumerate(value))
        if len(value) != len(args):
            raise ConfigError(f"{key}: expected {len(args)} items, got {len(value)}")
        return tuple(
            _coerce(a, item, f"{key}[{i}]")
            for i, (a, item) in enumerate(zip(args, value, strict=True))
        )
    if dataclasses.is_dataclass(hint):
        if dataclasses.is_dataclass(value):
            return value
        return from_mapping(hint, value, where=key)  # type: ignore[arg-type]
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected true or false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key}: expected a string, got {value!r}")
        return value
    raise ConfigError(f"{key}: unsupported type {hint}")
