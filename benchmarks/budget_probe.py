"""How long a budget must run: the published config trained at a budget for several lengths, printing the
teacher's and the student's val Dice at every evaluation and the seconds, one run after another.

Schedule knobs are fractions of ``train.max_steps``, so each length is its own run, not a prefix of the longest.

    python benchmarks/budget_probe.py --budget cpu --steps 90 120 150
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Mapping

import torch

from fgi.budgets import BUDGETS, apply_budget
from fgi.config import Config, override
from fgi.method.engine import TeacherStudentTrainer
from fgi.method.loop import run_loop
from fgi.run.worker import build_loaders, epoch_batches, prepare
from fgi.seed import seed_everything


def probe(budget: str, steps: int, threads: int) -> None:
    """Train the published config at ``budget`` for ``steps`` steps and print each evaluation."""
    cfg = prepare(override(apply_budget(Config(), budget), {"train.max_steps": steps}))
    torch.set_num_threads(threads)
    seed_everything(cfg.train.seed)
    loaders = build_loaders(cfg, 0, 1)
    trainer = TeacherStudentTrainer(cfg, torch.device("cpu"))
    t0 = time.perf_counter()

    def on_eval(step: int, val: Mapping[str, float], losses: Mapping[str, float]) -> None:
        print(f"max_steps {steps:5d} step {step:5d} {time.perf_counter() - t0:7.1f} s  student "
              f"{val['val_dice_student']:.3f}  teacher {val['val_dice_teacher']:.3f}", flush=True)

    run_loop(trainer, epoch_batches(loaders), max_steps=steps, eval_every=cfg.train.eval_every,
             evaluate=lambda: trainer.evaluate(loaders["val"]), on_eval=on_eval)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", default="cpu", choices=tuple(BUDGETS))
    parser.add_argument("--steps", type=int, nargs="+", default=[90, 120, 150], help="run lengths to try")
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    args = parser.parse_args()
    for steps in args.steps:
        probe(args.budget, steps, args.threads)


if __name__ == "__main__":
    main()
