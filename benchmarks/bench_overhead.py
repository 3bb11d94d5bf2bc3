"""Platform overhead: K identical trials through tune.py (Ray Tune + Ray Train + MLflow) against the same
K configs through the bare engine in one process, side by side in one run.

The bare path uses the same data loaders (``fgi.distributed.build_loaders``), the same training loop
(``fgi.loop.run_loop``) and writes the same checkpoint folders; only Ray and MLflow are missing. The sweep has one
single-choice parameter, so all K trials train the same config; no early stopping; one trial at a time.

The sweep runs twice: as shipped (Ray Train's controller collects reports at its health-check poll,
every 2 s by default), and with the poll exported at 0.1 s the way a user can
(``RAY_TRAIN_HEALTH_CHECK_INTERVAL_S=0.1``). Each sweep's time splits into its fixed part (process
start, data preparation, Ray start-up and shutdown, MLflow parent run) and its trials: each trial's span
is its MLflow child run, from Tune starting the trial to its completion (the trial's eight Ray actor
processes, training, checkpoints, MLflow logging).

    python benchmarks/bench_overhead.py            # K = 4, smoke budget
    python benchmarks/bench_overhead.py --smoke    # K = 2, shipped sweep only, for CI
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
POLL_ENV_VAR = "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S"  # Ray Train's controller poll, which also collects reports
FAST_POLL_S = "0.1"


def bare_trial(cfg: Any, trial: int, workdir: Path) -> None:
    """One bare-engine trial: ``fgi.loop.run_loop`` over the Ray worker's loaders, writing at every evaluation
    the checkpoint folder a Ray Train worker writes (``fgi.checkpoint.write_checkpoint`` with the overlay)."""
    import numpy as np
    import torch

    from fgi.checkpoint import checkpoint_name, write_checkpoint
    from fgi.distributed import build_loaders, epoch_batches
    from fgi.engine import TeacherStudentTrainer
    from fgi.loop import run_loop
    from fgi.viz import validation_overlay

    loaders = build_loaders(cfg, 0, 1, 0)
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
    from fgi.distributed import prepare

    cfg = prepare(apply_budget(Config(), budget))
    times = []
    for trial in range(k):
        t0 = time.perf_counter()
        bare_trial(cfg, trial, workdir)
        times.append(time.perf_counter() - t0)
    return times


def platform_sweep(k: int, budget: str, workdir: Path, poll_s: str | None) -> tuple[float, list[float]]:
    """Wall seconds of ``tune.py`` running ``k`` identical trials (Ray start-up included), and each trial's span.

    ``poll_s`` exports Ray Train's report poll interval; None keeps Ray's default.
    """
    import mlflow

    workdir.mkdir(parents=True)
    space = workdir / "space.yaml"
    space.write_text("params:\n  train.seed: {distribution: categorical, choices: [0]}\n")
    cmd = [sys.executable, str(REPO / "tune.py"), "--dataset", "synthetic", "--budget", budget,
           "--num-samples", str(k), "--space", str(space), "--scheduler", "none", "--max-concurrent", "1",
           "--workers-per-trial", "1", "--cpus-per-worker", str(os.cpu_count() or 1),
           "--storage", str(workdir / "ray"), "--mlflow-uri", f"sqlite:///{workdir / 'mlflow.db'}",
           "--best-dir", str(workdir / "best"), "--name", "overhead"]
    env = {k_: v for k_, v in os.environ.items() if k_ not in ("RAY_ADDRESS", POLL_ENV_VAR)}
    if poll_s is not None:
        env[POLL_ENV_VAR] = poll_s
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=workdir)
    wall = time.perf_counter() - t0
    if proc.returncode:
        raise SystemExit(f"tune.py failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    client = mlflow.MlflowClient(f"sqlite:///{workdir / 'mlflow.db'}")
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()], "tags.`fgi.kind` = 'trial'")
    spans = sorted((r.info.start_time, (r.info.end_time - r.info.start_time) / 1000) for r in runs)
    if len(spans) != k:
        raise SystemExit(f"expected {k} trial runs in MLflow, found {len(spans)}")
    return wall, [span for _, span in spans]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--k", type=int, default=4, help="identical trials on each path")
    parser.add_argument("--budget", default="smoke", choices=("smoke", "cpu"))
    parser.add_argument("--smoke", action="store_true", help="K = 2 and the shipped sweep only: checks the script runs")
    args = parser.parse_args()
    k = 2 if args.smoke else args.k
    with tempfile.TemporaryDirectory(prefix="fgi-overhead-") as tmp:
        workdir = Path(tmp)
        bare = bare_trials(k, args.budget, workdir)
        polls = (None,) if args.smoke else (None, FAST_POLL_S)
        sweeps = {poll: platform_sweep(k, args.budget, workdir / f"poll-{poll}", poll) for poll in polls}
    total = sum(bare)
    print(f"{k} identical trials, budget {args.budget}, one at a time, {os.cpu_count()} CPUs")
    print(f"bare engine, one process : {total:7.1f} s  ({', '.join(f'{t:.1f}' for t in bare)} s per trial)")
    for poll, label in ((None, "tune.py, Ray's 2 s poll"), (FAST_POLL_S, f"tune.py, poll {FAST_POLL_S} s")):
        if poll not in sweeps:
            continue
        wall, spans = sweeps[poll]
        print(f"{label:25s}: {wall:7.1f} s  ratio platform / bare {wall / total:.2f}; fixed {wall - sum(spans):.1f} s; "
              f"trial spans {', '.join(f'{t:.1f}' for t in spans)} s; start-up per trial "
              f"{(sum(spans) - total) / k:.1f} s")
    print(f"ratio platform / bare    : {sweeps[None][0] / total:.2f}")
    if FAST_POLL_S in sweeps:
        print(f"fast poll saves per trial: {(sum(sweeps[None][1]) - sum(sweeps[FAST_POLL_S][1])) / k:.1f} s")


if __name__ == "__main__":
    main()
