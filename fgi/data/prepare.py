"""Building the content-addressed cache of resized images and soft gaze maps (the library of ``fgi prepare``).

Items are computed in parallel processes; every file is written to a temporary name and renamed, so an
interrupted run leaves only whole entries behind, and the manifest is written last. The cache layout and
identity live in ``fgi.data.cache``, the weak-label report in ``fgi.data.report``.
"""

from __future__ import annotations

import io
import json
import multiprocessing as mp
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any, TextIO

import cv2
import numpy as np

from fgi.config import Config, ConfigError
from fgi.data.cache import (
    FORMAT_VERSION,
    ITEMS_DIR,
    LOCK_FILE,
    MANIFEST,
    entry_name,
    entry_spec_hash,
    item_key,
    load_manifest,
    prepare_hash,
    prepare_spec,
    read_entry_stats,
    resolve_cache_dir,
    text_spec,
)
from fgi.data.crf import crf_refine
from fgi.data.errors import DataError
from fgi.data.gaze import gaze_heatmap
from fgi.data.io import resize_image
from fgi.data.report import MAPS, dice_report, soft_histograms, write_overlays
from fgi.data.sources import SourceItem, get_source, load_sample
from fgi.data.splits import SPLIT_NAMES
from fgi.datasets import get_dataset
from fgi.files import atomic_write_bytes, atomic_write_text
from fgi.text.items import TextItem

_NO_STATS_MEAN, _NO_STATS_STD = 0.5, 0.25  # normalization of a cache without training pixels (unused by training)
_MIN_VARIANCE = 1e-12  # keeps the std of a constant channel positive
_MAX_CHUNK = 8  # items per worker task: small enough for a live progress bar
_VERSION_PACKAGES = ("fgi", "numpy", "opencv-python-headless", "opencv-python", "pydensecrf2")
_FIRST = 5  # how many ids an error or warning lists


def process_item(item: SourceItem, cfg: Config, channels: int, path: str) -> dict[str, Any]:
    """Compute and write one cache entry (heatmap and CRF at the original resolution, stored at image_size).

    Args:
        item: the indexed item.
        cfg: the run config.
        channels: image channels of the dataset.
        path: the entry file to write (atomically).

    Returns:
        The entry's stats (also stored in the entry): original size, fixation count, Dice histograms,
        channel sums for the normalization.
    """
    cv2.setNumThreads(1)
    s = load_sample(item, cfg, channels)
    h, w = s.image.shape[:2]
    size = cfg.data.image_size
    stats: dict[str, Any] = {"id": s.id, "split": s.split, "height": h, "width": w, "has_mask": s.mask is not None}
    arrays: dict[str, np.ndarray] = {}
    img_small = resize_image(s.image, size)
    arrays["image"] = img_small
    has_maps = s.fixations is not None and len(s.fixations) > 0
    stats["has_maps"] = has_maps
    stats["n_fixations"] = 0 if s.fixations is None else len(s.fixations)
    if has_maps:
        heat = gaze_heatmap(s.fixations, h, w, cfg.gaze)
        soft = {"heatmap": heat, "crf": crf_refine(s.image, heat, cfg.crf)}
        for name in MAPS:
            arrays[name] = cv2.resize(soft[name], (size, size), interpolation=cv2.INTER_AREA).astype(np.float16)
        if s.mask is not None:
            for name in MAPS:
                ha, hf = soft_histograms(soft[name], s.mask)
                stats[f"hist_{name}"] = [ha.tolist(), hf.tolist()]
            stats["mask_sum"] = int(s.mask.sum())
    if s.mask is not None:
        arrays["mask"] = cv2.resize(s.mask.astype(np.float32), (size, size), interpolation=cv2.INTER_AREA) >= 0.5
    px = img_small.reshape(-1, img_small.shape[2]).astype(np.float64) / 255.0
    stats["chan_sum"] = px.sum(0).tolist()
    stats["chan_sq"] = (px**2).sum(0).tolist()
    stats["pixels"] = int(px.shape[0])
    arrays["stats"] = np.frombuffer(json.dumps(stats).encode(), dtype=np.uint8)
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    atomic_write_bytes(path, buf.getvalue())
    return stats


def _worker(args: tuple[SourceItem, Config, int, str]) -> dict[str, Any]:
    return process_item(*args)


