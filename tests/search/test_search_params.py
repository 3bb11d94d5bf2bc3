"""One parameter type per distribution: parsing through the config's own checks, Optuna and Tune forms."""

from __future__ import annotations

import optuna
import pytest

from fgi.search.params import Categorical, IntParam, LogUniform, SearchSpaceError, Uniform, parse_param


def _parse(key: str, **entry):
    return parse_param("space.yaml", key, entry)


def test_each_distribution_gets_its_own_type_with_canonical_bounds():
    assert _parse("loss.tau_pos", distribution="uniform", low=0.6, high=0.9) == Uniform("loss.tau_pos", 0.6, 0.9)
    lr = _parse("optim.lr", distribution="loguniform", low=1e-4, high=1e-2)
    assert isinstance(lr, LogUniform) and lr.log
    steps = _parse("train.seed", distribution="int", low=0.0, high=100, step=10)
    assert steps == IntParam("train.seed", 0, 100, 10) and isinstance(steps.low, int)
    scales = _parse("loss.align_scales", distribution="categorical", choices=[[1, 2], [3], []])
    assert scales == Categorical("loss.align_scales", ((1, 2), (3,), ()))


@pytest.mark.parametrize("key, entry, needle", [
    ("loss.tau_pos", {"distribution": "uniform", "low": 0.6, "high": 1.5}, "loss.tau_pos.high: 1.5 is outside [0.5, 1.0]"),
    ("loss.tau_pos", {"distribution": "uniform", "low": "a", "high": 0.9}, "loss.tau_pos.low: expected a number"),
    ("loss.tau_pos", {"distribution": "uniform", "high": 0.9}, "loss.tau_pos.low: missing"),
    ("loss.tau_pos", {"distribution": "uniform", "low": 0.9, "high": 0.6}, "loss.tau_pos: low 0.9 must be below high 0.6"),
    ("train.seed", {"distribution": "uniform", "low": 0, "high": 10}, "train.seed: uniform needs a float field"),
    ("optim.lr", {"distribution": "int", "low": 1, "high": 10}, "optim.lr: int needs an integer field"),
    ("optim.weight_decay", {"distribution": "loguniform", "low": 0.0, "high": 0.1}, "optim.weight_decay.low: loguniform"),
    ("train.seed", {"distribution": "int", "low": 0, "high": 2.5}, "train.seed.high: expected an integer"),
    ("train.seed", {"distribution": "int", "low": 0, "high": 25, "step": 10}, "train.seed.step: 10 does not"),
    ("train.seed", {"distribution": "int", "low": 1, "high": 21, "step": 10, "log": True}, "train.seed.log"),
    ("loss.align_scales", {"distribution": "categorical", "choices": [[1], [1]]}, "loss.align_scales.choices: repeated"),
    ("loss.align_scales", {"distribution": "categorical", "choices": [[1, 9]]}, "loss.align_scales.choices[0][1]: 9 is outside"),
    ("model.predictor", {"distribution": "categorical", "choices": ["student", "oracle"]}, "model.predictor.choices[1]"),
    ("loss.tau_pos", {"distribution": "uniform", "low": 0.6, "high": 0.9, "step": 2}, "loss.tau_pos.step: not allowed"),
    ("loss.tau_poz", {"distribution": "uniform", "low": 0.6, "high": 0.9}, "loss.tau_poz: unknown key"),
])
def test_errors_name_the_file_and_the_key(key, entry, needle):
    with pytest.raises(SearchSpaceError) as err:
        parse_param("space.yaml", key, entry)
    assert str(err.value).startswith("space.yaml: ") and needle in str(err.value), str(err.value)


def test_categorical_of_lists_uses_scalar_labels_for_searchers():
    p = _parse("loss.align_scales", distribution="categorical", choices=[[1, 2], [3], []])
    assert p.labels() == ["1,2", "3", "none"] and p.search_name == "loss.align_scales|label"
    assert p.from_label("none") == () and p.search_value([1, 2]) == "1,2"
    assert p.contains([3]) and p.contains((3,)) and not p.contains([4])
    with pytest.raises(SearchSpaceError, match="loss.align_scales"):
        p.from_label("4")
    assert p.suggest(optuna.trial.FixedTrial({"loss.align_scales|label": "3"})) == (3,)


def test_optuna_and_tune_forms_agree_on_the_range():
    from ray.tune.search.sample import Categorical as TuneCategorical
    from ray.tune.search.sample import Function, Integer

    steps = _parse("train.seed", distribution="int", low=0, high=100, step=10)
    dist = steps.optuna_distribution()
    assert (dist.low, dist.high, dist.step) == (0, 100, 10)
    assert steps.suggest(optuna.trial.FixedTrial({"train.seed": 30})) == 30
    assert isinstance(steps.to_tune()["train.seed"], Integer)
    lr = _parse("optim.lr", distribution="loguniform", low=1e-4, high=1e-2)
    assert lr.optuna_distribution().log and lr.at(0.5) == pytest.approx(1e-3)
    assert lr.fraction_of(lr.at(0.25)) == pytest.approx(0.25)
    tune_space = _parse("loss.align_scales", distribution="categorical", choices=[[1, 2], []]).to_tune()
    assert isinstance(tune_space["loss.align_scales|label"], TuneCategorical)
    assert isinstance(tune_space["loss.align_scales"], Function)
