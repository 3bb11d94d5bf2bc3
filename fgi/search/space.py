"""Search spaces: declarative YAML over config fields, converted to Optuna and to Ray Tune.

A space is a YAML file; the shipped ones are package data in ``fgi/search_spaces/``::

    extends: base.yaml          # optional: start from another space file
    params:
      loss.tau_pos: {distribution: uniform, low: 0.6, high: 0.95}
      optim.lr: {distribution: loguniform, low: 3.0e-4, high: 1.0e-2}
      loss.align_scales: {distribution: categorical, choices: [[], [3, 4], [1, 2, 3, 4]]}
      loss.rampup_fraction: null   # drop an entry inherited through extends
    constraints:
      - data.loose_level < data.tight_level
    conditions:
      model.predictor: {text.mode: [none]}   # searched only in trials whose text.mode is none

Keys are dotted config fields (``fgi/config.py``). Bounds and choices go through the config's own
coercion and range checks before anything starts; errors name the file and the key. ``extends`` names
a file next to this one, else a shipped space; the file's ``params`` entries replace the inherited ones
key by key and its ``constraints`` and ``conditions``, when given, replace the inherited ones.

A constraint ``a < b`` is kept by construction: ``a`` is drawn as a fraction of its range below ``b``,
so every trial is valid and TPE sees a fixed distribution; searchers see such a key as ``a|fraction``,
and the trial config carries the drawn value itself under ``a``. The parameter types are in
``fgi.search.params``.

A condition ``key: {parent: [values]}`` searches ``key`` only in trials whose categorical ``parent`` took one
of ``values``; the other trials keep the base config's value of ``key``, and searchers never see it there
(Optuna's define-by-run treats it as absent), so a combination that cannot be deployed (a teacher that
reads text as the predictor, say) is never proposed.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from fgi.config import Config, ConfigError, flatten, load_yaml_data, override
from fgi.search.params import Categorical, Continuous, Param, SearchSpaceError, canonical, parse_param, plain
from fgi.search.rules import Condition, Constraint, parse_conditions, parse_constraints

DRAW = "|draw"  # suffix of Tune's own draw of a conditional number key (the trial config holds the kept value)
FRACTION = "|fraction"  # suffix of the searcher parameter that draws a constrained key below its bound
BASE_SPACE = "base.yaml"  # the shipped file the dataset spaces extend
_VALIDATION_SAMPLES = 64  # random points of the space checked against the config rules before a sweep
_MAX_EXTENDS = 8  # longest extends chain


@dataclass(frozen=True)
class SearchSpace:
    """A validated search space over config fields.

    Args:
        params: the searched fields, in drawing order (bounds of constraints first).
        constraints: ordering constraints kept by construction.
        base: the configuration every trial starts from; its values form the first trial.
        source: the file it came from (for messages).
        text: self-contained YAML of the space (``extends`` resolved); logged and stored with a sweep.
        conditions: keys searched only for some values of a categorical parent (drawn after it).
    """

    params: tuple[Param, ...]
    constraints: tuple[Constraint, ...]
    base: Config
    source: str = "<space>"
    text: str = ""
    conditions: tuple[Condition, ...] = ()
    _by_key: dict[str, Param] = field(default_factory=dict, compare=False, repr=False)
    _bounds: dict[str, str] = field(default_factory=dict, compare=False, repr=False)
    _base_values: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)
    _conditions: dict[str, Condition] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        self._by_key.update({p.key: p for p in self.params})
        self._bounds.update({c.lower: c.upper for c in self.constraints})
        self._base_values.update(flatten(self.base))
        self._conditions.update({c.key: c for c in self.conditions})

    def __setstate__(self, state: dict[str, Any]) -> None:
        # a space pickled with a sweep's searcher before conditions existed has none
        self.__dict__.update({"conditions": (), "_conditions": {}, **state})

    def condition(self, key: str) -> Condition | None:
        """The condition ``key`` is searched under, if any."""
        return self._conditions.get(key)

    def active(self, key: str, values: Mapping[str, Any]) -> bool:
        """Whether ``key`` is searched at a point whose earlier keys took ``values`` (unconditional keys always)."""
        c = self._conditions.get(key)
        return c is None or canonical(values[c.parent]) in c.allowed

    def _kept(self, key: str) -> Any:
        return canonical(self._base_values[key])

    @property
    def keys(self) -> list[str]:
        """The searched dotted keys."""
        return [p.key for p in self.params]

    def param(self, key: str) -> Param:
        return self._by_key[key]

    def upper_of(self, key: str) -> str:
        """The key that bounds constrained ``key`` from above."""
        return self._bounds[key]

    def _bound(self, key: str, values: Mapping[str, Any]) -> float:
        upper = self._bounds[key]
        return values[upper] if upper in values else self._base_values[upper]

    def constrained_value(self, key: str, fraction: float, values: Mapping[str, Any]) -> float:
        """The value of constrained ``key`` at ``fraction`` of ``[low, min(high, bound))``, where the bound
        is its upper key's value in ``values`` (else in the base config)."""
        p = self._by_key[key]
        assert isinstance(p, Continuous)
        bound = self._bound(key, values)
        value = p.at(fraction, min(p.high, bound))
        return math.nextafter(bound, -math.inf) if value >= bound else value

    def suggest(self, trial: Any) -> dict[str, Any]:
        """Draw one point with an Optuna trial (define-by-run); returns config values by dotted key."""
        values: dict[str, Any] = {}
        for p in self.params:
            if not self.active(p.key, values):
                values[p.key] = self._kept(p.key)
            elif p.key in self._bounds:
                values[p.key] = self.constrained_value(p.key, trial.suggest_float(p.key + FRACTION, 0.0, 1.0), values)
            else:
                values[p.key] = p.suggest(trial)
        return values

    def search_point(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """Searcher parameters of a point given as config values (``points_to_evaluate`` of either searcher)."""
        out: dict[str, Any] = {}
        for p in self.params:
            v = values[p.key]
            if not self.active(p.key, values):
                continue
            if p.key in self._bounds:
                assert isinstance(p, Continuous)
                out[p.key + FRACTION] = p.fraction_of(v, min(p.high, self._bound(p.key, values)))
            else:
                out[p.search_name] = p.search_value(v)
        return out

    def search_distributions(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """Optuna distributions of the searcher parameters of a point (``search_point``'s names), as the
        define-by-run ``suggest`` draws them; for telling Optuna a point it did not propose."""
        import optuna

        out: dict[str, Any] = {}
        for p in self.params:
            if not self.active(p.key, values):
                continue
            if p.key in self._bounds:
                out[p.key + FRACTION] = optuna.distributions.FloatDistribution(0.0, 1.0)
            else:
                out[p.search_name] = p.optuna_distribution()
        return out

    def optuna_distributions(self) -> dict[str, Any]:
        """Static Optuna distributions of the searched keys (for importances and ``add_trial``)."""
        return {p.key: p.optuna_distribution() for p in self.params}

    def to_tune(self) -> dict[str, Any]:
        """The space as a Ray Tune ``param_space`` (for Tune's own random search)."""
        from ray import tune

        space: dict[str, Any] = {}
        for p in self.params:
            if p.key in self._bounds:
                space[p.key + FRACTION] = tune.uniform(0.0, 1.0)
                space[p.key] = tune.sample_from(_TuneConstrained(self, p.key))
            elif p.key in self._conditions:
                entries = p.to_tune()
                if p.search_name == p.key:  # a number: Tune draws it under another name, the key keeps or takes it
                    entries[p.key + DRAW] = entries[p.key]
                space.update(entries)
                space[p.key] = tune.sample_from(_TuneConditional(self, p.key))
            else:
                space.update(p.to_tune())
        return space

    def values_of(self, trial_config: Mapping[str, Any]) -> dict[str, Any]:
        """The searched config values of a trial config (searcher parameters dropped)."""
        return {k: trial_config[k] for k in self.keys if k in trial_config}

    def apply(self, values: Mapping[str, Any]) -> Config:
        """The resolved config of a point (validated once, by ``override``)."""
        return override(self.base, values)

    def published_point(self) -> dict[str, Any]:
        """The base configuration's values of the searched keys (the first trial)."""
        return {k: canonical(self._base_values[k]) for k in self.keys}

    def random_point(self, rng: np.random.Generator) -> dict[str, Any]:
        """A uniformly drawn point (used to check the space against the config rules)."""
        values: dict[str, Any] = {}
        for p in self.params:
            if not self.active(p.key, values):
                values[p.key] = self._kept(p.key)
            elif p.key in self._bounds:
                values[p.key] = self.constrained_value(p.key, float(rng.uniform()), values)
            else:
                values[p.key] = p.sample(rng)
        return values


class _TuneConstrained:
    """Tune ``sample_from`` of a constrained key (picklable)."""

    def __init__(self, space: SearchSpace, key: str) -> None:
        self.space, self.key = space, key

    def __call__(self, config: Any) -> float:
        upper = self.space.upper_of(self.key)
        values = {upper: config[upper]} if upper in self.space.keys else {}
        return self.space.constrained_value(self.key, float(config[self.key + FRACTION]), values)


class _TuneConditional:
    """Tune ``sample_from`` of a conditional key: its own draw where its parent allows it, else the base
    config's value (picklable)."""

    def __init__(self, space: SearchSpace, key: str) -> None:
        self.space, self.key = space, key

    def __call__(self, config: Any) -> Any:
        condition = self.space.condition(self.key)
        assert condition is not None
        parent = self.space.param(condition.parent)
        assert isinstance(parent, Categorical)
        if not self.space.active(self.key, {parent.key: parent.from_label(config[parent.search_name])}):
            return plain(self.space._kept(self.key))
        p = self.space.param(self.key)
        if isinstance(p, Categorical):
            return plain(p.from_label(config[p.search_name]))
        return config[self.key + DRAW]


class OptunaDefineByRun:
    """Picklable define-by-run function for ``OptunaSearch`` (saved with the searcher on resume)."""

    def __init__(self, space: SearchSpace) -> None:
        self.space = space

    def __call__(self, trial: Any) -> dict[str, Any]:
        return {k: plain(v) for k, v in self.space.suggest(trial).items()}


# ---- parsing ------------------------------------------------------------------------------------------

def parse_space(data: Any, base: Config, source: str = "<space>", text: str = "") -> SearchSpace:
    """Validate a parsed search-space mapping (``extends`` already resolved) against ``base``.

    Args:
        data: the parsed YAML.
        base: the configuration trials start from (after the budget).
        source: the file name used in errors.
        text: the YAML text, kept for logging; default: ``data`` dumped.

    Raises:
        SearchSpaceError: naming the file and the key of the first problem.
    """
    if not isinstance(data, dict):
        raise SearchSpaceError(f"{source}: expected a mapping with 'params', got {type(data).__name__}")
    unknown = sorted(set(data) - {"params", "constraints", "conditions"})
    if unknown:
        raise SearchSpaceError(f"{source}: {unknown[0]}: unknown top-level key; valid keys are "
                               "['conditions', 'constraints', 'extends', 'params']")
    params_data = data.get("params")
    if not isinstance(params_data, dict) or not params_data:
        raise SearchSpaceError(f"{source}: params: expected a non-empty mapping of dotted config keys")
    params = {str(key): parse_param(source, str(key), entry) for key, entry in params_data.items()}
    constraints = parse_constraints(source, data.get("constraints") or [], params, base)

    conditions = parse_conditions(source, data.get("conditions") or {}, params,
                                   {k for c in constraints for k in (c.lower, c.upper)})

    # bounds are drawn before the keys they bound, parents before the keys they condition
    later = {c.lower for c in constraints} | {c.key for c in conditions}
    ordered = [p for k, p in params.items() if k not in later] + [p for k, p in params.items() if k in later]
    text = text or yaml.safe_dump(data, sort_keys=False, default_flow_style=None)
    space = SearchSpace(tuple(ordered), tuple(constraints), base, source, text, tuple(conditions))
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


# ---- files ------------------------------------------------------------------------------------------


def _shipped_dir() -> Traversable:
    return resources.files("fgi").joinpath("search_spaces")


def shipped_spaces() -> list[str]:
    """Datasets with a search space shipped in the package (``fgi/search_spaces/<dataset>.yaml``)."""
    return sorted(f.name[:-5] for f in _shipped_dir().iterdir() if f.name.endswith(".yaml") and f.name != BASE_SPACE)


@dataclass(frozen=True)
class _SpaceFile:
    text: str
    source: str  # for messages
    folder: Path | None  # where its extends is looked for first; None for shipped files


def _shipped_file(name: str) -> _SpaceFile | None:
    f = _shipped_dir().joinpath(name)
    return _SpaceFile(f.read_text(), f"fgi/search_spaces/{name}", None) if "/" not in name and f.is_file() else None


def _user_file(path: Path) -> _SpaceFile:
    if not path.is_file():
        raise SearchSpaceError(f"{path}: search space file not found")
    return _SpaceFile(path.read_text(), str(path), path.resolve().parent)


def _resolve(file: _SpaceFile, seen: tuple[str, ...] = ()) -> tuple[dict[str, Any], bool]:
    """The file's mapping with its ``extends`` chain merged in; and whether it had one."""
    try:
        data = load_yaml_data(file.text, file.source)
    except ConfigError as exc:
        raise SearchSpaceError(str(exc)) from None
    if not isinstance(data, dict) or "extends" not in data:
        return data, False
    data = dict(data)
    ref = data.pop("extends")
    if not isinstance(ref, str) or not ref.endswith(".yaml"):
        raise SearchSpaceError(f"{file.source}: extends: expected a file name like '{BASE_SPACE}', got {ref!r}")
    if len(seen) >= _MAX_EXTENDS:
        raise SearchSpaceError(f"{file.source}: extends: chain longer than {_MAX_EXTENDS} files")
    parent = None
    if file.folder is not None and (file.folder / ref).is_file():
        parent = _user_file(file.folder / ref)
    parent = parent or _shipped_file(ref)
    if parent is None:
        raise SearchSpaceError(f"{file.source}: extends: {ref!r} is neither next to the file nor a shipped space "
                               f"({[*shipped_spaces(), BASE_SPACE[:-5]]})")
    if parent.source in (*seen, file.source):
        raise SearchSpaceError(f"{file.source}: extends: {ref!r} extends itself through {list(seen)}")
    inherited, _ = _resolve(parent, (*seen, file.source))
    if not isinstance(inherited, dict):
        raise SearchSpaceError(f"{parent.source}: expected a mapping with 'params', got {type(inherited).__name__}")
    merged = dict(inherited)
    for name, value in data.items():
        if name != "params":
            merged[name] = value
            continue
        if not isinstance(value, dict):
            raise SearchSpaceError(f"{file.source}: params: expected a mapping of dotted config keys")
        params = dict(inherited.get("params") or {})
        for key, entry in value.items():
            if entry is None and key not in params:
                raise SearchSpaceError(f"{file.source}: {key}: null drops an inherited entry, but {ref} has none")
            if entry is None:
                del params[key]
            else:
                params[key] = entry
        merged["params"] = params
    return merged, True


def _load(file: _SpaceFile, base: Config) -> SearchSpace:
    data, extended = _resolve(file)
    text = (f"# {file.source} with its extends resolved\n" + yaml.safe_dump(data, sort_keys=False, default_flow_style=None)
            if extended else file.text)
    return parse_space(data, base, file.source, text)


def load_space(path: str | os.PathLike, base: Config) -> SearchSpace:
    """Load and validate a search-space YAML file (a user's file; ``extends`` may name a shipped space).

    Raises:
        SearchSpaceError: naming the file and the key.
    """
    return _load(_user_file(Path(path)), base)


def dataset_space(dataset: str, base: Config) -> SearchSpace:
    """The shipped search space of a dataset, validated against ``base``.

    Raises:
        SearchSpaceError: for a dataset without a shipped space, listing those with one.
    """
    file = _shipped_file(f"{dataset}.yaml")
    if file is None or dataset == BASE_SPACE[:-5]:
        raise SearchSpaceError(f"{dataset}: no shipped search space; shipped: {shipped_spaces()} (or give --space)")
    return _load(file, base)


def space_from_text(text: str, base: Config, source: str) -> SearchSpace:
    """A space from self-contained YAML text (``SearchSpace.text``, as a sweep file stores it)."""
    return _load(_SpaceFile(text, source, None), base)


__all__ = [
    "BASE_SPACE", "DRAW", "FRACTION", "Condition", "Constraint", "OptunaDefineByRun", "SearchSpace", "SearchSpaceError", "dataset_space",
    "load_space", "parse_space", "shipped_spaces", "space_from_text",
]
