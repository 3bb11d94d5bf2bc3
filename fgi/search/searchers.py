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
    """

    space: SearchSpace
    metric: str
    mode: str
    seed: int
    startup_trials: int
    concurrent: int
    length: int = 0
    warm: tuple[dict[str, Any], ...] = ()


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


def _tpe(req: SearcherRequest) -> tuple[Any, dict[str, Any]]:
    from ray.tune.search import ConcurrencyLimiter

    published = req.space.published_point()
    # a warm run of the published point already measured it at this fidelity: no trial spent re-running it
    measured = any({k: canonical(v) for k, v in w["values"].items()} == published for w in req.warm)
    first = [] if measured else [req.space.search_point(published)]
    searcher = finished_only_search(req.length, OptunaDefineByRun(req.space), metric=req.metric, mode=req.mode,
                                    sampler=tpe_sampler(req.seed, req.startup_trials), points_to_evaluate=first,
                                    warm=req.warm)
    return ConcurrencyLimiter(searcher, max_concurrent=req.concurrent), {}


def _random(req: SearcherRequest) -> tuple[Any, dict[str, Any]]:
    from ray.tune.search import BasicVariantGenerator

    if req.warm:
        raise ConfigError("warm start: random search learns nothing from earlier runs; use the tpe searcher")
    first = req.space.search_point(req.space.published_point())
    searcher = BasicVariantGenerator(points_to_evaluate=[first], max_concurrent=req.concurrent, random_state=req.seed)
    return searcher, req.space.to_tune()


SEARCHERS: dict[str, SearcherFactory] = {
    "tpe": _tpe,  # Optuna TPE (multivariate, seeded) through Ray Tune's OptunaSearch
    "random": _random,  # Ray Tune's random search over the space's Tune form
}
MODEL_BASED = frozenset({"tpe"})  # searchers that take startup_trials


def build_searcher(name: str, request: SearcherRequest) -> tuple[Any, dict[str, Any]]:
    """The search algorithm ``name`` for ``request`` and the Tuner's ``param_space``.

    Raises:
        ConfigError: an unknown name; the message lists the valid ones.
    """
    if name not in SEARCHERS:
        raise ConfigError(f"search: unknown searcher {name!r}; valid searchers are {sorted(SEARCHERS)}")
    return SEARCHERS[name](request)


__all__ = ["MODEL_BASED", "SEARCHERS", "SearcherFactory", "SearcherRequest", "build_searcher", "tpe_sampler"]
