"""Search efficiency: ASHA + TPE against random search without early stopping, same number of trials.

Both sweeps run through ``fgi.search.sweep.run_sweep`` on the synthetic set, in this process on a local Ray,
one trial at a time so that trial order is the order the searcher chose. From each sweep's MLflow child
runs (validation Dice against step) it reports the total training steps spent until a trial first
reaches within ``--tolerance`` of the best validation Dice that either sweep finds.

    python benchmarks/bench_search.py                 # 10 trials each, cpu budget
    python benchmarks/bench_search.py --smoke         # 2 trials each, smoke budget (CI)
"""

from __future__ import annotations

import argparse
import contextlib
import os
import tempfile
from pathlib import Path


def run_sweep(name: str, search: str, scheduler: str, trials: int, budget: str, workdir: Path, uri: str) -> None:
    """One sweep into the shared MLflow store; Tune's progress and Ray's worker logs go to ``<workdir>/<name>.log``."""
    from fgi.search.sweep import SweepOptions
    from fgi.search.sweep import run_sweep as sweep

    options = SweepOptions(dataset="synthetic", budget=budget, num_samples=trials, search=search, scheduler=scheduler,
                           max_concurrent=1, workers_per_trial=1, cpus_per_worker=float(os.cpu_count() or 1),
                           storage=str(workdir / "ray"), mlflow_uri=uri, experiment="fgi-search-bench", name=name,
                           best_dir=str(workdir / name))
    log = workdir / f"{name}.log"
    with open(log, "w") as fh, contextlib.redirect_stdout(fh), contextlib.redirect_stderr(fh):
        result = sweep(options)
    if result.best_metrics is None:
        raise SystemExit(f"{name}: no trial reported {result.metric}:\n{log.read_text()[-3000:]}")


def curves(uri: str, sweep: str) -> list[list[tuple[int, float]]]:
    """(step, val_dice) of every trial of a sweep, trials in start order."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("fgi-search-bench")
    runs = client.search_runs([exp.experiment_id], filter_string=f"tags.`fgi.sweep` = '{sweep}' and tags.`fgi.kind` = 'trial'",
                              order_by=["attributes.start_time ASC"])
    out = []
    for run in runs:
        history = client.get_metric_history(run.info.run_id, "val_dice")
        out.append(sorted((int(m.step), float(m.value)) for m in history))
    return out


def steps_to_reach(trials: list[list[tuple[int, float]]], target: float) -> int | None:
    """Training steps summed over trials, in order, until a validation Dice >= ``target``; None if never."""
    spent = 0
    for curve in trials:
        for step, dice in curve:
            if dice >= target:
                return spent + step
        spent += curve[-1][0] if curve else 0
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--budget", default="cpu", choices=("smoke", "cpu"))
    parser.add_argument("--tolerance", type=float, default=0.01)
    parser.add_argument("--smoke", action="store_true", help="2 trials each at the smoke budget")
    args = parser.parse_args()
    from fgi.cli import OFFLINE_ENV

    for key, value in OFFLINE_ENV.items():
        os.environ.setdefault(key, value)
    os.environ.pop("RAY_ADDRESS", None)  # a local Ray of this machine's CPUs, never a cluster the shell points at
    trials, budget = (2, "smoke") if args.smoke else (args.trials, args.budget)
    with tempfile.TemporaryDirectory(prefix="fgi-search-") as tmp:
        workdir = Path(tmp)
        uri = f"sqlite:///{workdir / 'mlflow.db'}"
        arms = {"asha+tpe": ("tpe", "asha"), "random, no stopping": ("random", "none")}
        results = {}
        for label, (search, scheduler) in arms.items():
            sweep = label.replace("+", "-").replace(", ", "-").replace(" ", "-")
            run_sweep(sweep, search, scheduler, trials, budget, workdir, uri)
            results[label] = curves(uri, sweep)
    best = max(d for trial_curves in results.values() for c in trial_curves for _, d in c)
    target = best - args.tolerance
    print(f"{trials} trials per sweep, budget {budget}, one trial at a time; best val Dice of either sweep "
          f"{best:.4f}, target {target:.4f}")
    for label, trial_curves in results.items():
        total = sum(c[-1][0] for c in trial_curves if c)
        reach = steps_to_reach(trial_curves, target)
        own = max(d for c in trial_curves for _, d in c)
        print(f"{label:22s} best {own:.4f}  steps trained in all {total:6d}  "
              f"steps to reach target {reach if reach is not None else 'never':>6}")


if __name__ == "__main__":
    main()
