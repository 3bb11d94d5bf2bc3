"""Top-k ensembles of a real sweep on a real Ray head and MLflow server: chosen, scored, logged, registered,
released at half precision, and read back by ``fgi evaluate`` and ``fgi predict``."""

from __future__ import annotations

import json

import pytest
from fgi_platform import BIN, run_cli

pytestmark = pytest.mark.slow

TIMEOUT_S = 600


def test_an_ensemble_of_a_sweeps_best_trials(ray_head, mlflow_server, tmp_path):
    from mlflow.tracking import MlflowClient

    env = dict(ray_head.env, RAY_ADDRESS=ray_head.gcs)
    run_cli([str(BIN / "python"), "tune.py", "--dataset", "synthetic", "--budget", "smoke", "--scheduler", "none",
             "--num-samples", "3", "--max-concurrent", "1", "--mlflow-uri", mlflow_server.uri, "--experiment",
             "ens", "--name", "ens-sweep", "--storage", str(tmp_path / "storage"), "--best-dir",
             str(tmp_path / "best")], env, TIMEOUT_S)
    client = MlflowClient(mlflow_server.uri)
    exp = client.get_experiment_by_name("ens")
    runs = client.search_runs([exp.experiment_id])
    trials = [r for r in runs if r.data.tags.get("fgi.kind") == "trial"]
    parent = next(r for r in runs if r.data.tags.get("fgi.kind") == "sweep")
    assert len(trials) == 3 and all(r.data.tags["fgi.outcome"] == "finished" for r in trials)
    ranked = sorted(trials, key=lambda r: -r.data.metrics["best_val_dice"])

    out = run_cli([str(BIN / "fgi"), "ensemble", "--experiment", "ens", "--sweep", "ens-sweep", "--top", "2",
                   "--out", str(tmp_path / "ensemble"), "--mlflow-uri", mlflow_server.uri], env, TIMEOUT_S).stdout
    assert "registered as fgi-synthetic-ensemble version 1" in out, out
    info = json.loads((tmp_path / "ensemble" / "ensemble.json").read_text())
    assert [m["run_id"] for m in info["members"]] == [r.info.run_id for r in ranked[:2]]
    for member, trial in zip(info["members"], ranked, strict=False):
        # the member's val Dice, scored image-only here, is the Dice its trial logged for that checkpoint
        assert member["metrics"]["val_dice"] == pytest.approx(trial.data.metrics["best_val_dice"], abs=1e-4)

    run = next(r for r in client.search_runs([exp.experiment_id]) if r.data.tags.get("fgi.kind") == "ensemble")
    assert run.data.tags["mlflow.parentRunId"] == parent.info.run_id and run.info.status == "FINISHED"
    assert json.loads(run.data.params["ensemble.members"]) == [m["run_id"] for m in info["members"]]
    assert run.data.metrics["val_dice"] == pytest.approx(info["val"]["val_dice"])
    assert run.data.metrics["val_dice_gain_ci_low"] <= run.data.metrics["val_dice_gain"] \
        <= run.data.metrics["val_dice_gain_ci_high"]
    report = open(client.download_artifacts(run.info.run_id, "ensemble.md", str(tmp_path / "dl"))).read()
    assert "| member | trial | run |" in report

    # the registered model is the same ensemble: fgi evaluate on val gives the Dice fgi ensemble logged
    scored = run_cli([str(BIN / "fgi"), "evaluate", "--model", "models:/fgi-synthetic-ensemble/1", "--split", "val",
                      "--mlflow-uri", mlflow_server.uri], env, TIMEOUT_S).stdout
    assert json.loads(scored)["val_dice"] == pytest.approx(info["val"]["val_dice"], abs=1e-6)

    # a half-precision release of it: smaller, same val Dice to 3 decimals, and fgi predict reads it
    released = run_cli([str(BIN / "fgi"), "release", "--model", str(tmp_path / "ensemble"), "--out",
                        str(tmp_path / "released")], env, TIMEOUT_S).stdout
    assert "(release, fp16)" in released, released
    size = sum(p.stat().st_size for p in (tmp_path / "released").rglob("*.pt"))
    assert size < 0.6 * sum(p.stat().st_size for p in (tmp_path / "ensemble").rglob("*.pt"))
    images = tmp_path / "synth"
    run_cli([str(BIN / "fgi"), "synth", "--out", str(images), "--budget", "smoke", "--train", "2", "--val", "2",
             "--test", "2"], env, TIMEOUT_S)
    run_cli([str(BIN / "fgi"), "predict", "--model", str(tmp_path / "released"), "--images",
             str(images / "images"), "--out", str(tmp_path / "masks")], env, TIMEOUT_S)
    assert len(list((tmp_path / "masks").glob("*_mask.png"))) == len(list((images / "images").iterdir()))
