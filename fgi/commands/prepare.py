"""``fgi prepare``: build the cache of gaze heatmaps, CRF maps, descriptions and embeddings of a dataset."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from typing import Any

from fgi.config import Config, ConfigError, load_yaml, override
from fgi.data.errors import DataError
from fgi.data.prepare import prepare_cache
from fgi.data.report import check_levels, format_report, split_report
from fgi.data.splits import SPLIT_NAMES
from fgi.datasets import DATASET_NAMES, get_dataset, validate_names
from fgi.text.templates import TemplateError

# option -> config key it overrides
_OVERRIDES = (("dataset", "data.dataset"), ("root", "data.root"), ("cache_dir", "data.cache_dir"),
              ("fixations", "data.fixations"), ("split_dir", "data.split_dir"), ("image_size", "data.image_size"),
              ("on_missing_gaze", "gaze.on_missing"), ("describer", "text.describer"), ("vlm_path", "text.vlm_path"),
              ("encoder", "text.encoder"))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``fgi prepare``."""
    parser.add_argument("--config", help="YAML config; options below override its data/gaze/text entries")
    parser.add_argument("--dataset", choices=DATASET_NAMES, help="dataset registry name")
    parser.add_argument("--root", help="raw dataset folder")
    parser.add_argument("--cache-dir", help="cache folder (default: user cache dir keyed by the config hash)")
    parser.add_argument("--fixations", help="GazeMedSeg fixation CSV (datasets with real gaze: kvasir, nci-isbi)")
    parser.add_argument("--split-dir", help="folder with train.txt / val.txt / test.txt (default: root)")
    parser.add_argument("--image-size", type=int, help="side of the cached images and maps (data.image_size)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="parallel processes")
    parser.add_argument("--on-missing-gaze", choices=("skip", "fail"), help="images without fixations")
    parser.add_argument("--report", action="store_true", help="print the Dice of each gaze level against the ground truth")
    parser.add_argument("--report-split", choices=SPLIT_NAMES, default="",
                        help="report over this split only (choose gaze levels on val, never on test)")
    parser.add_argument("--report-levels", type=float, nargs="+", default=(), metavar="LEVEL",
                        help="report these levels (0.01 steps) instead of data.tight_level and data.loose_level")
    parser.add_argument("--overlays", type=int, default=0, metavar="N", help="write N overlay figures")
    parser.add_argument("--no-text", action="store_true", help="skip lesion descriptions and text embeddings")
    parser.add_argument("--describer", choices=("morphology", "vlm"), help="text.describer")
    parser.add_argument("--vlm-path", help="text.vlm_path: local vision-language model for --describer vlm")
    parser.add_argument("--encoder", help="text.encoder: 'minilm' or a local model path")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def config_from_args(args: argparse.Namespace) -> Config:
    """The config of a ``fgi prepare`` command line (YAML first, then the options).

    A dataset named on the command line brings its channel count along (``data.in_channels``).
    """
    cfg = load_yaml(args.config) if args.config else Config()
    updates: dict[str, Any] = {key: v for opt, key in _OVERRIDES if (v := getattr(args, opt, None)) is not None}
    if "data.dataset" in updates:
        updates["data.in_channels"] = get_dataset(updates["data.dataset"]).channels
    return override(cfg, updates) if updates else cfg


def _report(check: Callable[[], Any]) -> Any:
    """``check()``, with its ValueError as a ConfigError that names the report options."""
    try:
        return check()
    except ValueError as exc:
        raise ConfigError(f"--report-levels/--report-split: {exc}") from None


def main(args: argparse.Namespace) -> int:
    """Run ``fgi prepare``; bad input prints one error line and returns 2."""
    try:
        cfg = config_from_args(args)
        validate_names(cfg.data.dataset, cfg.text.template)
        if (args.report_split or args.report_levels) and not args.report:
            raise ConfigError("--report-split and --report-levels need --report")
        levels = list(args.report_levels) or sorted({cfg.data.tight_level, cfg.data.loose_level}, reverse=True)
        _report(lambda: check_levels(levels))  # before any work
        manifest = prepare_cache(cfg, None, workers=args.workers, progress=not args.no_progress,
                                 text=not args.no_text, overlays=args.overlays)
        if args.report:
            print(format_report(_report(lambda: split_report(manifest["items"], levels, args.report_split))))
    except (DataError, ConfigError, TemplateError) as exc:
        print(f"fgi prepare: error: {exc}", file=sys.stderr)
        return 2
    return 0
