"""``fgi prepare``: build the content-addressed cache of resized images and soft gaze maps.

Layout of a cache dir::

    items/<id>.<key>.npz   image (S, S, C) uint8, heatmap and crf (S, S) float16 soft maps (absent when
                           the item has no gaze), mask (S, S) bool (absent without ground truth), stats
    manifest.json          config hash, versions, splits, counts, normalization, Dice report, text section
    overlays/<id>.png      optional pictures of the weak labels
    descriptions.jsonl, embeddings/   the text cache (``fgi.text.pipeline``)

``key`` hashes the item's input bytes (image, mask, fixations) with the gaze and CRF config, so a rerun
only computes items whose inputs changed, and a finished entry is never rewritten. Every file is
written to a temporary name and renamed, so an interrupted run leaves only whole entries behind, and the
manifest is written last.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import multiprocessing as mp
import os
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from fgi.config import Config, ConfigError, atomic_write_bytes, atomic_write_text, config_hash, load_yaml, override
from fgi.data.crf import crf_refine
from fgi.data.gaze import gaze_heatmap
from fgi.data.sources import SOURCES, SPLIT_NAMES, DataError, SourceItem, get_source, load_sample

FORMAT_VERSION = 1  # bump when the entry layout or the map computation changes: every key changes with it
MANIFEST = "manifest.json"
ITEMS_DIR = "items"
LOCK_FILE = ".prepare.lock"
HIST_BINS = 100  # soft maps are histogrammed at 0.01 steps, so the report can give Dice at any level


def cache_root() -> Path:
    """The user cache folder of fgi (``$XDG_CACHE_HOME/fgi`` or ``~/.cache/fgi``)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "fgi"


def _abs(path: str) -> str:
    return str(Path(path).expanduser().resolve()) if path else ""


def prepare_spec(cfg: Config) -> dict[str, Any]:
    """The config entries a cache depends on (its identity). Levels and augmentations are not among them."""
    d = cfg.data
    spec: dict[str, Any] = {
        "format": FORMAT_VERSION,
        "dataset": d.dataset,
        "root": _abs(d.root),
        "fixations": _abs(d.fixations),
        "split_dir": _abs(d.split_dir),
        "image_size": d.image_size,
        "val_fraction": d.val_fraction,
        "split_seed": d.split_seed,
        "gaze": asdict(cfg.gaze),
        "crf": asdict(cfg.crf),
    }
    if d.dataset == "synthetic":
        spec["synthetic"] = [d.synthetic_train, d.synthetic_val, d.synthetic_test, d.synthetic_seed]
    return spec


def prepare_hash(cfg: Config) -> str:
    """Short hash of ``prepare_spec`` (names the default cache dir and marks a manifest as current)."""
    return config_hash(prepare_spec(cfg))


def resolve_cache_dir(cfg: Config) -> Path:
    """``data.cache_dir`` when set, else ``<user cache>/fgi/<dataset>-<prepare hash>``.

    The default lives in the user cache dir (not under the raw root, which is often read-only), keyed by
    the config hash so repeated runs with the same config reuse it.
    """
    if cfg.data.cache_dir:
        return Path(cfg.data.cache_dir).expanduser()
    return cache_root() / f"{cfg.data.dataset}-{prepare_hash(cfg)}"


def _digest(*parts: bytes) -> str:
    h = hashlib.blake2b(digest_size=10)
    for p in parts:
        h.update(len(p).to_bytes(8, "little"))
        h.update(p)
    return h.hexdigest()


def _file_digest(path: str) -> bytes:
    if not path:
        return b""
    try:
        return hashlib.blake2b(Path(path).read_bytes(), digest_size=16).digest()
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror})") from None


def item_key(item: SourceItem, cfg: Config, spec_hash: str) -> str:
    """Content key of one cache entry: its input bytes plus the map-relevant config."""
    fix = b"" if item.fixations is None else np.ascontiguousarray(item.fixations, dtype=np.float32).tobytes()
    ident = json.dumps([item.id, item.split if item.synthetic_index >= 0 else "", item.synthetic_index,
                        item.simulate, item.expected_hw], default=list).encode()
    return _digest(spec_hash.encode(), ident, _file_digest(item.image_path), _file_digest(item.mask_path), fix)


def _entry_spec_hash(cfg: Config) -> str:
    """Hash of what every entry's content depends on (not splits, not val carving)."""
    spec = prepare_spec(cfg)
    keep = {k: spec[k] for k in ("format", "dataset", "image_size", "gaze", "crf")}
    if cfg.data.dataset == "synthetic":
        keep["synthetic_seed"] = cfg.data.synthetic_seed
    return config_hash(keep)


