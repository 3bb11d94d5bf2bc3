"""Sweep resume after a killed driver, and trial recovery after a killed training worker (real Ray head, real MLflow)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time

import pytest
from fgi_platform import BIN, REPO, ray_workers, run_cli

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
    # a trial started after Tune's last state snapshot is unknown to the restored sweep: its run is closed
    # as orphaned and the sweep still runs its 3 trials
    everything = _children(client, experiment)
    orphans = [c for c in everything if c.data.tags.get("fgi.outcome") == "orphaned"]
    children = [c for c in everything if c not in orphans]
    assert len(orphans) <= 1 and all(o.info.status == "KILLED" for o in orphans), [o.info.status for o in orphans]
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
    # ASHA's first rung holds every trial, those that finished before the kill included (Ray saves no
    # scheduler state; fgi.search.asha carries the rungs as callback state)
    from ray import cloudpickle

    # the newest session's file, by the timestamp in its name (a sync may touch the older one later)
    newest = max((tmp_path / "storage" / "resume-sweep").glob("callback-states-*.pkl"))
    states = cloudpickle.loads(newest.read_bytes())
    rungs = next(st for st in states.values() if st and "brackets" in st)["brackets"][0]
    assert set(trial_ids) <= set(rungs[-1]["recorded"]), (trial_ids, rungs)


def test_worker_fault_resumes_from_checkpoint(ray_head, mlflow_server, tmp_path):
    """A killed in-process trial's actor resumes from the latest checkpoint: Tune retries the trial. (A killed
    Ray Train worker, on the second node of a two-node cluster: ``test_two_nodes.py``.)"""
    from mlflow.tracking import MlflowClient

    # an in-process trial starts in about a second: it runs longer so that the test can kill it mid-way
    workers, actor, max_steps = "1", "ImplicitFunc", 120

    client = MlflowClient(mlflow_server.uri)
    env = dict(ray_head.env, RAY_ADDRESS=ray_head.gcs)
    experiment = "fgi-fault"
    every = 4
    cmd = _tune(mlflow_server, tmp_path, experiment, "--num-samples", "1", "--scheduler", "none",
                "--max-steps", str(max_steps), "--name", "fault-sweep", "--workers-per-trial", workers, "--verbose")
    log_path = tmp_path / "driver.log"
    driver = _start(cmd, env, log_path)
    try:
        deadline = time.time() + TIMEOUT_S
        pids: list[int] = []
        while not pids:  # the actor lives for the whole trial: find it before the first checkpoint
            assert driver.poll() is None, log_path.read_text()[-5000:]
            assert time.time() < deadline, "the trial's actor never started"
            pids = ray_workers(actor, ray_head.proc.pid)
            time.sleep(0.2)
        # the driver prints a result's checkpoint once it holds it, so the restart resumes from there
        while not re.search(r"checkpoint_path\s+[^\s│]", log_path.read_text()):
            assert driver.poll() is None, log_path.read_text()[-5000:]
            assert time.time() < deadline, "the trial never checkpointed"
            time.sleep(0.1)
        os.kill(pids[0], signal.SIGKILL)  # a training worker, mid-trial
        assert driver.wait(TIMEOUT_S) == 0, log_path.read_text()[-5000:]
    finally:
        if driver.poll() is None:
            _kill_group(driver)
    run = _children(client, experiment)[0]
    assert run.info.status == "FINISHED" and run.data.tags["fgi.outcome"] == "finished"
    steps = [m.step for m in client.get_metric_history(run.info.run_id, "val_dice")]
    assert steps == list(range(every, max_steps + 1, every)), f"one continuous history, got {steps}"
    assert run.data.tags.get("fgi.retries") == "1", "Tune retried the in-process trial after its actor died"
