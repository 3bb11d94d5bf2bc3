"""A sweep that runs out of disk under its storage stops cleanly, resumable, before anything is written in half.

Tune keeps retrying a trial whose checkpoint write failed with ENOSPC, and its own experiment-state sync
fails over and over on a full disk (measured: a 5 MB storage left a 2-trial smoke sweep spinning for more
than 500 s, tracebacks only). ``DiskGuard`` watches the free space of the storage's filesystem at every
report: when it falls below what the next checkpoints need (twice the largest checkpoint folder seen, per
trial that may write at once), or when a trial fails with ENOSPC, it records why and asks Tune for its own
graceful stop, so the sweep's state is saved while there is room. The sweep then ends like a user's stop
(``fgi.search.stop``): MLflow runs KILLED, the spool flushed, one line that says how much space is free
and how to resume.
"""

from __future__ import annotations

import errno
import os
import shutil
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ray.tune import Callback

from fgi.files import folder_bytes
from fgi.search.stop import DiskFull

FULL: dict[str, str] = {}  # storage path -> why its sweep stopped (read by the sweep after ``fit``)
NO_SPACE = (f"[Errno {errno.ENOSPC}]", os.strerror(errno.ENOSPC))  # how an ENOSPC reads in a trial's error


def graceful_stop() -> None:
    """Ask Tune to stop the way it always handles: SIGUSR1 saves the sweep's state and returns from ``fit``."""
    os.kill(os.getpid(), signal.SIGUSR1)


class DiskGuard(Callback):
    """Tune callback that stops the sweep when its storage is about to fill up, or has.

    Args:
        storage: the sweep's folder (``<storage>/<name>``): the filesystem watched.
        writers: trials that may write a checkpoint at once (the sweep's concurrency).
        on_full: called once, after the reason is recorded in ``FULL``; default ``graceful_stop``.
    """

    def __init__(self, storage: str, writers: int, on_full: Callable[[], None] | None = None) -> None:
        self.storage, self.writers = str(storage), max(int(writers), 1)
        self.on_full = on_full
        self.largest = 0  # bytes of the largest checkpoint folder reported so far

    def _stop(self, why: str) -> None:
        if self.storage not in FULL:
            FULL[self.storage] = why
            (self.on_full or graceful_stop)()

    def free_bytes(self) -> int:
        """Free bytes on the storage's filesystem (its nearest existing folder)."""
        path = Path(self.storage)
        while not path.exists() and path != path.parent:
            path = path.parent
        return shutil.disk_usage(path).free

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        path = result.get("checkpoint_path")
        if path and "://" not in str(path):
            self.largest = max(self.largest, folder_bytes(path))
        needed = 2 * self.largest * self.writers
        free = self.free_bytes()
        if self.largest and free < needed:
            self._stop(f"{free / 1e6:.1f} MB free under {self.storage}, below the {needed / 1e6:.1f} MB that the "
                       f"next checkpoints need (2 x {self.largest / 1e6:.1f} MB per running trial)")

    def _check_error(self, trial: Any) -> None:
        file = getattr(trial, "error_file", None)
        text = Path(file).read_text(errors="replace") if file and Path(file).is_file() else ""
        if any(marker in text for marker in NO_SPACE):
            self._stop(f"trial {trial.trial_id} could not write under {self.storage}: no space left on the device "
                       f"({self.free_bytes() / 1e6:.1f} MB free)")

    def on_trial_recover(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._check_error(trial)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._check_error(trial)


__all__ = ["FULL", "DiskFull", "DiskGuard"]
