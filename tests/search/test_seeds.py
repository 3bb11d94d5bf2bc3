"""Repeated seeds per config: what the searcher proposes, what TPE is told, and what survives a resume."""

from __future__ import annotations

import optuna
import pytest

from fgi.budgets import apply_budget
from fgi.config import Config
from fgi.search.searchers import SearcherRequest, build_searcher
from fgi.search.seeds import SeedGroups
from fgi.search.space import dataset_space

COMPLETE, PRUNED, FAIL = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED,
                          optuna.trial.TrialState.FAIL)


def _searcher(seeds: int = 2, concurrent: int = 4, length: int = 10):
    space = dataset_space("synthetic", apply_budget(Config(), "smoke"))
    req = SearcherRequest(space=space, metric="val_dice", mode="max", seed=5, startup_trials=1,
                          concurrent=concurrent, length=length, seeds=seeds)
    return build_searcher("tpe", req)[0], space


def _study(limiter):
    return limiter.searcher.searcher._ot_study


def _searched(config, space):
    return {k: v for k, v in config.items() if k != "train.seed"}


def test_each_config_runs_once_per_seed_from_the_sweep_seed():
    searcher, space = _searcher(seeds=3, concurrent=6)
    assert isinstance(searcher.searcher, SeedGroups)
    configs = [searcher.suggest(f"t{i}") for i in range(6)]
    assert [c["train.seed"] for c in configs] == [5, 6, 7, 5, 6, 7]
    assert _searched(configs[0], space) == _searched(configs[1], space) == _searched(configs[2], space)
    assert _searched(configs[3], space) != _searched(configs[0], space)
    assert "__trial_index__" not in configs[0]
    # TPE saw two trials, one per config
    assert len(_study(searcher).get_trials(deepcopy=False)) == 2


def test_tpe_is_told_the_mean_once_every_seed_ended():
    searcher, _ = _searcher()
    for i in range(4):
        searcher.suggest(f"t{i}")
    searcher.on_trial_complete("t0", {"val_dice": 0.5, "step": 10})
    assert [t.state for t in _study(searcher).get_trials(deepcopy=False)] == [optuna.trial.TrialState.RUNNING] * 2
    searcher.on_trial_complete("t1", {"val_dice": 0.7, "step": 10})
    first = _study(searcher).get_trials(deepcopy=False)[0]
    assert first.state == COMPLETE and first.value == pytest.approx(0.6)


def test_a_group_with_a_seed_stopped_early_or_failed_is_not_told_a_value():
    searcher, _ = _searcher(seeds=2, concurrent=6)
    for i in range(6):
        searcher.suggest(f"t{i}")
    searcher.on_trial_complete("t0", {"val_dice": 0.9, "step": 10})
    searcher.on_trial_complete("t1", {"val_dice": 0.95, "step": 4})  # stopped before the stage's end
    searcher.on_trial_complete("t2", {"val_dice": 0.9, "step": 10})
    searcher.on_trial_complete("t3", None, error=True)  # one seed failed
    searcher.on_trial_complete("t4", None, error=True)
    searcher.on_trial_complete("t5", None, error=True)  # every seed failed
    assert [t.state for t in _study(searcher).get_trials(deepcopy=False)] == [PRUNED, PRUNED, FAIL]


def test_a_resumed_searcher_tells_a_group_once_with_all_its_seeds(tmp_path):
    searcher, _ = _searcher()
    for i in range(2):
        searcher.suggest(f"t{i}")
    searcher.on_trial_complete("t0", {"val_dice": 0.2, "step": 10})
    searcher.searcher.save(str(tmp_path / "state.pkl"))

    restored, _ = _searcher()
    restored.searcher.restore(str(tmp_path / "state.pkl"))
    restored.searcher.on_trial_complete("t0", {"val_dice": 0.9, "step": 10})  # told again after the restart
    restored.searcher.on_trial_complete("t1", {"val_dice": 0.4, "step": 10})
    trials = restored.searcher.searcher._ot_study.get_trials(deepcopy=False)
    assert [(t.state, t.value) for t in trials] == [(COMPLETE, pytest.approx(0.3))]
    # the next suggestion is a new config, seed 5 again
    assert restored.searcher.suggest("t2")["train.seed"] == 5


def test_one_seed_per_trial_keeps_the_plain_searcher():
    searcher, _ = _searcher(seeds=1)
    assert not isinstance(searcher.searcher, SeedGroups) and "train.seed" not in searcher.suggest("t0")


def test_a_screening_stage_counts_seeds_that_reached_its_stop_step():
    searcher, _ = _searcher(length=8)
    searcher.suggest("t0"), searcher.suggest("t1")
    searcher.on_trial_complete("t0", {"val_dice": 0.3, "step": 8})
    searcher.on_trial_complete("t1", {"val_dice": 0.5, "step": 8})
    assert _study(searcher).get_trials(deepcopy=False)[0].value == pytest.approx(0.4)