def entry_name(item_id: str, key: str) -> str:
    """File name of an entry under ``items/``."""
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in item_id)
    return f"{safe}.{key}.npz"


def _hist(soft: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Counts of soft values per 0.01 bin, over all pixels and over ground-truth pixels."""
    bins = np.clip(np.floor(soft.astype(np.float64) * HIST_BINS + 1e-6).astype(np.int64), 0, HIST_BINS)
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


def resize_image(image: np.ndarray, size: int) -> np.ndarray:
    """Resize an image to the square working size the way the cache does (area when shrinking).

    Shape:
        image (H, W, C) or (H, W) uint8; returns (size, size, C) uint8.
    """
    h, w = image.shape[:2]
    out = cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA if max(h, w) > size else cv2.INTER_LINEAR)
    return (out[:, :, None] if out.ndim == 2 else out).astype(np.uint8)


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
        crf = crf_refine(s.image, heat, cfg.crf)
        arrays["heatmap"] = cv2.resize(heat, (size, size), interpolation=cv2.INTER_AREA).astype(np.float16)
        arrays["crf"] = cv2.resize(crf, (size, size), interpolation=cv2.INTER_AREA).astype(np.float16)
        if s.mask is not None:
            for name, soft in (("heatmap", heat), ("crf", crf)):
                ha, hf = _hist(soft, s.mask)
                stats[f"hist_{name}"] = [ha.tolist(), hf.tolist()]
            stats["mask_sum"] = int(s.mask.sum())
    if s.mask is not None:
        m = cv2.resize(s.mask.astype(np.float32), (size, size), interpolation=cv2.INTER_AREA) >= 0.5
        arrays["mask"] = m
    px = img_small.reshape(-1, img_small.shape[2]).astype(np.float64) / 255.0
    stats["chan_sum"] = px.sum(0).tolist()
    stats["chan_sq"] = (px**2).sum(0).tolist()
    stats["pixels"] = int(px.shape[0])
    arrays["stats"] = np.frombuffer(json.dumps(stats).encode(), dtype=np.uint8)
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    atomic_write_bytes(path, buf.getvalue())
    return stats


def read_entry_stats(path: Path) -> dict[str, Any]:
    """The stats stored in one entry."""
    with np.load(path) as z:
        return json.loads(z["stats"].tobytes().decode())


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
            for st in pool.map(_worker, jobs, chunksize=max(1, min(8, len(jobs) // (workers * 8) or 1))):
                yield st
                bar.update()
    finally:
        bar.close()


def _mean_std(stats: list[dict[str, Any]], channels: int) -> tuple[list[float], list[float]]:
    if not stats:
        return [0.5] * channels, [0.25] * channels
    n = sum(s["pixels"] for s in stats)
    total = np.sum([s["chan_sum"] for s in stats], axis=0)
    sq = np.sum([s["chan_sq"] for s in stats], axis=0)
    mean = total / n
    std = np.sqrt(np.maximum(sq / n - mean**2, 1e-12))
    return [round(float(v), 6) for v in mean], [round(float(v), 6) for v in std]


def dice_report(stats: list[dict[str, Any]], levels: tuple[float, ...]) -> dict[str, Any]:
    """Mean Dice of each soft map at each level against the ground truth (items with maps and masks).

    Returns:
        {"n": images, "rows": [{"map": "heatmap"|"crf", "level": t, "dice": mean}, ...]}.
    """
    usable = [s for s in stats if "mask_sum" in s]
    rows = []
    for name in ("heatmap", "crf"):
        for level in levels:
            vals = [dice_at(s[f"hist_{name}"][0], s[f"hist_{name}"][1], s["mask_sum"], level) for s in usable]
            rows.append({"map": name, "level": level, "dice": round(float(np.mean(vals)), 4) if vals else None})
    return {"n": len(usable), "rows": rows}


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": sys.version.split()[0]}
    for pkg in ("fgi", "numpy", "opencv-python-headless", "opencv-python", "pydensecrf2"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            continue
    return out


def load_manifest(cache_dir: Path) -> dict[str, Any] | None:
    """The manifest of a cache dir, or None when there is none (or it is unreadable)."""
    p = Path(cache_dir) / MANIFEST
    try:
        return json.loads(p.read_text())
    except (OSError, ValueError):
        return None


def _text_items(cache_dir: Path, manifest_items: dict[str, dict], level: float) -> Iterator[Any]:
    from fgi.text.pipeline import TextItem

    for i, rec in manifest_items.items():
        if not rec["has_maps"]:
            continue
        with np.load(cache_dir / ITEMS_DIR / rec["file"]) as z:
            # the region is the tight gaze pseudo-mask, never the ground truth
            yield TextItem(id=i, image=z["image"], region=z["crf"].astype(np.float32) >= level)


def prepare_cache(cfg: Config, cache_dir: Path | None = None, workers: int = 1, progress: bool = True,
                  text: bool = True, overlays: int = 0, log: Any = None) -> dict[str, Any]:
    """Build or complete the cache of ``cfg.data.dataset`` and write its manifest.

    Args:
        cfg: the run config (data, gaze, crf, text).
        cache_dir: target folder; None resolves it from the config (``resolve_cache_dir``).
        workers: parallel processes (1 computes in this process).
        progress: show a progress bar on stderr.
        text: also build descriptions and embeddings (``fgi.text.pipeline.build_text_cache``).
        overlays: number of overlay figures to write under ``overlays/``.
        log: where the summary lines go (default stderr).

    Returns:
        The manifest (also written to ``<cache_dir>/manifest.json``).

    Raises:
        DataError: bad raw input, or images without gaze under ``gaze.on_missing == "fail"``.
    """
    from filelock import FileLock

    log = log or sys.stderr
    cache_dir = Path(cache_dir) if cache_dir is not None else resolve_cache_dir(cfg)
    (cache_dir / ITEMS_DIR).mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    with FileLock(str(cache_dir / LOCK_FILE)):
        source = get_source(cfg)
        index = source.index()
        if index.channels != cfg.data.in_channels:
            raise ConfigError(
                f"data.in_channels: {cfg.data.in_channels} but {cfg.data.dataset} images have {index.channels} channel(s)"
            )
        items = index.items
        no_gaze = [it.id for it in items if it.split == "train" and not it.has_gaze]
        if no_gaze and cfg.gaze.on_missing == "fail":
            raise DataError(
                f"{len(no_gaze)} training image(s) have no fixations in {cfg.data.fixations or 'the gaze source'} "
                f"(first: {no_gaze[:5]}); pass --on-missing-gaze skip to leave them out"
            )
        skipped = set(no_gaze)
        items = [it for it in items if it.id not in skipped]
        spec_hash = _entry_spec_hash(cfg)
        files = {it.id: entry_name(it.id, item_key(it, cfg, spec_hash)) for it in items}
        old = load_manifest(cache_dir) or {}
        old_stats = {rec["file"]: rec["stats"] for rec in old.get("items", {}).values() if "stats" in rec}
        items_dir = cache_dir / ITEMS_DIR
        jobs = [(it, cfg, index.channels, str(items_dir / files[it.id])) for it in items
                if not (items_dir / files[it.id]).is_file()]
        computed = {}
        for st in _run_parallel(jobs, workers, progress):
            computed[st["id"]] = st
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
        train_stats = [records[i]["stats"] for i in splits.get("train", [])]
        mean, std = _mean_std(train_stats, index.channels)
        levels = tuple(sorted({cfg.data.tight_level, cfg.data.loose_level}, reverse=True))
        report = dice_report([r["stats"] for r in records.values()], levels)
        manifest: dict[str, Any] = {
            "format": FORMAT_VERSION,
            "dataset": cfg.data.dataset,
            "prepare_hash": prepare_hash(cfg),
            "spec": prepare_spec(cfg),
            "versions": _versions(),
            "channels": index.channels,
            "image_size": cfg.data.image_size,
            "normalization": {"mean": mean, "std": std, "from": "train split of this cache, pixels scaled to [0, 1]"},
            "counts": {
                "items": len(records),
                **{f"split_{s}": len(ids) for s, ids in splits.items()},
                "computed": len(computed),
                "reused": len(records) - len(computed),
                "removed_stale": removed,
                "skipped_no_gaze": len(skipped),
                "gaze_rows_without_image": len(index.unmatched_gaze),
                "without_maps": sum(not r["has_maps"] for r in records.values()),
            },
            "skipped_no_gaze": sorted(skipped),
            "splits": splits,
            "items": records,
            "report": report,
            "text": None,
        }
        if text:
            from fgi.text.pipeline import build_text_cache

            manifest["text"] = build_text_cache(cache_dir, _text_items(cache_dir, records, cfg.data.tight_level),
                                                cfg.text, cfg.data.dataset, progress=progress)
            manifest["text_spec"] = text_spec(cfg)
        if overlays:
            write_overlays(cache_dir, records, cfg, overlays, with_text=text)
        manifest["seconds"] = round(time.perf_counter() - t0, 2)
        atomic_write_text(cache_dir / MANIFEST, json.dumps(manifest, indent=1))
    c = manifest["counts"]
    print(f"prepared {cfg.data.dataset} in {cache_dir}: {c['items']} items "
          f"({c['computed']} computed, {c['reused']} reused, {c['skipped_no_gaze']} skipped without gaze) "
          f"in {manifest['seconds']:.1f}s", file=log)
    if index.unmatched_gaze:
        print(f"note: {len(index.unmatched_gaze)} image ids in the gaze CSV have no image "
              f"(first: {index.unmatched_gaze[:3]})", file=log)
    return manifest


def text_spec(cfg: Config) -> dict[str, Any]:
    """The text config entries the text cache depends on."""
    return {"describer": cfg.text.describer, "encoder": cfg.text.encoder, "vlm_path": cfg.text.vlm_path}


def write_overlays(cache_dir: Path, records: dict[str, dict], cfg: Config, n: int,
                   with_text: bool = True) -> list[Path]:
    """Write ``n`` overlay figures (first items with maps, in id order) under ``overlays/``, captioned
    with the lesion description of ``text.template`` when the text cache was built."""
    from fgi.viz import weak_label_figure

    captions: dict[str, str] = {}
    if with_text:
        from fgi.text.pipeline import load_descriptions

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


def format_report(report: dict[str, Any]) -> str:
    """Markdown table of a Dice report."""
    lines = [f"Dice of the weak labels against the ground truth ({report['n']} images with masks)", "",
             "| pseudo-mask | Dice |", "|---|---|"]
    for r in report["rows"]:
        lines.append(f"| {r['map']} >= {r['level']:g} | {'n/a' if r['dice'] is None else format(r['dice'], '.4f')} |")
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``fgi prepare``."""
    parser.add_argument("--config", help="YAML config; options below override its data/gaze entries")
    parser.add_argument("--dataset", help="dataset name: kvasir, nci-isbi, isic, synthetic")
    parser.add_argument("--root", help="raw dataset folder")
    parser.add_argument("--cache-dir", help="cache folder (default: user cache dir keyed by the config hash)")
    parser.add_argument("--fixations", help="GazeMedSeg fixation CSV (kvasir, nci-isbi)")
    parser.add_argument("--split-dir", help="folder with train.txt / val.txt / test.txt (default: root)")
    parser.add_argument("--image-size", type=int, help="side of the cached images and maps (data.image_size)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="parallel processes")
    parser.add_argument("--on-missing-gaze", choices=("skip", "fail"), help="images without fixations")
    parser.add_argument("--report", action="store_true", help="print the Dice of each gaze level against the ground truth")
    parser.add_argument("--overlays", type=int, default=0, metavar="N", help="write N overlay figures")
    parser.add_argument("--no-text", action="store_true", help="skip lesion descriptions and text embeddings")
    parser.add_argument("--describer", choices=("morphology", "vlm"), help="text.describer")
    parser.add_argument("--vlm-path", help="text.vlm_path: local vision-language model for --describer vlm")
    parser.add_argument("--encoder", help="text.encoder: 'minilm' or a local model path")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def config_from_args(args: argparse.Namespace) -> Config:
    """The config of a ``fgi prepare`` command line (YAML first, then the options)."""
    cfg = load_yaml(args.config) if args.config else Config()
    updates: dict[str, Any] = {}
    for opt, key in (("dataset", "data.dataset"), ("root", "data.root"), ("cache_dir", "data.cache_dir"),
                     ("fixations", "data.fixations"), ("split_dir", "data.split_dir"),
                     ("image_size", "data.image_size"), ("on_missing_gaze", "gaze.on_missing"),
                     ("describer", "text.describer"), ("vlm_path", "text.vlm_path"), ("encoder", "text.encoder")):
        v = getattr(args, opt, None)
        if v is not None:
            updates[key] = v
    if "data.dataset" in updates and updates["data.dataset"] in SOURCES:
        # a dataset named on the command line brings its channel count along
        updates["data.in_channels"] = SOURCES[updates["data.dataset"]].channels
    return override(cfg, updates) if updates else cfg


def main(args: argparse.Namespace) -> int:
    """Run ``fgi prepare``; bad input prints one error line and returns 2."""
    try:
        cfg = config_from_args(args)
        manifest = prepare_cache(cfg, None, workers=args.workers, progress=not args.no_progress,
                                 text=not args.no_text, overlays=args.overlays)
    except (DataError, ConfigError) as exc:
        print(f"fgi prepare: error: {exc}", file=sys.stderr)
        return 2
    if args.report:
        print(format_report(manifest["report"]))
    return 0
