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
    with pytest.raises(ConfigError, match=r"unknown searcher 'cma'; valid searchers are \['random', 'tpe'\]"):
        build_searcher("cma", request_)


def test_a_new_searcher_is_one_entry(request_, monkeypatch):
    seen = []

    def grid(req):
        seen.append(req)
        return "grid-searcher", {"x": 1}

    monkeypatch.setitem(searchers.SEARCHERS, "grid", grid)
    assert build_searcher("grid", request_) == ("grid-searcher", {"x": 1}) and seen == [request_]
