"""A per-trial watchdog: a trial that stops making progress ends its own process instead of hanging.

A thread blocked inside Ray (a ``tune.report`` waiting on the one-slot result queue of Tune's function
trainable, a Ray Train report that the controller never takes) cannot be interrupted from Python: an
exception raised into it waits until it runs bytecode again, which it never does. The one way out is
to end the process; Ray then sees the trial's actor (or the Train worker) die, and Tune fails the trial
or retries it from its latest checkpoint as ``FailureConfig(max_failures)`` says.

``Watchdog`` knows nothing of Ray: the trial code calls ``beat()`` at every optimizer step, val batch and
report and after each start-up phase (``fgi.run.worker.train_worker``), and the watchdog's thread ends the
process when no beat came for ``timeout_s`` seconds: a slow trial is never ended, a stalled one is.
"""

from __future__ import annotations

import math
import os
import sys
import threading
import time
from collections.abc import Callable
from types import TracebackType

from fgi.fields import OptionError

EXIT_CODE = 124  # as coreutils ``timeout``: the process ran out of time, not out of luck


def exit_process() -> None:
    """End this process at once with ``EXIT_CODE`` (no cleanup: a blocked thread would stall it)."""
    os._exit(EXIT_CODE)


class Watchdog:
    """Ends a trial that made no progress for ``timeout_s`` seconds; ``timeout_s`` 0 disables it.

    Use it as a context manager around the trial's work and call ``beat()`` at each sign of progress.
    The time before the first beat counts too (data loading, model build, checkpoint restore).

    Args:
        timeout_s: seconds without a beat before the watchdog fires; 0 starts no thread.
        name: the trial's name, for the message.
        on_expire: called once when the watchdog fires, after its message; default ``exit_process``.

    Raises:
        ValueError: when ``timeout_s`` is negative or not finite.
    """

    def __init__(self, timeout_s: float, name: str, on_expire: Callable[[], None] | None = None) -> None:
        if not math.isfinite(timeout_s) or timeout_s < 0:
            raise OptionError("trial_timeout", f"must be a finite number >= 0, got {timeout_s}")
        self.timeout_s = float(timeout_s)
        self.name = name
        self.on_expire = on_expire if on_expire is not None else exit_process
        self.expired = False
        self._last = time.monotonic()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def beat(self) -> None:
        """Record progress (cheap: one clock read; safe from any thread)."""
        self._last = time.monotonic()

    def start(self) -> Watchdog:
        """Start watching from now; does nothing when disabled.

        Raises:
            RuntimeError: when it is already running.
        """
        if self.timeout_s == 0:
            return self
        if self._thread is not None:
            raise RuntimeError(f"the watchdog of trial {self.name} is already running")
        self._stop.clear()
        self.beat()
        self._thread = threading.Thread(target=self._watch, name=f"fgi-watchdog-{self.name}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop watching and join the thread (a no-op when it is not running)."""
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join()

    @property
    def running(self) -> bool:
        """True while the watching thread is alive."""
        return self._thread is not None and self._thread.is_alive()

    def __enter__(self) -> Watchdog:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def _watch(self) -> None:
        while True:
            idle = time.monotonic() - self._last
            if idle >= self.timeout_s:
                break
            if self._stop.wait(self.timeout_s - idle):
                return
        if self._stop.is_set():
            return
        self.expired = True
        print(f"fgi: trial {self.name} made no progress for {idle:.1f} s (limit --trial-timeout "
              f"{self.timeout_s:g} s); ending its process so Tune can fail or retry it", file=sys.stderr, flush=True)
        self.on_expire()


__all__ = ["EXIT_CODE", "Watchdog", "exit_process"]
