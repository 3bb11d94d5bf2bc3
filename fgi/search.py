"""Hyperparameter search: declarative search spaces, Ray Tune + Optuna sweeps, and best-config reuse.

A search space is a YAML file in ``search_spaces/``::

    params:
      loss.tau_pos: {distribution: uniform, low: 0.6, high: 0.95}
      optim.lr: {distribution: loguniform, low: 3.0e-4, high: 1.0e-2}
      loss.align_scales: {distribution: categorical, choices: [[], [3, 4], [1, 2, 3, 4]]}
    constraints:
      - data.loose_level < data.tight_level

Keys are dotted config fields (``fgi/config.py``). Every entry is checked against the field's type and
range before anything starts; errors name the file and the key. A constraint ``a < b`` is kept by
construction: ``a`` is drawn as a fraction of its range below ``b``, so every trial is valid and TPE sees
a fixed distribution. The first trial is the base configuration (the published one unless ``--config``
says otherwise).

Layering: ``search`` builds trials with ``fgi.distributed`` and logs through ``fgi.tracking``; it is the
only module that knows Ray Tune and Optuna.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from fgi import budgets
from fgi.config import (
    Config,
    ConfigError,
    dump_yaml,
    field_spec,
    flatten,
    from_dict,
    load_yaml,
    load_yaml_text,
    override,
)

DATASETS: tuple[str, ...] = ("synthetic", "kvasir", "isic", "nci-isbi")
DISTRIBUTIONS: tuple[str, ...] = ("uniform", "loguniform", "int", "categorical")
_ALLOWED_KEYS = {
    "uniform": {"distribution", "low", "high"},
    "loguniform": {"distribution", "low", "high"},
    "int": {"distribution", "low", "high", "step", "log"},
    "categorical": {"distribution", "choices"},
}
_FRACTION = "|fraction"  # suffix of the Optuna/Tune parameter that draws a constrained key below its bound
_VALIDATION_SAMPLES = 64  # random points of the space checked against the config rules before a sweep
SPACES_DIR = Path(__file__).resolve().parents[1] / "search_spaces"


class SearchSpaceError(ConfigError):
    """A search-space file is invalid. The message names the file and the key."""


@dataclass(frozen=True)
class Param:
    """One searched config field.

    Args:
        key: dotted config field.
        distribution: one of ``DISTRIBUTIONS``.
        low: lower bound (uniform, loguniform, int).
        high: upper bound, inclusive.
        step: int step.
        log: int drawn on a log scale.
        choices: categorical values (lists become tuples).
    """

    key: str
    distribution: str
    low: float | None = None
    high: float | None = None
    step: int = 1
    log: bool = False
    choices: tuple[Any, ...] = ()

    def label(self, value: Any) -> Any:
        """The Optuna-side value of a categorical choice (Optuna only stores scalars)."""
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

    def contains(self, value: Any) -> bool:
        if self.distribution == "categorical":
            return any(self.label(c) == self.label(value) for c in self.choices)
        return self.low <= value <= self.high


@dataclass(frozen=True)
class Constraint:
    """``lower < upper`` between two config fields."""

    lower: str
    upper: str

    def __str__(self) -> str:
        return f"{self.lower} < {self.upper}"


@dataclass(frozen=True)
class SearchSpace:
    """A validated search space over config fields.

    Args:
        params: the searched fields, in drawing order (bounds of constraints first).
        constraints: ordering constraints kept by construction.
        base: the configuration every trial starts from; its values form the first trial.
        source: the file it came from (for messages).
        text: the YAML text (logged as an artifact).
    """

    params: tuple[Param, ...]
    constraints: tuple[Constraint, ...]
    base: Config
    source: str = "<space>"
    text: str = ""
    _by_key: dict[str, Param] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        self._by_key.update({p.key: p for p in self.params})

    @property
    def keys(self) -> list[str]:
        """The searched dotted keys."""
        return [p.key for p in self.params]

    def param(self, key: str) -> Param:
        return self._by_key[key]

    def _bound_of(self, key: str) -> str | None:
        for c in self.constraints:
            if c.lower == key:
                return c.upper
        return None

    def _constrained_value(self, p: Param, fraction: float, values: Mapping[str, Any]) -> float:
        """Map a fraction in [0, 1] onto ``[low, min(high, bound))`` of a constrained key."""
        upper_key = self._bound_of(p.key)
        bound = values[upper_key] if upper_key in values else flatten(self.base)[upper_key]
        hi = min(p.high, bound)
        if p.distribution == "loguniform":
            value = math.exp(math.log(p.low) + fraction * (math.log(hi) - math.log(p.low)))
        else:
            value = p.low + fraction * (hi - p.low)
        return math.nextafter(bound, -math.inf) if value >= bound else value

    def _fraction_of(self, p: Param, value: float, values: Mapping[str, Any]) -> float:
        upper_key = self._bound_of(p.key)
        bound = values[upper_key] if upper_key in values else flatten(self.base)[upper_key]
        hi = min(p.high, bound)
        if p.distribution == "loguniform":
            frac = (math.log(value) - math.log(p.low)) / (math.log(hi) - math.log(p.low))
        else:
            frac = (value - p.low) / (hi - p.low)
        return min(max(frac, 0.0), 1.0)

    # ---- Optuna -------------------------------------------------------------------------------------
    def suggest(self, trial: Any) -> dict[str, Any]:
        """Draw one point with an Optuna trial (define-by-run); returns config values by dotted key."""
        values: dict[str, Any] = {}
        for p in self.params:
            if self._bound_of(p.key):
                frac = trial.suggest_float(p.key + _FRACTION, 0.0, 1.0)
                values[p.key] = self._constrained_value(p, frac, values)
            elif p.distribution in ("uniform", "loguniform"):
                values[p.key] = trial.suggest_float(p.key, p.low, p.high, log=p.distribution == "loguniform")
            elif p.distribution == "int":
                values[p.key] = trial.suggest_int(p.key, int(p.low), int(p.high), step=p.step, log=p.log)
            else:
                values[p.key] = p.from_label(trial.suggest_categorical(p.key, p.labels()))
        return values

    def optuna_point(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """Optuna (and ``to_tune``) parameter values of a point given as config values: labels for
        categorical choices, fractions for constrained keys."""
        out: dict[str, Any] = {}
        for p in self.params:
            v = values[p.key]
            if self._bound_of(p.key):
                out[p.key + _FRACTION] = self._fraction_of(p, v, values)
            elif p.distribution == "categorical":
                out[p.key] = p.label(v)
            else:
                out[p.key] = v
        return out

    def optuna_distributions(self) -> dict[str, Any]:
        """Static Optuna distributions of the config values (for importances and ``add_trial``)."""
        import optuna

        dists: dict[str, Any] = {}
        for p in self.params:
            if p.distribution in ("uniform", "loguniform"):
                dists[p.key] = optuna.distributions.FloatDistribution(p.low, p.high, log=p.distribution == "loguniform")
            elif p.distribution == "int":
                dists[p.key] = optuna.distributions.IntDistribution(int(p.low), int(p.high), step=p.step, log=p.log)
            else:
                dists[p.key] = optuna.distributions.CategoricalDistribution(p.labels())
        return dists

    # ---- Ray Tune -----------------------------------------------------------------------------------
    def to_tune(self) -> dict[str, Any]:
        """The space as a Ray Tune ``param_space`` (for Tune's own random search)."""
        from ray import tune

        space: dict[str, Any] = {}
        for p in self.params:
            if self._bound_of(p.key):
                space[p.key + _FRACTION] = tune.uniform(0.0, 1.0)
                space[p.key] = tune.sample_from(_TuneConstrained(self, p.key))
            elif p.distribution == "uniform":
                space[p.key] = tune.uniform(p.low, p.high)
            elif p.distribution == "loguniform":
                space[p.key] = tune.loguniform(p.low, p.high)
            elif p.distribution == "int":
                if p.log:
                    space[p.key] = tune.lograndint(int(p.low), int(p.high) + 1)
                else:
                    space[p.key] = tune.qrandint(int(p.low), int(p.high), p.step)
            else:
                space[p.key] = tune.choice(p.labels())  # labels: Tune would read list values as nested keys
        return space

    # ---- configs ------------------------------------------------------------------------------------
    def values_of(self, trial_config: Mapping[str, Any]) -> dict[str, Any]:
        """The searched config values inside a Tune trial config (labels mapped back, helpers dropped)."""
        out = {}
        for k in self.keys:
            if k not in trial_config:
                continue
            v = trial_config[k]
            if self._by_key[k].distribution == "categorical" and not isinstance(v, (list, tuple)):
                v = self._by_key[k].from_label(v)
            out[k] = v
        return out

    def apply(self, values: Mapping[str, Any], base: Config | None = None) -> Config:
        """The resolved config of a point."""
        return override(base or self.base, {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})

    def published_point(self) -> dict[str, Any]:
        """The base configuration's values of the searched keys (the first trial)."""
        flat = flatten(self.base)
        return {k: tuple(flat[k]) if isinstance(flat[k], list) else flat[k] for k in self.keys}

    def random_point(self, rng: np.random.Generator) -> dict[str, Any]:
        """A uniformly drawn point (used to check the space against the config rules)."""
        values: dict[str, Any] = {}
        for p in self.params:
            if self._bound_of(p.key):
                values[p.key] = self._constrained_value(p, float(rng.uniform()), values)
            elif p.distribution == "uniform":
                values[p.key] = float(rng.uniform(p.low, p.high))
            elif p.distribution == "loguniform":
                values[p.key] = float(math.exp(rng.uniform(math.log(p.low), math.log(p.high))))
            elif p.distribution == "int":
                values[p.key] = int(rng.choice(np.arange(int(p.low), int(p.high) + 1, p.step)))
            else:
                values[p.key] = p.choices[int(rng.integers(len(p.choices)))]
        return values


class _TuneConstrained:
    """Tune ``sample_from`` function of a constrained key (picklable)."""

    def __init__(self, space: SearchSpace, key: str) -> None:
        self.space, self.key = space, key

    def __call__(self, spec: Any) -> float:
        cfg = spec.config
        p = self.space.param(self.key)
        values = {k: cfg[k] for k in self.space.keys if k in cfg and not callable(cfg[k])}
        return self.space._constrained_value(p, float(cfg[self.key + _FRACTION]), values)


class OptunaDefineByRun:
    """Picklable define-by-run function for ``OptunaSearch`` (saved with the searcher on resume)."""

    def __init__(self, space: SearchSpace) -> None:
        self.space = space

    def __call__(self, trial: Any) -> dict[str, Any]:
        values = self.space.suggest(trial)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in values.items()}


