"""Diagnose the teacher-student arm on real Kvasir data: which loss term moves validation Dice.

Trains the ``full_method`` arm of ``quality_kvasir.py`` (same budget, data and split) with one term
changed per variant and validates both the student and the teacher at every evaluation, so a drop can
be traced to the consistency loss, the feature alignment, DARM, or the teacher itself.

    python benchmarks/diagnose_ts.py --steps 300 --variants default no_cwc no_align
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import quality_kvasir as qk  # noqa: E402

from fgi.config import override  # noqa: E402

VARIANTS = {
    "default": {},
    "no_cwc": {"loss.cwc_weight": 0.0},
    "no_align": {"loss.align_weight": 0.0},
    "no_darm": {"masking.mask_ratio": 0.0},
    "slow_rampup": {"loss.rampup_steps": 1000},
}


def run(cfg, label: str) -> list[dict]:
    """Train and validate student and teacher every ``train.eval_every`` steps."""
    from fgi.distributed import build_loaders
    from fgi.engine import TeacherStudentTrainer

    trainer = TeacherStudentTrainer(cfg, torch.device("cpu"))
    loaders = build_loaders(cfg, rank=0, world=1)
    stream = qk._batches(loaders)
    as_teacher = override(cfg, {"model.predictor": "teacher"})
    curve, sums, count, t0 = [], {}, 0, time.perf_counter()
    while trainer.step < cfg.train.max_steps:
        for k, v in trainer.train_step(next(stream)).items():
            sums[k] = sums.get(k, 0.0) + v
        count += 1
        if trainer.step % cfg.train.eval_every:
            continue
        student = trainer.evaluate(loaders["val"])["val_dice"]
        trainer.cfg = as_teacher
        teacher = trainer.evaluate(loaders["val"])["val_dice"]
        trainer.cfg = cfg
        point = {"step": trainer.step, "student_dice": student, "teacher_dice": teacher,
                 **{k: v / count for k, v in sums.items()}}
        sums, count = {}, 0
        curve.append(point)
        print(f"  {label} step {trainer.step}: student {student:.4f} teacher {teacher:.4f} "
              f"seg_t {point['loss_teacher_seg']:.3f} seg_s {point['loss_student_seg']:.3f} "
              f"cwc {point['loss_cwc']:.3f} align {point['loss_align']:.3f} ramp {point['rampup']:.2f} "
              f"{time.perf_counter() - t0:.0f}s", flush=True)
    return curve


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--variants", nargs="+", default=["default", "no_cwc", "no_align"], choices=list(VARIANTS))
    ap.add_argument("--cache-dir", default=None)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=str(qk.DEFAULT_OUT / "diagnose_ts.json"))
    args = ap.parse_args()
    qargs = argparse.Namespace(threads=args.threads, cache_dir=args.cache_dir, steps=args.steps, image_size=None)
    base = qk.base_config(qargs, "cpu", qk.DEFAULT_ROOT, qk.DEFAULT_FIXATIONS, qk.DEFAULT_SPLITS)
    results = {}
    for name in args.variants:
        cfg = override(qk.arm_config("full_method", base, "cpu", 0, None), VARIANTS[name])
        results[name] = run(cfg, name)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
