"""Sweep helpers that need no Ray: trial params for MLflow, the trial's one config build, importances."""

from __future__ import annotations

import numpy as np
import optuna
import pytest

from fgi.budgets import apply_budget
from fgi.config import Config, override
from fgi.search import sweep as search
from fgi.search.searchers import tpe_sampler
from fgi.search.settings import SweepOptions, new_record, saved_record
from fgi.search.space import OptunaDefineByRun, dataset_space
from fgi.search.sweep import ParamsOf, importances

BASE = apply_budget(Config(), "smoke")


def test_a_tpe_trial_config_builds_the_trial_config_in_one_override():
    space = dataset_space("synthetic", BASE)
    prepared = override(BASE, {"data.cache_dir": "/tmp/cache"})
    study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=1))
    trial = study.ask()
    # what OptunaSearch hands Tune: the searcher's own parameters, then the returned config values
    values = OptunaDefineByRun(space)(trial)
    config = {**trial.params, **values}
    assert "loss.align_scales|label" in config and isinstance(config["loss.align_scales"], list)
    cfg = override(prepared, {k: config[k] for k in space.keys})
    assert cfg.data.cache_dir == "/tmp/cache" and cfg.loss.align_scales == tuple(config["loss.align_scales"])
    params = ParamsOf(prepared, space.keys)(config)
    assert params["data.cache_dir"] == "/tmp/cache" and params["loss.tau_pos"] == config["loss.tau_pos"]
    assert not any("|" in k for k in params)


def test_importances_rank_the_key_the_score_depends_on():
    space = dataset_space("synthetic", BASE)
    rng = np.random.default_rng(0)
    points = []
    for _ in range(24):
        values = space.random_point(rng)
        points.append((values, 10.0 * values["loss.tau_pos"] + 0.01 * rng.uniform()))
    imps = importances(space, points, "max", seed=0)
    assert set(imps) == set(space.keys)
    assert max(imps, key=imps.get) == "loss.tau_pos"
    assert importances(space, points[:1], "max", seed=0) == {}


def _proposals(startup: int) -> list[float]:
    """Ten proposals of a 10-trial cpu sweep's sampler after three finished trials whose best is at x = 0.95."""
    record, _ = new_record(SweepOptions(dataset="synthetic", budget="cpu", name="t", startup_trials=startup))
    study = optuna.create_study(direction="maximize", sampler=tpe_sampler(record.seed, record.startup_trials))
    dist = optuna.distributions.FloatDistribution(0.0, 1.0)
    for x in (0.1, 0.5, 0.95):
        study.add_trial(optuna.trial.create_trial(params={"x": x}, distributions={"x": dist}, value=-(x - 0.95) ** 2))
    proposals = []
    for _ in range(10):
        trial = study.ask({"x": dist})
        proposals.append(trial.params["x"])
        study.tell(trial, state=optuna.trial.TrialState.FAIL)  # a running trial would weigh on the next proposal
    return proposals


def test_a_ten_trial_sweep_proposes_from_its_results_after_three_trials():
    # the default start-up of a 10-trial sweep is 3, so its 4th proposal on uses the results;
    # with Optuna's own default (10) the whole sweep would propose at random
    record, _ = new_record(SweepOptions(dataset="synthetic", budget="cpu", name="t"))
    assert record.num_samples == 10 and record.startup_trials == 3
    modelled, random = _proposals(3), _proposals(10)
    assert min(modelled) > 0.8, modelled
    assert min(random) < 0.5, random


def test_a_sweep_killed_before_ray_starts_is_resumable_by_name(tmp_path, monkeypatch):
    def killed(verbose: bool) -> None:
        raise KeyboardInterrupt  # the user's Ctrl-C (or a kill) as Ray starts, before any MLflow run exists

    monkeypatch.setenv("FGI_HOME", str(tmp_path / "home"))
    monkeypatch.setattr(search, "start_ray", killed)
    options = SweepOptions(dataset="synthetic", budget="smoke", name="k", storage=str(tmp_path / "runs"))
    with pytest.raises(KeyboardInterrupt):
        search.run_sweep(options)
    record, space = saved_record(SweepOptions(dataset="synthetic", resume=True, name="k"), str(tmp_path / "runs"))
    assert record.name == "k" and record.budget == "smoke" and space.base.train.max_steps == 12
    assert not (tmp_path / "home" / "mlflow.db").exists()
