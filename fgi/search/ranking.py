"""Which trials of a sweep compete for best, and what the scored trials say about the searched keys.

A trial competes with its best report by the metric only when it ran the stage's whole length: an early
value of a trial that ASHA stopped never stands beside finished ones. fANOVA importances come from the
trials (or seed groups) that compete.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fgi.search.space import SearchSpace


def best_row(result: Any, metric: str, mode: str, length: int = 0) -> dict[str, Any] | None:
    """The report of a trial that competes for best: its best report by ``metric`` when it ran to ``length``
    steps; None for a trial stopped before (its early values never compete with finished ones) or never scored.
    In a screening stage (``stop_step``) that is its report at the stop step, the figure TPE was told."""
    df = result.metrics_dataframe
    if df is None or metric not in getattr(df, "columns", ()) or df[metric].dropna().empty:
        return None
    if "step" in df.columns and int(df["step"].max()) < length:
        return None
    idx = df[metric].idxmax() if mode == "max" else df[metric].idxmin()
    return {k: v for k, v in df.loc[idx].to_dict().items() if isinstance(v, (int, float, str))}


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
        params = {p.key: p.search_value(values[p.key]) for p in space.params}
        study.add_trial(optuna.trial.create_trial(params=params, distributions=dists, value=float(score)))
    evaluator = optuna.importance.FanovaImportanceEvaluator(seed=seed)
    return {k: float(v) for k, v in optuna.importance.get_param_importances(study, evaluator=evaluator).items()}


__all__ = ["best_row", "importances"]
