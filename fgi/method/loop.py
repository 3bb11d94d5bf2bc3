"""The training loop: steps, the evaluation interval, and a callback at each evaluation.

``run_loop`` drives any engine with a ``train_step(batch) -> losses`` and a ``step`` counter. It knows
nothing of Ray, MLflow or files: what happens at an evaluation (all-reducing metrics over ranks,
writing a checkpoint, reporting, printing) is the caller's ``on_eval``. Ray Train workers, in-process
trials and the benchmark scripts all train through it, so they agree on when evaluations happen and on
what the reported training losses mean (the mean of each term over the steps since the last evaluation).

``Reporter`` is the one reporting interface: Ray Train's report implements it in ``fgi.run.worker``.
``on_step`` is told of every step (a trial beats its ``fgi.search.watchdog.Watchdog`` there).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch

EvalCallback = Callable[[int, Mapping[str, float], Mapping[str, float]], None]


class Reporter(Protocol):
    """Where a training run reports its metrics and, at most once per report, a checkpoint folder."""

    def report(self, metrics: Mapping[str, Any], checkpoint_dir: Path | None) -> None:
        """Report ``metrics`` (with "step"); ``checkpoint_dir`` is a complete checkpoint folder or None.

        Args:
            metrics: flat metrics of this evaluation, including "step".
            checkpoint_dir: the checkpoint written for this evaluation, or None (ranks other than 0, or
                a report that carries no new state).
        """


class Engine(Protocol):
    """What the loop needs of an engine (``fgi.method.engine.TeacherStudentTrainer`` has it)."""

    step: int
    device: torch.device

    def train_step(self, batch: Mapping[str, Any]) -> dict[str, float]: ...


@dataclass
class LoopTimes:
    """Seconds the loop measured: wall and CPU time of each training step, wall time of each evaluation.

    A step's time includes fetching its batch, so data loading counts against the step that waited for it.
    """

    step_wall: list[float] = field(default_factory=list)
    step_cpu: list[float] = field(default_factory=list)
    evaluation: list[float] = field(default_factory=list)


def is_eval_step(step: int, eval_every: int, max_steps: int) -> bool:
    """True at every ``eval_every``-th step and at the last step."""
    return step % eval_every == 0 or step >= max_steps


def run_loop(trainer: Engine, batches: Iterator[Mapping[str, Any]], *, max_steps: int, eval_every: int,
             evaluate: Callable[[], Mapping[str, float]], on_eval: EvalCallback,
             on_step: Callable[[int], None] | None = None) -> LoopTimes:
    """Train from ``trainer.step`` to ``max_steps``, evaluating every ``eval_every`` steps and at the end.

    Args:
        trainer: the engine; its ``step`` says where a resumed run continues.
        batches: training batches, endless or at least ``max_steps - trainer.step`` long, already
            positioned at ``trainer.step`` for a resumed run.
        max_steps: the step to stop at.
        eval_every: evaluation interval in steps.
        evaluate: returns the evaluation metrics (called once per evaluation).
        on_eval: ``on_eval(step, metrics, train_losses)`` after each evaluation; ``train_losses`` holds the
            mean of each value ``train_step`` returned over the steps since the previous evaluation.
        on_step: ``on_step(step)`` after each training step, before its evaluation; it runs every step, so
            it must be cheap (a trial's watchdog beat).

    Returns:
        The measured step and evaluation times.

    Raises:
        ValueError: when ``eval_every`` is not positive.
        RuntimeError: when ``batches`` ends before ``max_steps``.
    """
    if eval_every < 1:
        raise ValueError(f"train.eval_every: must be at least 1, got {eval_every}")
    sync = torch.cuda.synchronize if trainer.device.type == "cuda" else None
    times = LoopTimes()
    sums: dict[str, float] = {}
    count = 0
    while trainer.step < max_steps:
        wall, cpu = time.perf_counter(), time.process_time()
        batch = next(batches, None)
        if batch is None:
            raise RuntimeError(f"the training batches ran out at step {trainer.step} of {max_steps}")
        losses = trainer.train_step(batch)
        if sync is not None:
            sync(trainer.device)
        times.step_wall.append(time.perf_counter() - wall)
        times.step_cpu.append(time.process_time() - cpu)
        if on_step is not None:
            on_step(trainer.step)
        for key, value in losses.items():
            sums[key] = sums.get(key, 0.0) + value
        count += 1
        if not is_eval_step(trainer.step, eval_every, max_steps):
            continue
        wall = time.perf_counter()
        metrics = evaluate()
        times.evaluation.append(time.perf_counter() - wall)
        on_eval(trainer.step, metrics, {key: value / count for key, value in sums.items()})
        sums, count = {}, 0
    return times


__all__ = ["Engine", "EvalCallback", "LoopTimes", "Reporter", "is_eval_step", "run_loop"]
