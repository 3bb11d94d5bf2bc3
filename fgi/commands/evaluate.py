"""``fgi evaluate``: Dice, IoU, HD95 and ASD of a model on a prepared split or a raw dataset folder."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from fgi.commands import error_line
from fgi.commands.predict import (
    MODEL_HELP,
    THRESHOLD_HELP,
    TTA_HELP,
    URI_HELP,
    check_threshold,
    load_model,
    set_tta,
)
from fgi.config import TTA_MODES
from fgi.data.errors import DataError
from fgi.datasets import FILE_DATASETS
from fgi.files import atomic_write_text
from fgi.run.evaluation import SPLITS


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``fgi evaluate``."""
    parser.add_argument("--model", required=True, action="append",
                        help=MODEL_HELP + "; repeat it (seeds of one config) to compare --tta modes over them")
    parser.add_argument("--mlflow-uri", default=None, help=URI_HELP)
    parser.add_argument("--split", default="test", choices=SPLITS,
                        help="split of the model's prepared dataset to score (without --root); with --root and "
                             "--dataset isic, the ISIC part folders to score")
    parser.add_argument("--dataset", default="kvasir", choices=FILE_DATASETS,
                        help="layout of --root: images/<id>.<ext> and masks/<id>.<ext> (kvasir, nci-isbi, and "
                             "synthetic as written by fgi synth), or ISIC 2018's part folders (isic)")
    parser.add_argument("--root", type=Path, default=None,
                        help="score a raw dataset folder at original resolution instead of a prepared split")
    parser.add_argument("--split-file", type=Path, default=None,
                        help="ids to score under --root, one per line (default: every image in images/)")
    parser.add_argument("--threshold", type=float, default=0.5, help=THRESHOLD_HELP + " (with --root)")
    parser.add_argument("--csv", type=Path, default=None,
                        help="with --root, also write the per-image metrics here as CSV (nothing is written without it)")
    parser.add_argument("--out", type=Path, default=None, help="write the mean metrics as JSON here too")
    parser.add_argument("--tta", nargs="+", default=None, choices=TTA_MODES, metavar="MODE",
                        help=f"{TTA_HELP}; several modes ({', '.join(TTA_MODES)}) compare each with the first on the "
                             "split (choose on val), per-image Dice averaged over the --model runs first")


def evaluate_root(args: argparse.Namespace) -> int:
    """Score ``--root`` at original resolution: summary on stdout, per-image CSV with ``--csv``, mean/sd JSON
    with ``--out``; nothing is written where the user did not ask."""
    from fgi.run.evaluation import (
        evaluate_folder,
        folder_ids,
        format_summary,
        read_ids,
        write_rows_csv,
        write_summary_json,
    )

    check_threshold(args.threshold)
    ids = read_ids(args.split_file) if args.split_file is not None else folder_ids(args.root, args.dataset, args.split)
    trainer, normalization = load_model(args.model[0], args.mlflow_uri, args.tta and args.tta[0])
    rows = evaluate_folder(trainer, normalization, args.root, ids, args.threshold, args.dataset, args.split)
    print(format_summary(rows))
    if args.csv:
        write_rows_csv(rows, args.csv)
        print(f"per-image metrics: {args.csv.resolve()}")
    if args.out:
        write_summary_json(rows, args.out)
    return 0


def evaluate_prepared(args: argparse.Namespace) -> int:
    """Score ``--split`` of the model's prepared cache (prepared first when absent); JSON on stdout."""
    from fgi.data.dataset import ensure_prepared
    from fgi.run.evaluation import evaluate_split

    trainer, _ = load_model(args.model[0], args.mlflow_uri, args.tta and args.tta[0])
    ensure_prepared(trainer.cfg)
    text = json.dumps(evaluate_split(trainer, args.split, num_workers=0), indent=1)
    print(text)
    if args.out:
        atomic_write_text(args.out, text + "\n")
    return 0


def compare_tta(args: argparse.Namespace) -> int:
    """Dice of each ``--tta`` mode against the first, paired over images (per-image Dice averaged over the
    ``--model`` runs first): a table on stdout, the mode to choose (the best one whose interval lies above 0,
    else the first) on its last line, and the figures as JSON with ``--out``."""
    from fgi.data.dataset import ensure_prepared
    from fgi.run.evaluation import evaluate_folder, folder_ids, read_ids, split_rows
    from fgi.search.compare import mean_over_seeds, paired_bootstrap

    check_threshold(args.threshold)
    ids = None
    if args.root is not None:
        ids = read_ids(args.split_file) if args.split_file is not None else folder_ids(args.root, args.dataset, args.split)
    loaded = [load_model(model, args.mlflow_uri) for model in args.model]  # each read once, scored under every mode
    if ids is None:
        for trainer, _ in loaded:
            ensure_prepared(trainer.cfg)
    dice: dict[str, dict[str, float]] = {}
    for mode in args.tta:
        runs = []
        for trainer, normalization in loaded:
            set_tta(trainer, mode)
            rows = (split_rows(trainer, args.split, num_workers=0) if ids is None else
                    evaluate_folder(trainer, normalization, args.root, ids, args.threshold, args.dataset, args.split))
            runs.append({r["id"]: r["dice"] for r in rows})
        dice[mode] = mean_over_seeds(runs)
    first = args.tta[0]
    table = {first: {"dice": float(np.mean(list(dice[first].values())))}}
    print(f"{'tta':<6} {'dice':>7} {'vs ' + first:>10}  95 % CI (paired over {len(dice[first])} images, "
          f"{len(args.model)} run(s) averaged)")
    print(f"{first:<6} {table[first]['dice']:7.4f}")
    for mode in args.tta[1:]:
        delta, lo, hi = paired_bootstrap(dice[mode], dice[first])
        table[mode] = {"dice": float(np.mean(list(dice[mode].values()))), "delta": delta, "lo": lo, "hi": hi}
        print(f"{mode:<6} {table[mode]['dice']:7.4f} {delta * 100:+9.2f}  [{lo * 100:+.2f}, {hi * 100:+.2f}]")
    above = [m for m in args.tta[1:] if table[m]["lo"] > 0]
    choice = max(above, key=lambda m: table[m]["delta"]) if above else first
    why = "its interval lies above 0" if above else "no mode's interval lies above 0"
    print(f"choose tta {choice}: {why}")
    if args.out:
        atomic_write_text(args.out, json.dumps({"split": args.split, "models": args.model, "modes": table,
                                                "choice": choice}, indent=1) + "\n")
    return 0


def main(args: argparse.Namespace) -> int:
    """Evaluate; bad input prints one line naming it and exits 2."""
    try:
        if args.tta is not None and len(args.tta) > 1:
            return compare_tta(args)
        if len(args.model) > 1:
            raise ValueError("--model: give one model, or several with two or more --tta modes to compare")
        return evaluate_root(args) if args.root is not None else evaluate_prepared(args)
    except (DataError, ValueError, FileNotFoundError) as exc:
        print(error_line(exc), file=sys.stderr)
        return 2
