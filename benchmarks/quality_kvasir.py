"""Quality protocol on real Kvasir-SEG gaze data: five arms, the same budget, three seeds each.

Data: the 900 Kvasir-SEG images in ``../shared/data/kvasir-seg`` with GazeMedSeg's real fixations
(``../shared/data/gazemedseg/kvasir_fixation.csv``), split 800 train / 100 val by the seeded split in
``benchmarks/splits/`` (written by ``--write-splits``: ``fgi.seed.numpy_rng(0)`` permutation of the sorted
ids, the first 100 are val). Model selection is on the val split only: each run keeps the checkpoint of
its best val Dice (and the val figures reported are that checkpoint's, so they are optimistic by the
selection). No test set is read. Ground-truth masks of training images are used only by arm ``full``
and by the pseudo-label report.

Arms (all with the same budget below; ``--seeds 0 1 2``):
    full         student alone on ground-truth masks (train.method student_only, data.supervision
                 ground_truth, masking.mask_ratio 0): the upper bound.
    gaze         student alone on the CRF pseudo-mask at data.loose_level 0.3 (the config default; CRF >= 0.3
                 is the best CRF level on the 900, Dice 0.783 in docs/RESULTS.md), no DARM masking
                 (masking.mask_ratio 0): a GazeMedSeg-style baseline.
    no_text      teacher-student with text.mode none (the teacher gets the learned null token).
    full_method  teacher-student with the default template (text.mode pooled, template structured).
    tuned        the full method with ``--tuned-config`` (best_configs/kvasir.yaml from
                 ``python tune.py --dataset kvasir --budget cpu --num-samples 12`` or more). Its method
                 knobs (losses, masking, mixing, optimizer, levels, template, ramp-up) are kept; the compute
                 knobs of the budget below, the data paths and the seed replace its own. Skipped with a
                 note when the file is absent.

Budget ``cpu`` (about 10 minutes per teacher-student run on 2 cores): 128 px, batch 8, teacher widths
16..256 and student widths 16..128 (half the config defaults), 600 optimizer steps (6 epochs of the 800
training images), validation every 50 steps, fp32, 2 threads, no DataLoader workers; warm-up (20) and
ramp-up (200 steps) keep their config defaults. Chosen with the timing probe ``--probe-steps``, measured
2026-11-29 on the first 40 images (the per-step cost does not depend on the set size) while other jobs
kept the load average at 3.4 to 4 on the 2 cores:

    python benchmarks/quality_kvasir.py --limit 40 --probe-steps 8 --cache-dir /tmp/qk-probe

    arm          wall s/step   CPU-s/step   (medians of 8 steps after one warm-up, incl. data loading)
    full         0.158         0.278
    gaze         0.182         0.306
    no_text      0.847         1.658
    full_method  0.854         1.674

A repeat of the probe while the load average climbed to 7 measured 1.5 to 5.8 s per teacher-student
step (and more CPU-seconds too, as contended threads spin), so rerun the probe on a quiet machine before
the full protocol and lower ``--steps`` if it projects well over 10 minutes. On the quiet figures a
teacher-student run of 600 steps takes about 8.5 minutes of steps plus 12 validations of 100 images
(about 1 s each) and start-up: about 10 minutes with the usual background load; the student-only arms take
about 2. The config-default widths (teacher 32..512) cost 2.9 s per teacher-student step at 128 px, batch
8 (synthetic batches, same load): only about 200 steps (2 epochs) would fit. bf16 autocast measured 0.54
s/step against 0.83 fp32 (avx512_bf16 CPU); the protocol stays fp32 (the reference precision) until bf16
training is shown to reach the same Dice.

Reported figures: for each run the val metrics of its best-val-Dice evaluation; per arm their mean and
sample standard deviation over the seeds; next to them the Dice of the CRF pseudo-mask the arm trains its
student on (``>= data.loose_level``) over the val ids, from the histograms that ``fgi prepare`` stores
per cache entry (original resolution, levels at 0.01 steps). HD95 is in pixels of the 128 px working size.

Outputs under ``--out`` (default ``benchmarks/out/``, git-ignored): ``quality_kvasir.md`` (the table),
``quality_kvasir.json`` (every run: config, curve, best and last val metrics, timings), ``runs/<arm>-seed<k>/``
(each run's best checkpoint) and ``final-<arm>/`` (the hand-over model: the best-val run of arm ``tuned``, or
``full_method`` without it, in the folder layout of ``fgi.checkpoint``: trainer.pt, config.yaml,
metrics.json, normalization.json). ``--smoke`` and ``--limit`` also put their own split (``splits-*/``) and
subset (``subset-N/``, symlinks) there.

    python benchmarks/quality_kvasir.py --write-splits                 # once; the files are committed
    python benchmarks/quality_kvasir.py --seeds 0 1 2 --tuned-config best_configs/kvasir.yaml
    python benchmarks/quality_kvasir.py --smoke --root DIR --fixations CSV   # tiny, for CI
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

import torch  # noqa: E402

from fgi.config import (  # noqa: E402
    Config,
    ConfigError,
    atomic_write_text,
    config_hash,
    load_yaml,
    override,
    to_dict,
)
from fgi.data.errors import DataError  # noqa: E402

SHARED = REPO.parent / "shared" / "data"
DEFAULT_ROOT = SHARED / "kvasir-seg"
DEFAULT_FIXATIONS = SHARED / "gazemedseg" / "kvasir_fixation.csv"
DEFAULT_SPLITS = REPO / "benchmarks" / "splits"
DEFAULT_OUT = REPO / "benchmarks" / "out"
DEFAULT_TUNED = REPO / "best_configs" / "kvasir.yaml"

BUDGETS: dict[str, dict[str, Any]] = {
    # about 10 minutes per teacher-student run on 2 cores (see the module docstring for the measurement)
    "cpu": {
        "data.image_size": 128,
        "model.teacher_widths": (16, 32, 64, 128, 256),
        "model.student_widths": (16, 16, 32, 64, 128),
        "train.batch_size": 8,
        "train.max_steps": 600,
        "train.eval_every": 50,
        "train.amp": "none",
        "train.channels_last": False,
        "train.compile": False,
    },
    # seconds per run: for CI
    "smoke": {
        "data.image_size": 32,
        "model.teacher_widths": (8, 8, 16, 16, 32),
        "model.student_widths": (8, 8, 8, 16, 16),
        "train.batch_size": 2,
        "train.max_steps": 4,
        "train.eval_every": 2,
        "train.amp": "none",
        "train.channels_last": False,
        "train.compile": False,
        "optim.warmup_fraction": 0.25,
        "loss.rampup_fraction": 0.5,
    },
}

ARMS: dict[str, dict[str, Any]] = {
    "full": {"train.method": "student_only", "data.supervision": "ground_truth", "masking.mask_ratio": 0.0,
             "text.mode": "none"},
    "gaze": {"train.method": "student_only", "data.supervision": "gaze", "masking.mask_ratio": 0.0,
             "text.mode": "none", "data.loose_level": 0.3, "data.level_source": "crf"},
    "no_text": {"train.method": "teacher_student", "data.supervision": "gaze", "text.mode": "none"},
    "full_method": {"train.method": "teacher_student", "data.supervision": "gaze", "text.mode": "pooled",
                    "text.template": "structured"},
    "tuned": {"train.method": "teacher_student", "data.supervision": "gaze"},
}
ARM_LABELS = {
    "full": "(a) full supervision (student, GT masks)",
    "gaze": "(b) gaze only (student, CRF pseudo-masks)",
    "no_text": "(c) teacher-student, no text",
    "full_method": "(d) full method, default template",
    "tuned": "(e) full method, tuned config",
}
RECORD_FILE = "run.json"  # a finished run's record, next to its best checkpoint
GOAL_MARGIN = 0.02  # (d) must beat (b) by 2 Dice points
GOAL_FRACTION = 0.95  # (d) must reach 95 % of (a)


class ProtocolError(RuntimeError):
    """Missing data or inconsistent options; the message names the path or option."""


# ---------------------------------------------------------------- splits and data


def image_ids(root: Path) -> list[str]:
    """Sorted ids (file stems) of ``root/images``."""
    folder = root / "images"
    if not folder.is_dir():
        raise ProtocolError(f"{folder}: Kvasir-SEG image folder not found (pass --root DIR with images/ and masks/)")
    ids = sorted(p.stem for p in folder.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    if not ids:
        raise ProtocolError(f"{folder}: no .jpg/.png images")
    return ids


def write_splits(root: Path, split_dir: Path, n_val: int, seed: int) -> tuple[list[str], list[str]]:
    """Write a seeded train/val split of the images under ``root`` as ``train.txt`` and ``val.txt``.

    Args:
        root: dataset folder with ``images/``.
        split_dir: where the two files go.
        n_val: validation images; the rest are training images.
        seed: seed of the permutation (``fgi.seed.numpy_rng``).

    Returns:
        (train ids, val ids), each sorted.
    """
    from fgi.seed import numpy_rng

    ids = image_ids(root)
    if not 0 < n_val < len(ids):
        raise ProtocolError(f"--n-val: {n_val} must lie between 1 and {len(ids) - 1} for the {len(ids)} images in {root}")
    order = numpy_rng(seed).permutation(len(ids))
    val = sorted(ids[i] for i in order[:n_val])
    train = sorted(ids[i] for i in order[n_val:])
    atomic_write_text(split_dir / "train.txt", "\n".join(train) + "\n")
    atomic_write_text(split_dir / "val.txt", "\n".join(val) + "\n")
    return train, val


def check_data(root: Path, fixations: Path, split_dir: Path | None) -> None:
    """Fail with the path when the dataset, the fixation CSV or the split files (unless None) are absent."""
    if not root.is_dir():
        raise ProtocolError(f"{root}: Kvasir-SEG data not found (pass --root DIR with images/ and masks/; "
                            f"the shared copy lives in {DEFAULT_ROOT})")
    for sub in ("images", "masks"):
        if not (root / sub).is_dir():
            raise ProtocolError(f"{root / sub}: folder not found; --root must hold images/ and masks/")
    if not fixations.is_file():
        raise ProtocolError(f"{fixations}: fixation CSV not found (pass --fixations PATH)")
    for name in ("train.txt", "val.txt") if split_dir is not None else ():
        if not (split_dir / name).is_file():
            raise ProtocolError(f"{split_dir / name}: split file not found; write it with --write-splits")


def subset(root: Path, fixations: Path, limit: int, out: Path) -> tuple[Path, Path]:
    """The first ``limit`` images of ``root`` (symlinks, made afresh) with their fixation rows, under ``out``."""
    import shutil

    from bench_prepare import subset_root

    shutil.rmtree(out, ignore_errors=True)
    return subset_root(root, fixations, limit, out / "raw" / "kvasir")


# ---------------------------------------------------------------- configs


def base_config(args: argparse.Namespace, budget: str, root: Path, fixations: Path, split_dir: Path) -> Config:
    """Defaults, the budget, the data paths and the command-line compute overrides."""
    updates: dict[str, Any] = {
        "data.dataset": "kvasir",
        "data.in_channels": 3,
        "data.root": str(root),
        "data.fixations": str(fixations),
        "data.split_dir": str(split_dir),
        "data.num_workers": 0,
        "train.threads": args.threads,
        **BUDGETS[budget],
    }
    if args.cache_dir:
        updates["data.cache_dir"] = str(Path(args.cache_dir).resolve())
    if args.steps is not None:
        updates["train.max_steps"] = args.steps
        updates["train.eval_every"] = min(BUDGETS[budget]["train.eval_every"], args.steps)
    if args.image_size is not None:
        updates["data.image_size"] = args.image_size
    return override(Config(), updates)


DATA_KEYS = ("data.dataset", "data.in_channels", "data.root", "data.fixations", "data.split_dir", "data.cache_dir",
             "data.val_fraction", "data.split_seed", "data.num_workers", "train.threads")


def arm_config(arm: str, base: Config, budget: str, seed: int, tuned: Config | None) -> Config:
    """The config of one run: the arm's method settings on the shared budget and data.

    Args:
        arm: a name of ``ARMS``.
        base: defaults with the budget and the data paths applied (``base_config``).
        budget: the budget name; for arm tuned its keys and the data keys are taken from ``base``.
        seed: ``train.seed``.
        tuned: the tuned config (arm tuned only).
    """
    if arm != "tuned":
        return override(base, {**ARMS[arm], "train.seed": seed})
    if tuned is None:
        raise ProtocolError("arm tuned needs --tuned-config")
    # keep the tuned method knobs; compute, data paths and threads come from the budget
    keys = list(DATA_KEYS) + [k for k in BUDGETS[budget] if k not in DATA_KEYS]
    shared = {k: getattr(getattr(base, k.split(".")[0]), k.split(".")[1]) for k in keys}
    return override(tuned, {**shared, **ARMS[arm], "train.seed": seed})


def load_tuned(path: Path | None) -> Config | None:
    """The tuned config, or None (with a printed note) when the file is absent."""
    if path is None or not path.is_file():
        print(f"note: arm (e) tuned skipped: {path} not found (run `python tune.py --dataset kvasir --budget cpu "
              f"--num-samples 12` first, or pass --tuned-config)", flush=True)
        return None
    return load_yaml(path)


# ---------------------------------------------------------------- training


def train_run(cfg: Config, device: torch.device, run_dir: Path | None, label: str,
              probe_steps: int = 0) -> dict[str, Any]:
    """Train one run with ``fgi.loop.run_loop``, validating every ``train.eval_every`` steps, and keep the best
    val-Dice checkpoint.

    Args:
        cfg: the run's config (``data.cache_dir`` prepared).
        device: where the models train.
        run_dir: where the best checkpoint folder goes; None keeps nothing (probe).
        label: printed with every progress line.
        probe_steps: when > 0, time this many steps (after one warm-up) and one validation, and stop.

    Returns:
        The run record: config, curve, best and last val metrics, timings, checkpoint folder.
    """
    from fgi.checkpoint import write_checkpoint
    from fgi.distributed import build_loaders, epoch_batches
    from fgi.engine import TeacherStudentTrainer
    from fgi.loop import run_loop

    t_start = time.perf_counter()
    trainer = TeacherStudentTrainer(cfg, device)
    loaders = build_loaders(cfg, rank=0, world=1)
    max_steps = probe_steps + 1 if probe_steps else cfg.train.max_steps
    curve: list[dict[str, float]] = []
    best: dict[str, float] | None = None

    def on_eval(step: int, val: Mapping[str, float], losses: Mapping[str, float]) -> None:
        nonlocal best
        point = {"step": step, "loss": losses.get("loss", 0.0), **{k: v for k, v in val.items() if k.startswith("val_")}}
        curve.append(point)
        improved = best is None or point["val_dice"] > best["val_dice"]
        if improved:
            best = point
            if run_dir is not None:
                write_checkpoint(run_dir, trainer, point, loaders["normalization"])
        print(f"  {label} step {step}/{max_steps} loss {point['loss']:.4f} val_dice {point['val_dice']:.4f} "
              f"{'(best) ' if improved else ''}{time.perf_counter() - t_start:.0f}s", flush=True)

    times = run_loop(trainer, epoch_batches(loaders), max_steps=max_steps,
                     eval_every=max_steps if probe_steps else cfg.train.eval_every,
                     evaluate=lambda: trainer.evaluate(loaders["val"]), on_eval=on_eval)
    skip = 1 if len(times.step_wall) > 1 else 0  # the first step allocates and warms up
    return {
        "config": to_dict(cfg),
        "config_hash": config_hash(cfg),
        "curve": curve,
        "best": best,
        "last": curve[-1],
        "seconds": round(time.perf_counter() - t_start, 2),
        "s_per_step": round(statistics.median(times.step_wall[skip:]), 4),
        "cpu_s_per_step": round(statistics.median(times.step_cpu[skip:]), 4),
        "s_per_eval": round(statistics.median(times.evaluation), 4),
        "checkpoint": str(run_dir) if run_dir is not None else None,
    }


def finished_run(run_dir: Path, cfg: Config) -> dict[str, Any] | None:
    """The record of a run finished earlier with the same config, or None."""
    try:
        rec = json.loads((run_dir / RECORD_FILE).read_text())
    except (OSError, ValueError):
        return None
    return rec if rec.get("config_hash") == config_hash(cfg) else None


# ---------------------------------------------------------------- report


def pseudo_mask_dice(cache_dir: Path, ids: Sequence[str], level_source: str, level: float) -> float:
    """Mean Dice of the prepared soft map ``>= level`` against the ground truth over ``ids``.

    Computed at the original resolution from the histograms ``fgi prepare`` stores per entry (0.01 steps).
    """
    from fgi.data.cache import load_manifest
    from fgi.data.report import dice_at

    manifest = load_manifest(cache_dir)
    if manifest is None:
        raise ProtocolError(f"{cache_dir}: no manifest.json; the cache was not prepared")
    vals = []
    for i in ids:
        st = manifest["items"][i]["stats"]
        if "mask_sum" not in st:
            continue
        hist_all, hist_fg = st[f"hist_{level_source}"]
        vals.append(dice_at(hist_all, hist_fg, st["mask_sum"], level))
    return float(statistics.fmean(vals)) if vals else float("nan")


def mean_sd(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (nan for one value)."""
    m = float(statistics.fmean(values))
    return m, float(statistics.stdev(values)) if len(values) > 1 else float("nan")


