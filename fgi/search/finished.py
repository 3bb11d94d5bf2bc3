"""Optuna TPE through Ray Tune that learns only from trials finished at their stage's length.

Ray Tune's ``OptunaSearch`` tells Optuna the last reported value of every completed trial, so a trial that
ASHA stopped at its first rung stands in the study beside trials that ran ten times longer, and its early
value (often a masking dip or a warm-up figure) steers the sampler. Here such a trial is told as pruned:
TPE keeps it out of the "good" and "bad" groups of finished values.
"""

from __future__ import annotations

from typing import Any

from ray.tune.search.optuna import OptunaSearch

STEP_KEY = "step"  # the optimizer step every trial report carries (fgi.run.worker)


class FinishedOnlySearch(OptunaSearch):
    """``OptunaSearch`` whose completed trials count only when they reported step ``length``.

    Args:
        length: the stage's length in optimizer steps; 0 tells every completed trial as Ray does.
        *args, **kwargs: ``OptunaSearch``'s.
    """

    def __init__(self, length: int, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.length = int(length)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        """Tell Optuna the trial's value when it reached ``length``, else that it was pruned."""
        import optuna

        stopped = result is not None and not error and int(result.get(STEP_KEY, 0)) < self.length
        if not stopped or trial_id in self._completed_trials:
            super().on_trial_complete(trial_id, result, error)
            return
        self._ot_study.tell(self._ot_trials[trial_id], state=optuna.trial.TrialState.PRUNED)
        self._completed_trials.add(trial_id)


__all__ = ["STEP_KEY", "FinishedOnlySearch"]
