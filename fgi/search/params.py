"""Search-space parameters: one type per distribution (uniform, loguniform, int, categorical).

Each type parses its YAML entry through the config field's own coercion and range checks
(``fgi.fields.coerce``), and converts itself to Optuna (define-by-run ``suggest``, static
distributions) and to Ray Tune (``param_space`` entries). A categorical key appears to searchers as
``<key>|label`` (Optuna stores scalars only, and Tune reads list values as nested keys); the trial
config carries the chosen value itself under ``<key>``.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from fgi.config import ConfigError, field_spec
from fgi.fields import coerce

LABEL = "|label"  # suffix of the searcher parameter that picks a categorical choice by its label


class SearchSpaceError(ConfigError):
    """A search-space file is invalid. The message names the file and the key."""


def plain(value: Any) -> Any:
    """A JSON-plain trial-config value (tuples become lists)."""
    return list(value) if isinstance(value, tuple) else value


def canonical(value: Any) -> Any:
    """The config's form of a value (lists become tuples), for comparisons."""
    return tuple(value) if isinstance(value, list) else value


def _hint_name(hint: Any) -> str:
    return getattr(hint, "__name__", str(hint))


class Param(ABC):
    """One searched config field; one subclass per distribution.

    Subclasses are frozen dataclasses whose first field is ``key``, the dotted config field.
    """

    key: str
    distribution: ClassVar[str]
    options: ClassVar[frozenset[str]]  # the YAML keys an entry of this distribution may have

    @classmethod
    @abstractmethod
    def parse(cls, key: str, entry: Mapping[str, Any], hint: Any, meta: Mapping[str, Any]) -> Param:
        """Build from a YAML entry; bounds and choices go through the config field's own checks.

        Raises:
            ConfigError: naming ``key`` (the caller adds the file name).
        """

    @property
    def search_name(self) -> str:
        """The searcher's parameter name (Optuna param, Tune config key)."""
        return self.key

    def search_value(self, value: Any) -> Any:
        """The searcher's value of a config value."""
        return value

    @abstractmethod
    def suggest(self, trial: Any) -> Any:
        """Draw a config value with an Optuna trial (define-by-run)."""

    @abstractmethod
    def optuna_distribution(self) -> Any:
        """The Optuna distribution of ``search_value``s."""

    @abstractmethod
    def to_tune(self) -> dict[str, Any]:
        """Ray Tune ``param_space`` entries: searcher parameters and the config value under ``key``."""

    @abstractmethod
    def contains(self, value: Any) -> bool:
        """Whether a config value lies in the space."""

    @abstractmethod
    def sample(self, rng: np.random.Generator) -> Any:
        """A uniformly drawn config value (to check the space against the config rules)."""

    @abstractmethod
    def smallest(self) -> float:
        """The smallest value it can take (for constraint checks)."""


def _bound(key: str, entry: Mapping[str, Any], name: str, hint: Any, meta: Mapping[str, Any]) -> Any:
    if name not in entry:
        raise ConfigError(f"{key}.{name}: missing")
    return coerce(f"{key}.{name}", entry[name], hint, meta)


