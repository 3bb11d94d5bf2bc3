"""Diagnose the teacher-student arm on real Kvasir data: which loss term moves validation Dice.

Trains arm ``d_fgi`` of ``protocol_kvasir.py`` (its budget, data and split; ``--steps`` shortens it) with
one term changed per variant. Every evaluation scores the teacher, the student and their ensemble on val
(the engine's ``val_dice_teacher`` / ``val_dice_student``), so a drop can be traced to the consistency
loss, the feature alignment, DARM, the ramp-up, or the teacher itself. Val only: no test image is read.

    python benchmarks/diagnose_ts.py --steps 500 --variants default no_cwc no_align
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import protocol_kvasir as pk  # noqa: E402

from fgi.config import ConfigError, override  # noqa: E402
from fgi.files import atomic_write_text  # noqa: E402

VARIANTS = {
    "default": {},
    "no_cwc": {"loss.cwc_weight": 0.0},
    "no_align": {"loss.align_weight": 0.0},
    "no_darm": {"masking.mask_ratio": 0.0},
    "slow_rampup": {"loss.rampup_fraction": 1.0},
    "symmetric_cwc": {"loss.cwc_form": "symmetric"},
    "ring_darm": {"masking.hide": "ring"},
}


def main(argv: list[str] | None = None) -> int:
    """Train each variant and write every curve to ``--out``."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=500, help="steps per variant (the protocol budget otherwise)")
    ap.add_argument("--variants", nargs="+", default=["default", "no_cwc", "no_align"], choices=list(VARIANTS))
    ap.add_argument("--cache-dir", default="", help="prepared cache (default: fgi's cache location)")
    ap.add_argument("--threads", type=int, default=2, help="torch threads")
    ap.add_argument("--out", type=Path, default=pk.DEFAULT_OUT / "diagnose_ts.json", help="curves (JSON)")
    args = ap.parse_args(argv)
    proto = pk.parse_args(["--steps", str(args.steps), "--threads", str(args.threads), "--cache-dir", args.cache_dir])
    try:
        pk.check_data(proto)
        from fgi.distributed import prepare

        base = prepare(pk.base_config(proto))
        curves = {}
        for name in args.variants:
            cfg = override(pk.arm_config("d_fgi", base, 0, None), VARIANTS[name])
            curves[name] = pk.train_run(cfg, args.out.parent / "diagnose" / name, name, resume=False)["curve"]
    except (pk.ProtocolError, ConfigError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    atomic_write_text(args.out, json.dumps(curves, indent=1))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