def _mp_context() -> mp.context.BaseContext:
    return mp.get_context("fork") if "fork" in mp.get_all_start_methods() else mp.get_context("spawn")


def _run_parallel(jobs: list[tuple[SourceItem, Config, int, str]], workers: int, progress: bool) -> Iterator[dict]:
    from tqdm import tqdm

    bar = tqdm(total=len(jobs), desc="prepare", unit="img", disable=not progress, file=sys.stderr)
    try:
        if workers <= 1 or len(jobs) <= 1:
            for job in jobs:
                yield _worker(job)
                bar.update()
            return
        with ProcessPoolExecutor(max_workers=workers, mp_context=_mp_context()) as pool:
            chunk = max(1, min(_MAX_CHUNK, len(jobs) // (workers * _MAX_CHUNK) or 1))
            for st in pool.map(_worker, jobs, chunksize=chunk):
                yield st
                bar.update()
    finally:
        bar.close()


def _mean_std(stats: list[dict[str, Any]], channels: int) -> tuple[list[float], list[float]]:
    if not stats:
        return [_NO_STATS_MEAN] * channels, [_NO_STATS_STD] * channels
    n = sum(s["pixels"] for s in stats)
    total = np.sum([s["chan_sum"] for s in stats], axis=0)
    sq = np.sum([s["chan_sq"] for s in stats], axis=0)
    mean = total / n
    std = np.sqrt(np.maximum(sq / n - mean**2, _MIN_VARIANCE))
    return [round(float(v), 6) for v in mean], [round(float(v), 6) for v in std]


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": sys.version.split()[0]}
    for pkg in _VERSION_PACKAGES:
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            continue
    return out


def _text_items(cache_dir: Path, manifest_items: dict[str, dict], level: float) -> Iterator[TextItem]:
    for i, rec in manifest_items.items():
        if not rec["has_maps"]:
            continue
        with np.load(cache_dir / ITEMS_DIR / rec["file"]) as z:
            # the region is the tight gaze pseudo-mask, never the ground truth
            yield TextItem(id=i, image=z["image"], region=z["crf"].astype(np.float32) >= level)


def prepare_cache(cfg: Config, cache_dir: Path | None = None, workers: int = 1, progress: bool = True,
                  text: bool = True, overlays: int = 0, log: TextIO | None = None) -> dict[str, Any]:
    """Build or complete the cache of ``cfg.data.dataset`` and write its manifest.

    Args:
        cfg: the run config (data, gaze, crf, text).
        cache_dir: target folder; None resolves it from the config (``resolve_cache_dir``).
        workers: parallel processes (1 computes in this process).
        progress: show a progress bar on stderr.
        text: also build descriptions and embeddings (``fgi.text.cache.build_text_cache``).
        overlays: number of overlay figures to write under ``overlays/``.
        log: where the summary and warning lines go (default stderr).

    Returns:
        The manifest (also written to ``<cache_dir>/manifest.json``).

    Raises:
        DataError: bad raw input, or images without gaze under ``gaze.on_missing == "fail"``.
        ConfigError: ``data.in_channels`` disagrees with the dataset.
    """
    from filelock import FileLock

    log = log or sys.stderr
    info = get_dataset(cfg.data.dataset)
    cache_dir = Path(cache_dir) if cache_dir is not None else resolve_cache_dir(cfg)
    (cache_dir / ITEMS_DIR).mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    with FileLock(str(cache_dir / LOCK_FILE)):
        if info.channels != cfg.data.in_channels:
            raise ConfigError(
                f"data.in_channels: {cfg.data.in_channels} but {info.name} images have {info.channels} channel(s)"
            )
        index = get_source(cfg).index()
        items = index.items
        no_gaze = [it.id for it in items if it.split == "train" and not it.has_gaze]
        if no_gaze and cfg.gaze.on_missing == "fail":
            raise DataError(
                f"{len(no_gaze)} training image(s) have no fixations in {cfg.data.fixations or 'the gaze source'} "
                f"(first: {no_gaze[:_FIRST]}); pass --on-missing-gaze skip to leave them out"
            )
        skipped = set(no_gaze)
        items = [it for it in items if it.id not in skipped]
        spec_hash = entry_spec_hash(cfg)
        files = {it.id: entry_name(it.id, item_key(it, spec_hash)) for it in items}
        old = load_manifest(cache_dir) or {}
        old_stats = {rec["file"]: rec["stats"] for rec in old.get("items", {}).values() if "stats" in rec}
        items_dir = cache_dir / ITEMS_DIR
        jobs = [(it, cfg, info.channels, str(items_dir / files[it.id])) for it in items
                if not (items_dir / files[it.id]).is_file()]
        computed = {st["id"]: st for st in _run_parallel(jobs, workers, progress)}
        records: dict[str, dict[str, Any]] = {}
        for it in items:
            f = files[it.id]
            st = computed.get(it.id) or old_stats.get(f) or read_entry_stats(items_dir / f)
            records[it.id] = {"file": f, "split": it.split, "has_maps": st["has_maps"], "has_mask": st["has_mask"],
                              "stats": st}
        keep = set(files.values())
        removed = 0
        for p in items_dir.iterdir():
            if p.name not in keep:
                p.unlink(missing_ok=True)
                removed += 1
        splits = {s: [i for i, r in records.items() if r["split"] == s] for s in SPLIT_NAMES}
        splits = {s: ids for s, ids in splits.items() if ids}
        mean, std = _mean_std([records[i]["stats"] for i in splits.get("train", [])], info.channels)
        levels = tuple(sorted({cfg.data.tight_level, cfg.data.loose_level}, reverse=True))
        manifest: dict[str, Any] = {
            "format": FORMAT_VERSION,
            "dataset": cfg.data.dataset,
            "prepare_hash": prepare_hash(cfg),
            "spec": prepare_spec(cfg),
            "versions": _versions(),
            "channels": info.channels,
            "image_size": cfg.data.image_size,
            "normalization": {"mean": mean, "std": std, "from": "train split of this cache, pixels scaled to [0, 1]"},
            "counts": {
                "items": len(records),
                **{f"split_{s}": len(ids) for s, ids in splits.items()},
                "computed": len(computed),
                "reused": len(records) - len(computed),
                "removed_stale": removed,
                "skipped_no_gaze": len(skipped),
                "unlisted_in_split_files": len(index.unlisted),
                "gaze_rows_without_image": len(index.unmatched_gaze),
                "without_maps": sum(not r["has_maps"] for r in records.values()),
            },
            "skipped_no_gaze": sorted(skipped),
            "unlisted_in_split_files": index.unlisted,
            "splits": splits,
            "items": records,
            "report": dice_report([r["stats"] for r in records.values()], levels),
            "text": None,
        }
        if text:
            from fgi.text.cache import build_text_cache

            manifest["text"] = build_text_cache(cache_dir, _text_items(cache_dir, records, cfg.data.tight_level),
                                                cfg.text, info.context, progress=progress)
            manifest["text_spec"] = text_spec(cfg)
        if overlays:
            write_overlays(cache_dir, records, cfg, overlays, with_text=text)
        manifest["seconds"] = round(time.perf_counter() - t0, 2)
        atomic_write_text(cache_dir / MANIFEST, json.dumps(manifest, indent=1))
    _summary(manifest, cache_dir, index.unlisted, index.unmatched_gaze, cfg, log)
    return manifest


def _summary(manifest: dict[str, Any], cache_dir: Path, unlisted: list[str], unmatched_gaze: list[str], cfg: Config,
             log: TextIO) -> None:
    c = manifest["counts"]
    print(f"prepared {cfg.data.dataset} in {cache_dir}: {c['items']} items "
          f"({c['computed']} computed, {c['reused']} reused, {c['skipped_no_gaze']} skipped without gaze) "
          f"in {manifest['seconds']:.1f}s", file=log)
    if unlisted:
        split_dir = cfg.data.split_dir or cfg.data.root
        print(f"warning: {len(unlisted)} image(s) are in no split file of {split_dir} while train.txt exists, "
              f"so they are left out (first: {unlisted[:_FIRST]})", file=log)
    if unmatched_gaze:
        print(f"note: {len(unmatched_gaze)} image ids in the gaze CSV have no image "
              f"(first: {unmatched_gaze[:3]})", file=log)


__all__ = ["prepare_cache", "process_item"]
