"""The log queue: enqueueing never waits, retries with back-off, in order, spools and replays what is left."""

from __future__ import annotations

import json
import threading
import time

from fgi.tracking_queue import LogQueue, read_spool, replay, take_spool


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
    spilled = [op["args"]["i"] for op in take_spool(spool)]
    assert spilled and set(spilled) < set(range(6)) and not spool.exists()
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
