"""Pareto fronts and the rules that pick one point of a front."""

from __future__ import annotations

import math

import pytest

from fgi.pareto import Bound, PickError, PickRule, dominates, pareto_front, parse_rule, pick

MODES = {"val_dice": "max", "infer_ms": "min"}
# (dice, ms): a and b trade off, c is dominated by a, d by b, e has no ms
POINTS = [{"val_dice": 0.80, "infer_ms": 4.0}, {"val_dice": 0.70, "infer_ms": 1.0},
          {"val_dice": 0.75, "infer_ms": 5.0}, {"val_dice": 0.70, "infer_ms": 2.0},
          {"val_dice": 0.99, "infer_ms": math.nan}, {"val_dice": 0.78, "infer_ms": 2.5}]


def test_dominance_needs_one_strict_gain_and_no_loss():
    assert dominates(POINTS[0], POINTS[2], MODES)
    assert not dominates(POINTS[0], POINTS[1], MODES) and not dominates(POINTS[1], POINTS[0], MODES)
    assert not dominates(POINTS[0], POINTS[0], MODES), "a point does not dominate itself"


def test_the_front_keeps_the_non_dominated_points_with_every_objective():
    assert pareto_front(POINTS, MODES) == [0, 1, 5]
    assert pareto_front(POINTS, {"val_dice": "max"}) == [4]


def test_rules_parse_as_written():
    assert parse_rule("best val_dice") == PickRule("val_dice")
    assert parse_rule("val_dice with infer_ms within 10% and val_hd95 within 2.5") == PickRule(
        "val_dice", (Bound("infer_ms", 0.10, True), Bound("val_hd95", 2.5, False)))
    for bad in ("", "best val dice", "best val_dice with infer_ms below 3"):
        with pytest.raises(PickError, match="pick rule"):
            parse_rule(bad)


def test_a_bound_keeps_the_points_near_the_fronts_best_and_the_target_chooses_among_them():
    front = [POINTS[i] for i in pareto_front(POINTS, MODES)]  # ms 4.0, 1.0, 2.5
    assert pick(front, MODES, parse_rule("best val_dice"))[0] == 0
    # within 150 % of 1.0 ms: up to 2.5 ms, so 0.78 beats 0.70
    index, how = pick(front, MODES, parse_rule("best val_dice with infer_ms within 150%"))
    assert index == 2 and "infer_ms <= 2.5 (front's best 1)" in how
    assert pick(front, MODES, parse_rule("best val_dice with infer_ms within 1"))[0] == 1  # up to 2.0 ms
    # a bound on a maximized objective: dice within 0.03 of 0.80 keeps 0.80 and 0.78; then the fastest
    assert pick(front, MODES, parse_rule("best infer_ms with val_dice within 0.03"))[0] == 2


def test_a_rule_on_an_objective_the_front_lacks_names_the_objectives():
    with pytest.raises(PickError, match=r"'val_hd95' is not an objective of this front; objectives are \['infer_ms', "):
        pick(POINTS[:2], MODES, parse_rule("best val_hd95"))
    with pytest.raises(PickError, match="front is empty"):
        pick([], MODES, parse_rule("best val_dice"))
