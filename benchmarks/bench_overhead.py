"""Platform overhead: K identical trials through tune.py (Ray Tune + MLflow) against the same K configs
through the bare engine in one process, side by side in one run.

Three paths train the same config K times, one trial at a time, without early stopping:

- bare: ``fgi.method.loop.run_loop`` over the same loaders in this process, writing the same checkpoint folders;
- in-process trials: ``tune.py --workers-per-trial 1`` (the default), the engine inside the Tune trial;
- Ray Train trials: ``tune.py --workers-per-trial 2`` (DDP, half the CPUs each), a TorchTrainer per trial.

A sweep's time splits into its fixed part (process start, data preparation, Ray start-up and shutdown,
the MLflow parent run) and its trials: each trial's span is its MLflow child run, from Tune starting
the trial to its completion. "sweep" is the time ``tune.py`` reports for its Tune run ("done in"), the
wall figure adds the process and Ray start-up. Per-trial fixed cost: (trial spans - bare) / K.

    python benchmarks/bench_overhead.py            # K = 4, smoke budget
    python benchmarks/bench_overhead.py --k 10 --paths 1   # the README's 10 trials, in-process path only
    python benchmarks/bench_overhead.py --smoke    # K = 1, in-process sweep only, for CI
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
PATHS = {"in-process trials": 1, "Ray Train trials (2 workers)": 2}  # label -> --workers-per-trial


def bare_trial(cfg: Any, trial: int, workdir: Path) -> None:
    """One bare-engine trial: ``fgi.method.loop.run_loop`` over the Ray worker's loaders, writing at every evaluation
    the checkpoint folder a Ray Train worker writes (``fgi.checkpoint.write_checkpoint`` with the overlay)."""
    import numpy as np
    import torch

    from fgi.checkpoint import checkpoint_name, write_checkpoint
    from fgi.method.engine import TeacherStudentTrainer
    from fgi.method.loop import run_loop
    from fgi.run.worker import build_loaders, epoch_batches
    from fgi.viz import validation_overlay

    loaders = build_loaders(cfg, 0, 1)
    norm = loaders["normalization"]
    trainer = TeacherStudentTrainer(cfg, torch.device("cpu"))

    def on_eval(step: int, val: Mapping[str, float], losses: Mapping[str, float]) -> None:
        overlay = validation_overlay(trainer, next(iter(loaders["val"])), np.asarray(norm["mean"]),
                                     np.asarray(norm["std"]), step)
        write_checkpoint(workdir / f"bare-{trial}" / checkpoint_name(step), trainer, {**losses, **val}, norm, overlay)

    run_loop(trainer, epoch_batches(loaders), max_steps=cfg.train.max_steps, eval_every=cfg.train.eval_every,
             evaluate=lambda: trainer.evaluate(loaders["val"]), on_eval=on_eval)


def bare_trials(k: int, budget: str, workdir: Path) -> list[float]:
    """Seconds of each of ``k`` bare-engine trials (data prepared once beforehand)."""
    from fgi.budgets import apply_budget
    from fgi.config import Config
    from fgi.run.worker import prepare

    cfg = prepare(apply_budget(Config(), budget))
    times = []
    for trial in range(k):
        t0 = time.perf_counter()
        bare_trial(cfg, trial, workdir)
        times.append(time.perf_counter() - t0)
    return times


def platform_sweep(k: int, budget: str, workdir: Path, workers: int) -> tuple[float, float, list[float]]:
    """``tune.py`` running ``k`` identical trials of ``workers`` workers (all CPUs in all).

    Returns:
        (wall seconds of the process, seconds of its Tune run, each trial's span).
    """
    import mlflow

    workdir.mkdir(parents=True)
    space = workdir / "space.yaml"
    space.write_text("params:\n  train.seed: {distribution: categorical, choices: [0]}\n")
    cpus = max((os.cpu_count() or 1) // workers, 1)
    cmd = [sys.executable, str(REPO / "tune.py"), "--dataset", "synthetic", "--budget", budget,
           "--num-samples", str(k), "--space", str(space), "--scheduler", "none", "--max-concurrent", "1",
           "--workers-per-trial", str(workers), "--cpus-per-worker", str(cpus),
           "--storage", str(workdir / "ray"), "--mlflow-uri", f"sqlite:///{workdir / 'mlflow.db'}",
           "--best-dir", str(workdir / "best"), "--name", "overhead"]
    env = {k_: v for k_, v in os.environ.items() if k_ != "RAY_ADDRESS"}
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=workdir)
    wall = time.perf_counter() - t0
    if proc.returncode:
        raise SystemExit(f"tune.py failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    found = re.search(r"^done in (\d+) s", proc.stdout, re.MULTILINE)
    client = mlflow.MlflowClient(f"sqlite:///{workdir / 'mlflow.db'}")
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()], "tags.`fgi.kind` = 'trial'")
    spans = sorted((r.info.start_time, (r.info.end_time - r.info.start_time) / 1000) for r in runs)
    if len(spans) != k:
        raise SystemExit(f"expected {k} trial runs in MLflow, found {len(spans)}")
    return wall, float(found.group(1)) if found else wall, [span for _, span in spans]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--k", type=int, default=4, help="identical trials on each path")
    parser.add_argument("--budget", default="smoke", choices=("smoke", "cpu"))
    parser.add_argument("--paths", nargs="+", type=int, choices=sorted(PATHS.values()), default=sorted(PATHS.values()),
                        help="workers per trial of the platform paths to time (1: in-process, 2: Ray Train)")
    parser.add_argument("--smoke", action="store_true", help="K = 1 and in-process trials only: checks the script runs")
    args = parser.parse_args()
    k = 1 if args.smoke else args.k
    chosen = [1] if args.smoke else args.paths
    paths = {label: w for label, w in PATHS.items() if w in chosen}
    with tempfile.TemporaryDirectory(prefix="fgi-overhead-") as tmp:
        workdir = Path(tmp)
        bare = bare_trials(k, args.budget, workdir)
        sweeps = {label: platform_sweep(k, args.budget, workdir / f"workers-{w}", w) for label, w in paths.items()}
    total = sum(bare)
    print(f"{k} identical trials, budget {args.budget}, one at a time, {os.cpu_count()} CPUs")
    print(f"{'bare loop, one process':30s}: {total:7.1f} s  ({', '.join(f'{t:.1f}' for t in bare)} s per trial)")
    for label, (wall, sweep, spans) in sweeps.items():
        print(f"{label:30s}: sweep {sweep:6.1f} s, wall {wall:6.1f} s; ratio platform / bare {sweep / total:.2f} "
              f"(wall {wall / total:.2f}); per-trial fixed cost {(sum(spans) - total) / k:.1f} s; trial spans "
              f"{', '.join(f'{t:.1f}' for t in spans)} s")


if __name__ == "__main__":
    main()
