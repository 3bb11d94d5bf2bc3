"""Diagnose the teacher-student arm on real Kvasir data: which loss term moves validation Dice.

Trains arm ``d_fgi`` of ``protocol_kvasir.py`` (its budget, data and split) with one term changed per
variant; the ``student_*`` variants train arm ``b_gaze`` (one image-only student) instead, to add one term to
the baseline rather than remove it from the method. Every evaluation scores the teacher, the student and
their ensemble on val (the engine's ``val_dice_teacher`` / ``val_dice_student``), so a drop can be traced to
the consistency loss, the feature alignment, DARM, the ramp-up, or the teacher itself. Val only: no test
image is read.

``--steps`` shortens the run (and so its schedules); ``--stop-at`` keeps the protocol's schedules and stops
early, so its curve is the first part of a full protocol run and compares step for step with the records.

    python benchmarks/diagnose_ts.py --steps 500 --variants default no_cwc no_align
    python benchmarks/diagnose_ts.py --steps 5000 --stop-at 1000 --variants student_darm no_darm

``--leak-check DIR ...`` trains nothing: it scores the student of each saved run state (a ``last/`` folder
of this script or of the protocol) on val twice, on the clean images and with DARM blocks drawn in each
image's own tight-XOR-loose gaze region (the training-time corruption, seeded). A student that scores
higher with the blocks has learned to read the lesion's outline from where the blocks are.

    python benchmarks/diagnose_ts.py --leak-check benchmarks/out/protocol_v2/b_gaze-seed0/last \
        benchmarks/out/protocol_v2/diagnose/student_darm/last
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import protocol_kvasir as pk  # noqa: E402

from fgi.config import ConfigError, override  # noqa: E402
from fgi.files import atomic_write_text  # noqa: E402

DARM_RATIO = 0.3  # the reference's mask ratio, which arm b_gaze turns off
VARIANTS: dict[str, tuple[str, dict]] = {
    "default": ("d_fgi", {}),
    "no_cwc": ("d_fgi", {"loss.cwc_weight": 0.0}),
    "no_align": ("d_fgi", {"loss.align_weight": 0.0}),
    "no_darm": ("d_fgi", {"masking.mask_ratio": 0.0}),
    "slow_rampup": ("d_fgi", {"loss.rampup_fraction": 1.0}),
    "symmetric_cwc": ("d_fgi", {"loss.cwc_form": "symmetric"}),
    "ring_darm": ("d_fgi", {"masking.hide": "ring"}),
    "student": ("b_gaze", {}),
    "student_darm": ("b_gaze", {"masking.mask_ratio": DARM_RATIO}),
    "student_darm_decoys": ("b_gaze", {"masking.mask_ratio": DARM_RATIO, "masking.decoy_ratio": DARM_RATIO}),
    "decoys": ("d_fgi", {"masking.decoy_ratio": DARM_RATIO}),
}


def leak_check(state_dir: Path, base: Any, seed: int = 0) -> dict[str, float]:
    """Val Dice of a saved run's student on clean images and on images with DARM blocks in the gaze region."""
    import torch

    from fgi.checkpoint import read_checkpoint
    from fgi.method.engine import TeacherStudentTrainer
    from fgi.method.masking import apply_darm, darm_mask, uncertain_region
    from fgi.method.metrics import dice_per_image
    from fgi.run.worker import build_loaders

    state = read_checkpoint(state_dir)
    cfg = override(pk.arm_config("b_gaze", base, 0, None), {"masking.mask_ratio": DARM_RATIO})
    trainer = TeacherStudentTrainer(cfg, torch.device("cpu"))
    student = trainer.models["student"]
    student.load_state_dict(state["models"]["student"])
    student.eval()
    generator = torch.Generator().manual_seed(seed)
    mc = cfg.masking
    clean, blocked = [], []
    with torch.no_grad():
        for batch in build_loaders(cfg, rank=0, world=1)["val"]:
            gt = batch["mask"].bool()
            hidden = darm_mask(uncertain_region(batch["tight"].bool(), batch["loose"].bool()), mc.mask_ratio,
                               mc.block_min, mc.block_max, generator, mc.hide, mc.decoy_ratio)
            masked, _ = apply_darm(batch["image"], batch["loose"], hidden)
            for image, out in ((batch["image"], clean), (masked, blocked)):
                out += dice_per_image(torch.sigmoid(student(image)["logits"]) > 0.5, gt).tolist()
    return {"clean": sum(clean) / len(clean), "blocked": sum(blocked) / len(blocked), "n": len(clean)}


def main(argv: list[str] | None = None) -> int:
    """Train each variant and write every curve to ``--out``."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=500, help="steps per variant (the protocol budget otherwise)")
    ap.add_argument("--leak-check", nargs="+", type=Path, default=[], help="saved run states to score (see above)")
    ap.add_argument("--stop-at", type=int, default=0, help="stop after this step, keeping the schedules")
    ap.add_argument("--variants", nargs="+", default=["default", "no_cwc", "no_align"], choices=list(VARIANTS))
    ap.add_argument("--cache-dir", default="", help="prepared cache (default: fgi's cache location)")
    ap.add_argument("--threads", type=int, default=2, help="torch threads")
    ap.add_argument("--out", type=Path, default=pk.DEFAULT_OUT / "diagnose_ts.json", help="curves (JSON)")
    args = ap.parse_args(argv)
    proto = pk.parse_args(["--steps", str(args.steps), "--threads", str(args.threads), "--cache-dir", args.cache_dir])
    try:
        pk.check_data(proto)
        from fgi.run.worker import prepare

        base = prepare(pk.base_config(proto))
        if args.leak_check:
            for state_dir in args.leak_check:
                dice = leak_check(state_dir, base)
                print(f"{state_dir}: student val Dice {dice['clean']:.4f} clean, {dice['blocked']:.4f} with DARM "
                      f"blocks ({dice['n']} images)")
            return 0
        curves = {}
        for name in args.variants:
            arm, changes = VARIANTS[name]
            cfg = override(pk.arm_config(arm, base, 0, None), changes)
            curves[name] = pk.train_run(cfg, args.out.parent / "diagnose" / name, name, resume=False,
                                        stop_at=args.stop_at)["curve"]
    except (pk.ProtocolError, ConfigError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    atomic_write_text(args.out, json.dumps(curves, indent=1))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
