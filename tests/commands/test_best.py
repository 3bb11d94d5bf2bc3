"""``fgi best``: the best finished sweep's portable config, written and named; a missing experiment is one line
on stderr and exit code 1."""

from __future__ import annotations

import pytest
import yaml

from fgi.budgets import apply_budget, portable_config_text
from fgi.cli import main
from fgi.config import Config, dump_yaml, override
from fgi.search.final import final_config

pytestmark = pytest.mark.slow  # creates a local MLflow store


def test_unknown_experiment_is_named(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("FGI_HOME", str(tmp_path))
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert main(["best", "--experiment", "fgi-none", "--mlflow-uri", uri, "--out", str(tmp_path / "b.yaml")]) == 1
    err = capsys.readouterr().err
    assert "--experiment: no experiment 'fgi-none'" in err and "Traceback" not in err
    assert not (tmp_path / "b.yaml").exists()


def _sweep(uri, tmp_path, name, budget, dice, text):
    from fgi import tracking

    t = tracking.SweepTracker(uri, "fgi-synthetic", name, "synthetic", storage=tmp_path / name)
    t.start("params: {}", Config(), {"budget": budget, "metric": "val_dice"})
    t.finish({"step": 12, "val_dice": dice, "trial_id": "t1"}, text, None)
    return t.parent_run_id


def test_best_writes_the_best_sweeps_portable_config_and_names_it(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("FGI_HOME", str(tmp_path))
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    tuned = override(apply_budget(Config(), "cpu"), {"loss.tau_pos": 0.71, "data.image_size": 40})
    portable = portable_config_text(tuned, ["loss.tau_pos", "data.image_size"], "fgi best config of sweep long\ntrial t1")
    long = _sweep(uri, tmp_path, "long", "cpu", 0.8, portable)
    legacy = _sweep(uri, tmp_path, "legacy", "cpu", 0.6, dump_yaml(override(tuned, {"loss.tau_pos": 0.66})))
    _sweep(uri, tmp_path, "smoke", "smoke", 0.5, portable.replace("0.71", "0.55"))  # newest, worse

    out = tmp_path / "best.yaml"
    assert main(["best", "--experiment", "fgi-synthetic", "--mlflow-uri", uri, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert f"chose sweep long (run {long}): best_val_dice 0.8000, budget cpu" in printed and "of 3 finished" in printed
    text = out.read_text()
    assert text == f"# fetched by fgi best from MLflow run {long} (experiment fgi-synthetic, {uri})\n{portable}"
    assert yaml.safe_load(text)["data"]["image_size"] == 40 and "max_steps" not in yaml.safe_load(text)["train"]
    # the fetched file is what train.py --config takes, the budget giving the compute
    cfg, _ = final_config(config=out, budget="smoke")
    assert cfg.loss.tau_pos == 0.71 and cfg.train.max_steps == 12 and cfg.data.dataset == "synthetic"

    assert main(["best", "--experiment", "fgi-synthetic", "--mlflow-uri", uri, "--out", str(out), "--sweep", "legacy"]) == 0
    assert f"chose sweep legacy (run {legacy})" in capsys.readouterr().out
    data = yaml.safe_load(out.read_text())  # a full config logged before the portable form is converted
    assert data["loss"]["tau_pos"] == 0.66 and "image_size" not in data["data"] and "max_steps" not in data["train"]

    assert main(["best", "--experiment", "fgi-synthetic", "--mlflow-uri", uri, "--out", str(out), "--budget", "smoke"]) == 0
    assert "chose sweep smoke" in capsys.readouterr().out and "tau_pos: 0.55" in out.read_text()
