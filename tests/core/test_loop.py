from __future__ import annotations

import itertools

import pytest
import torch

from fgi.method.engine import TeacherStudentTrainer
from fgi.method.loop import is_eval_step, run_loop
from tests.core.helpers import make_batches, tiny_config


class CountingEngine:
    """An engine whose step ``k`` (1-based) reports loss ``k`` and lr ``10 k``."""

    def __init__(self, step: int = 0) -> None:
        self.step = step
        self.device = torch.device("cpu")
        self.seen: list[int] = []

    def train_step(self, batch: int) -> dict[str, float]:
        self.seen.append(batch)
        self.step += 1
        return {"loss": float(self.step), "lr": 10.0 * self.step}


def run(engine: CountingEngine, max_steps: int, eval_every: int, batches=None) -> list[tuple]:
    calls: list[tuple] = []
    evals = itertools.count(1)
    times = run_loop(engine, iter(batches if batches is not None else itertools.count()), max_steps=max_steps,
                     eval_every=eval_every, evaluate=lambda: {"val_dice": next(evals) / 10},
                     on_eval=lambda step, metrics, losses: calls.append((step, dict(metrics), dict(losses))))
    assert len(times.step_wall) == len(times.step_cpu) == len(engine.seen)
    assert len(times.evaluation) == len(calls)
    return calls


def test_evaluates_every_interval_and_at_the_end_with_interval_means():
    calls = run(CountingEngine(), max_steps=7, eval_every=3)
    assert calls == [
        (3, {"val_dice": 0.1}, {"loss": 2.0, "lr": 20.0}),  # mean of steps 1..3
        (6, {"val_dice": 0.2}, {"loss": 5.0, "lr": 50.0}),  # steps 4..6
        (7, {"val_dice": 0.3}, {"loss": 7.0, "lr": 70.0}),  # the last step alone
    ]


def test_a_resumed_run_continues_from_the_engine_step():
    engine = CountingEngine(step=4)
    calls = run(engine, max_steps=7, eval_every=3, batches=[40, 41, 42, 43])
    assert [(step, losses["loss"]) for step, _, losses in calls] == [(6, 5.5), (7, 7.0)]
    assert engine.seen == [40, 41, 42]
    assert run(CountingEngine(step=7), max_steps=7, eval_every=3) == []


def test_bad_interval_and_short_batches_are_named():
    with pytest.raises(ValueError, match="train.eval_every: must be at least 1, got 0"):
        run(CountingEngine(), max_steps=3, eval_every=0)
    with pytest.raises(RuntimeError, match="batches ran out at step 2 of 5"):
        run(CountingEngine(), max_steps=5, eval_every=2, batches=[0, 1])


def test_is_eval_step():
    assert [s for s in range(1, 11) if is_eval_step(s, 4, 10)] == [4, 8, 10]


def test_drives_the_real_engine():
    cfg = tiny_config(train={"max_steps": 3, "eval_every": 2})
    trainer = TeacherStudentTrainer(cfg, torch.device("cpu"))
    train, val = make_batches(cfg, "train", 4, 4), make_batches(cfg, "val", 4, 4)
    calls = []
    run_loop(trainer, itertools.cycle(train), max_steps=cfg.train.max_steps, eval_every=cfg.train.eval_every,
             evaluate=lambda: trainer.evaluate(val), on_eval=lambda *a: calls.append(a))
    assert trainer.step == 3 and [c[0] for c in calls] == [2, 3]
    for _, metrics, losses in calls:
        assert 0.0 <= metrics["val_dice"] <= 1.0
        assert {"loss", "loss_teacher_seg", "loss_student_seg", "lr"} <= set(losses)


def test_on_step_hears_every_step_before_its_evaluation():
    engine, events = CountingEngine(step=2), []
    run_loop(engine, iter(itertools.count()), max_steps=7, eval_every=3, evaluate=lambda: {},
             on_eval=lambda step, metrics, losses: events.append(("eval", step)),
             on_step=lambda step: events.append(("step", step)))
    assert events == [("step", 3), ("eval", 3), ("step", 4), ("step", 5), ("step", 6), ("eval", 6), ("step", 7),
                      ("eval", 7)]
