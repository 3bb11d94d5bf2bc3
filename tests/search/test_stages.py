"""The final stage of a staged search: which configs it re-runs, which earlier runs it reuses, what it exports."""

from __future__ import annotations

import json

import pytest

from fgi.budgets import apply_budget
from fgi.config import Config, ConfigError, override, to_dict
from fgi.fields import OptionError
from fgi.search.settings import SweepOptions
from fgi.search.space import dataset_space
from fgi.search.stages import FinalPlan, FinalRun, choice_table, choose, plan_final_stage

BASE = apply_budget(Config(), "smoke")  # 12 steps, an evaluation every 4
SPACE = dataset_space("synthetic", BASE)
IDS = [f"v{i}" for i in range(20)]


def _record(folder, name: str, changes: dict, at8: float, val_rows: dict | None = None, last: int = 12) -> None:
    cfg = override(BASE, changes)
    curve = [{"step": s, "val_dice": at8 * s / 8} for s in (4, 8, 12) if s <= last]
    rec = {"arm": name, "config": to_dict(cfg), "curve": curve}
    if val_rows is not None:
        rec["val_rows"] = [{"id": i, "dice": d} for i, d in val_rows.items()]
    (folder / f"{name}.json").write_text(json.dumps(rec))


@pytest.fixture
def screened(tmp_path):
    published_rows = {i: 0.5 for i in IDS}
    _record(tmp_path, "published-seed0", {"train.seed": 0}, 0.40, published_rows)
    _record(tmp_path, "published-seed7", {"train.seed": 7}, 0.42, published_rows)
    _record(tmp_path, "good-a", {"loss.tau_pos": 0.7}, 0.60, last=8)  # a screening run stopped at step 8
    _record(tmp_path, "good-b", {"loss.tau_pos": 0.7, "train.seed": 1}, 0.50, last=8)  # same config: grouped
    _record(tmp_path, "middling", {"loss.tau_pos": 0.9}, 0.52, last=8)
    _record(tmp_path, "weak", {"loss.tau_pos": 0.6}, 0.30, {i: 0.9 for i in IDS})  # full length, rows kept
    _record(tmp_path, "other_method", {"train.method": "student_only"}, 0.99, last=8)
    return tmp_path


def test_the_top_k_by_mean_screening_value_and_the_published_point_run_once_per_seed(screened):
    plan = plan_final_stage([str(screened)], SPACE, "val_dice", "max", 8, 2, (0, 1), "")
    names = [(c["name"], c["values"]["loss.tau_pos"], round(c["screen"], 4), c["runs"]) for c in plan.candidates]
    # good (0.60 and 0.50 -> 0.55) above middling (0.52); weak and the other method's run are not chosen
    assert names == [("published", 0.8, 0.41, 2), ("top1", 0.7, 0.55, 2), ("top2", 0.9, 0.52, 1)]
    assert [(r.candidate, r.seed) for r in plan.runs] == [(c, s) for c in ("published", "top1", "top2") for s in (0, 1)]
    # the published point's full-length seed-0 record is reused with its rows; seed 1 was never run, so a trial runs it
    reused = {(r.candidate, r.seed): r.reused for r in plan.runs if r.reused}
    assert reused == {("published", 0): "published-seed0"}
    assert next(r for r in plan.runs if r.reused).val_rows == {i: 0.5 for i in IDS}
    assert all(r.point()["train.seed"] == r.seed for r in plan.runs)
    assert "final stage: published (0.4100 over 2 screening run(s)); reuses published-seed0" in plan.summary()


def test_screening_runs_are_needed_at_the_rank_step(screened):
    with pytest.raises(ConfigError, match="at step 6; screen first"):
        plan_final_stage([str(screened)], SPACE, "val_dice", "max", 6, 1, (0, 1), "")


def _plan(runs_per: dict[str, int]) -> FinalPlan:
    candidates = tuple({"name": n, "values": {"loss.tau_pos": v}, "screen": None, "runs": 0}
                       for n, v in (("published", 0.8), ("top1", 0.7), ("top2", 0.9)))
    return FinalPlan(candidates, tuple(FinalRun(n, {"loss.tau_pos": 0.0}, s) for n, k in runs_per.items()
                                       for s in range(k)))


def test_a_winner_clear_of_the_seed_noise_is_exported():
    plan = _plan({"published": 2, "top1": 2, "top2": 2})
    rows = {("published", 0): {i: 0.50 for i in IDS}, ("published", 1): {i: 0.52 for i in IDS},
            ("top1", 0): {i: 0.60 + 0.01 * (k % 3) for k, i in enumerate(IDS)}, ("top1", 1): {i: 0.6105 for i in IDS},
            ("top2", 0): {i: 0.55 for i in IDS}, ("top2", 1): {i: 0.56 for i in IDS}}
    choice = choose(plan, rows)
    assert (choice.exported, choice.winner) == ("top1", "top1")
    assert choice.low > 0 and choice.difference == pytest.approx(0.61 - 0.51)
    assert choice.reason.startswith("exported top1: top1 − published: +10.00 Dice points on val")
    table = choice_table(plan, choice, rows)
    assert "| top2 | — | 1 | trial | 0.5600 |" in table and choice.reason in table


def test_a_winner_within_the_seed_noise_leaves_the_published_point():
    # top1's two seeds straddle the published point's: its mean is higher, the seeds' spread is larger
    plan = _plan({"published": 2, "top1": 2})
    rows = {("published", 0): {i: 0.50 for i in IDS}, ("published", 1): {i: 0.50 for i in IDS},
            ("top1", 0): {i: 0.40 for i in IDS}, ("top1", 1): {i: 0.70 for i in IDS}}
    choice = choose(plan, rows)
    assert (choice.exported, choice.winner) == ("published", "top1")
    assert choice.difference == pytest.approx(0.05) and choice.low < 0 < choice.high
    assert "exported the published point" in choice.reason and "within the seed noise" in choice.reason


def test_a_missing_run_is_left_out_and_a_missing_published_point_is_an_error():
    plan = _plan({"published": 2, "top1": 2})
    rows = {("published", 0): {i: 0.5 for i in IDS}, ("top1", 0): {i: 0.9 for i in IDS}}
    choice = choose(plan, rows)  # one seed each finished: compared on what finished
    assert choice.scores == pytest.approx({"published": 0.5, "top1": 0.9})
    assert "did not finish" in choice_table(plan, choice, rows)
    with pytest.raises(ConfigError, match="no run of the published point finished"):
        choose(plan, {("top1", 0): {i: 0.9 for i in IDS}})


@pytest.mark.parametrize("changes, option, message", [
    ({}, "rank_step", "ranks the screening runs"),
    ({"rank_step": 8, "stage_seeds": (3, 3)}, "stage_seeds", "at least two different seeds"),
    ({"rank_step": 8, "num_samples": 4}, "num_samples", "one full-length trial per candidate and seed"),
    ({"rank_step": 8, "stop_step": 8}, "stop_step", "not with final_stage"),
    ({"rank_step": 8, "metric": "val_hd95"}, "metric", "compares per-image val Dice"),
    ({"rank_step": 8, "warm_start": ("x",)}, "warm_start", "reads its sources itself"),
])
def test_final_stage_options_are_checked_and_name_the_option(changes, option, message):
    with pytest.raises(OptionError, match=message) as info:
        SweepOptions(dataset="synthetic", final_stage=("records",), **changes)
    assert info.value.option == option
