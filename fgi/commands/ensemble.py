"""``fgi ensemble``: one model from the best K trials of a sweep (or from listed trial runs), scored on val.

The members are the trials' best checkpoints as MLflow keeps them, each answering with its own deployable
predictor on the image alone; the ensemble predicts with the mean of their probabilities. Only trials that
ran to their end compete (as for a sweep's best config), best ``best_<metric>`` first; a trial whose
predictor needs text is passed over, and said so. The ensemble and every member are scored on the val part
of the members' shared split, the same way, with a paired bootstrap interval of ensemble − best member over
val images. The folder is written under ``--out`` (``fgi predict`` and ``fgi evaluate`` read it), and logged
as a child run of the sweep and registered in MLflow unless ``--no-log``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from fgi.checkpoint import PRECISIONS
from fgi.commands import error_line, user_message
from fgi.commands.predict import URI_HELP
from fgi.data.errors import DataError
from fgi.fields import OptionError
from fgi.search.settings import METRIC_MODES


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``fgi ensemble``."""
    parser.add_argument("--experiment", required=True, help="MLflow experiment of the sweep (e.g. fgi-kvasir)")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--sweep", help="sweep whose best --top finished trials become the members")
    source.add_argument("--runs", nargs="+", metavar="RUN_ID", help="trial runs to use as members, in this order")
    parser.add_argument("--top", type=int, default=3, help="members taken from --sweep (default 3)")
    parser.add_argument("--metric", default="val_dice", choices=sorted(METRIC_MODES),
                        help="trial metric that ranks the members (their best_<metric>; default val_dice)")
    parser.add_argument("--precision", default="fp32", choices=sorted(PRECISIONS),
                        help="how the members' weights are stored (fp16 halves the folder)")
    parser.add_argument("--out", required=True, type=Path, help="ensemble folder to write")
    parser.add_argument("--register-as", default=None,
                        help="registered model name (default fgi-<dataset>-ensemble)")
    parser.add_argument("--no-log", action="store_true", help="write the folder only: no MLflow run, no registration")
    parser.add_argument("--mlflow-uri", default=None, help=URI_HELP)


def _members(uri: str, candidates: Sequence[Any], top: int, tmp: Path) -> tuple[list, list[str]]:
    """Download and load candidates in order until ``top`` deployable ones; the rest's notes."""
    from fgi.checkpoint import load_folder
    from fgi.ensemble import deployable
    from fgi.method.engine import TeacherStudentTrainer
    from fgi.tracking.ensemble import download_checkpoint

    chosen, notes = [], []
    for i, trial in enumerate(candidates):
        if len(chosen) == top:
            break
        folder = download_checkpoint(uri, trial.run_id, tmp / f"candidate-{i}")
        trainer, normalization = load_folder(folder, TeacherStudentTrainer)
        why = deployable(trainer.cfg)
        if why:
            notes.append(f"passed over {trial.describe()}: {why}")
            continue
        chosen.append((trial, trainer, normalization))
    return chosen, notes


def build(args: argparse.Namespace) -> dict[str, Any]:
    """Choose, score, write and log the ensemble; returns what was done (for the summary lines)."""
    from fgi import tracking
    from fgi.ensemble import Ensemble, write_ensemble
    from fgi.method.engine import TeacherStudentTrainer
    from fgi.search.ensembles import score_ensemble
    from fgi.tracking.ensemble import listed_trials, log_ensemble, ranked_trials

    if args.top < 1:
        raise OptionError("top", f"{args.top} must be at least 1")
    uri = tracking.resolve_uri(args.mlflow_uri)
    tracking.check_server(uri)  # a database or file store passes
    if args.sweep:
        candidates, left_out = ranked_trials(uri, args.experiment, args.sweep, args.metric, METRIC_MODES[args.metric])
        wanted = args.top
    else:
        candidates, left_out, wanted = listed_trials(uri, args.runs, args.metric), 0, len(args.runs)
    with tempfile.TemporaryDirectory(prefix="fgi-ensemble-") as tmp:
        chosen, notes = _members(uri, candidates, wanted, Path(tmp))
        if len(chosen) < wanted:
            raise OptionError("top", f"{wanted} members wanted but {len(chosen)} of {len(candidates)} finished "
                              f"trial(s) are deployable on images alone ({left_out} unfinished left out)")
        ensemble = Ensemble([tr for _, tr, _ in chosen], [n for _, _, n in chosen],
                            [f"trial {t.trial_id}" for t, _, _ in chosen])
        score = score_ensemble(ensemble)
    trials = [t for t, _, _ in chosen]
    members = [{"run_id": t.run_id, "trial_id": t.trial_id, f"best_{args.metric}": t.value, "step": t.step,
                "metrics": {"val_dice": d}} for t, d in zip(trials, score.member_dice, strict=True)]
    source = {"experiment": args.experiment, "sweep": args.sweep, "top": wanted, "metric": args.metric,
              "tracking_uri": uri}
    folder = write_ensemble(args.out, ensemble, {"source": source, "val": score.tracked()}, members, args.precision)
    table = "\n".join(f"| {i} | {t.trial_id} | {t.run_id} | {t.value:.4f} | {d:.4f} |"
                      for i, (t, d) in enumerate(zip(trials, score.member_dice, strict=True), start=1))
    report = (f"# Ensemble of {len(trials)} ({'sweep ' + args.sweep if args.sweep else 'listed runs'})\n\n"
              f"val Dice {score.metrics['val_dice']:.4f}; best member {score.member_dice[score.best]:.4f}; "
              f"ensemble − best member {score.gain:+.4f} (95 % CI {score.ci_low:+.4f} to {score.ci_high:+.4f}, "
              f"paired over {score.images} val images)\n\n"
              "| member | trial | run | sweep's best | val Dice (image only) |\n|---|---|---|---|---|\n"
              f"{table}\n" + "".join(f"\n{n}" for n in notes))
    run_id = version = None
    register_as = args.register_as or f"fgi-{ensemble.cfg.data.dataset}-ensemble"
    if not args.no_log:
        params = {"ensemble.members": [t.run_id for t in trials], "ensemble.top": wanted,
                  "ensemble.metric": args.metric, "ensemble.precision": args.precision, "ensemble.combine": "mean"}
        run_id, version = log_ensemble(uri, args.experiment, args.sweep, folder, run_name=f"ensemble-top{wanted}",
                                       params=params, metrics=score.tracked(), report=report,
                                       register_as=register_as, trainer_class=TeacherStudentTrainer)
    return {"folder": folder, "report": report, "run_id": run_id, "version": version, "name": register_as}


def main(args: argparse.Namespace) -> int:
    """Build the ensemble; exit 1 when MLflow lacks what was named, 2 on bad input."""
    try:
        done = build(args)
    except LookupError as exc:
        print(user_message(exc), file=sys.stderr)
        return 1
    except (OptionError, DataError, ValueError, FileNotFoundError) as exc:
        print(error_line(exc), file=sys.stderr)
        return 2
    print(done["report"])
    print(f"wrote {done['folder'].resolve()}")
    if done["run_id"]:
        print(f"logged as MLflow run {done['run_id']}; registered as {done['name']} version {done['version']}")
    return 0
