"""``fgi fidelity``: how well val Dice at an early step ranks the final val Dice (``fgi.search.fidelity``).

Reads finished runs (a folder of protocol records, or the trials of a sweep's MLflow experiment that ran their
whole schedule), prints one row per proxy and step: Spearman, Kendall, regret@1 and top-k recall with 95 %
bootstrap intervals over runs, and can log the table to a run (a sweep's parent). Use it to choose a staged
search's rung and proxy; it reads validation values only.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from fgi.commands import error_line
from fgi.config import ConfigError, load_yaml_text
from fgi.files import atomic_write_text
from fgi.search.fidelity import PROXIES, FidelityError, fidelity, format_table, runs_from_histories, runs_from_records


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``fgi fidelity``."""
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--records", type=Path, help="folder of finished-run records (e.g. benchmarks/results/protocol_v2)")
    source.add_argument("--experiment", help="MLflow experiment whose trials to read (those that ran to their end)")
    parser.add_argument("--mlflow-uri", default=None,
                        help="tracking URI of --experiment and --log-to-run (default: MLFLOW_TRACKING_URI, else fgi's)")
    parser.add_argument("--log-to-run", default=None, metavar="RUN_ID",
                        help="also log the table as fidelity.md on this MLflow run (e.g. the sweep's parent run)")
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
        if args.records is not None:
            runs, where = runs_from_records(args.records), f"{args.records}"
        else:
            runs, short = _mlflow_runs(args.mlflow_uri, args.experiment, ("val_dice", *args.proxy))
            where = f"experiment {args.experiment} ({short} trial(s) stopped early left out)"
        runs = [r for r in runs if not r.name.startswith(tuple(args.exclude))]
        rows = [fidelity(runs, proxy, step, k=args.k, samples=args.samples, seed=args.seed)
                for proxy in args.proxy for step in args.steps]
        table = format_table(rows)
        heading = f"{len(runs)} runs in {where}; final = val_dice at each run's last step\n"
        if args.log_to_run:
            from fgi import tracking

            tracking.log_run_text(tracking.resolve_uri(args.mlflow_uri), args.log_to_run, f"{heading}\n{table}",
                                  "fidelity.md")
    except (FidelityError, ConfigError, LookupError) as exc:
        print(error_line(exc, {}), file=sys.stderr)
        return 2
    print(heading)
    print(table, end="")
    if args.out is not None:
        atomic_write_text(args.out, table)
    return 0


def _mlflow_runs(uri: str | None, experiment: str, metrics: tuple[str, ...]) -> tuple[list, int]:
    """The runs of an experiment's trials that reached their ``train.max_steps``, and how many did not."""
    from fgi import tracking
    from fgi.tracking.history import TrialHistoryError, trial_histories

    resolved = tracking.resolve_uri(uri)
    curves: dict[str, dict[str, dict[int, float]]] = {}
    steps: dict[str, int] = {}
    try:
        for metric in dict.fromkeys(metrics):
            histories, _ = trial_histories(resolved, experiment, metric)
            curves[metric] = {h.name: h.curve for h in histories}
            for h in histories:
                steps.setdefault(h.name, load_yaml_text(h.config_text, f"{h.name} config.yaml").train.max_steps)
    except TrialHistoryError as exc:
        raise FidelityError(str(exc)) from None
    return runs_from_histories(curves, steps)
