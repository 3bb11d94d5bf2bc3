"""SIGTERM on a sweep's driver stops it as a user's stop: runs KILLED, a one-line resume hint, a resumable sweep."""

from __future__ import annotations

import signal
import subprocess
import time

import pytest
from fgi_platform import BIN, REPO, base_env, run_cli

pytestmark = pytest.mark.slow


@pytest.mark.timeout(1200)  # a stopped sweep and its resume, on a busy machine
def test_sigterm_stops_the_sweep_cleanly_and_resume_finishes_it(tmp_path):
    from mlflow.tracking import MlflowClient

    uri, storage = f"sqlite:///{tmp_path / 'mlflow.db'}", tmp_path / "storage"
    args = [str(BIN / "python"), "tune.py", "--dataset", "synthetic", "--budget", "smoke", "--scheduler", "none",
            "--num-samples", "1", "--max-steps", "48", "--mlflow-uri", uri, "--storage", str(storage),
            "--name", "stopme", "--best-dir", str(tmp_path / "best")]
    env = base_env(tmp_path / "home")
    proc = subprocess.Popen(args, env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 400
        # stop once the trial has reported (it is training), well before its 48 steps
        while not any(p.stat().st_size for p in storage.glob("stopme/trial_*/result.json")):
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
            time.sleep(0.5)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=180)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 128 + signal.SIGTERM, (out[-2000:], err[-4000:])
    assert "SIGTERM received" not in err  # no crash dump from Ray's driver
    assert (f"stopped by SIGTERM (the trials' MLflow runs and the sweep's end as KILLED); resume with: "
            f"python tune.py --dataset synthetic --resume --name stopme --storage {storage}") in err

    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("fgi-synthetic")
    runs = client.search_runs([exp.experiment_id])
    parent = next(r for r in runs if r.data.tags.get("fgi.kind") == "sweep")
    trials = [r for r in runs if r.data.tags.get("fgi.kind") == "trial"]
    assert (parent.info.status, parent.data.tags.get("fgi.outcome")) == ("KILLED", "stopped")
    assert trials and all(r.info.status == "KILLED" for r in trials), [(r.info.status, r.data.tags) for r in trials]

    resumed = run_cli([*args, "--resume"], env, 600)
    assert "best trial" in resumed.stdout
    final = client.get_run(parent.info.run_id)
    assert final.info.status == "FINISHED"
