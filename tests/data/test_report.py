from __future__ import annotations

import numpy as np
import pytest

from fgi.data.report import best_levels, dice_at, dice_report, format_report, soft_histograms, split_report


def test_dice_from_histograms_matches_direct():
    rng = np.random.default_rng(0)
    soft = rng.uniform(0, 1, (20, 20)).astype(np.float32)
    mask = rng.uniform(0, 1, (20, 20)) > 0.6
    ha, hf = soft_histograms(soft, mask)
    for level in (0.3, 0.5, 0.71):
        pred = soft >= level
        direct = 2 * (pred & mask).sum() / (pred.sum() + mask.sum())
        assert abs(dice_at(ha, hf, int(mask.sum()), level) - direct) < 0.02


def test_report_averages_images_with_masks_and_formats_a_table():
    perfect = np.zeros((4, 4), np.float32)
    perfect[:2] = 1.0
    mask = perfect > 0
    stats = []
    for soft in (perfect, 1.0 - perfect):  # Dice 1 and Dice 0 at every level
        ha, hf = soft_histograms(soft, mask)
        stats.append({f"hist_{m}": [ha.tolist(), hf.tolist()] for m in ("heatmap", "crf")} | {"mask_sum": 8})
    stats.append({"id": "no-mask"})
    report = dice_report(stats, (0.5, 0.3))
    assert report["n"] == 2
    assert [(r["map"], r["level"], r["dice"]) for r in report["rows"]] == [
        ("heatmap", 0.5, 0.5), ("heatmap", 0.3, 0.5), ("crf", 0.5, 0.5), ("crf", 0.3, 0.5)]
    table = format_report(report)
    assert "(2 images with masks)" in table and "| crf >= 0.3 | 0.5000 |" in table
    assert "| heatmap >= 0.5 | n/a |" in format_report(dice_report([], (0.5,)))


def _stats(soft: np.ndarray, mask: np.ndarray) -> dict:
    ha, hf = soft_histograms(soft, mask)
    return {f"hist_{m}": [ha.tolist(), hf.tolist()] for m in ("heatmap", "crf")} | {"mask_sum": int(mask.sum())}


def test_split_report_reads_only_that_split_and_names_the_best_level():
    mask = np.zeros((10, 10), bool)
    mask[:5] = True
    ramp = np.tile(np.linspace(0.0, 0.99, 10)[::-1, None], (1, 10)).astype(np.float32)  # rows 0..4 hold 0.99..0.55
    items = {"v": {"split": "val", "stats": _stats(ramp, mask)},
             "t": {"split": "test", "stats": _stats(1.0 - ramp, mask)}}
    report = split_report(items, (0.2, 0.5, 0.7), "val")
    assert report["n"] == 1 and report["split"] == "val"
    dice = {(r["map"], r["level"]): r["dice"] for r in report["rows"]}
    # rows >= 0.5 are the five mask rows (Dice 1); >= 0.7 keeps 3 of them (6/8); >= 0.2 takes 8 rows (10/13)
    assert dice[("crf", 0.5)] == 1.0 and dice[("crf", 0.7)] == 0.75 and abs(dice[("crf", 0.2)] - 10 / 13) < 1e-4
    assert best_levels(report) == {"heatmap": (0.5, 1.0), "crf": (0.5, 1.0)}
    table = format_report(report)
    assert "(1 images with masks, val split)" in table and "highest crf: >= 0.5 (1.0000)" in table
    assert split_report(items, (0.5,))["n"] == 2


def test_split_report_refuses_off_grid_levels_and_a_split_without_masks():
    items = {"a": {"split": "train", "stats": {"id": "a"}}}
    with pytest.raises(ValueError, match=r"levels \[0.355, 1.2\]"):
        split_report(items, (0.3, 0.355, 1.2))
    with pytest.raises(ValueError, match="split 'val': no item"):
        split_report(items, (0.3,), "val")
