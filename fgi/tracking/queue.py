"""A bounded queue of tracking operations drained by one background thread, so training never waits on MLflow.

``fgi.tracking`` turns every MLflow call of a sweep into an operation: a name and JSON-able arguments
(``{"op": "log_batch", "args": {...}}``). ``LogQueue.put`` only enqueues and returns at once; one
daemon thread executes the operations in order, retrying transient errors (server down, stalled,
restarted) with exponential back-off. A full queue spills new operations to the spool file instead of
waiting. ``close`` flushes with a deadline and writes whatever is left to the spool file (JSON lines),
which ``replay`` (or the next ``fgi tune --resume`` of the sweep) sends later.

A killed driver runs no ``close``: every enqueued operation is therefore also appended to a journal beside
the spool file, and marked done once executed, so ``take_spool`` hands the operations that never reached
MLflow to the next ``--resume`` as well. Replay is safe because a trial's run is found by its tags before
one is created.

This module knows nothing of MLflow: ``fgi.tracking`` passes the function that executes an operation and
the one that tells a permanent error (a rejected request, a missing local file) from a transient one.
"""

from __future__ import annotations

import json
import queue
import sys
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from fgi.files import atomic_write_text

SPOOL_FILE = "mlflow_spool.jsonl"  # operations not yet sent, one JSON object a line
JOURNAL_FILE = "mlflow_journal.jsonl"  # every enqueued operation, then {"done": seq} once it is executed

Op = dict[str, Any]  # {"op": name, "args": {...}}
QUEUES: dict[str, LogQueue] = {}  # the one log queue of each sweep in this process, by parent run id
Execute = Callable[[str, dict[str, Any]], None]


