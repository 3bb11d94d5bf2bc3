"""A user's stop of a sweep (Ctrl-C or SIGTERM on the driver), handled as a stop rather than a crash.

While the Tuner runs, ``UserStop`` takes SIGINT and SIGTERM: it notes the signal and hands Tune its own
graceful stop (SIGUSR1, which Tune always handles: it saves the sweep's state and returns from ``fit``).
Ray's driver would otherwise exit on SIGTERM from its own handler, after a C++ stack dump, and the trials'
MLflow runs would end FAILED. The sweep then ends its MLflow runs as KILLED, sends or spools what is left
to log, and the command prints how to resume it.
"""

from __future__ import annotations

import os
import signal
from types import FrameType, TracebackType


class SweepStopped(Exception):  # noqa: N818 - a stop, not an error
    """The user stopped the sweep with ``signum``; it is resumable under its name."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class DiskFull(Exception):  # noqa: N818 - a stop, not an error
    """The sweep stopped because its storage ran out of space (``fgi.search.disk``); resumable under its name."""


class UserStop:
    """Context manager around ``Tuner.fit``: ``requested`` holds the stopping signal, or 0."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.requested = 0
        self._saved: dict[int, object] = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        first = not self.requested
        self.requested = self.requested or signum
        if first and signal.getsignal(signal.SIGUSR1) not in (signal.SIG_DFL, None):
            os.kill(os.getpid(), signal.SIGUSR1)  # Tune's graceful stop
        else:  # before Tune listens, or a second signal: stop now
            raise KeyboardInterrupt

    def __enter__(self) -> UserStop:
        # Tune would take SIGINT itself (and leave SIGTERM to Ray); one handler for both keeps them alike
        os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = "1"
        self._saved = {s: signal.signal(s, self._handle) for s in self.SIGNALS}
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> bool:
        for s, handler in self._saved.items():
            signal.signal(s, handler)  # type: ignore[arg-type]
        return False


__all__ = ["DiskFull", "SweepStopped", "UserStop"]
