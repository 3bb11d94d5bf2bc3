"""A multi-objective sweep (val Dice up, inference ms per image down) on a real Ray head and MLflow server, and
``fgi best --pick`` choosing another point of its front by a stated rule."""

from __future__ import annotations

import json

import pytest
import yaml
from fgi_platform import BIN, run_cli, smoke_sweep

pytestmark = pytest.mark.slow

TIMEOUT_S = 600


def _dominated(run, others) -> bool:
    a = run.data.metrics
    return any(o.data.metrics["val_dice"] >= a["val_dice"] and o.data.metrics["infer_ms"] <= a["infer_ms"]
               and (o.data.metrics["val_dice"] > a["val_dice"] or o.data.metrics["infer_ms"] < a["infer_ms"])
               for o in others if o is not run)


def test_a_two_objective_sweep_logs_its_front_and_best_picks_by_rule(ray_head, mlflow_server, tmp_path):
    from mlflow.tracking import MlflowClient

    env = dict(ray_head.env, RAY_ADDRESS=ray_head.gcs)
    cmd = smoke_sweep(mlflow_server, tmp_path, "mo", "--metric", "val_dice", "--metric", "infer_ms",
                      "--num-samples", "3", "--max-concurrent", "2")
    run_cli(cmd, env, TIMEOUT_S)

    client = MlflowClient(mlflow_server.uri)
    exp = client.get_experiment_by_name("mo")
    runs = client.search_runs([exp.experiment_id])
    trials = [r for r in runs if r.data.tags.get("fgi.kind") == "trial"]
    parent = next(r for r in runs if r.data.tags.get("fgi.kind") == "sweep")
    assert len(trials) == 3 and all("infer_ms" in r.data.metrics and "infer_mparams" in r.data.metrics for r in trials)
    # the tagged trials are exactly the non-dominated ones, by the children's own last values
    on = [r for r in trials if r.data.tags.get("fgi.pareto_front") == "true"]
    assert on and {r.info.run_id for r in on} == {r.info.run_id for r in trials if not _dominated(r, trials)}
    # the front so far, logged as each trial finished: one point per finished trial, the last one the final front
    sizes = sorted((m.step, m.value) for m in client.get_metric_history(parent.info.run_id, "pareto_front_size"))
    assert [step for step, _ in sizes] == [1, 2, 3] and sizes[0][1] == 1 and sizes[-1][1] == len(on)
    names = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert {"pareto_front.md", "pareto_front.json", "pareto_front.png", "best_config.yaml"} <= names
    assert parent.data.params["sweep.objectives"] == "val_dice,infer_ms"
    front = json.load(open(client.download_artifacts(parent.info.run_id, "pareto_front.json", str(tmp_path))))
    assert front["modes"] == {"val_dice": "max", "infer_ms": "min"} and len(front["points"]) == len(on)

    header = (tmp_path / "best" / "synthetic.yaml").read_text()
    assert "# multi-objective: val_dice (max), infer_ms (min); Pareto front of" in header
    assert "exported by rule 'best val_dice'" in header
    best_dice = max(on, key=lambda r: r.data.metrics["val_dice"])
    assert yaml.safe_load(header)["loss"]["tau_pos"] == pytest.approx(float(best_dice.data.params["loss.tau_pos"]))

    # the fastest point of the front, by a rule that keeps only the front's best infer_ms
    out = tmp_path / "picked.yaml"
    res = run_cli([str(BIN / "fgi"), "best", "--experiment", "mo", "--sweep", "mo", "--mlflow-uri", mlflow_server.uri,
                   "--pick", "best val_dice with infer_ms within 0%", "--out", str(out)], env, 120)
    fastest = min(on, key=lambda r: r.data.metrics["infer_ms"])
    text = out.read_text()
    assert f"# picked trial {fastest.data.tags['fgi.trial_id']} by rule 'best val_dice with infer_ms within 0%'" in text
    assert yaml.safe_load(text)["loss"]["tau_pos"] == pytest.approx(float(fastest.data.params["loss.tau_pos"]))
    assert str(out) in res.stdout
    bad = run_cli_status([str(BIN / "fgi"), "best", "--experiment", "mo", "--sweep", "mo", "--mlflow-uri",
                          mlflow_server.uri, "--pick", "best val_hd95", "--out", str(tmp_path / "x.yaml")], env)
    assert bad.returncode == 2 and "'val_hd95' is not an objective of this front" in bad.stderr
    assert not (tmp_path / "x.yaml").exists()


def run_cli_status(args, env):
    import subprocess

    from fgi_platform import REPO

    return subprocess.run(args, env=env, cwd=REPO, capture_output=True, text=True, timeout=120)