def _fmt(values: Sequence[float], digits: int) -> str:
    m, sd = mean_sd(values)
    return f"{m:.{digits}f} ± {sd:.{digits}f}" if sd == sd else f"{m:.{digits}f}"


def summarize(runs: Mapping[str, list[dict[str, Any]]], pseudo: Mapping[str, float | None]) -> dict[str, dict]:
    """Per arm: mean and sd over seeds of the best-checkpoint val Dice, IoU, HD95 and ASD."""
    out = {}
    for arm, rs in runs.items():
        row: dict[str, Any] = {"seeds": [r["seed"] for r in rs], "pseudo_mask_dice": pseudo.get(arm)}
        for m in ("dice", "iou", "hd95", "asd"):
            vals = [r["best"][f"val_{m}"] for r in rs]
            row[m] = {"mean": mean_sd(vals)[0], "sd": mean_sd(vals)[1], "values": vals}
        row["s_per_step"] = statistics.fmean(r["s_per_step"] for r in rs)
        row["minutes"] = statistics.fmean(r["seconds"] for r in rs) / 60
        out[arm] = row
    return out


def goals(summary: Mapping[str, dict]) -> list[dict[str, Any]]:
    """The three goals of the protocol on mean val Dice; ``holds`` is None when an arm is missing."""
    d = {arm: row["dice"]["mean"] for arm, row in summary.items()}

    def goal(text: str, needs: tuple[str, ...], test: Any, detail: Any) -> dict[str, Any]:
        if any(a not in d for a in needs):
            return {"goal": text, "holds": None, "detail": f"not run: arm(s) {[a for a in needs if a not in d]} missing"}
        return {"goal": text, "holds": bool(test()), "detail": detail()}

    return [
        goal("(d) beats (b) by >= 2 Dice points", ("full_method", "gaze"),
             lambda: d["full_method"] - d["gaze"] >= GOAL_MARGIN,
             lambda: f"(d) - (b) = {100 * (d['full_method'] - d['gaze']):+.2f} points"),
        goal("(e) >= (d)", ("tuned", "full_method"), lambda: d["tuned"] >= d["full_method"],
             lambda: f"(e) - (d) = {100 * (d['tuned'] - d['full_method']):+.2f} points"),
        goal("(d) >= 95% of (a)", ("full_method", "full"), lambda: d["full_method"] >= GOAL_FRACTION * d["full"],
             lambda: f"(d) / (a) = {100 * d['full_method'] / d['full']:.1f}%"),
    ]


