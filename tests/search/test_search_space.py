"""Search-space files: the shipped spaces share one base, extends merges key by key, errors name the file."""

from __future__ import annotations

import pytest
import yaml

from fgi.budgets import apply_budget
from fgi.config import Config, from_dict
from fgi.datasets import DATASET_NAMES
from fgi.search.space import (
    FRACTION,
    SearchSpaceError,
    dataset_space,
    load_space,
    shipped_spaces,
    space_from_text,
)

BASE = apply_budget(Config(), "smoke")


def _entries(space) -> dict:
    return yaml.safe_load(space.text)["params"]


def test_every_registered_dataset_ships_a_space():
    assert set(shipped_spaces()) == set(DATASET_NAMES)


def test_real_datasets_share_the_base_space_and_synthetic_changes_two_entries():
    spaces = {d: dataset_space(d, apply_budget(from_dict({"data": {"dataset": d}}), "smoke")) for d in DATASET_NAMES}
    kvasir = _entries(spaces["kvasir"])
    assert _entries(spaces["isic"]) == kvasir and _entries(spaces["nci-isbi"]) == kvasir
    synthetic = _entries(spaces["synthetic"])
    assert list(synthetic) == list(kvasir), "overrides keep the drawing order of the base"
    assert {k for k in kvasir if synthetic[k] != kvasir[k]} == {"loss.rampup_fraction", "optim.lr"}
    assert synthetic["optim.lr"] == {"distribution": "loguniform", "low": 3.0e-4, "high": 1.0e-2}


