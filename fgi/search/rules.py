"""Rules between the keys of a search space: ordering constraints (``a < b``) and conditions (``key`` searched
only for some values of a categorical parent), with their YAML parsers (``fgi.search.space`` documents both)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from fgi.config import Config, ConfigError, field_spec, flatten
from fgi.search.params import Categorical, Continuous, Param, SearchSpaceError, plain


@dataclass(frozen=True)
class Constraint:
    """``lower < upper`` between two config fields."""

    lower: str
    upper: str

    def __str__(self) -> str:
        return f"{self.lower} < {self.upper}"


@dataclass(frozen=True)
class Condition:
    """``key`` is searched only when categorical ``parent`` takes one of ``allowed`` (config values)."""

    key: str
    parent: str
    allowed: tuple[Any, ...]

    def __str__(self) -> str:
        return f"{self.key} when {self.parent} in {[plain(v) for v in self.allowed]}"


# ---- parsing ------------------------------------------------------------------------------------------

_CONSTRAINT = re.compile(r"^\s*([\w.]+)\s*<\s*([\w.]+)\s*$")


def parse_constraints(source: str, raw: Any, params: Mapping[str, Param], base: Config) -> list[Constraint]:
    """The ``constraints:`` list of a space file, checked against its params and the base config.

    Raises:
        SearchSpaceError: naming ``source`` and the constraint.
    """
    if not isinstance(raw, list):
        raise SearchSpaceError(f"{source}: constraints: expected a list like ['data.loose_level < data.tight_level']")
    flat = flatten(base)
    constraints: list[Constraint] = []
    for item in raw:
        m = _CONSTRAINT.match(str(item))
        if not m:
            raise SearchSpaceError(f"{source}: constraints: {item!r} is not of the form 'a.b < c.d'")
        c = Constraint(m.group(1), m.group(2))
        for key in (c.lower, c.upper):
            try:
                hint, _ = field_spec(key)
            except ConfigError as exc:
                raise SearchSpaceError(f"{source}: constraints: {exc}") from None
            if hint not in (int, float):
                raise SearchSpaceError(f"{source}: constraints: {key} is not a number field")
        if any(c.lower == other.lower for other in constraints):
            raise SearchSpaceError(f"{source}: constraints: {c.lower} has more than one upper bound")
        lower, upper = params.get(c.lower), params.get(c.upper)
        smallest_upper = upper.smallest() if upper is not None else flat[c.upper]
        if lower is not None:
            if not isinstance(lower, Continuous):
                raise SearchSpaceError(f"{source}: {c.lower}: a constrained key must be uniform or loguniform")
            if c.lower in {o.upper for o in constraints} or any(o.lower == c.upper for o in constraints):
                raise SearchSpaceError(f"{source}: constraints: chained constraints through {c.lower} are not supported")
            if not lower.low < smallest_upper:
                raise SearchSpaceError(f"{source}: {c.lower}: low {lower.low} must be below the smallest {c.upper} "
                                       f"({smallest_upper}) so that '{c}' can hold")
        elif upper is not None and not flat[c.lower] < smallest_upper:
            raise SearchSpaceError(
                f"{source}: {c.upper}: values down to {smallest_upper} break '{c}' with {c.lower}={flat[c.lower]}")
        constraints.append(c)
    return constraints


def parse_conditions(source: str, raw: Any, params: Mapping[str, Param], bounded: set[str]) -> list[Condition]:
    """The ``conditions:`` mapping of a space file; ``bounded`` are the keys of its constraints.

    Raises:
        SearchSpaceError: naming ``source`` and the key.
    """
    if not isinstance(raw, dict):
        raise SearchSpaceError(f"{source}: conditions: expected a mapping like {{model.predictor: {{text.mode: [none]}}}}")
    conditions: list[Condition] = []
    for key, rule in raw.items():
        key = str(key)
        where = f"{source}: conditions: {key}"
        if key not in params:
            raise SearchSpaceError(f"{where}: not a searched key of this space")
        if key in bounded:
            raise SearchSpaceError(f"{where}: a key in a constraint cannot also be conditional")
        if not isinstance(rule, dict) or len(rule) != 1:
            raise SearchSpaceError(f"{where}: expected one parent key with its values, like {{text.mode: [none]}}")
        (parent_key, allowed), = rule.items()
        parent = params.get(str(parent_key))
        if not isinstance(parent, Categorical):
            raise SearchSpaceError(f"{where}: parent {parent_key} must be a categorical key of this space")
        if parent.key in raw:
            raise SearchSpaceError(f"{where}: parent {parent.key} is conditional itself; chains are not supported")
        if not isinstance(allowed, list) or not allowed:
            raise SearchSpaceError(f"{where}: the values of {parent.key} must be a non-empty list")
        by_label = {str(label): choice for label, choice in zip(parent.labels(), parent.choices, strict=True)}
        unknown = [v for v in allowed if str(Categorical.label(v)) not in by_label]
        if unknown:
            raise SearchSpaceError(f"{where}: {unknown[0]!r} is not a choice of {parent.key} ({parent.labels()})")
        conditions.append(Condition(key, parent.key, tuple(by_label[str(Categorical.label(v))] for v in allowed)))
    return conditions


__all__ = ["Condition", "Constraint", "parse_conditions", "parse_constraints"]