@dataclass(frozen=True)
class Continuous(Param):
    """A float drawn between ``low`` and ``high`` (inclusive), linearly or on a log scale."""

    key: str
    low: float
    high: float
    log: ClassVar[bool] = False
    options: ClassVar[frozenset[str]] = frozenset({"distribution", "low", "high"})

    @classmethod
    def parse(cls, key: str, entry: Mapping[str, Any], hint: Any, meta: Mapping[str, Any]) -> Param:
        if hint is not float:
            raise ConfigError(f"{key}: {cls.distribution} needs a float field; this field is {_hint_name(hint)}")
        low, high = _bound(key, entry, "low", hint, meta), _bound(key, entry, "high", hint, meta)
        if cls.log and low <= 0:
            raise ConfigError(f"{key}.low: loguniform needs a positive low, got {low}")
        if not low < high:
            raise ConfigError(f"{key}: low {low} must be below high {high}")
        return cls(key, low, high)

    def _warp(self, x: float) -> float:
        return math.log(x) if self.log else x

    def at(self, fraction: float, high: float | None = None) -> float:
        """The value ``fraction`` of the way from ``low`` to ``high`` (or to a lower ``high``)."""
        lo, hi = self._warp(self.low), self._warp(self.high if high is None else high)
        x = lo + fraction * (hi - lo)
        return math.exp(x) if self.log else x

    def fraction_of(self, value: float, high: float | None = None) -> float:
        """Inverse of ``at``, clipped to [0, 1]."""
        lo, hi = self._warp(self.low), self._warp(self.high if high is None else high)
        return min(max((self._warp(value) - lo) / (hi - lo), 0.0), 1.0)

    def suggest(self, trial: Any) -> float:
        return trial.suggest_float(self.key, self.low, self.high, log=self.log)

    def optuna_distribution(self) -> Any:
        import optuna

        return optuna.distributions.FloatDistribution(self.low, self.high, log=self.log)

    def contains(self, value: Any) -> bool:
        return self.low <= value <= self.high

    def sample(self, rng: np.random.Generator) -> float:
        return self.at(float(rng.uniform()))

    def smallest(self) -> float:
        return self.low


@dataclass(frozen=True)
class Uniform(Continuous):
    """``distribution: uniform`` over a float field."""

    distribution: ClassVar[str] = "uniform"

    def to_tune(self) -> dict[str, Any]:
        from ray import tune

        return {self.key: tune.uniform(self.low, self.high)}


@dataclass(frozen=True)
class LogUniform(Continuous):
    """``distribution: loguniform`` over a float field (positive bounds)."""

    distribution: ClassVar[str] = "loguniform"
    log: ClassVar[bool] = True

    def to_tune(self) -> dict[str, Any]:
        from ray import tune

        return {self.key: tune.loguniform(self.low, self.high)}


@dataclass(frozen=True)
class IntParam(Param):
    """``distribution: int`` over an integer field: ``low..high`` in ``step``s, or on a log scale."""

    key: str
    low: int
    high: int
    step: int = 1
    log: bool = False
    distribution: ClassVar[str] = "int"
    options: ClassVar[frozenset[str]] = frozenset({"distribution", "low", "high", "step", "log"})

    @classmethod
    def parse(cls, key: str, entry: Mapping[str, Any], hint: Any, meta: Mapping[str, Any]) -> Param:
        if hint is not int:
            raise ConfigError(f"{key}: int needs an integer field; this field is {_hint_name(hint)}")
        low, high = _bound(key, entry, "low", hint, meta), _bound(key, entry, "high", hint, meta)
        if not low < high:
            raise ConfigError(f"{key}: low {low} must be below high {high}")
        step = entry.get("step", 1)
        if isinstance(step, bool) or not isinstance(step, int) or step < 1:
            raise ConfigError(f"{key}.step: expected a positive integer, got {step!r}")
        if (high - low) % step:
            raise ConfigError(f"{key}.step: {step} does not divide the range {low}..{high}")
        log = entry.get("log", False)
        if not isinstance(log, bool):
            raise ConfigError(f"{key}.log: expected true or false, got {log!r}")
        if log and (step != 1 or low < 1):
            raise ConfigError(f"{key}.log: a log scale needs step 1 and low >= 1")
        return cls(key, low, high, step, log)

    def suggest(self, trial: Any) -> int:
        return trial.suggest_int(self.key, self.low, self.high, step=self.step, log=self.log)

    def optuna_distribution(self) -> Any:
        import optuna

        return optuna.distributions.IntDistribution(self.low, self.high, step=self.step, log=self.log)

    def to_tune(self) -> dict[str, Any]:
        from ray import tune

        domain = tune.lograndint(self.low, self.high + 1) if self.log else tune.qrandint(self.low, self.high, self.step)
        return {self.key: domain}

    def contains(self, value: Any) -> bool:
        return self.low <= value <= self.high

    def sample(self, rng: np.random.Generator) -> int:
        return int(rng.choice(np.arange(self.low, self.high + 1, self.step)))

    def smallest(self) -> float:
        return self.low


