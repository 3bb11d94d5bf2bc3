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
from collections.abc import Mapping
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import quality_kvasir as qk  # noqa: E402

from fgi.config import Config, override  # noqa: E402
from fgi.files import atomic_write_text  # noqa: E402

VARIANTS = {
    "default": {},
    "no_cwc": {"loss.cwc_weight": 0.0},
    "no_align": {"loss.align_weight": 0.0},
    "no_darm": {"masking.mask_ratio": 0.0},
    "slow_rampup": {"loss.rampup_fraction": 1.0},
}


def run(cfg: Config, label: str) -> list[dict]:
    """Train with ``fgi.loop.run_loop`` and validate student and teacher every ``train.eval_every`` steps."""
    from fgi.distributed import build_loaders, epoch_batches
    from fgi.engine import TeacherStudentTrainer
    from fgi.loop import run_loop

    trainer = TeacherStudentTrainer(cfg, torch.device("cpu"))
    loaders = build_loaders(cfg, rank=0, world=1)
    as_teacher = override(cfg, {"model.predictor": "teacher"})
    curve: list[dict] = []
    t0 = time.perf_counter()

    def evaluate() -> dict[str, float]:
        student = trainer.evaluate(loaders["val"])["val_dice"]
        trainer.cfg = as_teacher
        try:
            teacher = trainer.evaluate(loaders["val"])["val_dice"]
        finally:
            trainer.cfg = cfg
        return {"student_dice": student, "teacher_dice": teacher}

    def on_eval(step: int, val: Mapping[str, float], losses: Mapping[str, float]) -> None:
        point = {"step": step, **val, **losses}
        curve.append(point)
        print(f"  {label} step {step}: student {point['student_dice']:.4f} teacher {point['teacher_dice']:.4f} "
              f"seg_t {point['loss_teacher_seg']:.3f} seg_s {point['loss_student_seg']:.3f} "
              f"cwc {point['loss_cwc']:.3f} align {point['loss_align']:.3f} ramp {point['rampup']:.2f} "
              f"{time.perf_counter() - t0:.0f}s", flush=True)

    run_loop(trainer, epoch_batches(loaders), max_steps=cfg.train.max_steps, eval_every=cfg.train.eval_every,
             evaluate=evaluate, on_eval=on_eval)
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
    atomic_write_text(Path(args.out), json.dumps(results, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
