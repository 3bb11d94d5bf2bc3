"""A real ``mlflow server`` stalled (SIGSTOP) and restarted mid-sweep: logging never waits, nothing is lost.

Each test starts its own server on 127.0.0.1 (a free port, its own process group) and stops it by PID.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from mlflow.tracking import MlflowClient

from fgi import tracking
from fgi.config import Config
from fgi.tracking.queue import read_spool
from fgi.tracking.trials import find_run
from tests.servers import free_port, launch_mlflow

pytestmark = pytest.mark.slow
STARTUP_TIMEOUT_S = 300  # a busy CI machine takes minutes to start the server
ENQUEUE_LIMIT_S = 0.05  # what one callback may take while the server is down (it only enqueues)


class Server:
    """``mlflow server`` over a SQLite store in ``root``; ``start`` again reuses the port and the store."""

    def __init__(self, root: Path) -> None:
        self.root, self.port, self.proc = root, free_port(), None
        self.uri = f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"}
        self.proc = launch_mlflow(self.port, f"sqlite:///{self.root / 'mlflow.db'}", self.root / "artifacts",
                                  self.root / "server.log", env, STARTUP_TIMEOUT_S, poll_s=0.5)

    def signal(self, sig: int) -> None:
        os.killpg(self.proc.pid, sig)

    def stop(self) -> None:
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGCONT)
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(30)
        self.proc = None


@pytest.fixture
def server(tmp_path):
    srv = Server(tmp_path / "mlflow")
    srv.root.mkdir()
    try:
        srv.start()
        yield srv
    finally:
        srv.stop()


def _sweep(server, tmp_path, name, flush_timeout_s=300.0):
    tracker = tracking.SweepTracker(server.uri, "outage", name, "synthetic", storage=tmp_path / name,
                                    flush_timeout_s=flush_timeout_s)
    parent = tracker.start("params: {}", Config(), {})
    cb = tracking.TrialCallback(server.uri, tracker.experiment_id, parent, name, dict, 30,
                                staging=tmp_path / name / "staging")
    trial = SimpleNamespace(trial_id="t0", config={"optim.lr": 0.1}, num_failures=0, error_file=None,
                            checkpoint=None, last_result={"step": 30}, storage=None)
    cb.on_trial_start(0, [], trial)
    return tracker, cb, trial


def _report(cb, trial, steps) -> float:
    """The slowest callback among reports of ``steps``."""
    worst = 0.0
    for s in steps:
        t0 = time.perf_counter()
        cb.on_trial_result(0, [], trial, {"step": s, "val_dice": s / 100, "loss": 1.0 / s})
        worst = max(worst, time.perf_counter() - t0)
    return worst


def _history(uri, tracker, trial_id="t0"):
    client = MlflowClient(uri)
    run = find_run(client, tracker.experiment_id, {"fgi.sweep": tracker.sweep, "fgi.trial_id": trial_id})
    # at least once: a request the server applied just before it stalled may be sent again
    return client.get_run(run), sorted({m.step for m in client.get_metric_history(run, "val_dice")})


def test_stalled_and_restarted_server_delays_logs_but_loses_none(server, tmp_path, monkeypatch, capsys):
    """One server start and one restart (each takes a minute or two on a busy machine) cover both cases:
    sweep ``stall`` waits its logs out; sweep ``spool`` ends during the outage, spools and is replayed."""
    tracker, cb, trial = _sweep(server, tmp_path, "stall")
    other, other_cb, other_trial = _sweep(server, tmp_path, "spool", flush_timeout_s=2.0)
    # from here the queue's own retries face the outage: MLflow's (7 retries, 120 s timeout) would hide it
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "15")
    assert _report(cb, trial, range(1, 6)) < ENQUEUE_LIMIT_S
    server.signal(signal.SIGSTOP)
    try:
        assert _report(cb, trial, range(6, 16)) < ENQUEUE_LIMIT_S
        time.sleep(5)
        assert tracker.queue.pending() > 0, "the queue waits for the stalled server"
    finally:
        server.signal(signal.SIGCONT)
    server.stop()  # killed; restarted below on the same port over the same store
    assert _report(cb, trial, range(16, 26)) < ENQUEUE_LIMIT_S
    assert _report(other_cb, other_trial, range(1, 31)) < ENQUEUE_LIMIT_S
    other_cb.on_trial_complete(0, [], other_trial)
    t0 = time.monotonic()
    capsys.readouterr()
    spooled = other.finish(None, None, None)
    assert time.monotonic() - t0 < 10 and spooled > 0
    spool = tmp_path / "spool" / "mlflow_spool.jsonl"
    assert len(read_spool(spool)) == spooled
    # the wait says what it waits for, and giving up says where the operations are and what sends them
    said = capsys.readouterr().err
    assert f"operation(s) to MLflow at {server.uri} (waiting up to 2 s)" in said
    assert (f"did not take {spooled} operation(s) within 2 s; they are kept in {spool}, and resuming the sweep "
            f"sends them: python tune.py --dataset synthetic --resume --name spool --storage {tmp_path}") in said

    server.start()
    assert _report(cb, trial, range(26, 31)) < ENQUEUE_LIMIT_S
    cb.on_trial_complete(0, [], trial)
    assert tracker.finish({"step": 30, "val_dice": 0.3, "trial_id": "t0"}, None, None) == 0
    run, steps = _history(server.uri, tracker)
    assert steps == list(range(1, 31))
    assert run.info.status == "FINISHED" and run.data.tags["fgi.outcome"] == "finished"
    parent = MlflowClient(server.uri).get_run(tracker.parent_run_id)
    assert parent.info.status == "FINISHED" and parent.data.tags["fgi.best_trial_run_id"] == run.info.run_id

    assert tracking.replay_spool(spool, server.uri) == (spooled, 0)
    run, steps = _history(server.uri, other)
    assert steps == list(range(1, 31)) and run.info.status == "FINISHED"
    assert MlflowClient(server.uri).get_run(other.parent_run_id).info.status == "FINISHED"
    assert not spool.exists()
