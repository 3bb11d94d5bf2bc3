from __future__ import annotations

import pytest
import torch

from fgi.engine import TeacherStudentTrainer, load_checkpoint, read_checkpoint, save_checkpoint
from tests.core.helpers import make_batches, tiny_config

CPU = torch.device("cpu")


def test_training_lowers_loss_and_beats_untrained_student():
    cfg = tiny_config(
        train={"max_steps": 80, "batch_size": 8, "seed": 0},
        optim={"lr": 5e-3, "warmup_steps": 5},
        loss={"rampup_steps": 30},
    )
    train = make_batches(cfg, "train", 48, 8)
    val = make_batches(cfg, "val", 24, 8)
    trainer = TeacherStudentTrainer(cfg, CPU)
    untrained = trainer.evaluate(val)["val_dice"]
    losses = [trainer.train_step(train[i % len(train)])["loss_student_seg"] for i in range(cfg.train.max_steps)]
    trained = trainer.evaluate(val)
    first, last = sum(losses[:10]) / 10, sum(losses[-10:]) / 10
    assert last < 0.7 * first, (first, last)
    assert trained["val_dice"] > untrained + 0.2, (untrained, trained)
    assert trained["val_dice"] > 0.6


def _same_next_step(a: TeacherStudentTrainer, b: TeacherStudentTrainer, batch: dict) -> None:
    out_a, out_b = a.train_step(batch), b.train_step(batch)
    assert out_a == out_b
    for name in a.models:
        for (ka, pa), (_, pb) in zip(a.models[name].state_dict().items(), b.models[name].state_dict().items(), strict=True):
            assert torch.equal(pa, pb), ka


@pytest.mark.parametrize("optim", ["adamw", "sgd"])
def test_state_dict_round_trip_gives_identical_next_step(tmp_path, optim):
    cfg = tiny_config(optim={"name": optim}, masking={"source": "predictions"})
    batches = make_batches(cfg, "train", 8, 4)
    a = TeacherStudentTrainer(cfg, CPU)
    for i in range(3):
        a.train_step(batches[i % 2])
    path = tmp_path / "ckpt.pt"
    save_checkpoint(a, path)
    b = load_checkpoint(path)
    assert b.step == a.step == 3
    _same_next_step(a, b, batches[1])


def test_load_state_dict_into_fresh_trainer_in_process():
    cfg = tiny_config()
    batches = make_batches(cfg, "train", 4, 4)
    a = TeacherStudentTrainer(cfg, CPU)
    a.train_step(batches[0])
    b = TeacherStudentTrainer(cfg, CPU, trial=5)
    b.load_state_dict(a.state_dict())
    _same_next_step(a, b, batches[0])


def test_checkpoint_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        read_checkpoint(tmp_path / "missing.pt")
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="bad.pt: not a readable fgi checkpoint"):
        read_checkpoint(bad)
    other = TeacherStudentTrainer(tiny_config(model={"predictor": "teacher"}), CPU)
    with pytest.raises(ValueError, match="different model config"):
        TeacherStudentTrainer(tiny_config(), CPU).load_state_dict(other.state_dict())


def test_non_finite_loss_names_step_and_term():
    cfg = tiny_config()
    batch = make_batches(cfg, "train", 4, 4)[0]
    trainer = TeacherStudentTrainer(cfg, CPU)
    trainer.train_step(batch)
    batch = dict(batch, image=batch["image"].clone())
    batch["image"][0, 0, 0, 0] = float("nan")
    with pytest.raises(FloatingPointError, match=r"step 1: loss term loss"):
        trainer.train_step(batch)


@pytest.mark.parametrize(
    "sections",
    [
        {"text": {"mode": "tokens"}},
        {"text": {"mode": "none"}},
        {"train": {"amp": "bf16"}},
        {"train": {"channels_last": True}},
        {"optim": {"grad_clip": 1.0}},
        {"loss": {"align_scales": [], "seg": "dice"}},
        {"train": {"method": "student_only"}},
        {"train": {"method": "student_only"}, "data": {"supervision": "ground_truth"}},
    ],
)
def test_variants_train_and_evaluate(sections):
    cfg = tiny_config(**sections)
    batches = make_batches(cfg, "train", 8, 4)
    trainer = TeacherStudentTrainer(cfg, CPU)
    for batch in batches:
        out = trainer.train_step(batch)
        assert all(torch.isfinite(torch.tensor(v)) for v in out.values())
    metrics = trainer.evaluate(batches)
    assert metrics["n"] == 8 and 0 <= metrics["val_dice"] <= 1


@pytest.mark.parametrize("predictor", ["student", "teacher", "ensemble"])
def test_predictors(predictor):
    cfg = tiny_config(model={"predictor": predictor})
    batch = make_batches(cfg, "val", 2, 2)[0]
    trainer = TeacherStudentTrainer(cfg, CPU)
    probs = trainer.predict(batch["image"], batch["text"])
    assert probs.shape == (2, 1, 32, 32) and probs.min() >= 0 and probs.max() <= 1
    if predictor == "ensemble":
        student = TeacherStudentTrainer(tiny_config(), CPU).predict(batch["image"])
        teacher = TeacherStudentTrainer(tiny_config(model={"predictor": "teacher"}), CPU).predict(batch["image"], batch["text"])
        assert torch.allclose(probs, (student + teacher) / 2, atol=1e-6)


def test_student_only_has_no_teacher_predictor():
    cfg = tiny_config(train={"method": "student_only"}, model={"predictor": "teacher"})
    trainer = TeacherStudentTrainer(cfg, CPU)
    with pytest.raises(ValueError, match="no teacher"):
        trainer.predict(torch.zeros(1, 3, 32, 32))


def test_evaluate_sums_and_rows():
    cfg = tiny_config()
    batches = make_batches(cfg, "val", 6, 4)
    trainer = TeacherStudentTrainer(cfg, CPU)
    sums, means = trainer.evaluate_sums(batches), trainer.evaluate(batches)
    assert sums["n"] == 6
    assert means["val_dice"] == pytest.approx(sums["val_dice"] / 6)
    rows = trainer.evaluate_rows(batches)
    assert [r["id"] for r in rows] == [i for b in batches for i in b["id"]]
