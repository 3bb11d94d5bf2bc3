"""Sweep helpers that need no Ray: trial params for MLflow, the trial's one config build, importances."""

from __future__ import annotations

import numpy as np
import optuna

from fgi.budgets import apply_budget
from fgi.config import Config, override
from fgi.search import ParamsOf, importances
from fgi.search_space import OptunaDefineByRun, dataset_space

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
