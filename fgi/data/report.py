"""How good the weak labels are: Dice of each soft map at each gaze level, and overlay figures.

Each cache entry stores histograms of its soft maps (0.01 bins, over all pixels and over ground-truth
pixels), so the report can give the Dice at any level without reading the maps again.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from fgi.config import Config
from fgi.data.cache import ITEMS_DIR
from fgi.files import atomic_write_bytes

HIST_BINS = 100  # soft maps are histogrammed at 0.01 steps, so the report can give Dice at any level
_BIN_EPS = 1e-6  # a value exactly on a bin edge (0.3 stored as 0.29999) counts in the upper bin
MAPS = ("heatmap", "crf")


def soft_histograms(soft: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Counts of soft values per 0.01 bin, over all pixels and over ground-truth pixels.

    Shape:
        soft: (H, W) float in [0, 1]; mask: (H, W) bool; returns two (HIST_BINS + 1,) int64 arrays.
    """
    bins = np.clip(np.floor(soft.astype(np.float64) * HIST_BINS + _BIN_EPS).astype(np.int64), 0, HIST_BINS)
    return (np.bincount(bins.ravel(), minlength=HIST_BINS + 1),
            np.bincount(bins[mask].ravel(), minlength=HIST_BINS + 1))


def dice_at(hist_all: list[int], hist_fg: list[int], mask_sum: int, level: float) -> float:
    """Dice of ``soft >= level`` against the mask, from the stored histograms (level at 0.01 steps).

    Args:
        hist_all: per-bin pixel counts of the soft map.
        hist_fg: per-bin counts of ground-truth pixels.
        mask_sum: ground-truth pixel count.
        level: threshold in [0, 1].
    """
    b = int(round(level * HIST_BINS))
    pred = int(np.sum(hist_all[b:]))
    inter = int(np.sum(hist_fg[b:]))
    denom = pred + mask_sum
    return 1.0 if denom == 0 else 2.0 * inter / denom


def dice_report(stats: list[dict[str, Any]], levels: tuple[float, ...]) -> dict[str, Any]:
    """Mean Dice of each soft map at each level against the ground truth (items with maps and masks).

    Returns:
        {"n": images, "rows": [{"map": "heatmap"|"crf", "level": t, "dice": mean}, ...]}.
    """
    usable = [s for s in stats if "mask_sum" in s]
    rows = []
    for name in MAPS:
        for level in levels:
            vals = [dice_at(s[f"hist_{name}"][0], s[f"hist_{name}"][1], s["mask_sum"], level) for s in usable]
            rows.append({"map": name, "level": level, "dice": round(float(np.mean(vals)), 4) if vals else None})
    return {"n": len(usable), "rows": rows}


def check_levels(levels: Sequence[float]) -> None:
    """Refuse levels the stored histograms cannot answer exactly.

    Raises:
        ValueError: a level outside [0, 1] or off the 0.01 grid, named with the others.
    """
    bad = [v for v in levels if not 0.0 <= v <= 1.0 or abs(v * HIST_BINS - round(v * HIST_BINS)) > 1e-9]
    if bad:
        raise ValueError(f"levels {bad}: each must lie in [0, 1] on the 0.01 grid of the stored histograms")


def split_report(items: Mapping[str, Mapping[str, Any]], levels: Sequence[float], split: str = "") -> dict[str, Any]:
    """``dice_report`` over a manifest's items of one split (every item when ``split`` is empty).

    Choosing the gaze levels on the val split keeps the test split out of the selection.

    Args:
        items: the manifest's ``items`` (each with ``split`` and ``stats``).
        levels: thresholds, multiples of 0.01 (the histograms' bin width).
        split: "train", "val", "test" or "" for all.

    Raises:
        ValueError: a level off the 0.01 grid or outside [0, 1], or no item of ``split`` has a mask.
    """
    check_levels(levels)
    report = dice_report([r["stats"] for r in items.values() if not split or r["split"] == split], tuple(levels))
    if split and report["n"] == 0:
        raise ValueError(f"split {split!r}: no item of the cache has a mask in that split")
    return {**report, "split": split}


def best_levels(report: Mapping[str, Any]) -> dict[str, tuple[float, float]]:
    """Each map's level with the highest Dice in a report: ``{map: (level, dice)}``."""
    best: dict[str, tuple[float, float]] = {}
    for r in report["rows"]:
        if r["dice"] is not None and (r["map"] not in best or r["dice"] > best[r["map"]][1]):
            best[r["map"]] = (r["level"], r["dice"])
    return best


def format_report(report: Mapping[str, Any]) -> str:
    """Markdown table of a Dice report; with several levels, each map's best one below it."""
    where = f", {report['split']} split" if report.get("split") else ""
    lines = [f"Dice of the weak labels against the ground truth ({report['n']} images with masks{where})", "",
             "| pseudo-mask | Dice |", "|---|---|"]
    for r in report["rows"]:
        lines.append(f"| {r['map']} >= {r['level']:g} | {'n/a' if r['dice'] is None else format(r['dice'], '.4f')} |")
    if len({r["level"] for r in report["rows"]}) > 2:
        lines += ["", *(f"highest {name}: >= {level:g} ({dice:.4f})" for name, (level, dice) in best_levels(report).items())]
    return "\n".join(lines)


def write_overlays(cache_dir: Path, records: dict[str, dict], cfg: Config, n: int,
                   with_text: bool = True) -> list[Path]:
    """Write ``n`` overlay figures (first items with maps, in id order) under ``overlays/``.

    Args:
        cache_dir: the prepared cache.
        records: the manifest's item records.
        cfg: the run config (levels, level source, template).
        n: how many figures.
        with_text: caption each figure with the lesion description of ``text.template`` (the text
            cache must be built).
    """
    from fgi.viz import weak_label_figure

    captions: dict[str, str] = {}
    if with_text:
        from fgi.text.cache import load_descriptions

        captions = load_descriptions(cache_dir, cfg.text.template, cfg.text)
    out = []
    for i in sorted(i for i, r in records.items() if r["has_maps"])[:n]:
        with np.load(cache_dir / ITEMS_DIR / records[i]["file"]) as z:
            mask = z["mask"] if "mask" in z.files else None
            png = weak_label_figure(z["image"], z["heatmap"].astype(np.float32), z["crf"].astype(np.float32),
                                    cfg.data.tight_level, cfg.data.loose_level, mask, title=i,
                                    level_source=cfg.data.level_source,
                                    caption=f"{cfg.text.template}: {captions[i]}" if i in captions else "")
        p = cache_dir / "overlays" / f"{Path(records[i]['file']).stem}.png"
        atomic_write_bytes(p, png)
        out.append(p)
    return out


__all__ = ["HIST_BINS", "MAPS", "best_levels", "check_levels", "dice_at", "dice_report", "format_report", "soft_histograms", "split_report",
           "write_overlays"]
