"""A sweep's console: one line per finished trial, a progress line, and Ray's own noise turned down.

``quiet_ray`` lowers the log levels of Ray, Tune, Train and Optuna (``--verbose`` keeps them);
``ConsoleCallback`` is a Ray Tune callback that prints, in the driver, a line per finished or failed
trial (outcome, best metric, steps, seconds) followed by the progress of the sweep (done, running,
pending, best so far, ETA).
"""

from __future__ import annotations

import logging
import os
import sys
import time
from pathlib import Path
from typing import Any, TextIO

from ray.tune import Callback

QUIET_LOGGERS = ("ray", "ray.tune", "ray.train", "ray.data", "mlflow", "alembic")
# RAY_AIR_NEW_OUTPUT=0: Tune's newer console prints its experiment table and paths at any verbosity;
# the classic one is silent at verbose=0. RAY_DEDUP_LOGS: inherited by a local Ray started afterwards.
# HF_HUB_DISABLE_PROGRESS_BARS: read when transformers is imported; hides its "Loading weights" bar.
QUIET_ENV = {"RAY_AIR_NEW_OUTPUT": "0", "RAY_DEDUP_LOGS": "1", "HF_HUB_DISABLE_PROGRESS_BARS": "1"}


def quiet_ray(verbose: bool) -> None:
    """Turn Ray's, Tune's and Optuna's console output down to warnings, unless ``verbose``."""
    if verbose:
        return
    for key, value in QUIET_ENV.items():
        os.environ.setdefault(key, value)
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)


def _duration(seconds: float) -> str:
    seconds = max(int(round(seconds)), 0)
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


class ConsoleCallback(Callback):
    """Ray Tune callback: a line per finished trial and the sweep's progress.

    Args:
        total: trials the sweep runs (``num_samples``).
        metric: the optimized metric.
        mode: "max" or "min".
        max_steps: a trial's full length (an earlier end is an early stop).
        stream: where to print; default stdout.
    """

    def __init__(self, total: int, metric: str, mode: str, max_steps: int, stream: TextIO | None = None) -> None:
        self.total, self.metric, self.mode, self.max_steps = total, metric, mode, max_steps
        self.stream = stream
        self.started: dict[str, float] = {}
        self.best: dict[str, float] = {}
        self.done = 0
        self.t0 = time.monotonic()

    def __getstate__(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k != "stream"}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self.stream = None

    def _print(self, line: str) -> None:
        print(line, file=self.stream or sys.stdout, flush=True)

    def _better(self, a: float, b: float | None) -> bool:
        return b is None or (a > b if self.mode == "max" else a < b)

    def best_so_far(self) -> tuple[str, float] | None:
        """(trial id, value) of the best metric reported so far, or None."""
        best: tuple[str, float] | None = None
        for tid, value in self.best.items():
            if best is None or self._better(value, best[1]):
                best = (tid, value)
        return best

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.started.setdefault(trial.trial_id, time.monotonic())

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        value = result.get(self.metric)
        if isinstance(value, (int, float)) and self._better(float(value), self.best.get(trial.trial_id)):
            self.best[trial.trial_id] = float(value)

    def setup(self, **info: Any) -> None:
        """Called as the sweep starts (again on resume): elapsed time and ETA count from here."""
        self.t0 = time.monotonic()
        self.started.clear()

    def _finished(self, trials: list, trial: Any, outcome: str) -> None:
        self.done += 1
        steps = int((trial.last_result or {}).get("step", 0))
        seconds = time.monotonic() - self.started.get(trial.trial_id, self.t0)
        value = self.best.get(trial.trial_id)
        score = f"{self.metric} {value:.4f}" if value is not None else f"no {self.metric}"
        self._print(f"trial {trial.trial_id} {outcome:<13} best {score}  {steps} steps  {seconds:.1f} s")
        self._print(self.progress([t for t in trials if t is not trial]))

    def progress(self, trials: list) -> str:
        """``[done/total] running, pending, best so far, ETA`` of the sweep (``trials``: those not just ended)."""
        running = sum(1 for t in trials if t.status == "RUNNING")
        pending = max(self.total - self.done - running, 0)
        elapsed = time.monotonic() - self.t0
        eta = elapsed / self.done * (self.total - self.done) if self.done else 0.0
        best = self.best_so_far()
        best_text = f"best {self.metric} {best[1]:.4f} (trial {best[0]})" if best else f"no {self.metric} yet"
        return (f"  [{self.done}/{self.total} done, {running} running, {pending} pending] {best_text}, "
                f"elapsed {_duration(elapsed)}, ETA {_duration(eta)}")

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        steps = int((trial.last_result or {}).get("step", 0))
        self._finished(trials, trial, "finished" if steps >= self.max_steps else "stopped early")

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._finished(trials, trial, "failed")
        reason = _last_line(getattr(trial, "error_file", None))
        if reason:
            self._print(f"  error: {reason}")


def _last_line(path: str | None) -> str:
    """The last non-empty line of an error file (the exception's message), or ""."""
    if not path or not Path(path).is_file():
        return ""
    lines = [line.strip() for line in Path(path).read_text(errors="replace").splitlines() if line.strip()]
    return lines[-1][:300] if lines else ""


__all__ = ["ConsoleCallback", "QUIET_ENV", "QUIET_LOGGERS", "quiet_ray"]
