"""Search efficiency: ASHA + TPE against random search without early stopping, same number of trials.

Both sweeps run through ``tune.py`` on the synthetic set, one trial at a time so that trial order is
the order the searcher chose. From each sweep's MLflow child runs (validation Dice against step) it
reports the total training steps spent until a trial first reaches within ``--tolerance`` of the best
validation Dice that either sweep finds.

    python benchmarks/bench_search.py                 # 10 trials each, cpu budget
    python benchmarks/bench_search.py --smoke         # 3 trials each, smoke budget (CI)
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def run_sweep(name: str, search: str, scheduler: str, trials: int, budget: str, workdir: Path, uri: str) -> None:
    """One ``tune.py`` sweep into the shared MLflow store."""
    cmd = [sys.executable, str(REPO / "tune.py"), "--dataset", "synthetic", "--budget", budget,
           "--num-samples", str(trials), "--search", search, "--scheduler", scheduler, "--max-concurrent", "1",
           "--workers-per-trial", "1", "--cpus-per-worker", str(os.cpu_count() or 1), "--storage", str(workdir / "ray"),
           "--mlflow-uri", uri, "--experiment", "fgi-search-bench", "--name", name, "--best-dir", str(workdir / name)]
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=workdir)
    if proc.returncode:
        raise SystemExit(f"{name} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")


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
    parser.add_argument("--smoke", action="store_true", help="3 trials each at the smoke budget")
    args = parser.parse_args()
    trials, budget = (3, "smoke") if args.smoke else (args.trials, args.budget)
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