def markdown(summary: Mapping[str, dict], runs: Mapping[str, list[dict]], goal_rows: list[dict], budget: Config,
             pseudo_levels: list[dict], n_val: int, command: str) -> str:
    """The report: arm table, pseudo-mask Dice on the val ids, goals, and the command."""
    size = budget.data.image_size
    lines = [
        f"Validation split ({n_val} images), best-val-Dice "
        f"checkpoint of each run, mean ± sample sd over seeds; HD95 in pixels at {size} px.",
        "",
        "| arm | seeds | val Dice | val IoU | val HD95 (px) | pseudo-mask Dice (val) | s/step | min/run |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for arm, row in summary.items():
        rs = runs[arm]
        pm = row["pseudo_mask_dice"]
        pm_text = "— (ground truth)" if pm is None else f"{pm:.4f} (CRF ≥ {rs[0]['config']['data']['loose_level']:g})"
        lines.append(
            f"| {ARM_LABELS[arm]} | {' '.join(str(s) for s in row['seeds'])} | "
            f"{_fmt(row['dice']['values'], 4)} | {_fmt(row['iou']['values'], 4)} | {_fmt(row['hd95']['values'], 2)} | "
            f"{pm_text} | {row['s_per_step']:.3f} | {row['minutes']:.1f} |")
    lines += ["", "Pseudo-masks on the val ids (original resolution, against the ground truth):", "",
              "| pseudo-mask | Dice |", "|---|---|"]
    lines += [f"| {p['map']} ≥ {p['level']:g} | {p['dice']:.4f} |" for p in pseudo_levels]
    lines += ["", "| goal | holds | detail |", "|---|---|---|"]
    for g in goal_rows:
        mark = "n/a" if g["holds"] is None else ("yes" if g["holds"] else "no")
        lines.append(f"| {g['goal']} | {mark} | {g['detail']} |")
    lines += ["", f"Budget: {size} px, batch {budget.train.batch_size}, {budget.train.max_steps} steps, validation every "
              f"{budget.train.eval_every}, teacher widths {list(budget.model.teacher_widths)}, student widths "
              f"{list(budget.model.student_widths)}, {budget.train.threads or 'default'} threads, fp32.",
              "", f"Command: `{command}`", ""]
    return "\n".join(lines)


# ---------------------------------------------------------------- main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line (see the module docstring)."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--root", default=str(DEFAULT_ROOT), help="Kvasir-SEG folder with images/ and masks/")
    ap.add_argument("--fixations", default=str(DEFAULT_FIXATIONS), help="GazeMedSeg fixation CSV")
    ap.add_argument("--split-dir", default=None,
                    help=f"folder with train.txt and val.txt (default: {DEFAULT_SPLITS}; with --smoke or --limit a "
                         "seeded split of the images used, written under --out)")
    ap.add_argument("--write-splits", action="store_true", help="write the seeded split of --root to --split-dir and exit")
    ap.add_argument("--n-val", type=int, default=100, help="validation images of --write-splits")
    ap.add_argument("--split-seed", type=int, default=0, help="seed of --write-splits")
    ap.add_argument("--arms", nargs="+", default=list(ARMS), choices=list(ARMS), help="arms to run")
    ap.add_argument("--seeds", nargs="+", type=int, default=None, help="training seeds (default: 0 1 2; --smoke: 0)")
    ap.add_argument("--tuned-config", default=str(DEFAULT_TUNED), help="best config YAML of arm tuned")
    ap.add_argument("--steps", type=int, default=None, help="optimizer steps per run (default: the budget's)")
    ap.add_argument("--image-size", type=int, default=None, help="working size in pixels (default: the budget's)")
    ap.add_argument("--smoke", action="store_true", help="tiny: a few steps, tiny widths, one seed, any data root")
    ap.add_argument("--limit", type=int, default=0, help="use only the first N images of --root (0: all)")
    ap.add_argument("--probe-steps", type=int, default=0,
                    help="timing probe: time N steps and one validation per arm (first seed), print them, keep nothing")
    ap.add_argument("--device", default="cpu", help="torch device of the training runs (cpu, cuda, cuda:1)")
    ap.add_argument("--resume", action="store_true",
                    help="reuse runs already finished under --out/runs with the same config (after an interruption)")
    ap.add_argument("--threads", type=int, default=2, help="torch threads (train.threads)")
    ap.add_argument("--workers", type=int, default=2, help="processes of the one-time data preparation")
    ap.add_argument("--cache-dir", default=None, help="prepared cache (default: where fgi prepare puts it)")
    ap.add_argument("--out", default=str(DEFAULT_OUT), help="report, JSON and checkpoints go here")
    ap.add_argument("--register-as", default=None,
                    help="also register the hand-over model in MLflow under this name (e.g. fgi-kvasir)")
    ap.add_argument("--mlflow-uri", default=None, help="MLflow tracking URI of --register-as (default: MLFLOW_TRACKING_URI "
                                                       "or $FGI_HOME)")
    ap.add_argument("--experiment", default="fgi-kvasir-quality", help="MLflow experiment of --register-as")
    args = ap.parse_args(argv)
    if args.seeds is None:
        args.seeds = [0] if args.smoke else [0, 1, 2]
    return args


def run(args: argparse.Namespace, argv: list[str]) -> int:
    """Write the splits, or resolve the data (whole root, or a subset) and run the protocol."""
    root, fixations = Path(args.root).expanduser().resolve(), Path(args.fixations).expanduser().resolve()
    out = Path(args.out).expanduser().resolve()
    given_splits = Path(args.split_dir).expanduser().resolve() if args.split_dir else None
    if args.write_splits:
        split_dir = given_splits or DEFAULT_SPLITS
        train, val = write_splits(root, split_dir, args.n_val, args.split_seed)
        print(f"wrote {split_dir / 'train.txt'} ({len(train)} ids) and {split_dir / 'val.txt'} ({len(val)} ids), "
              f"seed {args.split_seed}")
        return 0
    own_split = given_splits is None and (args.smoke or args.limit > 0)
    check_data(root, fixations, None if own_split else given_splits or DEFAULT_SPLITS)
    if args.limit:
        root, fixations = subset(root, fixations, args.limit, out / f"subset-{args.limit}")
    split_dir = given_splits or DEFAULT_SPLITS
    if own_split:
        # a tiny or partial root cannot use the committed 900-image split: draw one of its own images, at a
        # fixed place so that a rerun finds the same cache and --resume the same configs
        split_dir = out / f"splits-{'smoke' if args.smoke else 'limit'}"
        write_splits(root, split_dir, max(1, len(image_ids(root)) // 4), args.split_seed)
    return protocol(args, argv, root, fixations, split_dir, out)


def probe(args: argparse.Namespace, configs: Mapping[str, Config], device: torch.device, n_val: int) -> int:
    """Timing probe: a few steps and one validation per arm, projected to a full run of the budget."""
    print(f"timing probe: {args.probe_steps} steps after one warm-up, then one validation of {n_val} images; "
          f"{args.threads} threads; load average {os.getloadavg()[0]:.1f}")
    for arm, cfg in configs.items():
        rec = train_run(cfg, device, None, arm, probe_steps=args.probe_steps)
        evals = cfg.train.max_steps // cfg.train.eval_every
        wall = cfg.train.max_steps * rec["s_per_step"] + evals * rec["s_per_eval"] * 100 / n_val
        # on idle cores the threads run side by side: CPU seconds / threads bounds the wall time from below
        idle = wall * (rec["cpu_s_per_step"] / args.threads) / rec["s_per_step"]
        print(f"probe {arm}: {rec['s_per_step']:.3f} s/step wall, {rec['cpu_s_per_step']:.3f} CPU-s/step "
              f"(medians, incl. data loading), {rec['s_per_eval']:.2f} s per validation of {n_val} images; "
              f"projected run of {cfg.train.max_steps} steps with 100 val images: {wall / 60:.1f} min at this wall "
              f"time, {idle / 60:.1f} min on {args.threads} idle cores", flush=True)
    print(f"load average after the probe {os.getloadavg()[0]:.1f}")
    return 0


def protocol(args: argparse.Namespace, argv: list[str], root: Path, fixations: Path, split_dir: Path, out: Path) -> int:
    """Prepare the data once, train every arm and seed, then report, check the goals and save the model."""
    from fgi.data.dataset import ensure_prepared

    budget = "smoke" if args.smoke else "cpu"
    base = base_config(args, budget, root, fixations, split_dir)
    tuned = load_tuned(Path(args.tuned_config)) if "tuned" in args.arms else None
    arms = [a for a in args.arms if a != "tuned" or tuned is not None]
    if not arms:
        raise ProtocolError(f"--arms: nothing left to run of {args.arms}")
    configs = {arm: [arm_config(arm, base, budget, s, tuned) for s in args.seeds] for arm in arms}

    # prepare once, with text when an arm needs it, so every arm finds the cache current
    order = sorted(arms, key=lambda a: configs[a][0].text.mode == "none")
    t = time.perf_counter()
    caches = {arm: ensure_prepared(configs[arm][0], workers=args.workers) for arm in order}
    print(f"data ready in {time.perf_counter() - t:.1f}s: {sorted({str(c) for c in caches.values()})}", flush=True)
    configs = {arm: [override(c, {"data.cache_dir": str(caches[arm])}) for c in cs] for arm, cs in configs.items()}
    val_ids = (split_dir / "val.txt").read_text().split()

    device = torch.device(args.device)
    if args.probe_steps:
        return probe(args, {arm: cs[0] for arm, cs in configs.items()}, device, len(val_ids))

    runs: dict[str, list[dict[str, Any]]] = {}
    t_all = time.perf_counter()
    for arm in arms:
        for seed, cfg in zip(args.seeds, configs[arm], strict=True):
            label = f"{arm} seed {seed}"
            print(f"== {label} ({ARM_LABELS[arm]})", flush=True)
            run_dir = out / "runs" / f"{arm}-seed{seed}"
            rec = finished_run(run_dir, cfg) if args.resume else None
            if rec is not None:
                print(f"   reusing the finished run in {run_dir} (--resume)", flush=True)
            else:
                rec = train_run(cfg, device, run_dir, label)
                rec.update({"arm": arm, "seed": seed})
                atomic_write_text(run_dir / RECORD_FILE, json.dumps(rec, indent=1))
            runs.setdefault(arm, []).append(rec)
            b = rec["best"]
            print(f"   best at step {b['step']}: val Dice {b['val_dice']:.4f} IoU {b['val_iou']:.4f} "
                  f"HD95 {b['val_hd95']:.2f}; {rec['s_per_step']:.3f} s/step, {rec['seconds'] / 60:.1f} min", flush=True)

    cache = Path(configs[arms[0]][0].data.cache_dir)
    pseudo: dict[str, float | None] = {}
    for arm in arms:
        c = configs[arm][0]
        pseudo[arm] = None if c.data.supervision == "ground_truth" else pseudo_mask_dice(
            Path(c.data.cache_dir), val_ids, c.data.level_source, c.data.loose_level)
    levels = sorted({(c[0].data.level_source, lvl) for c in configs.values()
                     for lvl in (c[0].data.tight_level, c[0].data.loose_level)}, key=lambda x: (x[0], -x[1]))
    pseudo_levels = [{"map": m, "level": lvl, "dice": pseudo_mask_dice(cache, val_ids, m, lvl)} for m, lvl in levels]
    summary = summarize(runs, pseudo)
    goal_rows = goals(summary)
    command = "python benchmarks/quality_kvasir.py " + " ".join(argv)
    text = markdown(summary, runs, goal_rows, base, pseudo_levels, len(val_ids), command.strip())
    print()
    print(text)
    for g in goal_rows:
        mark = "n/a" if g["holds"] is None else ("HOLDS" if g["holds"] else "MISSED")
        print(f"goal {g['goal']}: {mark} ({g['detail']})")

    final_arm = "tuned" if "tuned" in runs else ("full_method" if "full_method" in runs else None)
    final_dir = None
    if final_arm is not None:
        final_dir = save_final(runs[final_arm], out / f"final-{final_arm}")
        print(f"hand-over model ({ARM_LABELS[final_arm]}): {final_dir}")
        if args.register_as:
            print(register_final(final_dir, final_arm, args, command.strip()))
    record = {
        "protocol": "quality_kvasir",
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "command": command.strip(),
        "budget": budget,
        "root": str(root),
        "fixations": str(fixations),
        "split_dir": str(split_dir),
        "threads": args.threads,
        "load_average_end": os.getloadavg(),
        "total_minutes": round((time.perf_counter() - t_all) / 60, 2),
        "summary": summary,
        "pseudo_mask_val": pseudo_levels,
        "goals": goal_rows,
        "final_model": str(final_dir) if final_dir else None,
        "runs": [r for rs in runs.values() for r in rs],
    }
    atomic_write_text(out / "quality_kvasir.md", text)
    atomic_write_text(out / "quality_kvasir.json", json.dumps(record, indent=1))
    print(f"wrote {out / 'quality_kvasir.md'} and {out / 'quality_kvasir.json'}")
    return 0


def save_final(arm_runs: list[dict[str, Any]], folder: Path) -> Path:
    """Write the best-val run of an arm as the hand-over checkpoint folder (``fgi.checkpoint.write_checkpoint``)."""
    from fgi.checkpoint import load_checkpoint, read_normalization, write_checkpoint
    from fgi.engine import TeacherStudentTrainer

    best = max(arm_runs, key=lambda r: r["best"]["val_dice"])
    src = Path(best["checkpoint"])
    trainer = load_checkpoint(src, TeacherStudentTrainer)
    return write_checkpoint(folder, trainer, {**best["best"], "seed": best["seed"]}, read_normalization(src))


def register_final(folder: Path, arm: str, args: argparse.Namespace, command: str) -> str:
    """Log the hand-over folder as an MLflow run of ``--experiment`` (config, val metrics) and register it."""
    from fgi import tracking
    from fgi.checkpoint import CONFIG_FILE, read_metrics
    from fgi.engine import TeacherStudentTrainer

    uri = tracking.resolve_uri(args.mlflow_uri)
    metrics = read_metrics(folder)
    run_id = tracking.start_final_run(uri, args.experiment, load_yaml(folder / CONFIG_FILE), f"quality-{arm}", command)
    try:
        tracking.log_final_metrics(uri, run_id, {f"best_{k}": v for k, v in metrics.items() if k.startswith("val_")},
                                   int(metrics["step"]))
        version = tracking.register_model(uri, run_id, folder, args.register_as, TeacherStudentTrainer)
    except BaseException:
        tracking.end_run(uri, run_id, failed=True)
        raise
    tracking.end_run(uri, run_id)
    return f"registered models:/{args.register_as}/{version} (MLflow {uri}, run {run_id})"


def main(argv: list[str] | None = None) -> int:
    """Run the script; bad input prints one error line naming the path or option and returns 2."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    try:
        return run(args, argv)
    except (ProtocolError, DataError, ConfigError) as exc:
        print(f"quality_kvasir: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
