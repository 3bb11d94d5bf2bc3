"""``fgi synth``: write the built-in synthetic dataset as a raw folder (images/, masks/, split files).

The folder has the files layout of Kvasir-SEG, so ``fgi predict --images DIR/images`` and
``fgi evaluate --dataset synthetic --root DIR`` run without any downloaded data. The pixels depend only on
``data.synthetic_seed`` and ``data.image_size``, so a folder written with the config (and budget) a model
was trained with holds the very test images that training scored.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from fgi import budgets
from fgi.config import Config, ConfigError, load_yaml, override
from fgi.data.errors import DataError
from fgi.data.synthetic import SPLITS, export_folder

# option -> config key it overrides
_OVERRIDES = (("seed", "data.synthetic_seed"), ("image_size", "data.image_size"), ("train", "data.synthetic_train"),
              ("val", "data.synthetic_val"), ("test", "data.synthetic_test"))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``fgi synth``."""
    parser.add_argument("--out", required=True, type=Path, help="folder to write (must be empty or absent)")
    parser.add_argument("--config", help="YAML config whose data.synthetic_* and data.image_size to use")
    parser.add_argument("--budget", choices=budgets.budget_names(), default=None,
                        help="compute preset applied on top of the config (its image size and counts)")
    parser.add_argument("--seed", type=int, help="data.synthetic_seed")
    parser.add_argument("--image-size", type=int, help="data.image_size: side of the images in pixels")
    parser.add_argument("--train", type=int, metavar="N", help="data.synthetic_train")
    parser.add_argument("--val", type=int, metavar="N", help="data.synthetic_val")
    parser.add_argument("--test", type=int, metavar="N", help="data.synthetic_test")
    parser.add_argument("--splits", nargs="+", choices=tuple(SPLITS), default=list(SPLITS),
                        help="splits to write (default: all three)")
    parser.add_argument("--force", action="store_true",
                        help="write into a non-empty folder (same-named files are replaced, others kept)")


def config_from_args(args: argparse.Namespace) -> Config:
    """The config of a ``fgi synth`` command line: YAML, then the budget, then the options."""
    cfg = load_yaml(args.config) if args.config else Config()
    if args.budget:
        cfg = budgets.apply_budget(cfg, args.budget)
    updates: dict[str, Any] = {key: v for opt, key in _OVERRIDES if (v := getattr(args, opt)) is not None}
    return override(cfg, updates) if updates else cfg


def main(args: argparse.Namespace) -> int:
    """Write the folder; bad input prints one line naming it and exits 2."""
    try:
        cfg = config_from_args(args)
        written = export_folder(args.out, cfg.data, args.splits, overwrite=args.force)
    except (DataError, ConfigError, FileNotFoundError) as exc:
        print(f"fgi synth: error: {exc}", file=sys.stderr)
        return 2
    counts = ", ".join(f"{len(ids)} {split}" for split, ids in written.items())
    print(f"wrote {counts} synthetic images and masks ({cfg.data.image_size} px, seed {cfg.data.synthetic_seed}) "
          f"to {args.out.resolve()}")
    return 0
