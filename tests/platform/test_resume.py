"""Sweep resume after a killed driver, and trial recovery after a killed training worker (real Ray head, real MLflow)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import pytest
from fgi_platform import BIN, REPO, run_cli

pytestmark = pytest.mark.slow

TIMEOUT_S = 900


def _children(client, experiment: str) -> list:
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        return []
    return [r for r in client.search_runs([exp.experiment_id]) if r.data.tags.get("fgi.kind") == "trial"]


def _tune(mlflow_server, tmp_path, experiment: str, *extra: str) -> list[str]:
    return [str(BIN / "python"), "tune.py", "--dataset", "synthetic", "--budget", "smoke", "--mlflow-uri",
            mlflow_server.uri, "--experiment", experiment, "--storage", str(tmp_path / "storage"),
            "--best-dir", str(tmp_path / "best"), *extra]


def _start(cmd: list[str], env: dict[str, str], log_path) -> subprocess.Popen:
    log = open(log_path, "w")  # noqa: SIM115 - the child owns it; closed with the test's tmp_path
    return subprocess.Popen(cmd, env=env, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(30)


def test_resume_after_driver_is_killed(ray_head, mlflow_server, tmp_path):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(mlflow_server.uri)
    env = dict(ray_head.env, RAY_ADDRESS=ray_head.gcs)
    experiment = "fgi-resume"
    cmd = _tune(mlflow_server, tmp_path, experiment, "--num-samples", "3", "--max-concurrent", "1",
                "--name", "resume-sweep")
    driver = _start(cmd, env, tmp_path / "driver.log")
    try:
        deadline = time.time() + TIMEOUT_S
        while not any(r.info.status in ("FINISHED", "KILLED") for r in _children(client, experiment)):
            assert driver.poll() is None, (tmp_path / "driver.log").read_text()[-5000:]
            assert time.time() < deadline, "no trial ended in time"
            time.sleep(2)
    finally:
        _kill_group(driver)  # SIGKILL: no chance to save anything on the way out
    assert len(_children(client, experiment)) < 3 or driver.returncode == -signal.SIGKILL

    out = run_cli([*cmd, "--resume"], env, TIMEOUT_S)
    assert "resuming sweep resume-sweep" in out.stdout
    children = _children(client, experiment)
    trial_ids = [c.data.tags["fgi.trial_id"] for c in children]
    assert len(children) == 3 and len(set(trial_ids)) == 3, trial_ids
    assert all(c.info.status in ("FINISHED", "KILLED") for c in children), [c.info.status for c in children]
    for c in children:
        steps = [m.step for m in client.get_metric_history(c.info.run_id, "val_dice")]
        assert steps == sorted(set(steps)), f"duplicated metric points in {c.info.run_name}: {steps}"
    exp = client.get_experiment_by_name(experiment)
    parents = [r for r in client.search_runs([exp.experiment_id]) if r.data.tags.get("fgi.kind") == "sweep"]
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    assert (tmp_path / "best" / "synthetic.yaml").is_file()


# an in-process trial starts in about a second: it runs longer so that the test can kill it mid-way
@pytest.mark.parametrize("workers, actor, max_steps", [("1", "ImplicitFunc", 120), ("2", "RayTrainWorker", 24)],
                         ids=["in-process", "ray-train"])
def test_worker_fault_resumes_from_checkpoint(ray_head, mlflow_server, tmp_path, workers, actor, max_steps):
    """A killed training process (the in-process trial's actor, or a Ray Train worker) resumes from the
    latest checkpoint: Tune retries the in-process trial, Ray Train restarts its worker group."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(mlflow_server.uri)
    env = dict(ray_head.env, RAY_ADDRESS=ray_head.gcs)
    experiment = "fgi-fault"
    every = 4
    cmd = _tune(mlflow_server, tmp_path, experiment, "--num-samples", "1", "--scheduler", "none",
                "--max-steps", str(max_steps), "--name", "fault-sweep", "--workers-per-trial", workers, "--verbose")
    driver = _start(cmd, env, tmp_path / "driver.log")
    killed = None
    try:
        deadline = time.time() + TIMEOUT_S
        while killed is None:
            assert driver.poll() is None, (tmp_path / "driver.log").read_text()[-5000:]
            assert time.time() < deadline, "the trial never reported"
            runs = _children(client, experiment)
            if runs and client.get_metric_history(runs[0].info.run_id, "val_dice"):
                listing = run_cli([str(BIN / "ray"), "list", "actors", "--address", ray_head.dashboard, "--format",
                                   "json", "--filter", f"class_name={actor}", "--filter", "state=ALIVE"],
                                  ray_head.env, 60)
                text = listing.stdout.strip()
                pids = [] if text.startswith("No resource") else [a["pid"] for a in json.loads(text)]
                if pids:
                    before = [m.step for m in client.get_metric_history(runs[0].info.run_id, "val_dice")]
                    killed = pids[0]
                    os.kill(killed, signal.SIGKILL)  # a training worker, mid-trial
                    break
            time.sleep(1)
        assert driver.wait(TIMEOUT_S) == 0, (tmp_path / "driver.log").read_text()[-5000:]
    finally:
        if driver.poll() is None:
            _kill_group(driver)
    run = _children(client, experiment)[0]
    assert run.info.status == "FINISHED" and run.data.tags["fgi.outcome"] == "finished"
    steps = [m.step for m in client.get_metric_history(run.info.run_id, "val_dice")]
    assert steps == list(range(every, max_steps + 1, every)), f"one continuous history, got {steps} (killed after {before})"
    if workers == "1":
        assert run.data.tags.get("fgi.retries") == "1", "Tune retried the in-process trial after its actor died"
    else:
        log = (tmp_path / "driver.log").read_text()
        assert "[FailurePolicy] RETRY" in log, "Ray Train restarted the worker group after the killed worker"