@dataclass(frozen=True)
class Categorical(Param):
    """``distribution: categorical``: one of ``choices`` (list choices become tuples, as in the config)."""

    key: str
    choices: tuple[Any, ...]
    distribution: ClassVar[str] = "categorical"
    options: ClassVar[frozenset[str]] = frozenset({"distribution", "choices"})

    @classmethod
    def parse(cls, key: str, entry: Mapping[str, Any], hint: Any, meta: Mapping[str, Any]) -> Param:
        raw = entry.get("choices")
        if not isinstance(raw, list) or not raw:
            raise ConfigError(f"{key}.choices: expected a non-empty list, got {raw!r}")
        choices = tuple(coerce(f"{key}.choices[{i}]", c, hint, meta) for i, c in enumerate(raw))
        p = cls(key, choices)
        if len(set(map(str, p.labels()))) != len(choices):
            raise ConfigError(f"{key}.choices: repeated choices in {raw}")
        if key == "text.template":
            from fgi.text.templates import template_names

            unknown = [c for c in choices if c not in template_names()]
            if unknown:
                raise ConfigError(f"{key}.choices: unknown templates {unknown}; valid: {template_names()}")
        return p

    @staticmethod
    def label(value: Any) -> Any:
        """The searcher-side value of a choice: a scalar (lists and tuples become 'a,b', or 'none')."""
        if isinstance(value, (list, tuple)):
            return ",".join(str(v) for v in value) if value else "none"
        return value

    def labels(self) -> list[Any]:
        return [self.label(c) for c in self.choices]

    def from_label(self, label: Any) -> Any:
        for choice in self.choices:
            if self.label(choice) == label:
                return choice
        raise SearchSpaceError(f"{self.key}: {label!r} is not one of {self.labels()}")

    @property
    def search_name(self) -> str:
        return self.key + LABEL

    def search_value(self, value: Any) -> Any:
        return self.label(value)

    def suggest(self, trial: Any) -> Any:
        return self.from_label(trial.suggest_categorical(self.search_name, self.labels()))

    def optuna_distribution(self) -> Any:
        import optuna

        return optuna.distributions.CategoricalDistribution(self.labels())

    def to_tune(self) -> dict[str, Any]:
        from ray import tune

        return {self.search_name: tune.choice(self.labels()), self.key: tune.sample_from(_TuneChoice(self))}

    def contains(self, value: Any) -> bool:
        return canonical(value) in self.choices

    def sample(self, rng: np.random.Generator) -> Any:
        return self.choices[int(rng.integers(len(self.choices)))]

    def smallest(self) -> float:
        return min(self.choices)


DISTRIBUTIONS: dict[str, type[Param]] = {cls.distribution: cls for cls in (Uniform, LogUniform, IntParam, Categorical)}


class _TuneChoice:
    """Tune ``sample_from`` of a categorical key: its label parameter mapped to the choice (picklable)."""

    def __init__(self, param: Categorical) -> None:
        self.param = param

    def __call__(self, config: Any) -> Any:
        return plain(self.param.from_label(config[self.param.search_name]))



def parse_param(source: str, key: str, entry: Any) -> Param:
    if not isinstance(entry, dict):
        raise SearchSpaceError(f"{source}: {key}: expected a mapping with 'distribution', got {entry!r}")
    dist = entry.get("distribution")
    if dist not in DISTRIBUTIONS:
        raise SearchSpaceError(f"{source}: {key}.distribution: {dist!r} is not one of {list(DISTRIBUTIONS)}")
    cls = DISTRIBUTIONS[dist]
    extra = sorted(set(entry) - cls.options)
    if extra:
        raise SearchSpaceError(f"{source}: {key}.{extra[0]}: not allowed for {dist}; allowed: {sorted(cls.options)}")
    try:
        hint, meta = field_spec(key)
        return cls.parse(key, entry, hint, meta)
    except SearchSpaceError:
        raise
    except ConfigError as exc:
        raise SearchSpaceError(f"{source}: {exc}") from None


__all__ = [
    "DISTRIBUTIONS", "LABEL", "Categorical", "Continuous", "IntParam", "LogUniform", "Param", "SearchSpaceError",
    "Uniform", "canonical", "parse_param", "plain",
]
