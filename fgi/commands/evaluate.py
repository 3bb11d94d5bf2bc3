"""``fgi evaluate``: Dice, IoU, HD95 and ASD of a model on a prepared split or a raw dataset folder."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from fgi.commands import error_line
from fgi.commands.predict import MODEL_HELP, THRESHOLD_HELP, URI_HELP, check_threshold, load_model
from fgi.data.errors import DataError
from fgi.datasets import FILE_DATASETS
from fgi.files import atomic_write_text
from fgi.run.evaluation import SPLITS


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``fgi evaluate``."""
    parser.add_argument("--model", required=True, help=MODEL_HELP)
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
    trainer, normalization = load_model(args.model, args.mlflow_uri)
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

    trainer, _ = load_model(args.model, args.mlflow_uri)
    ensure_prepared(trainer.cfg)
    text = json.dumps(evaluate_split(trainer, args.split, num_workers=0), indent=1)
    print(text)
    if args.out:
        atomic_write_text(args.out, text + "\n")
    return 0


def main(args: argparse.Namespace) -> int:
    """Evaluate; bad input prints one line naming it and exits 2."""
    try:
        return evaluate_root(args) if args.root is not None else evaluate_prepared(args)
    except (DataError, ValueError, FileNotFoundError) as exc:
        print(error_line(exc), file=sys.stderr)
        return 2
