"""Released (inference-only, half-precision) checkpoints and ensemble folders: written, read back, refused."""

from __future__ import annotations

import json

import pytest
import torch

from fgi.checkpoint import CHECKPOINT_FILE, INFERENCE_ONLY, load_folder, read_checkpoint, write_checkpoint
from fgi.ensemble import ENSEMBLE_FILE, Ensemble, is_ensemble, load_model_folder, write_ensemble
from fgi.method.engine import TeacherStudentTrainer
from tests.core.helpers import make_batches, tiny_config

CPU = torch.device("cpu")
NORM = {"image_size": 32, "channels": 3, "mean": [0.5, 0.4, 0.3], "std": [0.2, 0.2, 0.2]}


def trained(seed: int, **sections) -> TeacherStudentTrainer:
    cfg = tiny_config(train={"seed": seed}, **sections)
    trainer = TeacherStudentTrainer(cfg, CPU)
    batch = make_batches(cfg, "train", 4, 4, seed=seed)[0]
    for _ in range(2):
        trainer.train_step(batch)
    return trainer


@pytest.fixture(scope="module")
def pair() -> tuple[TeacherStudentTrainer, TeacherStudentTrainer]:
    return trained(0), trained(1)


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    return make_batches(tiny_config(), "val", 4, 4, seed=7)[0]["image"]


def test_a_half_precision_release_keeps_weights_only_and_predicts_alike(tmp_path, pair, images):
    source = pair[0]
    full = write_checkpoint(tmp_path / "full", source, {"val_dice": 0.5}, NORM)
    released = write_checkpoint(tmp_path / "released", source, {"val_dice": 0.5}, NORM, release="fp16")
    state = read_checkpoint(released)
    assert state[INFERENCE_ONLY] is True and state["precision"] == "fp16"
    assert "optimizers" not in state and "generator" not in state
    weights = [v for m in state["models"].values() for v in m.values() if torch.is_floating_point(v)]
    assert weights and all(v.dtype == torch.float16 for v in weights)
    # no optimizer moments and half-size weights: well under half of the full state
    assert (released / CHECKPOINT_FILE).stat().st_size < 0.4 * (full / CHECKPOINT_FILE).stat().st_size

    loaded, norm = load_folder(released, TeacherStudentTrainer)
    assert norm == NORM and loaded.step == source.step and loaded.inference_only
    assert all(p.dtype == torch.float32 for p in loaded.student.parameters())
    torch.testing.assert_close(loaded.predict(images), source.predict(images), atol=2e-3, rtol=0)
    with pytest.raises(ValueError, match="released .inference-only. state; it cannot train"):
        loaded.train_step(make_batches(loaded.cfg, "train", 4, 4)[0])


def test_a_full_state_still_resumes_training(tmp_path, pair):
    folder = write_checkpoint(tmp_path / "full", pair[0], {}, NORM)
    loaded, _ = load_folder(folder, TeacherStudentTrainer)
    assert not loaded.inference_only
    assert set(loaded.train_step(make_batches(loaded.cfg, "train", 4, 4)[0])) >= {"loss"}


def test_an_ensemble_folder_predicts_the_mean_of_its_members(tmp_path, pair, images):
    a, b = pair
    ensemble = Ensemble([a, b], [NORM, NORM], ["a", "b"])
    folder = write_ensemble(tmp_path / "ens", ensemble, {"val": {"val_dice": 0.6}},
                            [{"run_id": "r1", "metrics": {"val_dice": 0.5}}, {"run_id": "r2", "metrics": {}}])
    assert is_ensemble(folder) and not is_ensemble(tmp_path)
    assert sorted(p.name for p in folder.iterdir()) == [ENSEMBLE_FILE, "member-1", "member-2", "normalization.json"]
    info = json.loads((folder / ENSEMBLE_FILE).read_text())
    assert [m["run_id"] for m in info["members"]] == ["r1", "r2"] and info["combine"] == "mean"
    assert info["val"] == {"val_dice": 0.6}

    loaded, norm = load_model_folder(folder, TeacherStudentTrainer)
    assert isinstance(loaded, Ensemble) and norm == NORM
    expected = (a.predict(images) + b.predict(images)) / 2
    torch.testing.assert_close(loaded.predict(images), expected, atol=1e-6, rtol=0)
    assert not torch.allclose(a.predict(images), b.predict(images)), "two different members"
    # a plain checkpoint folder still loads as one trainer
    single, _ = load_model_folder(write_checkpoint(tmp_path / "one", a, {}, NORM), TeacherStudentTrainer)
    assert isinstance(single, TeacherStudentTrainer)


def test_a_rewritten_ensemble_replaces_the_old_folder_whole(tmp_path, pair):
    a, b = pair
    write_ensemble(tmp_path / "ens", Ensemble([a, b], [NORM, NORM], ["a", "b"]), {}, [{}, {}])
    write_ensemble(tmp_path / "ens", Ensemble([a], [NORM], ["a"]), {}, [{}])
    assert sorted(p.name for p in (tmp_path / "ens").iterdir()) == [ENSEMBLE_FILE, "member-1", "normalization.json"]
    assert [p.name for p in tmp_path.iterdir()] == ["ens"], "no temporary folder left beside it"


def test_members_that_need_text_or_another_split_are_refused(pair):
    a, _ = pair
    text_teacher = trained(2, model={"predictor": "teacher"})
    with pytest.raises(ValueError, match="text-teacher: cannot join an ensemble: model.predictor 'teacher' needs"):
        Ensemble([a, text_teacher], [NORM, NORM], ["a", "text-teacher"])
    other_split = trained(3, data={"split_seed": 5})
    with pytest.raises(ValueError, match="other: data.split_seed is 5 but a's is 0"):
        Ensemble([a, other_split], [NORM, NORM], ["a", "other"])
    with pytest.raises(ValueError, match="other: image normalization"):
        Ensemble([a, a], [NORM, {**NORM, "image_size": 64}], ["a", "other"])


def test_an_ensemble_file_that_points_outside_its_folder_is_refused(tmp_path, pair):
    folder = write_ensemble(tmp_path / "ens", Ensemble([pair[0]], [NORM], ["a"]), {}, [{}])
    (folder / ENSEMBLE_FILE).write_text(json.dumps({"members": [{"folder": "../elsewhere"}]}))
    with pytest.raises(ValueError, match="member folder '../elsewhere' must be a plain sub-folder name"):
        load_model_folder(folder, TeacherStudentTrainer)
    (folder / ENSEMBLE_FILE).write_text("{not json")
    with pytest.raises(ValueError, match=f"{ENSEMBLE_FILE}: not valid JSON"):
        load_model_folder(folder, TeacherStudentTrainer)