def test_user_file_extends_a_shipped_space_and_drops_an_entry(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text("extends: kvasir.yaml\nparams:\n  loss.tau_pos: {distribution: uniform, low: 0.7, high: 0.9}\n"
                    "  optim.weight_decay: null\n")
    space = load_space(path, BASE)
    assert space.param("loss.tau_pos").low == 0.7 and "optim.weight_decay" not in space.keys
    assert "loss.align_scales" in space.keys and [str(c) for c in space.constraints] == ["data.loose_level < data.tight_level"]
    again = space_from_text(space.text, BASE, "stored")  # the stored text is self-contained
    assert again.params == space.params and again.constraints == space.constraints


def test_extends_looks_next_to_the_file_first(tmp_path):
    (tmp_path / "base.yaml").write_text("params:\n  loss.tau_pos: {distribution: uniform, low: 0.6, high: 0.9}\n")
    (tmp_path / "child.yaml").write_text("extends: base.yaml\nparams:\n  optim.lr: {distribution: loguniform, low: 1.0e-4, high: 1.0e-2}\n")
    assert load_space(tmp_path / "child.yaml", BASE).keys == ["loss.tau_pos", "optim.lr"]


@pytest.mark.parametrize("text, needle", [
    ("extends: nowhere.yaml\n", "extends: 'nowhere.yaml' is neither next to the file nor a shipped space"),
    ("extends: 3\n", "extends: expected a file name"),
    ("extends: self.yaml\n", "extends itself"),
    ("extends: kvasir.yaml\nparams:\n  loss.cwc_form: null\n", "loss.cwc_form: null drops an inherited entry"),
    ("extends: kvasir.yaml\nparams: [1]\n", "params: expected a mapping"),
    ("extends: kvasir.yaml\nrandom: 1\n", "random: unknown top-level key"),
    ("params:\n  optim.lr: {distribution: uniform, low: 0.001, high: 0.01}\n  optim.lr: {distribution: uniform, low: 0.001, high: 0.1}\n",
     "duplicate key 'optim.lr'"),
])
def test_file_errors_name_the_file(tmp_path, text, needle):
    path = tmp_path / "self.yaml"
    path.write_text(text)
    with pytest.raises(SearchSpaceError) as err:
        load_space(path, BASE)
    assert str(path) in str(err.value) and needle in str(err.value), str(err.value)


def test_missing_file_and_unknown_dataset_are_named(tmp_path):
    with pytest.raises(SearchSpaceError, match="absent.yaml: search space file not found"):
        load_space(tmp_path / "absent.yaml", BASE)
    with pytest.raises(SearchSpaceError, match="base: no shipped search space"):
        dataset_space("base", BASE)


def test_tune_first_point_resolves_to_the_published_values():
    from ray.tune.search.variant_generator import generate_variants

    space = dataset_space("synthetic", BASE)
    published = space.published_point()
    first = space.search_point(published)
    assert "data.loose_level" + FRACTION in first and first["loss.align_scales|label"] == "1,2,3,4"
    _, config = next(generate_variants({**space.to_tune(), **first}))
    values = space.values_of(config)
    assert values["loss.align_scales"] == [1, 2, 3, 4] and values["text.template"] == published["text.template"]
    assert values["data.loose_level"] == pytest.approx(published["data.loose_level"])
    cfg = space.apply(values)
    assert cfg.loss.align_scales == (1, 2, 3, 4) and cfg.optim.lr == published["optim.lr"]


COND = ("params:\n  text.mode: {distribution: categorical, choices: [tokens, pooled, none]}\n"
        "  model.predictor: {distribution: categorical, choices: [student, teacher, ensemble]}\n"
        "  optim.lr: {distribution: loguniform, low: 1.0e-4, high: 1.0e-2}\n"
        "conditions:\n  model.predictor: {text.mode: [none]}\n  optim.lr: {text.mode: [pooled]}\n")


def _combos(points) -> set:
    return {(p["text.mode"], p["model.predictor"], p["optim.lr"] == BASE.optim.lr) for p in points}


def test_conditional_keys_keep_the_base_value_unless_their_parent_allows_them(tmp_path):
    import numpy as np
    import optuna

    path = tmp_path / "cond.yaml"
    path.write_text(COND)
    space = load_space(path, BASE)
    assert space.keys[0] == "text.mode", "parents are drawn first"
    rng = np.random.default_rng(0)
    drawn = _combos(space.random_point(rng) for _ in range(200))
    # a predictor other than the student only with an image-only teacher; lr moves only under pooled
    assert {(m, p) for m, p, _ in drawn} == {("tokens", "student"), ("pooled", "student"), ("none", "student"),
                                              ("none", "teacher"), ("none", "ensemble")}
    assert {(m, kept) for m, _, kept in drawn} == {("tokens", True), ("none", True), ("pooled", False)}

    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    tpe_points = []
    for _ in range(60):
        trial = study.ask()
        tpe_points.append(space.suggest(trial))
        study.tell(trial, 0.0)
        # Optuna never sees an inactive key, so TPE models it only where it is searched
        assert ("model.predictor|label" in trial.params) == (trial.params["text.mode|label"] == "none")
    assert _combos(tpe_points) <= drawn and len({p["model.predictor"] for p in tpe_points}) == 3

    published = space.published_point()
    assert set(space.search_point(published)) == {"text.mode|label"}, "inactive keys are not searcher parameters"


def test_tune_draws_conditional_keys_under_their_parent():
    from ray.tune.search.variant_generator import generate_variants

    space = space_from_text(COND, BASE, "cond")
    tune_space = space.to_tune()
    seen = set()
    for _ in range(40):
        _, config = next(generate_variants(tune_space))
        seen |= _combos([space.values_of(config)])
    assert {(m, p) for m, p, _ in seen} <= {("tokens", "student"), ("pooled", "student"), ("none", "student"),
                                             ("none", "teacher"), ("none", "ensemble")}
    assert ("none", "ensemble", True) in seen or ("none", "teacher", True) in seen
    assert all(kept == (m != "pooled") for m, _, kept in seen) and ("pooled", "student", False) in seen


@pytest.mark.parametrize("conditions, needle", [
    ("  loss.tau_pos: {text.mode: [none]}\n", "conditions: loss.tau_pos: not a searched key"),
    ("  model.predictor: {optim.lr: [0.001]}\n", "parent optim.lr must be a categorical key"),
    ("  model.predictor: {text.mode: [words]}\n", "'words' is not a choice of text.mode"),
    ("  model.predictor: {text.mode: []}\n", "must be a non-empty list"),
    ("  model.predictor: none\n", "expected one parent key"),
    ("  model.predictor: {text.mode: [none]}\n  text.mode: {model.predictor: [student]}\n", "chains are not supported"),
])
def test_condition_errors_name_the_file_and_key(tmp_path, conditions, needle):
    path = tmp_path / "bad.yaml"
    path.write_text(COND.split("conditions:")[0] + "conditions:\n" + conditions)
    with pytest.raises(SearchSpaceError) as err:
        load_space(path, BASE)
    assert str(path) in str(err.value) and needle in str(err.value), str(err.value)


def test_shipped_space_searches_the_predictor_only_with_an_image_only_teacher():
    space = dataset_space("kvasir", apply_budget(from_dict({"data": {"dataset": "kvasir"}}), "smoke"))
    assert [str(c) for c in space.conditions] == ["model.predictor when text.mode in ['none']"]
    again = space_from_text(space.text, space.base, "stored")
    assert again.conditions == space.conditions
