"""Search-space YAML: validation names the key, loose < tight always holds, conversion to Optuna and Ray Tune."""

from __future__ import annotations

import copy

import optuna
import pytest
import yaml

from fgi.budgets import BUDGETS, apply_budget, budget_overrides
from fgi.config import Config, ConfigError, from_dict
from fgi.datasets import DATASET_NAMES
from fgi.search.space import OptunaDefineByRun, SearchSpaceError, dataset_space, parse_space

BASE = apply_budget(Config(), "smoke")
SYN = yaml.safe_load(dataset_space("synthetic", BASE).text)


@pytest.mark.parametrize("dataset", DATASET_NAMES)
@pytest.mark.parametrize("budget", list(BUDGETS))
def test_shipped_spaces_validate_and_start_at_the_published_config(dataset, budget):
    space = dataset_space(dataset, apply_budget(from_dict({"data": {"dataset": dataset}}), budget))
    first = space.published_point()
    assert first["loss.tau_pos"] == 0.8 and first["loss.tau_neg"] == 0.2 and first["masking.mask_ratio"] == 0.3
    assert first["loss.align_scales"] == (1, 2, 3, 4)
    assert (first["data.tight_level"], first["data.loose_level"]) == (0.5, 0.3)
    covered = {"loss.tau_pos", "loss.tau_neg", "masking.mask_ratio", "masking.block_min", "masking.block_max",
               "loss.align_scales", "loss.align_weight", "loss.cwc_weight", "loss.rampup_fraction", "text.template",
               "data.tight_level", "data.loose_level", "optim.lr", "optim.weight_decay"}
    assert covered <= set(space.keys)


def _bad(mutate) -> str:
    data = copy.deepcopy(SYN)
    mutate(data)
    with pytest.raises(SearchSpaceError) as err:
        parse_space(data, BASE, "space.yaml")
    return str(err.value)


@pytest.mark.parametrize("mutate, needle", [
    (lambda d: d["params"].update({"loss.tau_poz": {"distribution": "uniform", "low": 0.6, "high": 0.9}}), "loss.tau_poz"),
    (lambda d: d["params"]["loss.tau_pos"].update({"high": 1.5}), "loss.tau_pos"),
    (lambda d: d["params"]["optim.lr"].update({"distribution": "gaussian"}), "optim.lr.distribution"),
    (lambda d: d["params"]["optim.lr"].update({"low": 0.0}), "optim.lr.low"),
    (lambda d: d["params"]["loss.rampup_fraction"].update({"distribution": "int"}), "loss.rampup_fraction"),
    (lambda d: d["params"]["loss.align_scales"].update({"choices": [[1, 9]]}), "loss.align_scales.choices"),
    (lambda d: d["params"]["text.template"].update({"choices": ["structured", "nonsense"]}), "text.template.choices"),
    (lambda d: d["params"]["data.loose_level"].update({"low": 0.45}), "data.loose_level"),
    (lambda d: d.update({"constraints": ["data.loose_level <= data.tight_level"]}), "constraints"),
    (lambda d: d["params"]["loss.tau_pos"].update({"low": 0.85}), "loss.tau_pos"),  # published 0.8 left out
    (lambda d: d.update({"extra": 1}), "extra"),
])
def test_invalid_spaces_name_the_key(mutate, needle):
    message = _bad(mutate)
    assert "space.yaml" in message and needle in message, message


def test_space_allowing_invalid_configs_fails_before_start():
    message = _bad(lambda d: d["params"].update({"masking.block_min": {"distribution": "uniform", "low": 0.01, "high": 0.2},
                                                 "masking.block_max": {"distribution": "uniform", "low": 0.04, "high": 0.25}}))
    assert "masking.block_min" in message


def test_tpe_keeps_loose_below_tight_and_starts_with_the_published_point():
    space = parse_space(SYN, BASE)
    study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=0, multivariate=True, n_startup_trials=5),
                                direction="maximize")
    study.enqueue_trial(space.search_point(space.published_point()))
    fn = OptunaDefineByRun(space)
    for i in range(25):
        trial = study.ask()
        values = fn(trial)
        if i == 0:
            assert values["data.loose_level"] == pytest.approx(0.3) and values["data.tight_level"] == 0.5
            assert values["loss.align_scales"] == [1, 2, 3, 4]
        assert values["data.loose_level"] < values["data.tight_level"]
        cfg = space.apply(values)  # every suggestion is a valid config
        study.tell(trial, cfg.data.tight_level - cfg.data.loose_level)


def test_tune_conversion_samples_valid_points():
    from ray.tune.search.variant_generator import generate_variants

    space = parse_space(SYN, BASE)
    for _, variant in zip(range(20), generate_variants(space.to_tune()), strict=False):
        config = variant[1]
        assert config["data.loose_level"] < config["data.tight_level"]
        values = space.values_of(config)
        assert values["loss.align_scales"] in ([1, 2, 3, 4], [2, 3, 4], [3, 4], [4], [])
        space.apply(values)
    first = next(generate_variants(space.to_tune(), constant_grid_search=True))[1]
    assert isinstance(first["data.loose_level"], float)


def test_budgets():
    full = budget_overrides("full")
    assert full["model.teacher_widths"] == (64, 128, 256, 512, 1024) and full["data.image_size"] == 224
    for name in ("smoke", "cpu", "laptop", "full"):
        assert not any(key.startswith(("loss.tau", "masking.", "text.")) for key in budget_overrides(name))
    with pytest.raises(ConfigError, match="smoke"):
        budget_overrides("tiny")
    smoke = apply_budget(Config(), "smoke")
    assert smoke.data.image_size == 32 and smoke.train.max_steps < Config().train.max_steps
