"""The named loss terms the engine sums (``fgi.method.terms``)."""

from __future__ import annotations

import pytest
import torch

from fgi.method.engine import TeacherStudentTrainer
from fgi.method.terms import LOSS_TERMS, LossTerm
from tests.core.helpers import make_batches, tiny_config


def test_a_new_term_is_one_entry_logged_under_its_name(monkeypatch):
    area = LossTerm(lambda m, o: torch.sigmoid(o["logits"]).mean(), lambda lc, ramp: 2.0)
    monkeypatch.setitem(LOSS_TERMS, "student_only", {**LOSS_TERMS["student_only"], "area": area})
    cfg = tiny_config(train={"method": "student_only"}, text={"mode": "none"}, masking={"mask_ratio": 0.0})
    trainer = TeacherStudentTrainer(cfg, torch.device("cpu"))
    batch = make_batches(cfg, "train", 4, 4)[0]
    with torch.no_grad():
        expected_area = torch.sigmoid(trainer.student(batch["image"])["logits"]).mean().item()
    losses = trainer.train_step(batch)
    assert losses["loss_area"] == pytest.approx(expected_area, rel=1e-5)
    assert losses["loss"] == pytest.approx(losses["loss_student_seg"] + 2.0 * losses["loss_area"], rel=1e-5)


@pytest.mark.parametrize("method", ["teacher_student", "two_level"])
def test_the_loss_is_the_weighted_sum_of_the_logged_terms(method):
    cfg = tiny_config(train={"method": method}, loss={"cwc_weight": 2.0, "align_weight": 0.5, "level_weight": 1.5})
    if method == "two_level":
        cfg = tiny_config(train={"method": method}, text={"mode": "none"}, loss={"level_weight": 1.5})
    trainer = TeacherStudentTrainer(cfg, torch.device("cpu"))
    losses = trainer.train_step(make_batches(cfg, "train", 4, 4)[0])
    if method == "two_level":
        expected = losses["loss_tight_seg"] + losses["loss_loose_seg"] + 1.5 * losses["loss_level"]
    else:
        ramp = losses["rampup"]
        expected = (losses["loss_teacher_seg"] + losses["loss_student_seg"] + 2.0 * ramp * losses["loss_cwc"]
                    + 0.5 * ramp * losses["loss_align"])
    assert set(losses) >= {f"loss_{name}" for name in LOSS_TERMS[method]}
    assert losses["loss"] == pytest.approx(expected, rel=1e-5, abs=1e-7)
