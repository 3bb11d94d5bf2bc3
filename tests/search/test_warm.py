"""Warm start: which earlier runs are told to TPE, at which step's value, and what TPE then proposes."""

from __future__ import annotations

import json
from pathlib import Path

import optuna
import pytest

from fgi.budgets import apply_budget
from fgi.config import Config, ConfigError, override, to_dict
from fgi.search.finished import tell_study
from fgi.search.searchers import SearcherRequest, build_searcher
from fgi.search.space import dataset_space
from fgi.search.warm import warm_start

BASE = apply_budget(Config(), "smoke")  # 12 steps, an evaluation every 4
SPACE = dataset_space("synthetic", BASE)


def _record(folder, name: str, changes: dict, curve: dict[int, float]) -> None:
    cfg = override(BASE, changes)
    rows = [{"step": s, "val_dice": v, "val_iou": v / 2} for s, v in curve.items()]
    (folder / f"{name}.json").write_text(json.dumps({"arm": name, "config": to_dict(cfg), "curve": rows}))


@pytest.fixture
def records(tmp_path):
    full = {4: 0.2, 8: 0.5, 12: 0.7}
    _record(tmp_path, "good", {"loss.tau_pos": 0.7, "train.seed": 5, "data.root": "/elsewhere"}, full)
    _record(tmp_path, "ensemble", {"text.mode": "none", "model.predictor": "ensemble"}, {4: 0.3, 8: 0.6, 12: 0.8})
    _record(tmp_path, "other_method", {"train.method": "student_only"}, full)
    _record(tmp_path, "other_size", {"data.image_size": 64}, full)
    _record(tmp_path, "short", {"loss.tau_pos": 0.9}, {4: 0.2})
    _record(tmp_path, "outside", {"loss.tau_pos": 0.99}, full)
    _record(tmp_path, "text_teacher_predicts", {"model.predictor": "teacher"}, full)
    (tmp_path / "broken.json").write_text("{not json")
    return tmp_path


def test_only_runs_of_the_sweeps_method_and_fidelity_are_told_at_the_stop_step(records):
    warm = warm_start([str(records)], SPACE, "val_dice", 8, "")
    assert sorted((p.name, p.value) for p in warm.points) == [("ensemble", 0.6), ("good", 0.5)]
    good = next(p for p in warm.points if p.name == "good")
    assert good.values["loss.tau_pos"] == 0.7 and set(good.values) == set(SPACE.keys)
    assert warm.skipped == {
        "differ from the sweep's base config on train.method": 1,
        "differ from the sweep's base config on data.image_size": 1,
        "have no value at step 8": 1,
        "have loss.tau_pos outside the space": 1,
        "set model.predictor, which this space keeps fixed there": 1,
    } | {k: 1 for k in warm.skipped if k.startswith("unreadable records (broken.json")}
    assert len(warm.skipped) == 6 and "2 earlier run(s) told" in warm.summary() and "6 left out" in warm.summary()
    # a full-length sweep reads the same runs at their last step
    assert sorted(p.value for p in warm_start([str(records)], SPACE, "val_dice", 12, "").points) == [0.7, 0.8]


def test_a_missing_source_is_named(tmp_path):
    with pytest.raises(ConfigError, match="absent: neither a folder of protocol records nor mlflow:"):
        warm_start([str(tmp_path / "absent")], SPACE, "val_dice", 12, "")


def test_warm_points_enter_the_study_as_the_trials_tpe_would_have_drawn(records):
    points = [p.to_dict() for p in warm_start([str(records)], SPACE, "val_dice", 12, "").points]
    study = optuna.create_study(direction="maximize")
    assert tell_study(study, SPACE, points) == 2
    told = {t.value: t.params for t in study.trials}
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials)
    assert told[0.8]["text.mode|label"] == "none" and told[0.8]["model.predictor|label"] == "ensemble"
    assert "model.predictor|label" not in told[0.7], "an inactive key is absent, as when TPE draws the point"
    assert told[0.7]["loss.tau_pos"] == 0.7 and "data.loose_level|fraction" in told[0.7]
    # the define-by-run suggest of the same space accepts the study (same names and distributions)
    trial = study.ask()
    SPACE.suggest(trial)
    study.tell(trial, 0.1)


def test_tpe_skips_the_published_point_only_when_a_warm_run_measured_it(tmp_path):
    _record(tmp_path, "published", {}, {4: 0.2, 8: 0.4, 12: 0.6})
    _record(tmp_path, "other", {"loss.tau_pos": 0.7}, {4: 0.2, 8: 0.4, 12: 0.5})
    published = SPACE.search_point(SPACE.published_point())

    def first_proposal(folder_points):
        req = SearcherRequest(SPACE, "val_dice", "max", 0, 1, 1, 12, tuple(p.to_dict() for p in folder_points))
        limiter, _ = build_searcher("tpe", req)
        return limiter.searcher, limiter.suggest("t0")

    searcher, proposal = first_proposal(warm_start([str(tmp_path)], SPACE, "val_dice", 12, "").points)
    assert len([t for t in searcher._ot_study.trials if t.state == optuna.trial.TrialState.COMPLETE]) == 2
    assert {k: proposal[k] for k in published} != published
    (tmp_path / "published.json").unlink()
    _, proposal = first_proposal(warm_start([str(tmp_path)], SPACE, "val_dice", 12, "").points)
    assert {k: proposal[k] for k in published} == pytest.approx(published)


def test_random_search_refuses_a_warm_start():
    req = SearcherRequest(SPACE, "val_dice", "max", 0, 1, 1, 12, ({"values": SPACE.published_point(), "value": 0.5},))
    with pytest.raises(ConfigError, match="warm start: random search learns nothing"):
        build_searcher("random", req)


def test_a_sweep_folder_warms_directly_and_through_exported_records(tmp_path):
    import subprocess
    import sys

    from fgi.search.settings import SweepOptions, new_record, write_sweep_file

    record, space = new_record(SweepOptions(dataset="synthetic", budget="smoke", name="old"))
    write_sweep_file(str(tmp_path), record)
    point = {**space.published_point(), "loss.tau_pos": 0.7}
    trial_params = {**space.search_point(point), **{k: list(v) if isinstance(v, tuple) else v for k, v in point.items()}}
    for trial, reports in (("trial_a", [(4, 0.3), (8, 0.55)]), ("trial_b", [])):
        (tmp_path / "old" / trial).mkdir()
        (tmp_path / "old" / trial / "params.json").write_text(json.dumps(trial_params))
        (tmp_path / "old" / trial / "result.json").write_text(
            "".join(json.dumps({"step": s, "val_dice": v, "lr": 0.001, "time_total_s": 1.0}) + "\n" for s, v in reports))
    direct = warm_start([str(tmp_path / "old")], space, "val_dice", 8, "")
    assert [(p.name, p.value, p.values["loss.tau_pos"]) for p in direct.points] == [("old-a", 0.55, 0.7)]

    script = [sys.executable, "benchmarks/export_sweep_records.py", str(tmp_path / "old"), str(tmp_path / "records")]
    repo = Path(__file__).resolve().parents[2]
    out = subprocess.run(script, capture_output=True, text=True, check=True, cwd=repo).stdout
    assert "wrote 1 records" in out
    rec = json.loads((tmp_path / "records" / "old-a.json").read_text())
    assert [row["step"] for row in rec["curve"]] == [4, 8] and "time_total_s" not in rec["curve"][0]
    exported = warm_start([str(tmp_path / "records")], space, "val_dice", 8, "")
    assert [(p.values, p.value) for p in exported.points] == [(p.values, p.value) for p in direct.points]