class LogQueue:
    """Operations executed in order by one background thread, with retries and back-off.

    Args:
        execute: runs one operation (name, args); raises on failure.
        is_permanent: True for an error that no retry can fix (the operation is dropped, reported once).
        spool_path: where ``close`` writes the operations it could not send.
        maxsize: queue bound; beyond it operations go straight to the spool file.
        base_delay_s: first retry delay; doubled after each failure up to ``max_delay_s``.
        max_delay_s: the longest delay between two tries.
        explain: the line to print (once per operation kind) when an operation first fails with a transient
            error, or None for the default; training goes on while it is retried.
    """

    def __init__(self, execute: Execute, is_permanent: Callable[[BaseException], bool], spool_path: str | Path,
                 maxsize: int = 10000, base_delay_s: float = 0.5, max_delay_s: float = 30.0,
                 explain: Callable[[Op, BaseException], str | None] | None = None) -> None:
        self.execute, self.is_permanent, self.spool_path = execute, is_permanent, Path(spool_path)
        self.explain = explain
        self.last_error: BaseException | None = None  # the in-flight operation's latest failure (None: none)
        self.failing_since: float | None = None  # monotonic time its first failure happened
        self.base_delay_s, self.max_delay_s = base_delay_s, max_delay_s
        self._q: queue.Queue[Op] = queue.Queue(maxsize)
        self._lock = threading.Lock()
        self._inflight: Op | None = None
        self._stop = threading.Event()
        self._closed = False
        self._reported: set[tuple[str, str]] = set()
        self.dropped = 0  # operations dropped on a permanent error
        self.journal_path = self.spool_path.with_name(JOURNAL_FILE)
        self._journal: Any = None
        self._seq = 0
        self._thread = threading.Thread(target=self._run, name="fgi-mlflow-log", daemon=True)
        self._thread.start()

    @property
    def closed(self) -> bool:
        return self._closed

    def put(self, op: str, **args: Any) -> None:
        """Enqueue one operation; never waits (a full or closed queue spills it to the spool file)."""
        item: Op = {"op": op, "args": args}
        with self._lock:
            if not self._closed:
                item["seq"] = self._seq + 1
                try:
                    self._q.put_nowait(item)
                except queue.Full:
                    del item["seq"]
                else:
                    self._seq += 1
                    self._write_journal(item)
                    return
            _append_spool(self.spool_path, [item])

    def extend(self, items: Iterable[Op]) -> None:
        """Enqueue operations read back from a spool file."""
        for item in items:
            self.put(item["op"], **item["args"])

    def pending(self) -> int:
        """Operations enqueued and not yet done (the one in flight included)."""
        return self._q.unfinished_tasks

    def flush(self, timeout_s: float) -> bool:
        """Wait up to ``timeout_s`` for every enqueued operation to be done; True when all were."""
        deadline = time.monotonic() + timeout_s
        while self._q.unfinished_tasks:
            if time.monotonic() >= deadline or not self._thread.is_alive():
                return False
            time.sleep(0.05)
        return True

    def close(self, timeout_s: float) -> int:
        """Flush for up to ``timeout_s``, stop the thread and spool what is left; returns how many were spooled."""
        self.flush(timeout_s)
        with self._lock:
            self._closed = True
            self._stop.set()
            left: list[Op] = [self._inflight] if self._inflight is not None else []
            while True:
                try:
                    left.append(self._q.get_nowait())
                except queue.Empty:
                    break
            if left:
                _append_spool(self.spool_path, left)
            if self._journal is not None:  # every operation is now done or in the spool file
                self._journal.close()
                self._journal = None
            self.journal_path.unlink(missing_ok=True)
        return len(left)

    def _write_journal(self, entry: dict[str, Any]) -> None:
        # a plain append: the OS keeps what was written when the process is killed; no fsync on the hot path
        if self._journal is None:
            self.journal_path.parent.mkdir(parents=True, exist_ok=True)
            self._journal = open(self.journal_path, "a", encoding="utf-8")  # noqa: SIM115 - closed by close()
        self._journal.write(json.dumps(entry, sort_keys=True) + "\n")
        self._journal.flush()

    def failing_for(self) -> float:
        """Seconds the operation in flight has been failing (0 when none is)."""
        since = self.failing_since
        return 0.0 if since is None else time.monotonic() - since

    def _retrying(self, item: Op, exc: BaseException) -> None:
        if self.failing_since is None:
            self.failing_since = time.monotonic()
        self.last_error = exc
        key = (item["op"], "retrying")
        if key not in self._reported:
            self._reported.add(key)
            line = (self.explain(item, exc) if self.explain else None) or (
                f"fgi tracking: {item['op']} failed ({type(exc).__name__}: {exc}); retrying in the background")
            print(line, file=sys.stderr, flush=True)

    def _report(self, item: Op, exc: BaseException) -> None:
        key = (item["op"], type(exc).__name__)
        if key not in self._reported:
            self._reported.add(key)
            print(f"fgi tracking: {item['op']} dropped ({type(exc).__name__}: {exc}); later ones of this kind "
                  "are dropped silently", file=sys.stderr, flush=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                item = self._q.get(timeout=0.1)
            except queue.Empty:
                continue
            with self._lock:
                if self._stop.is_set():  # close() took the queue's items for the spool; put this one back there
                    _append_spool(self.spool_path, [item])
                    return
                self._inflight = item
            delay = self.base_delay_s
            while True:
                try:
                    self.execute(item["op"], item["args"])
                    self.last_error, self.failing_since = None, None
                    break
                except Exception as exc:  # noqa: BLE001 - any failure of the tracking server is retried or reported
                    if self.is_permanent(exc):
                        self.last_error, self.failing_since = None, None
                        self.dropped += 1
                        self._report(item, exc)
                        break
                    self._retrying(item, exc)
                    if self._stop.wait(delay):
                        return  # close() spools the in-flight operation
                    delay = min(delay * 2, self.max_delay_s)
            with self._lock:
                if self._stop.is_set():
                    return
                self._inflight = None
                if "seq" in item:
                    self._write_journal({"done": item["seq"]})
                self._q.task_done()


def _append_spool(path: Path, items: list[Op]) -> None:
    old = path.read_text() if path.is_file() else ""
    atomic_write_text(path, old + "".join(json.dumps(i, sort_keys=True) + "\n" for i in items))


def read_spool(path: str | Path) -> list[Op]:
    """The operations in a spool file (none when it does not exist).

    Raises:
        ValueError: a line that is not an operation; the message names the file and line.
    """
    p = Path(path)
    if not p.is_file():
        return []
    ops = []
    for n, line in enumerate(p.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{p}:{n}: not JSON ({exc.msg})") from None
        if not isinstance(item, dict) or not isinstance(item.get("op"), str) or not isinstance(item.get("args"), dict):
            raise ValueError(f"{p}:{n}: not a tracking operation (needs 'op' and 'args')")
        ops.append(item)
    return ops


def read_journal(path: str | Path) -> list[Op]:
    """The journaled operations never marked done, in order (none when the file does not exist).

    A last line cut short by a kill is ignored; any other line that is not JSON is an error.

    Raises:
        ValueError: a malformed line; the message names the file and line.
    """
    p = Path(path)
    if not p.is_file():
        return []
    lines = p.read_text(encoding="utf-8").splitlines()
    pending: dict[int, Op] = {}
    for n, line in enumerate(lines, 1):
        try:
            entry = json.loads(line)
        except json.JSONDecodeError as exc:
            if n == len(lines):
                break
            raise ValueError(f"{p}:{n}: not JSON ({exc.msg})") from None
        if isinstance(entry, dict) and isinstance(entry.get("done"), int):
            pending.pop(entry["done"], None)
        elif isinstance(entry, dict) and isinstance(entry.get("seq"), int) and isinstance(entry.get("op"), str):
            pending[entry["seq"]] = {"op": entry["op"], "args": entry.get("args", {})}
        else:
            raise ValueError(f"{p}:{n}: not a journal entry (needs 'seq' and 'op', or 'done')")
    return [pending[k] for k in sorted(pending)]


def take_spool(path: str | Path) -> list[Op]:
    """The operations an earlier run of the sweep did not send: those its journal (beside ``path``) never
    marked done, then the spool file's; both files are removed (the operations are about to be enqueued
    again, and journaled again)."""
    journal = Path(path).with_name(JOURNAL_FILE)
    ops = read_journal(journal) + read_spool(path)
    journal.unlink(missing_ok=True)
    Path(path).unlink(missing_ok=True)
    return ops


def replay(path: str | Path, execute: Execute, is_permanent: Callable[[BaseException], bool]) -> tuple[int, int]:
    """Send a spool file's operations in order, now; what fails transiently stays in the file.

    Returns:
        (operations sent, operations left in the file).
    """
    ops = read_spool(path)
    sent = 0
    for i, item in enumerate(ops):
        try:
            execute(item["op"], item["args"])
        except Exception as exc:  # noqa: BLE001 - reported and kept or dropped like the queue does
            if not is_permanent(exc):
                atomic_write_text(path, "".join(json.dumps(o, sort_keys=True) + "\n" for o in ops[i:]))
                return sent, len(ops) - i
            print(f"fgi tracking: {item['op']} dropped ({type(exc).__name__}: {exc})", file=sys.stderr)
        sent += 1
    Path(path).unlink(missing_ok=True)
    return sent, 0


__all__ = ["JOURNAL_FILE", "QUEUES", "SPOOL_FILE", "Execute", "LogQueue", "read_journal", "read_spool", "replay",
           "take_spool"]
