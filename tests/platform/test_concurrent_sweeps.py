"""Two sweeps at once on one Ray head, logging to one ``mlflow server`` over PostgreSQL (the shared setup of
``cluster/mlflow_server.sh``): every Tune trial has exactly one child run with its best checkpoint, and no
run is left RUNNING.

PostgreSQL and MLflow bind 127.0.0.1 on free ports and are stopped by PID; everything is written under the
test's temporary folders.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from fgi_platform import MlflowServer, base_env, submit_job, wait_job

from tests.servers import MLFLOW_STOP_GRACE_S, free_port, launch_mlflow, postgres_database, stop_group

pytestmark = pytest.mark.slow

STARTUP_TIMEOUT_S = 300
JOB_TIMEOUT_S = 900
EXPERIMENT = "fgi-concurrent"
SWEEPS = ("sweep-a", "sweep-b")
NUM_SAMPLES = 3


@pytest.fixture
def pg_mlflow(tmp_path: Path) -> Iterator[MlflowServer]:
    """``mlflow server`` over a throwaway PostgreSQL database, artifacts in ``tmp_path``."""
    root = tmp_path / "mlflow"
    root.mkdir()
    with postgres_database() as db:
        port = free_port()
        proc = launch_mlflow(port, db, root / "artifacts", root / "server.log", base_env(root / "home"),
                             STARTUP_TIMEOUT_S)
        try:
            yield MlflowServer(proc, f"http://127.0.0.1:{port}", root)
        finally:
            stop_group(proc, grace_s=MLFLOW_STOP_GRACE_S)


def _tune_trial_ids(path: Path) -> set[str]:
    """The trial ids Tune's own experiment state holds for the sweep folder ``path``."""
    from ray.tune import ExperimentAnalysis

    return {t.trial_id for t in ExperimentAnalysis(str(path)).trials}


def test_two_concurrent_sweeps_log_one_child_per_trial(ray_head, pg_mlflow, tmp_path):
    from mlflow.tracking import MlflowClient

    jobs = {}
    for name in SWEEPS:
        work = tmp_path / name
        work.mkdir()
        jobs[name] = submit_job(ray_head, [
            "env", f"FGI_HOME={work / 'home'}", "python", "tune.py", "--dataset", "synthetic", "--budget", "smoke",
            "--num-samples", str(NUM_SAMPLES), "--max-concurrent", "1", "--mlflow-uri", pg_mlflow.uri,
            "--experiment", EXPERIMENT, "--name", name, "--storage", str(work / "storage"),
            "--best-dir", str(work / "best_configs")])
    logs = {name: wait_job(ray_head, job, JOB_TIMEOUT_S) for name, job in jobs.items()}

    client = MlflowClient(pg_mlflow.uri)
    exp = client.get_experiment_by_name(EXPERIMENT)
    runs = client.search_runs([exp.experiment_id], max_results=1000)
    assert [r.info.run_name for r in runs if r.info.status == "RUNNING"] == []
    seen: dict[str, set[str]] = {}
    parents = {}
    for name in SWEEPS:
        summary = re.search(r"done in \d+ s: (\d+) trials, (\d+) failed", logs[name])
        assert summary, logs[name][-4000:]
        assert "fgi tracking:" not in logs[name], "no tracking operation dropped, no checkpoint left unstaged"
        tune_ids = _tune_trial_ids(tmp_path / name / "storage" / name)
        assert len(tune_ids) == int(summary.group(1)) == NUM_SAMPLES and summary.group(2) == "0"

        mine = [r for r in runs if r.data.tags.get("fgi.sweep") == name]
        sweep_runs = [r for r in mine if r.data.tags.get("fgi.kind") == "sweep"]
        assert len(sweep_runs) == 1, [r.info.run_name for r in mine]
        parent = parents[name] = sweep_runs[0]
        assert parent.info.status == "FINISHED"
        children = [r for r in mine if r.data.tags.get("fgi.kind") == "trial"]
        child_ids = [c.data.tags["fgi.trial_id"] for c in children]
        assert sorted(child_ids) == sorted(tune_ids), "exactly one child run per Tune trial"
        seen[name] = set(child_ids)
        for child in children:
            tid = child.data.tags["fgi.trial_id"]
            assert child.data.tags["mlflow.parentRunId"] == parent.info.run_id
            assert child.info.status == "FINISHED", (tid, child.info.status)
            assert child.data.tags["fgi.outcome"] in ("finished", "stopped_early")
            artifacts = {a.path for a in client.list_artifacts(child.info.run_id, "checkpoint")}
            assert {"checkpoint/trainer.pt", "checkpoint/metrics.json"} <= artifacts, (tid, artifacts)
            local = client.download_artifacts(child.info.run_id, "checkpoint/metrics.json", str(tmp_path / tid))
            uploaded = json.loads(Path(local).read_text())
            history = client.get_metric_history(child.info.run_id, "val_dice")
            # the checkpoint is the trial's own best one: its metrics are the best of the trial's curve
            assert uploaded["val_dice"] == pytest.approx(max(m.value for m in history))
            assert uploaded["val_dice"] == pytest.approx(child.data.metrics["best_val_dice"])
            assert uploaded["step"] == int(child.data.tags["fgi.best_step"])
        # the parent names its best trial: the child with the highest best val Dice of this sweep
        best = max(children, key=lambda c: c.data.metrics["best_val_dice"])
        assert parent.data.tags["fgi.best_trial_run_id"] == best.info.run_id
        assert parent.data.metrics["best_val_dice"] == pytest.approx(best.data.metrics["best_val_dice"])
    assert not seen[SWEEPS[0]] & seen[SWEEPS[1]], "no trial in both sweeps"
    a, b = (parents[name].info for name in SWEEPS)
    assert a.start_time < b.end_time and b.start_time < a.end_time, "the two sweeps ran at the same time"
