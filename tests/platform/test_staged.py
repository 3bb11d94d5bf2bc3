"""A staged search on a real Ray head and a real MLflow server: a screening stage warm-started from an earlier
sweep's MLflow trials, then the final stage over both.

The first sweep runs its trials to the end of the 12-step smoke schedule; the second stops its trials at step
8 of the same schedule and tells TPE the first sweep's trials at step 8, so it spends no trial on the
published point that the first sweep measured. The final stage ranks the trials of both at step 8 and runs the
best one and the published point with seeds 0 and 1 to step 12.
"""

from __future__ import annotations

import pytest
import yaml
from fgi_platform import BIN, run_cli

pytestmark = pytest.mark.slow

TIMEOUT_S = 600


def _tune(mlflow_server, tmp_path, experiment: str, *extra: str, trials: tuple[str, ...] = ("--num-samples", "2")
          ) -> list[str]:
    return [str(BIN / "python"), "tune.py", "--dataset", "synthetic", "--budget", "smoke", "--scheduler", "none",
            *trials, "--max-concurrent", "1", "--mlflow-uri", mlflow_server.uri, "--experiment",
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

    # the final stage: the best screened config and the published point, two seeds each, to the end
    out = run_cli(_tune(mlflow_server, tmp_path, "final", "--name", "final", "--final-stage", "mlflow:full-sweep",
                        "mlflow:screen", "--rank-step", "8", "--top-k", "1", "--stage-seeds", "0", "1",
                        "--max-concurrent", "2", trials=()),
                  env, TIMEOUT_S).stdout
    final = _trials(client, "final")
    assert len(final) == 4, out
    screened = {json_key(values(r)): r for r in full + screen}
    by_config: dict[str, set] = {}
    for r in final:
        by_config.setdefault(json_key(values(r)), set()).add(r.data.params["train.seed"])
        assert steps(r)[-1] == 12
    best_screened = max((r for r in full + screen if values(r) != published),
                        key=lambda r: {m.step: m.value for m in client.get_metric_history(r.info.run_id, "val_dice")}[8])
    assert by_config == {json_key(published): {"0", "1"}, json_key(values(best_screened)): {"0", "1"}}
    assert set(by_config) <= set(screened)
    exp = client.get_experiment_by_name("final")
    parent = next(r for r in client.search_runs([exp.experiment_id]) if r.data.tags.get("fgi.kind") == "sweep")
    params, metrics = parent.data.params, parent.data.metrics
    assert (params["sweep.stage"], params["sweep.top_k"], params["sweep.stage_seeds"], params["sweep.rank_step"]) == \
        ("final", "1", "0,1", "8")
    assert metrics["final_ci_low"] <= metrics["final_difference"] <= metrics["final_ci_high"]
    table = client.download_artifacts(parent.info.run_id, "final_stage.md", str(tmp_path))
    header = (tmp_path / "final" / "synthetic.yaml").read_text()
    winner_exported = metrics["final_ci_low"] > 0
    assert metrics["final_exported_winner"] == float(winner_exported)
    assert ("# exported top1: " in header) == winner_exported
    assert ("# exported the published point: " in header) != winner_exported
    assert "# final stage of a staged search: top 1 of mlflow:full-sweep, mlflow:screen by val_dice at step 8" in header
    assert "| published |" in open(table).read()
    exported = yaml.safe_load(header)
    assert canonical(exported["loss"]["tau_pos"]) == canonical(
        (values(best_screened) if winner_exported else published)["loss.tau_pos"])

    # the fidelity of the final stage's own trials (all ran to the end), logged on its parent run
    fid = run_cli([str(BIN / "fgi"), "fidelity", "--experiment", "final", "--mlflow-uri", mlflow_server.uri,
                   "--steps", "4", "8", "--samples", "200", "--log-to-run", parent.info.run_id], env, TIMEOUT_S).stdout
    assert "4 runs in experiment final (0 trial(s) stopped early left out)" in fid and "| val_dice | 8 | 4 |" in fid
    logged = open(client.download_artifacts(parent.info.run_id, "fidelity.md", str(tmp_path / "fid"))).read()
    assert "| val_dice | 4 | 4 |" in logged


def json_key(values: dict) -> str:
    import json

    return json.dumps({k: str(v) for k, v in sorted(values.items())})
