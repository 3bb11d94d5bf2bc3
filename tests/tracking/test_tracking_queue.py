"""The log queue: enqueueing never waits, retries with back-off, in order, spools and replays what is left."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from fgi.tracking.queue import LogQueue, read_journal, read_spool, replay, take_spool


class Transient(RuntimeError):
    pass


class Permanent(ValueError):
    pass


def _permanent(exc: BaseException) -> bool:
    return isinstance(exc, Permanent)


def test_put_returns_at_once_while_the_server_hangs(tmp_path):
    release, done = threading.Event(), []

    def execute(op, args):
        release.wait()
        done.append(args["i"])

    q = LogQueue(execute, _permanent, tmp_path / "spool.jsonl")
    t0 = time.monotonic()
    for i in range(200):
        q.put("log", i=i)
    assert time.monotonic() - t0 < 0.5
    assert not q.flush(0.2)
    release.set()
    assert q.flush(10)
    assert done == list(range(200))
    assert q.close(1) == 0 and not (tmp_path / "spool.jsonl").exists()


def test_transient_errors_are_retried_with_growing_delays(tmp_path):
    tries: list[float] = []

    def execute(op, args):
        tries.append(time.monotonic())
        if len(tries) < 4:
            raise Transient("server down")

    q = LogQueue(execute, _permanent, tmp_path / "spool.jsonl", base_delay_s=0.05, max_delay_s=1.0)
    q.put("log", i=0)
    assert q.flush(10)
    gaps = [b - a for a, b in zip(tries, tries[1:], strict=False)]
    assert len(tries) == 4 and gaps[0] >= 0.05 and gaps[1] >= 0.1 and gaps[2] >= 0.2
    q.close(1)


def test_a_permanent_error_drops_the_operation_and_is_reported_once(tmp_path, capsys):
    done = []

    def execute(op, args):
        if op == "bad":
            raise Permanent("rejected")
        done.append(args["i"])

    q = LogQueue(execute, _permanent, tmp_path / "spool.jsonl")
    for i in range(3):
        q.put("bad", i=i)
        q.put("good", i=i)
    assert q.flush(10)
    assert done == [0, 1, 2] and q.dropped == 3
    assert capsys.readouterr().err.count("bad dropped") == 1
    q.close(1)


def test_close_spools_what_the_deadline_left_and_replay_sends_it(tmp_path):
    spool = tmp_path / "spool.jsonl"

    def down(op, args):
        raise Transient("server down")

    q = LogQueue(down, _permanent, spool, base_delay_s=0.05)
    for i in range(5):
        q.put("log", i=i)
    t0 = time.monotonic()
    assert q.close(0.3) == 5
    assert time.monotonic() - t0 < 2
    assert [op["args"]["i"] for op in read_spool(spool)] == [0, 1, 2, 3, 4]
    q.put("log", i=5)  # a closed queue spools at once
    assert [op["args"]["i"] for op in read_spool(spool)] == [0, 1, 2, 3, 4, 5]

    sent = []
    calls = {"n": 0}

    def flaky(op, args):
        calls["n"] += 1
        if calls["n"] == 3:
            raise Transient("down again")
        sent.append(args["i"])

    assert replay(spool, flaky, _permanent) == (2, 4)
    assert [op["args"]["i"] for op in read_spool(spool)] == [2, 3, 4, 5]
    assert replay(spool, lambda op, args: sent.append(args["i"]), _permanent) == (4, 0)
    assert sent == [0, 1, 2, 3, 4, 5] and not spool.exists()


def test_a_full_queue_spills_to_the_spool_instead_of_waiting(tmp_path):
    release = threading.Event()
    spool = tmp_path / "spool.jsonl"
    q = LogQueue(lambda op, args: release.wait(), _permanent, spool, maxsize=2)
    t0 = time.monotonic()
    for i in range(6):
        q.put("log", i=i)
    assert time.monotonic() - t0 < 0.5
    spilled = [op["args"]["i"] for op in read_spool(spool)]
    assert spilled and set(spilled) < set(range(6))
    release.set()
    assert q.flush(10)
    q.close(1)


def test_a_corrupt_spool_line_names_the_file_and_line(tmp_path):
    spool = tmp_path / "spool.jsonl"
    spool.write_text(json.dumps({"op": "log", "args": {}}) + "\n{oops\n")
    try:
        read_spool(spool)
    except ValueError as exc:
        assert f"{spool}:2" in str(exc)
    else:
        raise AssertionError("a corrupt line was accepted")


KILLED_DRIVER = """
import sys, threading
from fgi.tracking.queue import LogQueue

def execute(op, args):
    if args["i"] >= 3:
        threading.Event().wait()  # the server stops answering: ops 3.. never complete
    print(args["i"], flush=True)

q = LogQueue(execute, lambda exc: False, sys.argv[1])
for i in range(6):
    q.put("log", i=i)
threading.Event().wait()
"""


@pytest.mark.slow  # a real process, killed
def test_operations_of_a_killed_process_are_handed_to_the_next_run(tmp_path):
    """SIGKILL leaves no chance to spool: the journal still names every operation that was not executed."""
    spool = tmp_path / "spool.jsonl"
    proc = subprocess.Popen([sys.executable, "-c", KILLED_DRIVER, str(spool)], stdout=subprocess.PIPE, text=True)
    try:
        executed = [proc.stdout.readline().strip() for _ in range(3)]
        time.sleep(0.3)  # op 3 is in flight, 4 and 5 wait in the queue
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
    assert executed == ["0", "1", "2"]
    left = take_spool(spool)
    assert [(o["op"], o["args"]["i"]) for o in left] == [("log", 3), ("log", 4), ("log", 5)]
    assert not (tmp_path / "mlflow_journal.jsonl").exists()
    assert take_spool(spool) == []


def test_a_clean_close_leaves_no_journal_and_spooled_operations_come_back_once(tmp_path):
    spool = tmp_path / "spool.jsonl"

    def execute(op, args):
        if args["i"] == 2:
            raise Transient("down")

    q = LogQueue(execute, _permanent, spool, base_delay_s=0.01)
    for i in range(4):
        q.put("log", i=i)
    assert not q.flush(0.3)
    assert q.close(0.1) == 2  # op 2 in flight, op 3 queued
    assert not (tmp_path / "mlflow_journal.jsonl").exists()
    assert [o["args"]["i"] for o in take_spool(spool)] == [2, 3]


def test_journal_ignores_a_line_cut_by_a_kill_and_names_a_broken_one(tmp_path):
    journal = tmp_path / "mlflow_journal.jsonl"
    journal.write_text('{"seq": 1, "op": "log", "args": {"i": 1}}\n{"seq": 2, "op": "log", "args": {"i": 2}}\n'
                       '{"done": 1}\n{"seq": 3, "op": "lo')
    assert read_journal(journal) == [{"op": "log", "args": {"i": 2}}]
    journal.write_text('{"seq": 1, "op": "log", "args": {}}\nnot json\n{"done": 1}\n')
    with pytest.raises(ValueError, match=r"mlflow_journal.jsonl:2: not JSON"):
        read_journal(journal)
    journal.write_text('{"what": 1}\n{"done": 1}\n')
    with pytest.raises(ValueError, match=r"mlflow_journal.jsonl:1: not a journal entry"):
        read_journal(journal)
