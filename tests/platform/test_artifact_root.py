"""A tracking server whose artifact root cannot be written fails a sweep in seconds, before anything is written.

The artifact root is a read-only tmpfs mounted for the test (mounting needs root, as on the CI machine and
the development machine; elsewhere the test cannot make a real unwritable root and says so): file
permissions alone do not stop root.
"""

from __future__ import annotations

import subprocess
import time

import pytest
from fgi_platform import BIN, REPO, base_env

from tests.servers import free_port, launch_mlflow, stop_group

pytestmark = pytest.mark.slow

STARTUP_TIMEOUT_S = 120


def _mount(path, options: str) -> None:
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.strip()[:120]}); a real unwritable root needs it")


def test_an_unwritable_artifact_root_fails_the_sweep_in_seconds(tmp_path):
    artifacts = tmp_path / "artifacts"
    artifacts.mkdir()
    _mount(artifacts, "size=4M,ro")
    server = None
    try:
        port = free_port()
        server = launch_mlflow(port, f"sqlite:///{tmp_path / 'mlflow.db'}", artifacts, tmp_path / "server.log",
                               base_env(tmp_path), STARTUP_TIMEOUT_S)
        uri, storage = f"http://127.0.0.1:{port}", tmp_path / "storage"
        t0 = time.monotonic()
        proc = subprocess.run([str(BIN / "python"), "tune.py", "--dataset", "synthetic", "--budget", "smoke",
                               "--mlflow-uri", uri, "--storage", str(storage), "--name", "ro", "--experiment", "ro"],
                              env=base_env(tmp_path / "home"), cwd=REPO, capture_output=True, text=True, timeout=300)
        elapsed = time.monotonic() - t0
    finally:
        if server is not None:
            stop_group(server)
        subprocess.run(["umount", "-l", str(artifacts)], check=False)
    assert proc.returncode == 2, proc.stderr[-3000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr[-3000:]
    assert lines[0].startswith(f"error: --mlflow-uri: {uri}: the server cannot store artifacts of experiment 'ro'")
    assert "--artifacts-destination" in lines[0]
    assert elapsed < 60, f"failed after {elapsed:.0f} s"
    assert not storage.exists(), "no sweep file, no Ray storage"


def test_a_writable_artifact_root_keeps_no_probe(tmp_path):
    from fgi.tracking import check_artifacts

    artifacts = tmp_path / "artifacts"
    port = free_port()
    server = launch_mlflow(port, f"sqlite:///{tmp_path / 'mlflow.db'}", artifacts, tmp_path / "server.log",
                           base_env(tmp_path), STARTUP_TIMEOUT_S)
    try:
        check_artifacts(f"http://127.0.0.1:{port}", "fine")
    finally:
        stop_group(server)
    assert not [p for p in artifacts.rglob("*") if p.is_file()], "the probe file was deleted"


def test_an_artifact_store_that_fills_in_the_middle_of_a_sweep(tmp_path):
    """The probe fits in a 512 KB store, a trial's checkpoint (about 0.6 MB) does not: the sweep says what the
    HTTP 500 most likely is, trains to its end, gives up waiting on a server that keeps refusing, spools, and a
    resume after room was made sends the checkpoint."""
    from mlflow.tracking import MlflowClient

    artifacts = tmp_path / "artifacts"
    artifacts.mkdir()
    _mount(artifacts, "size=512k")
    server = None
    # MLflow's client retries each 500 seven times with back-off (minutes) before fgi's queue sees the error;
    # without them the test is short, and fgi's own retries are what is tested
    env = dict(base_env(tmp_path / "home"), MLFLOW_HTTP_REQUEST_MAX_RETRIES="0")
    try:
        port = free_port()
        server = launch_mlflow(port, f"sqlite:///{tmp_path / 'mlflow.db'}", artifacts, tmp_path / "server.log",
                               base_env(tmp_path), STARTUP_TIMEOUT_S)
        uri, storage = f"http://127.0.0.1:{port}", tmp_path / "storage"
        cmd = [str(BIN / "python"), "tune.py", "--dataset", "synthetic", "--budget", "smoke", "--scheduler", "none",
               "--num-samples", "1", "--mlflow-uri", uri, "--storage", str(storage), "--name", "full",
               "--experiment", "full", "--best-dir", str(tmp_path / "best")]
        first = subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True, timeout=600)
        assert first.returncode == 0, first.stderr[-3000:]
        err = first.stderr
        assert err.count("the MLflow server refuses to store") == 1, err[-3000:]
        assert "artifact store (the server's --artifacts-destination or --default-artifact-root) is likely full" in err
        assert "has refused the same operation for" in err and "not waiting longer" in err
        assert "resuming the sweep sends them: python tune.py --dataset synthetic --resume --name full" in err
        assert (tmp_path / "best" / "synthetic.yaml").is_file(), "the sweep's own result is whole"
        assert "No space left on device" in (tmp_path / "server.log").read_text()

        subprocess.run(["mount", "-o", "remount,size=64m", str(artifacts)], check=True)
        second = subprocess.run([*cmd, "--resume"], env=env, cwd=REPO, capture_output=True, text=True, timeout=600)
        assert second.returncode == 0, second.stderr[-3000:]
        assert "refuses to store" not in second.stderr
        client = MlflowClient(uri)
        exp = client.get_experiment_by_name("full")
        trial = next(r for r in client.search_runs([exp.experiment_id]) if r.data.tags.get("fgi.kind") == "trial")
        names = {a.path for a in client.list_artifacts(trial.info.run_id, "checkpoint")}
        assert "checkpoint/trainer.pt" in names, names
    finally:
        if server is not None:
            stop_group(server)
        subprocess.run(["umount", "-l", str(artifacts)], check=False)
