"""A driver that dies with an exception leaves no run RUNNING: the parent and open children end FAILED."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
from mlflow.tracking import MlflowClient

from fgi.tracking.trials import find_runs

pytestmark = pytest.mark.slow

SCRIPT = textwrap.dedent('''
    import sys
    from types import SimpleNamespace
    from fgi import tracking
    from fgi.config import Config

    uri, storage = sys.argv[1], sys.argv[2]
    tracker = tracking.SweepTracker(uri, "crash", "sw", "synthetic", storage=storage)
    parent = tracker.start("params: {}", Config(), {})
    cb = tracking.TrialCallback(uri, tracker.experiment_id, parent, "sw", dict, 10)
    for tid in ("open", "done"):
        trial = SimpleNamespace(trial_id=tid, config={}, num_failures=0, error_file=None, checkpoint=None,
                                last_result={"step": 10}, storage=None)
        cb.on_trial_start(0, [], trial)
        cb.on_trial_result(0, [], trial, {"step": 1, "val_dice": 0.1})
    cb.on_trial_complete(0, [], trial)
    raise RuntimeError("driver crash")
''')


def test_crash_marks_parent_and_open_children_failed(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    proc = subprocess.run([sys.executable, "-c", SCRIPT, uri, str(tmp_path / "sweep")], capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 1 and "driver crash" in proc.stderr
    client = MlflowClient(uri)
    exp_id = client.get_experiment_by_name("crash").experiment_id
    runs = {r.data.tags.get("fgi.trial_id", "parent"): r for r in find_runs(client, exp_id, {"fgi.sweep": "sw"})}
    assert runs["parent"].info.status == "FAILED"
    assert runs["open"].info.status == "FAILED" and runs["open"].data.tags["fgi.outcome"] == "failed"
    assert runs["done"].info.status == "FINISHED" and runs["done"].data.tags["fgi.outcome"] == "finished"
    assert not (tmp_path / "sweep" / "mlflow_spool.jsonl").exists()
