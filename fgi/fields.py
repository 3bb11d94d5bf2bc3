"""Field machinery of the config dataclasses: range metadata and the one value check.

``coerce`` is the single place where a value is checked against its type and range; YAML loading,
direct construction and search-space validation all go through it, so errors read the same.
"""

from __future__ import annotations

import dataclasses
import functools
import typing
from dataclasses import field
from typing import Any

SHOW_CHARS = 60  # how much of a value an error message prints


def shown(value: Any) -> str:
    """``repr(value)`` cut to ``SHOW_CHARS`` characters (a huge integer by its digit count)."""
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 100:
        return f"<an integer of about {int(value.bit_length() * 0.30103)} digits>"
    text = repr(value)
    return text if len(text) <= SHOW_CHARS else f"{text[:SHOW_CHARS]}... ({len(text)} characters)"


class ConfigError(ValueError):
    """A configuration value is unknown, of the wrong type or out of range. The message names the key."""


class OptionProblem(Exception):
    """An error about a named library option: the message speaks of the option and its value; a command
    shows it under its own flag (``fgi.commands.error_line``).

    Args:
        option: the parameter's library name (``max_steps``, ``experiment``).
        detail: what is wrong with its value, or what it names that does not exist.
    """

    def __init__(self, option: str, detail: str) -> None:
        super().__init__(f"{option}: {detail}")
        self.option, self.detail = option, detail


class OptionError(OptionProblem, ConfigError):
    """A bad value of a named library option (``max_steps``, ``trial_timeout``)."""


class OptionNotFound(OptionProblem, LookupError):
    """What a named library option points at (an experiment, a run, a sweep) does not exist."""


# section class -> its name in Config ("loss"), filled in by fgi.config once Config exists
SECTION_NAMES: dict[type, str] = {}


def bounded(default: Any, lo: float | None = None, hi: float | None = None, choices: tuple | None = None,
            items_lo: int | None = None, items_hi: int | None = None) -> Any:
    """A field with validation metadata (``lo``/``hi`` inclusive bounds, ``choices``, item bounds)."""
    meta = {"lo": lo, "hi": hi, "choices": choices, "items_lo": items_lo, "items_hi": items_hi}
    if isinstance(default, (list, tuple)):
        return field(default_factory=lambda d=tuple(default): d, metadata=meta)
    return field(default=default, metadata=meta)


class Section:
    """Base of the config sections: every field is checked on construction, so a section built
    directly (``MaskingConfig(mask_ratio=5.0)``) is validated like one loaded from YAML."""

    def __post_init__(self) -> None:
        cls = type(self)
        name = SECTION_NAMES.get(cls, cls.__name__)
        types = hints(cls)
        for f in dataclasses.fields(cls):
            value = coerce(f"{name}.{f.name}", getattr(self, f.name), types[f.name], f.metadata)
            object.__setattr__(self, f.name, value)


@functools.cache
def hints(cls: type) -> dict[str, Any]:
    """Resolved type hints of a dataclass (cached: they are read at every construction)."""
    return typing.get_type_hints(cls)


def coerce(key: str, value: Any, hint: Any, meta: typing.Mapping[str, Any]) -> Any:
    """Check one leaf value against its type hint and metadata; return the canonical value."""
    origin = typing.get_origin(hint)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list, got {type(value).__name__} {shown(value)}")
        item_hint = typing.get_args(hint)[0]
        items = tuple(coerce(f"{key}[{i}]", v, item_hint, {**meta, "choices": None}) for i, v in enumerate(value))
        lo, hi = meta.get("items_lo"), meta.get("items_hi")
        if lo is not None and len(items) < lo or hi is not None and len(items) > hi:
            raise ConfigError(f"{key}: needs {lo}..{hi} items, got {len(items)}")
        return items
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected true or false, got {shown(value)}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                value = int(value)
            else:
                raise ConfigError(f"{key}: expected an integer, got {shown(value)}")
    elif hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key}: expected a number, got {shown(value)}")
        value = float(value)
    elif hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key}: expected a string, got {shown(value)}")
    lo, hi, choices = meta.get("lo"), meta.get("hi"), meta.get("choices")
    if choices is not None and value not in choices:
        raise ConfigError(f"{key}: {shown(value)} is not one of {list(choices)}")
    if lo is not None and value < lo or hi is not None and value > hi:
        raise ConfigError(f"{key}: {shown(value)} is outside [{lo}, {hi if hi is not None else 'inf'}]")
    return value
