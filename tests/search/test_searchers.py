"""The searcher registry: names to factories of Ray Tune search algorithms."""

from __future__ import annotations

import pytest
from ray.tune.search import BasicVariantGenerator, ConcurrencyLimiter
from ray.tune.search.optuna import OptunaSearch

from fgi.budgets import apply_budget
from fgi.config import Config, ConfigError
from fgi.search import searchers
from fgi.search.searchers import SearcherRequest, build_searcher
from fgi.search.space import dataset_space


@pytest.fixture
def request_():
    space = dataset_space("synthetic", apply_budget(Config(), "smoke"))
    return SearcherRequest(space=space, metric="val_dice", mode="max", seed=3, startup_trials=2, concurrent=2)


def test_tpe_is_a_limited_define_by_run_optuna_search(request_):
    searcher, param_space = build_searcher("tpe", request_)
    assert isinstance(searcher, ConcurrencyLimiter) and isinstance(searcher.searcher, OptunaSearch)
    assert searcher.max_concurrent == 2 and param_space == {}
    # the published point is proposed first
    first, point = searcher.suggest("t0"), request_.space.search_point(request_.space.published_point())
    assert point and all(first[k] == v for k, v in point.items())


def test_random_searches_the_tune_form_of_the_space(request_):
    searcher, param_space = build_searcher("random", request_)
    assert isinstance(searcher, BasicVariantGenerator)
    assert set(param_space) == set(request_.space.to_tune())


def test_an_unknown_searcher_lists_the_valid_ones(request_):
    with pytest.raises(ConfigError, match=r"unknown searcher 'cma'; valid searchers are \['nsga2', 'random', 'tpe'\]"):
        build_searcher("cma", request_)


def test_a_new_searcher_is_one_entry(request_, monkeypatch):
    seen = []

    def grid(req):
        seen.append(req)
        return "grid-searcher", {"x": 1}

    monkeypatch.setitem(searchers.SEARCHERS, "grid", grid)
    assert build_searcher("grid", request_) == ("grid-searcher", {"x": 1}) and seen == [request_]


def _tpe_with_length(request_, length):
    import dataclasses

    searcher, _ = build_searcher("tpe", dataclasses.replace(request_, length=length))
    return searcher


def test_tpe_learns_only_from_trials_that_ran_the_whole_stage(request_):
    import optuna

    searcher = _tpe_with_length(request_, 10)
    assert searcher.suggest("t0") is not None and searcher.suggest("t1") is not None
    assert searcher.suggest("t2") is None  # two at once
    searcher.on_trial_complete("t0", {"val_dice": 0.9, "step": 4})  # stopped by ASHA at its first rung
    assert searcher.suggest("t2") is not None  # the pruned trial freed its slot
    searcher.on_trial_complete("t1", {"val_dice": 0.5, "step": 10})
    searcher.on_trial_complete("t2", {"val_dice": 0.7, "step": 10})
    study = searcher.searcher._ot_study
    states = [(t.state, t.value) for t in study.get_trials(deepcopy=False)]
    assert states == [(optuna.trial.TrialState.PRUNED, None), (optuna.trial.TrialState.COMPLETE, 0.5),
                      (optuna.trial.TrialState.COMPLETE, 0.7)]
    assert searcher.live_trials == set()


def test_without_a_stage_length_every_completed_trial_is_told(request_):
    searcher = _tpe_with_length(request_, 0)
    searcher.suggest("t0")
    searcher.on_trial_complete("t0", {"val_dice": 0.4, "step": 3})
    assert [t.value for t in searcher.searcher._ot_study.get_trials(deepcopy=False)] == [0.4]


def test_several_objectives_make_a_multi_objective_study(request_):
    import dataclasses

    import optuna

    for name, sampler in (("tpe", optuna.samplers.TPESampler), ("nsga2", optuna.samplers.NSGAIISampler)):
        req = dataclasses.replace(request_, objectives=("val_dice", "infer_ms"), modes=("max", "min"), length=10)
        searcher, _ = build_searcher(name, req)
        study = searcher.searcher._ot_study
        assert isinstance(study.sampler, sampler)
        assert study.directions == [optuna.study.StudyDirection.MAXIMIZE, optuna.study.StudyDirection.MINIMIZE]
        searcher.suggest("t0"), searcher.suggest("t1")
        searcher.on_trial_complete("t0", {"val_dice": 0.6, "infer_ms": 3.0, "step": 10})
        searcher.on_trial_complete("t1", {"val_dice": 0.9, "infer_ms": 9.0, "step": 4})  # stopped early
        trials = study.get_trials(deepcopy=False)
        assert [(t.state, t.values) for t in trials] == [(optuna.trial.TrialState.COMPLETE, [0.6, 3.0]),
                                                         (optuna.trial.TrialState.PRUNED, None)]
