"""The per-trial watchdog fires once after ``timeout_s`` without a beat, never while beating, and stops cleanly."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from fgi.search.watchdog import EXIT_CODE, Watchdog


def _watchdog_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("fgi-watchdog-")]


def test_fires_once_after_the_timeout_without_beats(capsys):
    fired: list[float] = []
    t0 = time.monotonic()
    with Watchdog(0.3, "t1", on_expire=lambda: fired.append(time.monotonic() - t0)) as dog:
        deadline = time.monotonic() + 5
        while not fired and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(0.3)  # a second timeout's worth: it must not fire again
    assert len(fired) == 1 and 0.3 <= fired[0] < 2.0, fired
    assert dog.expired
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert re.fullmatch(r"fgi: trial t1 made no progress for 0\.[3-9] s \(limit --trial-timeout 0\.3 s\); ending its "
                        r"process so Tune can fail or retry it\n", err), err


def test_does_not_fire_while_beating_and_counts_from_the_last_beat():
    fired = threading.Event()
    with Watchdog(0.4, "t2", on_expire=fired.set) as dog:
        end = time.monotonic() + 1.6  # four timeouts of steady progress
        while time.monotonic() < end:
            dog.beat()
            time.sleep(0.05)
        assert not fired.is_set() and not dog.expired
        last = time.monotonic()
        assert fired.wait(5), "no beat since: it must fire"
        assert time.monotonic() - last >= 0.35
    assert dog.expired


def test_stop_joins_the_thread_and_nothing_fires_afterwards():
    fired = threading.Event()
    dog = Watchdog(0.3, "t3", on_expire=fired.set)
    before = len(_watchdog_threads())
    dog.start()
    assert dog.running and len(_watchdog_threads()) == before + 1
    dog.stop()
    assert not dog.running and len(_watchdog_threads()) == before
    assert not fired.wait(0.6) and not dog.expired
    dog.stop()  # stopping twice is harmless


def test_an_exception_in_the_guarded_work_stops_the_watchdog():
    fired = threading.Event()
    with pytest.raises(KeyError):
        with Watchdog(0.3, "t4", on_expire=fired.set) as dog:
            raise KeyError("boom")
    assert not dog.running and not fired.wait(0.6)


def test_zero_disables_and_bad_timeouts_are_named():
    dog = Watchdog(0.0, "off", on_expire=lambda: pytest.fail("a disabled watchdog fired"))
    with dog:
        assert not dog.running
    for bad in (-1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="^trial_timeout: must be a finite number >= 0"):
            Watchdog(bad, "bad")


def test_starting_a_running_watchdog_is_refused():
    with Watchdog(30.0, "t5") as dog, pytest.raises(RuntimeError, match="watchdog of trial t5 is already running"):
        dog.start()


BLOCKED = textwrap.dedent("""
    import queue, threading
    from fgi.search.watchdog import Watchdog

    def report():
        slot = queue.Queue(1)  # the one-slot result queue of a Tune function trainable, never emptied
        slot.put("first")
        slot.put("second")

    with Watchdog(1.0, "blocked") as dog:
        dog.beat()
        worker = threading.Thread(target=report)
        worker.start()
        worker.join()
    print("unreachable: the blocked report returned")
""")


@pytest.mark.slow
def test_the_default_ends_a_process_whose_thread_is_blocked_forever():
    t0 = time.monotonic()
    proc = subprocess.run([sys.executable, "-c", BLOCKED], capture_output=True, text=True, timeout=60)
    seconds = time.monotonic() - t0
    assert proc.returncode == EXIT_CODE, (proc.returncode, proc.stderr)
    assert "unreachable" not in proc.stdout
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and re.match(r"fgi: trial blocked made no progress for 1\.\d s \(limit --trial-timeout 1 s\)",
                                        lines[0]), proc.stderr
    assert seconds < 30, seconds
