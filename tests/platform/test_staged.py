"""A screening stage warm-started from an earlier sweep's MLflow trials (real Ray head, real MLflow server).

The first sweep runs its trials to the end of the 12-step smoke schedule; the second stops its trials at step
8 of the same schedule and tells TPE the first sweep's trials at step 8, so it spends no trial on the
published point that the first sweep measured.
"""

from __future__ import annotations

import pytest
import yaml
from fgi_platform import BIN, run_cli

pytestmark = pytest.mark.slow

TIMEOUT_S = 600


def _tune(mlflow_server, tmp_path, experiment: str, *extra: str) -> list[str]:
    return [str(BIN / "python"), "tune.py", "--dataset", "synthetic", "--budget", "smoke", "--scheduler", "none",
            "--num-samples", "2", "--max-concurrent", "1", "--mlflow-uri", mlflow_server.uri, "--experiment",
            experiment, "--storage", str(tmp_path / "storage"), "--best-dir", str(tmp_path / experiment), *extra]


def _trials(client, experiment: str) -> list:
    exp = client.get_experiment_by_name(experiment)
    return [r for r in client.search_runs([exp.experiment_id]) if r.data.tags.get("fgi.kind") == "trial"]


def _lr_ratio(client, run) -> float:
    """lr at step 8 over lr at step 4: a property of the schedule, whatever the trial's base lr."""
    lr = {m.step: m.value for m in client.get_metric_history(run.info.run_id, "lr")}
    return lr[8] / lr[4]


def test_a_warm_started_screening_stage(ray_head, mlflow_server, tmp_path):
    from mlflow.tracking import MlflowClient

    from fgi.budgets import apply_budget
    from fgi.config import Config
    from fgi.search.params import canonical
    from fgi.search.space import dataset_space

    env = dict(ray_head.env, RAY_ADDRESS=ray_head.gcs)
    run_cli(_tune(mlflow_server, tmp_path, "full-sweep", "--name", "full-sweep"), env, TIMEOUT_S)
    out = run_cli(_tune(mlflow_server, tmp_path, "screen", "--name", "screen", "--stop-step", "8",
                        "--warm-start", "mlflow:full-sweep", "--seed", "1"), env, TIMEOUT_S).stdout
    assert "warm start: 2 earlier run(s) told to the searcher" in out, out

    client = MlflowClient(mlflow_server.uri)
    space = dataset_space("synthetic", apply_budget(Config(), "smoke"))
    published = space.published_point()
    full, screen = _trials(client, "full-sweep"), _trials(client, "screen")
    assert len(full) == 2 and len(screen) == 2

    def values(run):
        return {k: canonical(yaml.safe_load(run.data.params[k])) for k in space.keys}

    def steps(run):
        return [m.step for m in client.get_metric_history(run.info.run_id, "val_dice")]

    first = [r for r in full if values(r) == published]
    assert len(first) == 1, "the first sweep ran the published point"
    assert all(values(r) != published for r in screen), "the warm start measured it: no trial re-ran it"
    assert all(steps(r)[-1] == 12 for r in full) and all(steps(r)[-1] == 8 for r in screen)
    # the stopped trials followed the 12-step schedule, not one compressed into 8 steps
    assert all(_lr_ratio(client, r) == pytest.approx(_lr_ratio(client, first[0]), rel=1e-6) for r in screen)

    exp = client.get_experiment_by_name("screen")
    parent = next(r for r in client.search_runs([exp.experiment_id]) if r.data.tags.get("fgi.kind") == "sweep")
    params = parent.data.params
    assert (params["sweep.stop_step"], params["sweep.warm_points"], params["sweep.warm_start"]) == \
        ("8", "2", "mlflow:full-sweep")
    header = (tmp_path / "screen" / "synthetic.yaml").read_text()
    assert "# screening stage: every trial stopped at step 8 of its 12-step schedule" in header
    assert "# warm start: TPE was told 2 earlier run(s) of mlflow:full-sweep" in header
