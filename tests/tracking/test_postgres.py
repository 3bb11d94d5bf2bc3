"""Shared sweeps on a real database: ``mlflow server`` over PostgreSQL (as ``cluster/mlflow_server.sh`` runs it).

Starts a throwaway PostgreSQL cluster (``initdb`` + ``pg_ctl``, 127.0.0.1, a free port, trust auth, as
the ``postgres`` user when the tests run as root) and an MLflow server over it; both are stopped by PID.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from types import SimpleNamespace

import pytest

from fgi import tracking
from fgi.config import Config

pytestmark = pytest.mark.slow
BIN = Path(sys.executable).parent
STARTUP_TIMEOUT_S = 300


def _pg_bin() -> Path | None:
    found = shutil.which("initdb")
    candidates = [found] if found else sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    for c in candidates:
        if c and (Path(c).parent / "pg_ctl").is_file():
            return Path(c).parent
    return None


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def postgres():
    pg = _pg_bin()
    if pg is None:
        pytest.skip("PostgreSQL server binaries (initdb, pg_ctl) not installed: apt-get install postgresql")
    pytest.importorskip("psycopg2", reason="psycopg2-binary not installed (pip install 'fgi[test]')")
    run_as: list[str] = []
    root = Path(tempfile.mkdtemp(prefix="fgi-pg-", dir="/tmp"))  # short: the unix socket lives here
    if os.geteuid() == 0:  # initdb refuses root
        try:
            user = pwd.getpwnam("postgres")
        except KeyError:
            shutil.rmtree(root)
            pytest.skip("running as root and there is no 'postgres' user to run PostgreSQL as")
        os.chown(root, user.pw_uid, user.pw_gid)
        run_as = ["runuser", "-u", "postgres", "--"]
    data, port = root / "data", _free_port()
    subprocess.run([*run_as, str(pg / "initdb"), "-D", str(data), "-U", "mlflow", "--auth=trust", "-E", "UTF8"],
                   check=True, capture_output=True, timeout=300)
    subprocess.run([*run_as, str(pg / "pg_ctl"), "-D", str(data), "-l", str(root / "pg.log"), "-w", "-t", "120",
                    "-o", f"-p {port} -h 127.0.0.1 -k {root}", "start"], check=True, capture_output=True, timeout=180)
    pid = int((data / "postmaster.pid").read_text().split()[0])
    try:
        import psycopg2

        conn = psycopg2.connect(host="127.0.0.1", port=port, user="mlflow", dbname="postgres")
        conn.autocommit = True
        conn.cursor().execute("CREATE DATABASE mlflow")
        conn.close()
        yield f"postgresql+psycopg2://mlflow@127.0.0.1:{port}/mlflow"  # SQLAlchemy 2.1 defaults to psycopg 3
    finally:
        subprocess.run([*run_as, str(pg / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"],
                       capture_output=True, timeout=120)
        try:
            os.kill(pid, signal.SIGKILL)  # only when pg_ctl stop did not end it
        except ProcessLookupError:
            pass
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def server(postgres, tmp_path):
    port = _free_port()
    cmd = [str(BIN / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
           "--backend-store-uri", postgres, "--artifacts-destination", str(tmp_path / "artifacts")]
    log = open(tmp_path / "server.log", "w")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(cmd, env={**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"}, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)
    uri = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + STARTUP_TIMEOUT_S
        while True:
            assert proc.poll() is None, (tmp_path / "server.log").read_text()[-3000:]
            try:
                with urllib.request.urlopen(f"{uri}/health", timeout=2) as resp:
                    if resp.status == 200:
                        break
            except OSError:
                pass
            assert time.time() < deadline, "mlflow server not ready"
            time.sleep(1)
        yield uri
    finally:
        for sig, wait_s in ((signal.SIGTERM, 30), (signal.SIGKILL, 10)):
            try:
                os.killpg(proc.pid, sig)
                proc.wait(wait_s)
                break
            except ProcessLookupError:
                break
            except subprocess.TimeoutExpired:
                continue
        log.close()


def test_a_sweep_logs_and_reads_back_through_postgresql(server, tmp_path):
    from mlflow.tracking import MlflowClient

    tracker = tracking.SweepTracker(server, "pg", "pg-sweep", "synthetic", storage=tmp_path / "sweep")
    parent = tracker.start("params: {}", Config(), {"num_samples": 2})
    cb = tracking.TrialCallback(server, tracker.experiment_id, parent, "pg-sweep", dict, 3)
    for tid, lr in (("a", 0.1), ("b", 0.2)):
        trial = SimpleNamespace(trial_id=tid, config={"optim.lr": lr}, num_failures=0, error_file=None,
                                checkpoint=None, last_result={"step": 3}, storage=None)
        cb.on_trial_start(0, [], trial)
        for step in (1, 2, 3):
            cb.on_trial_result(0, [], trial, {"step": step, "val_dice": lr * step})
        cb.on_trial_complete(0, [], trial)
    assert tracker.finish({"step": 3, "val_dice": 0.6, "trial_id": "b"}, None, None) == 0
    client = MlflowClient(server)
    runs = {r.data.tags["fgi.trial_id"]: r for r in tracking.find_runs(client, tracker.experiment_id, {"fgi.kind": "trial"})}
    assert sorted(runs) == ["a", "b"]
    assert [m.value for m in client.get_metric_history(runs["b"].info.run_id, "val_dice")] == pytest.approx([0.2, 0.4, 0.6])
    assert runs["a"].data.params == {"optim.lr": "0.1"} and runs["a"].info.status == "FINISHED"
    p = client.get_run(parent)
    assert p.info.status == "FINISHED" and p.data.tags["fgi.best_trial_run_id"] == runs["b"].info.run_id
