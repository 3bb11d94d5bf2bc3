"""Optuna TPE through Ray Tune that learns only from trials finished at their stage's length.

Ray Tune's ``OptunaSearch`` tells Optuna the last reported value of every completed trial, so a trial that
ASHA stopped at its first rung stands in the study beside trials that ran ten times longer, and its early
value (often a masking dip or a warm-up figure) steers the sampler. Here such a trial is told as pruned:
TPE keeps it out of the "good" and "bad" groups of finished values.

Warm points (``fgi.search.warm``, ``tell_study``) enter the study as complete trials when it is created, so TPE models them
from the first proposal and counts them among its startup trials; the study, and they with it, are saved
with the searcher, so a resumed sweep does not tell them twice.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from ray.tune.search.optuna import OptunaSearch

from fgi.search.space import SearchSpace

STEP_KEY = "step"  # the optimizer step every trial report carries (fgi.run.worker)


def tell_study(study: Any, space: SearchSpace, points: Iterable[Mapping[str, Any]]) -> int:
    """Add warm points (``WarmPoint.to_dict`` form) to an Optuna study as complete trials under the
    define-by-run parameter names the space's ``suggest`` uses; returns how many were added."""
    import optuna

    n = 0
    for point in points:
        params = space.search_point(point["values"])
        dists = space.search_distributions(point["values"])
        study.add_trial(optuna.trial.create_trial(params=params, distributions=dists, value=float(point["value"])))
        n += 1
    return n


class FinishedOnlySearch(OptunaSearch):
    """``OptunaSearch`` whose completed trials count only when they reported step ``length``.

    Args:
        length: the stage's length in optimizer steps; 0 tells every completed trial as Ray does.
        *args, **kwargs: ``OptunaSearch``'s; its space must be an ``OptunaDefineByRun`` for ``warm``.
        warm: warm points (``WarmPoint.to_dict`` form) added to the study as complete trials.
    """

    def __init__(self, length: int, *args: Any, warm: Sequence[Mapping[str, Any]] = (), **kwargs: Any) -> None:
        self.length = int(length)
        self._warm = list(warm)  # read by _setup_study, which OptunaSearch's __init__ calls
        super().__init__(*args, **kwargs)

    def _setup_study(self, mode: Any) -> None:
        super()._setup_study(mode)
        if self._warm:
            tell_study(self._ot_study, self._space.space, self._warm)
            self._warm = []

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        """Tell Optuna the trial's value when it reached ``length``, else that it was pruned."""
        import optuna

        stopped = result is not None and not error and int(result.get(STEP_KEY, 0)) < self.length
        if not stopped or trial_id in self._completed_trials:
            super().on_trial_complete(trial_id, result, error)
            return
        self._ot_study.tell(self._ot_trials[trial_id], state=optuna.trial.TrialState.PRUNED)
        self._completed_trials.add(trial_id)


__all__ = ["STEP_KEY", "FinishedOnlySearch", "tell_study"]
