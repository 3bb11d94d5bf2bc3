"""Seed groups: which groups count, their mean and spread, and the best one."""

from __future__ import annotations

import pytest

from fgi.groups import best_group, group_id, group_scores, group_table, spread


def test_the_id_names_the_values_not_their_order():
    assert group_id({"a": 1, "b": [3, 4]}) == group_id({"b": [3, 4], "a": 1})
    assert group_id({"a": 1, "b": [3, 4]}) != group_id({"a": 1, "b": [4, 3]})
    assert len(group_id({"a": 0.5})) == 10


def test_only_groups_with_every_seed_scored_count():
    items = [("g1", "t0", 0, 0.50), ("g1", "t1", 1, 0.70), ("g2", "t2", 0, 0.90),
             ("g3", "t3", 0, 0.40), ("g3", "t4", 1, float("nan"))]
    groups = group_scores(items, seeds=2)
    assert [g.group for g in groups] == ["g1"]  # g2 lacks a seed, g3 has a run that scored nothing
    g = groups[0]
    assert g.members == (("t0", 0, 0.5), ("t1", 1, 0.7)) and g.seeds == (0, 1)
    # mean 0.6; sample std of 0.5 and 0.7 is 0.1 * sqrt(2)
    assert g.mean == pytest.approx(0.6) and g.std == pytest.approx(0.1414213562)


def test_the_best_group_follows_the_mode():
    groups = group_scores([("lo", "a", 0, 10.0), ("lo", "b", 1, 12.0), ("hi", "c", 0, 20.0), ("hi", "d", 1, 30.0)], 2)
    assert best_group(groups, "max").group == "hi"
    assert best_group(groups, "min").group == "lo"
    assert best_group([], "max") is None


def test_spread_of_one_value_and_of_none():
    assert spread([0.3]) == (0.3, 0.0)
    with pytest.raises(ValueError, match="no values"):
        spread([])


def test_the_table_lists_each_seed():
    table = group_table(group_scores([("g", "a", 3, 0.25), ("g", "b", 4, 0.75)], 2), "val_dice")
    assert "| g | 3 4 | 0.2500, 0.7500 | 0.5000 | 0.3536 |" in table
