"""ASHA's rungs carried through a killed and resumed sweep.

Ray Tune 2.60 saves the searcher's and the callbacks' state with every experiment snapshot, but not the
scheduler's: a resumed sweep restarts ASHA with empty rungs. A trial resumed from its step-500 checkpoint
then fills the empty 500-step rung with its 750-step result, new trials are cut against that later
figure, and trials that finished before the kill no longer count at all. ``RungState`` is a callback
whose state is ASHA's rungs, so Tune writes them with the trial states and sets them back on restore
(callbacks are restored before the trials are queued again).
"""

from __future__ import annotations

from typing import Any

from ray.tune import Callback
from ray.tune.schedulers import AsyncHyperBandScheduler


class RungState(Callback):
    """The rungs of ``scheduler`` as Tune callback state.

    Args:
        scheduler: the sweep's ASHA scheduler (the same object Tune runs; Tune pickles both in one piece
            with the tuner, so a restored sweep gets them back still joined).
    """

    def __init__(self, scheduler: AsyncHyperBandScheduler) -> None:
        self.scheduler = scheduler

    def get_state(self) -> dict[str, Any]:
        """Every bracket's rungs (milestone and the metric recorded per trial) and the count of stops."""
        # the scheduler's bookkeeping is private in Ray: pinned ray==2.60.0, checked by tests/search/test_asha.py
        brackets = [[{"milestone": m, "recorded": dict(rec)} for m, rec in b._rungs] for b in self.scheduler._brackets]
        return {"brackets": brackets, "stopped": self.scheduler._num_stopped}

    def set_state(self, state: dict[str, Any]) -> None:
        """Put saved rungs back into the scheduler.

        Raises:
            ValueError: when the saved rungs do not fit the scheduler's (another grace period, maximum
                or reduction factor than the sweep was started with).
        """
        brackets = self.scheduler._brackets
        saved = state["brackets"]
        shape = [[m for m, _ in b._rungs] for b in brackets]
        if [[r["milestone"] for r in b] for b in saved] != shape:
            raise ValueError(f"ASHA rungs saved at milestones {[[r['milestone'] for r in b] for b in saved]}, "
                             f"the resumed sweep's are {shape}")
        for bracket, rungs in zip(brackets, saved, strict=True):
            for (_, recorded), rung in zip(bracket._rungs, rungs, strict=True):
                recorded.clear()
                recorded.update(rung["recorded"])
        self.scheduler._num_stopped = state["stopped"]


__all__ = ["RungState"]
