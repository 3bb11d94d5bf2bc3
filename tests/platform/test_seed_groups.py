"""A sweep that runs every config with two seeds, on a real Ray head and a real MLflow server.

Two configs x two seeds of the 12-step smoke schedule: four trials. Each child run carries its group and seed,
each group's mean and spread are logged on its children, the parent's best is the best group's mean, the
exported config is that group's and its header says so.
"""

from __future__ import annotations

import statistics

import pytest
import yaml
from fgi_platform import run_cli, smoke_sweep

pytestmark = pytest.mark.slow

TIMEOUT_S = 600


def test_a_sweep_with_two_seeds_per_config(ray_head, mlflow_server, tmp_path):
    from mlflow.tracking import MlflowClient

    env = dict(ray_head.env, RAY_ADDRESS=ray_head.gcs)
    cmd = smoke_sweep(mlflow_server, tmp_path, "seeds", "--num-samples", "2", "--seeds-per-trial", "2", "--seed", "3",
                      "--max-concurrent", "2")
    out = run_cli(cmd, env, TIMEOUT_S).stdout
    assert "2 configs x 2 seeds = 4 trials" in out, out

    client = MlflowClient(mlflow_server.uri)
    exp = client.get_experiment_by_name("seeds")
    runs = client.search_runs([exp.experiment_id])
    trials = [r for r in runs if r.data.tags.get("fgi.kind") == "trial"]
    parent = next(r for r in runs if r.data.tags.get("fgi.kind") == "sweep")
    assert len(trials) == 4
    groups: dict[str, list] = {}
    for r in trials:
        groups.setdefault(r.data.tags["fgi.seed_group"], []).append(r)
    assert len(groups) == 2
    means = {}
    for gid, members in groups.items():
        assert sorted(r.data.tags["fgi.seed"] for r in members) == ["3", "4"]
        assert sorted(r.data.params["train.seed"] for r in members) == ["3", "4"]
        tuned = {r.data.params["loss.tau_pos"] for r in members}
        assert len(tuned) == 1, "the seeds of a group ran one config"
        best = [r.data.metrics["best_val_dice"] for r in members]
        means[gid] = statistics.mean(best)
        for r in members:
            assert r.data.metrics["seed_mean_val_dice"] == pytest.approx(means[gid])
            assert r.data.metrics["seed_std_val_dice"] == pytest.approx(statistics.stdev(best))
    winner = max(means, key=means.__getitem__)
    assert parent.data.metrics["best_val_dice"] == pytest.approx(means[winner])
    assert parent.data.params["sweep.seeds_per_trial"] == "2"
    assert parent.data.tags["fgi.best_so_far_group"] == winner
    history = client.get_metric_history(parent.info.run_id, "best_so_far_val_dice")
    assert sorted(m.step for m in history) == [1, 2], "one best-so-far point per whole group"
    table = open(client.download_artifacts(parent.info.run_id, "seed_groups.md", str(tmp_path))).read()
    assert f"| {winner} | 3 4 |" in table

    header = (tmp_path / "best" / "synthetic.yaml").read_text()
    assert f"# best group {winner}, seeds 3 4:" in header
    assert "# seed groups: every config ran with 2 seeds; 2 whole group(s) ranked by their mean val_dice" in header
    exported = yaml.safe_load(header)
    winner_tau = groups[winner][0].data.params["loss.tau_pos"]
    assert exported["loss"]["tau_pos"] == pytest.approx(float(winner_tau))
