"""The searchers a sweep may use: a registry from ``--search`` name to a factory of Ray Tune's search algorithm.

A factory gets the sweep's space and settings and returns the search algorithm with the ``param_space`` the
Tuner needs beside it (empty for define-by-run searchers). Every searcher evaluates the published point first.
TPE skips it when a warm-start run already measured it. Adding a searcher is one entry in ``SEARCHERS``; an unknown name is an error that lists the valid ones.

A model-based searcher learns only from trials that ran the whole stage (``SearcherRequest.length`` steps): a
trial that ASHA stopped earlier is told as pruned, so its early value never stands beside finished ones.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fgi.config import ConfigError
from fgi.search.params import canonical
from fgi.search.space import OptunaDefineByRun, SearchSpace


@dataclass(frozen=True)
class SearcherRequest:
    """What a searcher factory is told.

    Args:
        space: the sweep's search space.
        metric: the optimized metric.
        mode: "max" or "min".
        seed: the sweep's seed.
        startup_trials: finished trials before a model-based searcher models them.
        concurrent: trials running at once.
        length: steps a trial runs when it is not stopped early (the stage's stop step, else ``train.max_steps``);
            a trial that reports fewer is told to a model-based searcher as pruned.
        warm: earlier runs told to a model-based searcher before it proposes (``WarmPoint.to_dict`` form).
        points: the trial configs (dotted key -> plain value) of a searcher that runs fixed points.
        seeds: runs of every proposed config (``fgi.search.seeds.SeedGroups``), seeds from ``seed``.
        objectives: two or more metrics optimized at once (``metric`` is the first), each in its
            ``METRIC_MODES`` direction; empty for one.
        modes: the objectives' directions.
    """

    space: SearchSpace
    metric: str
    mode: str
    seed: int
    startup_trials: int
    concurrent: int
    length: int = 0
    warm: tuple[dict[str, Any], ...] = ()
    points: tuple[dict[str, Any], ...] = ()
    seeds: int = 1
    objectives: tuple[str, ...] = ()
    modes: tuple[str, ...] = ()


SearcherFactory = Callable[[SearcherRequest], tuple[Any, dict[str, Any]]]


def tpe_sampler(seed: int, startup_trials: int) -> Any:
    """Optuna's TPE sampler as sweeps use it: seeded, multivariate, random for its first ``startup_trials``."""
    import optuna

    return optuna.samplers.TPESampler(seed=seed, multivariate=True, n_startup_trials=startup_trials)


def finished_only_search(length: int, *args: Any, **kwargs: Any) -> Any:
    """Ray Tune's ``OptunaSearch`` (same arguments) that tells Optuna only the values of trials that reached
    step ``length``; a trial that stopped before it (ASHA) is told as pruned, with no value."""
    from fgi.search.finished import FinishedOnlySearch

    return FinishedOnlySearch(length, *args, **kwargs)


def nsga2_sampler(seed: int) -> Any:
    """Optuna's NSGA-II sampler, seeded (its first generation is random)."""
    import optuna

    return optuna.samplers.NSGAIISampler(seed=seed)


def _tpe(req: SearcherRequest, sampler: Any = None) -> tuple[Any, dict[str, Any]]:
    from ray.tune.search import ConcurrencyLimiter

    published = req.space.published_point()
    # a warm run of the published point already measured it at this fidelity: no trial spent re-running it
    measured = any({k: canonical(v) for k, v in w["values"].items()} == published for w in req.warm)
    first = [] if measured else [req.space.search_point(published)]
    metric, mode = (list(req.objectives), list(req.modes)) if req.objectives else (req.metric, req.mode)
    searcher = finished_only_search(req.length, OptunaDefineByRun(req.space), metric=metric, mode=mode,
                                    sampler=sampler or tpe_sampler(req.seed, req.startup_trials),
                                    points_to_evaluate=first, warm=req.warm)
    if req.seeds > 1:
        from fgi.search.seeds import SeedGroups

        searcher = SeedGroups(searcher, req.seeds, req.seed, req.length)
    return ConcurrencyLimiter(searcher, max_concurrent=req.concurrent), {}


def _nsga2(req: SearcherRequest) -> tuple[Any, dict[str, Any]]:
    return _tpe(req, nsga2_sampler(req.seed))


def _random(req: SearcherRequest) -> tuple[Any, dict[str, Any]]:
    from ray.tune.search import BasicVariantGenerator

    if req.warm:
        raise ConfigError("warm start: random search learns nothing from earlier runs; use the tpe searcher")
    first = req.space.search_point(req.space.published_point())
    searcher = BasicVariantGenerator(points_to_evaluate=[first], max_concurrent=req.concurrent, random_state=req.seed)
    return searcher, req.space.to_tune()


POINT_INDEX = "final_run"  # the grid key of the points searcher: which point a trial runs


class _PointValue:
    """Tune ``sample_from`` of one key of a fixed point: the value of the point the trial's grid index names
    (a whole list value stays one value, as Tune would split a list given as a preset point; picklable)."""

    def __init__(self, points: tuple[dict[str, Any], ...], key: str) -> None:
        self.points, self.key = points, key

    def __call__(self, config: Any) -> Any:
        return self.points[config[POINT_INDEX]][self.key]


def _points(req: SearcherRequest) -> tuple[Any, dict[str, Any]]:
    """Exactly ``req.points``, in order: a grid over their indices (the sweep runs one sample of it)."""
    from ray import tune
    from ray.tune.search import BasicVariantGenerator

    if not req.points:
        raise ConfigError("search: the points searcher needs the points to run")
    keys = sorted({k for p in req.points for k in p})
    space: dict[str, Any] = {POINT_INDEX: tune.grid_search(list(range(len(req.points))))}
    space.update({k: tune.sample_from(_PointValue(req.points, k)) for k in keys})
    return BasicVariantGenerator(max_concurrent=req.concurrent, random_state=req.seed), space


SEARCHERS: dict[str, SearcherFactory] = {
    "tpe": _tpe,  # Optuna TPE (multivariate, seeded) through Ray Tune's OptunaSearch
    "random": _random,  # Ray Tune's random search over the space's Tune form
    "nsga2": _nsga2,  # Optuna NSGA-II (seeded) through Ray Tune's OptunaSearch, for several objectives
}
MODEL_BASED = frozenset({"tpe"})  # searchers that take startup_trials
# searchers a sweep chooses itself, never named by a user: a final stage runs its fixed points
STAGE_SEARCHERS: dict[str, SearcherFactory] = {"points": _points}


def build_searcher(name: str, request: SearcherRequest) -> tuple[Any, dict[str, Any]]:
    """The search algorithm ``name`` for ``request`` and the Tuner's ``param_space``.

    Raises:
        ConfigError: an unknown name; the message lists the valid ones.
    """
    factory = SEARCHERS.get(name) or STAGE_SEARCHERS.get(name)
    if factory is None:
        raise ConfigError(f"search: unknown searcher {name!r}; valid searchers are {sorted(SEARCHERS)}")
    return factory(request)


__all__ = ["MODEL_BASED", "SEARCHERS", "STAGE_SEARCHERS", "SearcherFactory", "SearcherRequest", "build_searcher", "tpe_sampler"]
