"""``fgi fidelity``: how well val Dice at an early step ranks the final val Dice (``fgi.search.fidelity``).

Reads finished runs (a folder of protocol records), prints one row per proxy and step: Spearman, Kendall,
regret@1 and top-k recall with 95 % bootstrap intervals over runs. Use it to choose a staged search's rung
and proxy; it reads validation values only.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from fgi.files import atomic_write_text
from fgi.search.fidelity import PROXIES, FidelityError, fidelity, format_table, runs_from_records


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``fgi fidelity``."""
    parser.add_argument("--records", required=True, type=Path,
                        help="folder of finished-run records (e.g. benchmarks/results/protocol_v2)")
    parser.add_argument("--proxy", nargs="+", default=["val_dice"], choices=PROXIES,
                        help="validation curves read at the early step (default: the predictor's val_dice)")
    parser.add_argument("--steps", nargs="+", type=int, required=True, help="early steps (rungs) to check")
    parser.add_argument("--k", type=int, default=3, help="size of the top sets of the recall (default 3)")
    parser.add_argument("--samples", type=int, default=2000, help="bootstrap resamples (default 2000)")
    parser.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")
    parser.add_argument("--exclude", nargs="+", default=[], metavar="PREFIX",
                        help="leave out runs whose name starts with one of these (e.g. a_full: another supervision)")
    parser.add_argument("--out", type=Path, default=None, help="also write the table to this Markdown file")


def main(args: argparse.Namespace) -> int:
    """Print the fidelity table; bad input prints one line naming it and exits 2."""
    try:
        if args.k < 1 or args.samples < 1:
            raise FidelityError(f"--k and --samples: must be >= 1, got {args.k} and {args.samples}")
        runs = [r for r in runs_from_records(args.records) if not r.name.startswith(tuple(args.exclude))]
        rows = [fidelity(runs, proxy, step, k=args.k, samples=args.samples, seed=args.seed)
                for proxy in args.proxy for step in args.steps]
    except FidelityError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    table = format_table(rows)
    print(f"{len(runs)} runs in {args.records}; final = val_dice at each run's last step\n")
    print(table, end="")
    if args.out is not None:
        atomic_write_text(args.out, table)
    return 0