def _number(source: str, key: str, name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise SearchSpaceError(f"{source}: {key}.{name}: expected a number, got {value!r}")
    return float(value)


def _parse_param(source: str, key: str, entry: Any, base: Config) -> Param:
    if not isinstance(entry, dict):
        raise SearchSpaceError(f"{source}: {key}: expected a mapping with 'distribution', got {entry!r}")
    try:
        hint, meta = field_spec(key)
    except ConfigError as exc:
        raise SearchSpaceError(f"{source}: {exc}") from None
    dist = entry.get("distribution")
    if dist not in DISTRIBUTIONS:
        raise SearchSpaceError(f"{source}: {key}.distribution: {dist!r} is not one of {list(DISTRIBUTIONS)}")
    extra = sorted(set(entry) - _ALLOWED_KEYS[dist])
    if extra:
        raise SearchSpaceError(f"{source}: {key}.{extra[0]}: not allowed for {dist}; allowed: {sorted(_ALLOWED_KEYS[dist])}")
    if dist == "categorical":
        choices = entry.get("choices")
        if not isinstance(choices, list) or not choices:
            raise SearchSpaceError(f"{source}: {key}.choices: expected a non-empty list, got {choices!r}")
        normal = tuple(tuple(c) if isinstance(c, list) else c for c in choices)
        p = Param(key, dist, choices=normal)
        if len(set(map(str, p.labels()))) != len(normal):
            raise SearchSpaceError(f"{source}: {key}.choices: repeated choices in {choices}")
        if key == "text.template":
            from fgi.text.templates import template_names

            unknown = [c for c in normal if c not in template_names()]
            if unknown:
                raise SearchSpaceError(f"{source}: {key}.choices: unknown templates {unknown}; valid: {template_names()}")
        for c in normal:
            try:
                override(base, {key: c})
            except ConfigError as exc:
                raise SearchSpaceError(f"{source}: {key}.choices: {c!r} is invalid ({exc})") from None
        return p
    for name in ("low", "high"):
        if name not in entry:
            raise SearchSpaceError(f"{source}: {key}.{name}: missing")
    low, high = _number(source, key, "low", entry["low"]), _number(source, key, "high", entry["high"])
    if dist in ("uniform", "loguniform") and hint is not float:
        raise SearchSpaceError(f"{source}: {key}: {dist} needs a float field; this field is {getattr(hint, '__name__', hint)}")
    if dist == "int":
        if hint is not int:
            raise SearchSpaceError(f"{source}: {key}: int needs an integer field; this field is {getattr(hint, '__name__', hint)}")
        if not (low.is_integer() and high.is_integer()):
            raise SearchSpaceError(f"{source}: {key}: int bounds must be integers, got {entry['low']!r}, {entry['high']!r}")
    if not low < high:
        raise SearchSpaceError(f"{source}: {key}: low {low} must be below high {high}")
    if dist == "loguniform" and low <= 0:
        raise SearchSpaceError(f"{source}: {key}.low: loguniform needs a positive low, got {low}")
    lo, hi = meta.get("lo"), meta.get("hi")
    if lo is not None and low < lo or hi is not None and high > hi:
        raise SearchSpaceError(f"{source}: {key}: [{low}, {high}] leaves the field's valid range [{lo}, {hi if hi is not None else 'inf'}]")
    step = entry.get("step", 1)
    if dist == "int" and (isinstance(step, bool) or not isinstance(step, int) or step < 1):
        raise SearchSpaceError(f"{source}: {key}.step: expected a positive integer, got {step!r}")
    log = entry.get("log", False)
    if not isinstance(log, bool):
        raise SearchSpaceError(f"{source}: {key}.log: expected true or false, got {log!r}")
    return Param(key, dist, low=low, high=high, step=int(step), log=log)


_CONSTRAINT = re.compile(r"^\s*([\w.]+)\s*<\s*([\w.]+)\s*$")


def parse_space(data: Any, base: Config, source: str = "<space>", text: str = "") -> SearchSpace:
    """Validate a parsed search-space mapping against ``base`` and build a ``SearchSpace``.

    Args:
        data: the parsed YAML.
        base: the configuration trials start from (after the budget).
        source: the file name used in errors.
        text: the YAML text, kept for logging.

    Raises:
        SearchSpaceError: naming the file and the key of the first problem.
    """
    if not isinstance(data, dict):
        raise SearchSpaceError(f"{source}: expected a mapping with 'params', got {type(data).__name__}")
    unknown = sorted(set(data) - {"params", "constraints"})
    if unknown:
        raise SearchSpaceError(f"{source}: {unknown[0]}: unknown top-level key; valid keys are ['constraints', 'params']")
    params_data = data.get("params")
    if not isinstance(params_data, dict) or not params_data:
        raise SearchSpaceError(f"{source}: params: expected a non-empty mapping of dotted config keys")
    params = {key: _parse_param(source, str(key), entry, base) for key, entry in params_data.items()}

    constraints: list[Constraint] = []
    raw = data.get("constraints") or []
    if not isinstance(raw, list):
        raise SearchSpaceError(f"{source}: constraints: expected a list like ['data.loose_level < data.tight_level']")
    flat = flatten(base)
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
        if lower is not None:
            if lower.distribution not in ("uniform", "loguniform"):
                raise SearchSpaceError(f"{source}: {c.lower}: a constrained key must be uniform or loguniform")
            if c.lower in {o.upper for o in constraints} or any(o.lower == c.upper for o in constraints):
                raise SearchSpaceError(f"{source}: constraints: chained constraints through {c.lower} are not supported")
            smallest_bound = upper.low if upper is not None and upper.distribution != "categorical" else (
                min(upper.choices) if upper is not None else flat[c.upper])
            if not lower.low < smallest_bound:
                raise SearchSpaceError(
                    f"{source}: {c.lower}: low {lower.low} must be below the smallest {c.upper} ({smallest_bound}) "
                    f"so that '{c}' can hold"
                )
        elif upper is not None:
            smallest = upper.low if upper.distribution != "categorical" else min(upper.choices)
            if not flat[c.lower] < smallest:
                raise SearchSpaceError(
                    f"{source}: {c.upper}: values down to {smallest} break '{c}' with {c.lower}={flat[c.lower]}"
                )
        constraints.append(c)

    # bounds before the keys they bound
    lowers = {c.lower for c in constraints}
    ordered = [p for k, p in params.items() if k not in lowers] + [p for k, p in params.items() if k in lowers]
    space = SearchSpace(tuple(ordered), tuple(constraints), base, source, text)

    for key, value in space.published_point().items():
        if not space.param(key).contains(value):
            raise SearchSpaceError(f"{source}: {key}: the base configuration's value {value!r} is outside the space, "
                                   "so the published configuration cannot be the first trial")
    rng = np.random.default_rng(0)
    for _ in range(_VALIDATION_SAMPLES):
        point = space.random_point(rng)
        try:
            space.apply(point)
        except ConfigError as exc:
            raise SearchSpaceError(f"{source}: the space allows an invalid configuration: {exc} (point {point})") from None
    return space


def load_space(path: str | os.PathLike, base: Config) -> SearchSpace:
    """Load and validate a search-space YAML file.

    Raises:
        SearchSpaceError: naming the file and the key.
    """
    p = Path(path)
    if not p.is_file():
        raise SearchSpaceError(f"{p}: search space file not found")
    text = p.read_text()
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise SearchSpaceError(f"{p}: not valid YAML ({exc})") from None
    return parse_space(data, base, str(p), text)


def default_space_path(dataset: str) -> Path:
    """``search_spaces/<dataset>.yaml``."""
    return SPACES_DIR / f"{dataset}.yaml"


# ---- sweeps -------------------------------------------------------------------------------------------

METRIC_MODES = {"val_dice": "max", "val_iou": "max", "val_hd95": "min", "val_asd": "min"}
DEFAULT_BUDGET = {"synthetic": "cpu"}  # other datasets default to "full"
# per budget: trials, ASHA grace period in evaluations, ASHA reduction factor
SEARCH_DEFAULTS = {"smoke": (3, 1, 2), "cpu": (10, 2, 2), "full": (40, 2, 3)}
SWEEP_FILE = "fgi_sweep.json"  # the sweep's settings, read back by --resume


@dataclass(frozen=True)
class TrialSettings:
    """What every trial of a sweep shares (sent to trials with ``tune.with_parameters``).

    Args:
        space: the validated search space (its ``base`` is the unprepared base config).
        cache_dir: the prepared dataset cache.
        train_storage: where each trial's Ray Train run keeps its checkpoints (``<name>/`` per trial).
        workers: data-parallel workers per trial.
        cpus_per_worker: CPUs per worker.
        gpus_per_worker: GPUs per worker.
        max_failures: worker-group restarts inside a trial.
        metric: the validation metric.
        mode: "max" or "min".
    """

    space: SearchSpace
    cache_dir: str
    train_storage: str
    workers: int = 1
    cpus_per_worker: float = 1.0
    gpus_per_worker: float = 0.0
    max_failures: int = 2
    metric: str = "val_dice"
    mode: str = "max"

    def config_of(self, trial_config: Mapping[str, Any]) -> Config:
        """The resolved, prepared config of a trial."""
        cfg = self.space.apply(self.space.values_of(trial_config))
        return override(cfg, {"data.cache_dir": self.cache_dir})


class ParamsOf:
    """The flattened config of a trial, as MLflow params (picklable, for the tracking callback)."""

    def __init__(self, space: SearchSpace) -> None:
        self.space = space

    def __call__(self, trial_config: Mapping[str, Any]) -> dict[str, Any]:
        return flatten(self.space.apply(self.space.values_of(trial_config)))


def run_trial(config: dict[str, Any], settings: TrialSettings) -> None:
    """The Tune function trainable: one Ray Train ``TorchTrainer`` run per trial.

    The Train run is named after the trial id, so a retried or resumed trial continues from the run's
    latest checkpoint. Metrics and checkpoint paths reach Tune through ``TuneReportCallback``. Every
    trial uses the same seeds (trial offset 0): trials then differ only in their hyperparameters, and a
    trial's result is reproducible from its config alone.
    """
    from ray import tune
    from ray.tune.integration.ray_train import TuneReportCallback

    from fgi import distributed

    trial_id = tune.get_context().get_trial_id()
    distributed.fit(settings.config_of(config), storage_path=settings.train_storage, name=trial_id,
                    workers=settings.workers, cpus_per_worker=settings.cpus_per_worker,
                    gpus_per_worker=settings.gpus_per_worker, trial=0,
                    max_failures=settings.max_failures, callbacks=[TuneReportCallback()],
                    metric=settings.metric, mode=settings.mode)


def _storage(value: str | None) -> str:
    from fgi.tracking import fgi_home

    if not value:
        return str(fgi_home() / "ray_results")
    return value if "://" in value else str(Path(value).expanduser().resolve())


def _base_config(dataset: str, config: str | None, budget: str, seed: int | None, max_steps: int | None) -> Config:
    cfg = load_yaml(config) if config else from_dict({"data": {"dataset": dataset}})
    if cfg.data.dataset != dataset:
        raise ConfigError(f"--config: {config} is for dataset {cfg.data.dataset!r}, not --dataset {dataset!r}")
    cfg = budgets.apply_budget(cfg, budget)
    updates: dict[str, Any] = {}
    if seed is not None:
        updates["train.seed"] = seed
    if max_steps is not None:
        updates["train.max_steps"] = max_steps
    return override(cfg, updates) if updates else cfg


def _positive(name: str, value: float | None, allow_zero: bool = False) -> None:
    if value is not None and (value < 0 or (value == 0 and not allow_zero)):
        raise ConfigError(f"{name}: must be {'>= 0' if allow_zero else '> 0'}, got {value}")


def _tune_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dataset", required=True, choices=DATASETS, help="dataset to search on")
    parser.add_argument("--config", default=None, help="base config YAML (default: the published configuration)")
    parser.add_argument("--space", default=None, help="search-space YAML (default: search_spaces/<dataset>.yaml)")
    parser.add_argument("--budget", default=None, choices=budgets.budget_names(),
                        help="compute preset: image size, widths, steps, evaluation interval (default: cpu for "
                             "synthetic, full otherwise)")
    parser.add_argument("--num-samples", type=int, default=None, help="trials (default by budget: smoke 3, cpu 10, full 40)")
    parser.add_argument("--max-concurrent", type=int, default=None,
                        help="trials at once (default: as many as the cluster's CPUs or GPUs hold)")
    parser.add_argument("--workers-per-trial", type=int, default=1, help="data-parallel Ray Train workers per trial")
    parser.add_argument("--gpus-per-worker", type=float, default=0.0, help="GPUs per worker; 0 trains on CPU (gloo)")
    parser.add_argument("--cpus-per-worker", type=float, default=1.0, help="CPUs per worker")
    parser.add_argument("--search", default="tpe", choices=("tpe", "random"),
                        help="Optuna TPE (multivariate, seeded), or Ray Tune random search over the same space")
    parser.add_argument("--scheduler", default="asha", choices=("asha", "none"), help="early stopping of weak trials")
    parser.add_argument("--max-steps", type=int, default=None, help="optimizer steps per trial (default: the budget's)")
    parser.add_argument("--grace-steps", type=int, default=None,
                        help="steps before ASHA may stop a trial (default: a budget-dependent number of evaluations)")
    parser.add_argument("--metric", default="val_dice", choices=sorted(METRIC_MODES),
                        help="validation metric to optimize (Dice and IoU up, HD95 and ASD down)")
    parser.add_argument("--storage", default=None,
                        help="local folder or URI for Tune state and checkpoints (default: $FGI_HOME/ray_results); "
                             "shared storage on a multi-node cluster")
    parser.add_argument("--name", default=None, help="sweep name (default: fgi-<dataset>-<budget>-<time>)")
    parser.add_argument("--resume", action="store_true",
                        help="finish sweep --name (default: the latest fgi-<dataset>-* sweep in --storage)")
    parser.add_argument("--mlflow-uri", default=None,
                        help="MLflow tracking URI (default: MLFLOW_TRACKING_URI, else sqlite in $FGI_HOME)")
    parser.add_argument("--experiment", default=None, help="MLflow experiment (default: fgi-<dataset>)")
    parser.add_argument("--time-budget", type=float, default=None, help="stop starting trials after this many seconds")
    parser.add_argument("--seed", type=int, default=None, help="seed of the TPE sampler and of train.seed (default: the config's)")
    parser.add_argument("--max-failures", type=int, default=2, help="retries of a failed trial or worker group")
    parser.add_argument("--best-dir", default="best_configs", help="folder for the local <dataset>.yaml best config")


def _sweep_name(dataset: str, budget: str) -> str:
    return f"fgi-{dataset}-{budget}-{time.strftime('%Y%m%d-%H%M%S')}"


def _latest_sweep(storage: str, dataset: str) -> str:
    if "://" in storage:
        raise ConfigError("--resume: give --name when --storage is a URI")
    found = sorted(Path(storage).glob(f"fgi-{dataset}-*/{SWEEP_FILE}"), key=lambda p: p.stat().st_mtime)
    if not found:
        raise ConfigError(f"--resume: no fgi-{dataset}-* sweep in {storage}")
    return found[-1].parent.name


def _write_sweep_file(storage: str, name: str, record: Mapping[str, Any]) -> None:
    import pyarrow.fs

    text = json.dumps(record, indent=1)
    if "://" in storage:
        fs, root = pyarrow.fs.FileSystem.from_uri(storage)
        with fs.open_output_stream(f"{root}/{name}/{SWEEP_FILE}") as fh:
            fh.write(text.encode())
    else:
        from fgi.config import atomic_write_text

        atomic_write_text(Path(storage) / name / SWEEP_FILE, text)


def _read_sweep_file(storage: str, name: str) -> dict[str, Any]:
    import pyarrow.fs

    if "://" in storage:
        fs, root = pyarrow.fs.FileSystem.from_uri(storage)
        with fs.open_input_stream(f"{root}/{name}/{SWEEP_FILE}") as fh:
            return json.loads(fh.read().decode())
    p = Path(storage) / name / SWEEP_FILE
    if not p.is_file():
        raise ConfigError(f"--resume: {p} not found; is --name {name!r} a sweep in --storage {storage}?")
    return json.loads(p.read_text())


def _cluster_slots(workers: int, cpus: float, gpus: float) -> int:
    import ray

    res = ray.cluster_resources()
    slots = int(res.get("CPU", 1) // max(workers * cpus, 1e-9))
    if gpus:
        slots = min(slots, int(res.get("GPU", 0) // (workers * gpus)))
    if slots < 1:
        raise ConfigError(f"the cluster ({res.get('CPU', 0)} CPU, {res.get('GPU', 0)} GPU) cannot hold one trial of "
                          f"{workers} workers x ({cpus} CPU, {gpus} GPU)")
    return slots


def importances(space: SearchSpace, points: list[tuple[Mapping[str, Any], float]], mode: str, seed: int) -> dict[str, float]:
    """Optuna fANOVA importances of the searched keys from finished trials (needs two or more).

    Args:
        space: the search space.
        points: (config values, best metric) of each trial.
        mode: "max" or "min".
        seed: seed of the fANOVA forest.
    """
    import optuna

    if len(points) < 2:
        return {}
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    dists = space.optuna_distributions()
    study = optuna.create_study(direction="maximize" if mode == "max" else "minimize")
    for values, score in points:
        params = {}
        for key in space.keys:
            p = space.param(key)
            params[key] = p.label(values[key]) if p.distribution == "categorical" else values[key]
        study.add_trial(optuna.trial.create_trial(params=params, distributions=dists, value=float(score)))
    evaluator = optuna.importance.FanovaImportanceEvaluator(seed=seed)
    return {k: float(v) for k, v in optuna.importance.get_param_importances(study, evaluator=evaluator).items()}


def run_sweep(args: argparse.Namespace) -> int:
    """``fgi tune`` / ``tune.py``: validate everything, prepare data once, run the sweep, export the best config."""
    import ray
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler
    from ray.tune.search import BasicVariantGenerator, ConcurrencyLimiter
    from ray.tune.search.optuna import OptunaSearch

    from fgi import distributed, tracking

    storage = _storage(args.storage)
    if args.resume:
        name = args.name or _latest_sweep(storage, args.dataset)
        rec = _read_sweep_file(storage, name)
        print(f"resuming sweep {name} with its saved settings ({Path(storage) / name / SWEEP_FILE})")
    else:
        for opt in ("num_samples", "max_concurrent", "workers_per_trial", "max_steps", "grace_steps", "max_failures"):
            value = getattr(args, opt)
            _positive("--" + opt.replace("_", "-"), value, allow_zero=opt == "max_failures")
        _positive("--cpus-per-worker", args.cpus_per_worker)
        _positive("--gpus-per-worker", args.gpus_per_worker, allow_zero=True)
        _positive("--time-budget", args.time_budget)
        budget = args.budget or DEFAULT_BUDGET.get(args.dataset, "full")
        name = args.name or _sweep_name(args.dataset, budget)
        base = _base_config(args.dataset, args.config, budget, args.seed, args.max_steps)
        space_path = Path(args.space) if args.space else default_space_path(args.dataset)
        load_space(space_path, base)  # fail on a bad space before anything starts
        samples, grace_evals, factor = SEARCH_DEFAULTS[budget]
        rec = {
            "dataset": args.dataset, "budget": budget, "name": name, "base_config": dump_yaml(base),
            "space_path": str(space_path), "space_text": space_path.read_text(),
            "num_samples": args.num_samples or samples, "max_concurrent": args.max_concurrent,
            "workers": args.workers_per_trial, "cpus_per_worker": args.cpus_per_worker,
            "gpus_per_worker": args.gpus_per_worker, "search": args.search, "scheduler": args.scheduler,
            "grace_steps": args.grace_steps or grace_evals * base.train.eval_every, "reduction_factor": factor,
            "metric": args.metric, "mode": METRIC_MODES[args.metric], "time_budget": args.time_budget,
            "seed": base.train.seed if args.seed is None else args.seed, "max_failures": args.max_failures,
            "experiment": args.experiment or f"fgi-{args.dataset}", "best_dir": args.best_dir,
        }
    base = load_yaml_text(rec["base_config"], f"{name}/{SWEEP_FILE}")
    space = parse_space(yaml.safe_load(rec["space_text"]), base, rec["space_path"], rec["space_text"])
    uri = tracking.resolve_uri(args.mlflow_uri)
    print(f"sweep {name}: storage {storage}/{name}, MLflow {uri} (experiment {rec['experiment']})", flush=True)

    prepared = distributed.prepare(base)
    settings = TrialSettings(space, prepared.data.cache_dir, f"{storage}/{name}/trials", rec["workers"],
                             rec["cpus_per_worker"], rec["gpus_per_worker"], rec["max_failures"], rec["metric"], rec["mode"])
    trainable = tune.with_resources(tune.with_parameters(run_trial, settings=settings),
                                    {"cpu": 0, "memory": 64 * 1024**2})

    ray.init(address=os.environ.get("RAY_ADDRESS"), log_to_driver=True, configure_logging=False)
    tracker = tracking.SweepTracker(uri, rec["experiment"], name, rec["dataset"])
    tracker.start(rec["space_text"], base, {k: rec[k] for k in (
        "budget", "num_samples", "workers", "cpus_per_worker", "gpus_per_worker", "search", "scheduler",
        "grace_steps", "metric", "seed", "max_failures")})

    path = f"{storage}/{name}"
    if args.resume and tune.Tuner.can_restore(path):
        tuner = tune.Tuner.restore(path, trainable=trainable, resume_unfinished=True, resume_errored=True)
    else:
        _write_sweep_file(storage, name, rec)
        concurrent = rec["max_concurrent"] or _cluster_slots(rec["workers"], rec["cpus_per_worker"], rec["gpus_per_worker"])
        concurrent = min(concurrent, rec["num_samples"])
        first = space.published_point()
        if rec["search"] == "tpe":
            import optuna

            sampler = optuna.samplers.TPESampler(seed=rec["seed"], multivariate=True)
            searcher = ConcurrencyLimiter(
                OptunaSearch(OptunaDefineByRun(space), metric=rec["metric"], mode=rec["mode"], sampler=sampler,
                             points_to_evaluate=[space.optuna_point(first)]),
                max_concurrent=concurrent)
            param_space: dict[str, Any] = {}
        else:
            searcher = BasicVariantGenerator(points_to_evaluate=[space.optuna_point(first)],
                                             max_concurrent=concurrent, random_state=rec["seed"])
            param_space = space.to_tune()
        max_steps = base.train.max_steps
        scheduler = (ASHAScheduler(time_attr="step", max_t=max_steps, grace_period=min(rec["grace_steps"], max_steps),
                                   reduction_factor=rec["reduction_factor"])
                     if rec["scheduler"] == "asha" else FIFOScheduler())
        callback = tracking.TrialCallback(uri, tracker.experiment_id, tracker.parent_run_id, name, ParamsOf(space),
                                          max_steps, rec["metric"], rec["mode"])
        tuner = tune.Tuner(
            trainable,
            param_space=param_space,
            tune_config=tune.TuneConfig(metric=rec["metric"], mode=rec["mode"], search_alg=searcher,
                                        scheduler=scheduler, num_samples=rec["num_samples"],
                                        time_budget_s=rec["time_budget"], max_concurrent_trials=concurrent,
                                        trial_dirname_creator=_trial_dirname),
            run_config=tune.RunConfig(name=name, storage_path=storage, callbacks=[callback],
                                      failure_config=tune.FailureConfig(max_failures=rec["max_failures"]),
                                      checkpoint_config=tune.CheckpointConfig(checkpoint_at_end=False)),
        )
    results = tuner.fit()
    return _finish_sweep(results, space, rec, tracker)


def _trial_dirname(trial: Any) -> str:
    return f"trial_{trial.trial_id}"


def _best_row(result: Any, metric: str, mode: str) -> dict[str, Any] | None:
    df = result.metrics_dataframe
    if df is None or metric not in getattr(df, "columns", ()) or df[metric].dropna().empty:
        return None
    idx = df[metric].idxmax() if mode == "max" else df[metric].idxmin()
    return {k: v for k, v in df.loc[idx].to_dict().items() if isinstance(v, (int, float, str))}


def _finish_sweep(results: Any, space: SearchSpace, rec: Mapping[str, Any], tracker: Any) -> int:
    from fgi.config import save_yaml

    metric, mode = rec["metric"], rec["mode"]
    sign = 1.0 if mode == "max" else -1.0
    scored = []
    for result in results:
        row = _best_row(result, metric, mode)
        if row is not None:
            scored.append((result, row))
    n_err = sum(1 for r in results if r.error is not None)
    if not scored:
        tracker.finish(None, None, None, failed=True)
        print(f"no trial reported {metric}; {n_err} of {len(results)} trials failed (see the MLflow runs and "
              f"{results.experiment_path})", file=sys.stderr)
        return 1
    best, row = max(scored, key=lambda item: sign * float(item[1][metric]))
    values = space.values_of(best.config)
    best_cfg = space.apply(values)
    points = [(space.values_of(r.config), float(row_[metric])) for r, row_ in scored]
    try:
        imps = importances(space, points, mode, rec["seed"])
    except (ValueError, RuntimeError) as exc:
        print(f"parameter importances skipped: {exc}", file=sys.stderr)
        imps = {}
    tracker.finish(row, best_cfg, imps)
    out = Path(rec["best_dir"]).expanduser().resolve() / f"{rec['dataset']}.yaml"
    save_yaml(best_cfg, out)
    print(f"best {metric} {row[metric]:.4f} at step {int(row.get('step', 0))} of trial {best.path}")
    print(f"best config: {out}")
    print(f"MLflow parent run: {tracker.parent_run_id} (experiment {rec['experiment']}); "
          f"{len(results)} trials, {n_err} failed")
    return 0


# ---- final training -----------------------------------------------------------------------------------


def _train_arguments(parser: argparse.ArgumentParser) -> None:
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument("--config", default=None, help="config YAML, e.g. best_configs/<dataset>.yaml")
    src.add_argument("--from-mlflow", default=None, metavar="RUN_ID",
                     help="MLflow run whose best_config.yaml (sweep) or config.yaml (trial, final run) to train")
    parser.add_argument("--budget", default=None, choices=budgets.budget_names(),
                        help="compute preset applied on top of the config (default: none, the config as is)")
    parser.add_argument("--max-steps", type=int, default=None, help="override train.max_steps")
    parser.add_argument("--workers", type=int, default=1, help="data-parallel Ray Train workers")
    parser.add_argument("--gpus-per-worker", type=float, default=0.0, help="GPUs per worker; 0 trains on CPU (gloo)")
    parser.add_argument("--cpus-per-worker", type=float, default=1.0, help="CPUs per worker")
    parser.add_argument("--storage", default=None, help="local folder or URI for checkpoints (default: $FGI_HOME/ray_results)")
    parser.add_argument("--name", default=None, help="run name (default: fgi-<dataset>-final-<time>); the same name resumes")
    parser.add_argument("--mlflow-uri", default=None, help="MLflow tracking URI (default: MLFLOW_TRACKING_URI or $FGI_HOME)")
    parser.add_argument("--experiment", default=None, help="MLflow experiment (default: fgi-<dataset>)")
    parser.add_argument("--register-as", default=None, help="registered model name (default: fgi-<dataset>)")
    parser.add_argument("--max-failures", type=int, default=2, help="worker-group restarts from the latest checkpoint")


def run_final(args: argparse.Namespace) -> int:
    """``fgi train`` / ``train.py``: train a config on Ray Train, score the test split, register the model."""
    import ray

    from fgi import distributed, tracking

    uri = tracking.resolve_uri(args.mlflow_uri)
    if args.config:
        cfg, source = load_yaml(args.config), str(Path(args.config).resolve())
    else:
        cfg, source = load_yaml_text(tracking.config_of_run(uri, args.from_mlflow), f"run {args.from_mlflow}"), f"runs:/{args.from_mlflow}"
    if args.budget:
        cfg = budgets.apply_budget(cfg, args.budget)
    if args.max_steps is not None:
        _positive("--max-steps", args.max_steps)
        cfg = override(cfg, {"train.max_steps": args.max_steps})
    _positive("--workers", args.workers)
    _positive("--cpus-per-worker", args.cpus_per_worker)
    _positive("--gpus-per-worker", args.gpus_per_worker, allow_zero=True)
    distributed.local_batch_size(cfg, args.workers)
    dataset = cfg.data.dataset
    storage = _storage(args.storage)
    name = args.name or f"fgi-{dataset}-final-{time.strftime('%Y%m%d-%H%M%S')}"
    experiment = args.experiment or f"fgi-{dataset}"
    print(f"final training {name}: storage {storage}/{name}, MLflow {uri} (experiment {experiment})", flush=True)

    prepared = distributed.prepare(cfg)
    ray.init(address=os.environ.get("RAY_ADDRESS"), configure_logging=False)
    run_id = tracking.start_final_run(uri, experiment, cfg, name, source)
    try:
        result = distributed.fit(prepared, storage_path=storage, name=name, workers=args.workers,
                                 cpus_per_worker=args.cpus_per_worker, gpus_per_worker=args.gpus_per_worker,
                                 max_failures=args.max_failures, callbacks=[tracking.TrainCallback(uri, run_id)])
        checkpoints = [(c, m) for c, m in result.best_checkpoints if "val_dice" in m]
        if not checkpoints:
            raise RuntimeError(f"run {name} reported no checkpoint with val_dice")
        checkpoint, best = max(checkpoints, key=lambda cm: cm[1]["val_dice"])
        evaluate = ray.remote(num_cpus=args.cpus_per_worker, num_gpus=args.gpus_per_worker)(distributed.evaluate_checkpoint)
        test = ray.get(evaluate.remote(checkpoint.path, "test"))
        best_val = {f"best_{k}": v for k, v in best.items() if k.startswith("val_")}
        tracking.log_final_metrics(uri, run_id, {**test, **best_val}, int(best.get("step", 0)))
        with checkpoint.as_directory() as folder:
            version = tracking.register_model(uri, run_id, folder,
                                              args.register_as or f"fgi-{dataset}")
    except BaseException:
        tracking.end_run(uri, run_id, failed=True)
        raise
    tracking.end_run(uri, run_id)
    model = args.register_as or f"fgi-{dataset}"
    print(json.dumps(test, indent=1))
    print(f"best checkpoint: step {int(best.get('step', 0))}, val_dice {best['val_dice']:.4f} ({checkpoint.path})")
    print(f"registered models:/{model}/{version} (MLflow run {run_id})")
    return 0


# ---- best config from MLflow --------------------------------------------------------------------------


def _best_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--experiment", required=True, help="MLflow experiment of the sweep (e.g. fgi-kvasir)")
    parser.add_argument("--sweep", default=None, help="sweep name (default: the latest sweep with a best config)")
    parser.add_argument("--mlflow-uri", default=None, help="MLflow tracking URI (default: MLFLOW_TRACKING_URI or $FGI_HOME)")
    parser.add_argument("--out", default=None, help="where to write it (default: best_configs/<dataset>.yaml)")


def run_best(args: argparse.Namespace) -> int:
    """``fgi best``: fetch a sweep's ``best_config.yaml`` from MLflow and write it locally."""
    from fgi import tracking
    from fgi.config import atomic_write_text

    uri = tracking.resolve_uri(args.mlflow_uri)
    try:
        text, run_id = tracking.fetch_best_config(uri, args.experiment, args.sweep)
    except LookupError as exc:
        print(str(exc), file=sys.stderr)
        return 1
    cfg = load_yaml_text(text, f"runs:/{run_id}/best_config.yaml")
    out = Path(args.out) if args.out else Path("best_configs") / f"{cfg.data.dataset}.yaml"
    atomic_write_text(out, text)
    print(f"{out.resolve()} (from MLflow run {run_id})")
    return 0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``fgi tune``, ``fgi train`` or ``fgi best`` (chosen by the parser's name)."""
    command = parser.prog.split()[-1]
    {"tune": _tune_arguments, "train": _train_arguments, "best": _best_arguments}[command](parser)


def main(args: argparse.Namespace) -> int:
    """Run ``fgi tune``, ``fgi train`` or ``fgi best``; bad settings exit with a message naming the option."""
    runner = {"tune": run_sweep, "train": run_final, "best": run_best}[args.command]
    try:
        return runner(args)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
