from __future__ import annotations

import csv
import json

import cv2
import numpy as np
import pytest
import torch

from fgi.checkpoint import write_checkpoint
from fgi.cli import main
from fgi.method.engine import TeacherStudentTrainer
from fgi.method.metrics import image_metrics
from fgi.run.evaluation import predict_full_size
from tests.core.helpers import make_batches, tiny_config
from tests.data.conftest import make_isic, make_kvasir
from tests.synthetic import make_split

NORM = {"image_size": 32, "channels": 3, "mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]}


@pytest.fixture()
def folder(tmp_path):
    root, _ = make_kvasir(tmp_path / "kv", n=4, size=(40, 48))
    return root


@pytest.fixture()
def checkpoint(tmp_path):
    trainer = TeacherStudentTrainer(tiny_config(), torch.device("cpu"))
    return write_checkpoint(tmp_path / "ckpt", trainer, {"val_dice": 0.0}, NORM)


def test_writes_csv_summary_and_json(folder, checkpoint, tmp_path, capsys):
    split = tmp_path / "ids.txt"
    split.write_text("img000\nimg003\n")
    out_csv, out_json = tmp_path / "per_image.csv", tmp_path / "mean.json"
    assert main(["evaluate", "--model", str(checkpoint), "--dataset", "kvasir", "--root", str(folder),
                 "--split-file", str(split), "--csv", str(out_csv), "--out", str(out_json)]) == 0
    printed = capsys.readouterr().out
    assert "2 images" in printed and "dice" in printed and "±" in printed
    rows = list(csv.DictReader(out_csv.open()))
    assert [r["id"] for r in rows] == ["img000", "img003"]
    assert set(rows[0]) == {"id", "dice", "iou", "hd95", "asd"}
    summary = json.loads(out_json.read_text())
    assert summary["n"] == 2
    assert summary["dice_mean"] == pytest.approx(np.mean([float(r["dice"]) for r in rows]))


def test_accepts_the_trainer_file_of_a_checkpoint(folder, checkpoint, tmp_path, capsys):
    out_csv = tmp_path / "all.csv"
    assert main(["evaluate", "--model", str(checkpoint / "trainer.pt"), "--root", str(folder),
                 "--csv", str(out_csv)]) == 0
    assert [r["id"] for r in csv.DictReader(out_csv.open())] == ["img000", "img001", "img002", "img003"]


def test_bad_split_file_is_one_line(folder, tmp_path, capsys):
    code = main(["evaluate", "--model", str(tmp_path), "--root", str(folder), "--split-file", str(tmp_path / "no.txt")])
    err = capsys.readouterr().err
    assert code == 2
    assert "split file not found" in err and str(tmp_path / "no.txt") in err and "Traceback" not in err


def test_folder_without_normalization_is_named(folder, checkpoint, tmp_path, capsys):
    (checkpoint / "normalization.json").unlink()
    assert main(["evaluate", "--model", str(checkpoint), "--root", str(folder)]) == 2
    assert f"{checkpoint / 'normalization.json'}: not found" in capsys.readouterr().err


def synthetic_checkpoint(folder):
    """A tiny model trained for a few steps on synthetic batches (normalized like ``NORM``)."""
    cfg = tiny_config()
    trainer = TeacherStudentTrainer(cfg, torch.device("cpu"))
    for batch in make_batches(cfg, "train", 8, 4):
        trainer.train_step(batch)
    return trainer, write_checkpoint(folder, trainer, {"val_dice": 0.0}, NORM)


def test_scores_every_test_image_of_a_synthetic_export(tmp_path, capsys):
    trainer, ckpt = synthetic_checkpoint(tmp_path / "ckpt")
    root = tmp_path / "syn"
    assert main(["synth", "--out", str(root), "--image-size", "40", "--test", "5", "--splits", "test"]) == 0
    out_csv = tmp_path / "syn.csv"
    assert main(["evaluate", "--model", str(ckpt), "--dataset", "synthetic", "--root", str(root),
                 "--split-file", str(root / "test.txt"), "--csv", str(out_csv)]) == 0
    assert "5 images" in capsys.readouterr().out
    rows = list(csv.DictReader(out_csv.open()))
    samples = make_split("test", 5, 40, seed=0)
    assert [r["id"] for r in rows] == [s.id for s in samples]
    for row, sample in zip(rows, samples, strict=True):
        # the model applied to the generator's own arrays scores the same as on the exported files
        expected = image_metrics(predict_full_size(trainer, sample.image, NORM) > 0.5, sample.mask)
        assert float(row["dice"]) == pytest.approx(expected["dice"], abs=1e-6)
        assert float(row["iou"]) == pytest.approx(expected["iou"], abs=1e-6)


def test_isic_parts_are_scored_by_split(tmp_path):
    root = make_isic(tmp_path / "isic", n_train=3, n_val=2)
    trainer = TeacherStudentTrainer(tiny_config(), torch.device("cpu"))
    ckpt = write_checkpoint(tmp_path / "ckpt", trainer, {}, NORM)
    out_csv = tmp_path / "isic.csv"
    assert main(["evaluate", "--model", str(ckpt), "--dataset", "isic", "--root", str(root), "--split", "val",
                 "--csv", str(out_csv)]) == 0
    assert [r["id"] for r in csv.DictReader(out_csv.open())] == ["ISIC_V000000", "ISIC_V000001"]


def test_a_dataset_whose_channels_differ_from_the_model_is_named(tmp_path, checkpoint, capsys):
    root = tmp_path / "mri"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    cv2.imwrite(str(root / "images" / "case_1.png"), np.zeros((20, 20), np.uint8))
    cv2.imwrite(str(root / "masks" / "case_1.png"), np.zeros((20, 20), np.uint8))
    assert main(["evaluate", "--model", str(checkpoint), "--dataset", "nci-isbi", "--root", str(root)]) == 2
    assert "dataset 'nci-isbi' has 1-channel images but the model takes 3" in capsys.readouterr().err


def test_every_dataset_with_files_is_a_choice_and_an_unknown_one_is_named(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["evaluate", "--model", "m", "--dataset", "kvasr", "--root", "r"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "argument --dataset: invalid choice: 'kvasr'" in err
    for name in ("synthetic", "kvasir", "isic", "nci-isbi"):
        assert f"'{name}'" in err


def _trained_checkpoint(path, seed):
    cfg = tiny_config(train={"seed": seed})
    trainer = TeacherStudentTrainer(cfg, torch.device("cpu"))
    for batch in make_batches(cfg, "train", 8, 4, seed=seed):
        trainer.train_step(batch)
    return write_checkpoint(path, trainer, {}, NORM)


def _dice_by_hand(checkpoint, tta, folder, threshold):
    from fgi.checkpoint import read_checkpoint
    from fgi.config import override
    from fgi.data.io import load_image, load_mask

    state = read_checkpoint(checkpoint)
    trainer = TeacherStudentTrainer(override(tiny_config(), {"model.tta": tta}),
                                    torch.device("cpu"))
    trainer.load_state_dict(state)
    dice = {}
    for k in range(4):
        image = load_image(str(folder / "images" / f"img{k:03d}.jpg"), 3)
        mask = load_mask(str(folder / "masks" / f"img{k:03d}.jpg"), image.shape[:2])
        dice[f"img{k:03d}"] = image_metrics(predict_full_size(trainer, image, NORM) > threshold, mask)["dice"]
    return dice


def test_tta_modes_are_compared_over_the_runs_averaged_per_image(folder, tmp_path, capsys):
    runs = [_trained_checkpoint(tmp_path / f"run{s}", s) for s in (0, 1)]
    out = tmp_path / "tta.json"
    assert main(["evaluate", "--model", str(runs[0]), "--model", str(runs[1]), "--root", str(folder),
                 "--threshold", "0.47", "--tta", "none", "flips", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    figures = json.loads(out.read_text())
    by_mode = {}
    for mode in ("none", "flips"):
        per_run = [_dice_by_hand(r, mode, folder, 0.47) for r in runs]
        by_mode[mode] = {i: (per_run[0][i] + per_run[1][i]) / 2 for i in per_run[0]}
        assert figures["modes"][mode]["dice"] == pytest.approx(np.mean(list(by_mode[mode].values())), abs=1e-6)
    expected_delta = np.mean([by_mode["flips"][i] - by_mode["none"][i] for i in by_mode["none"]])
    assert expected_delta != 0
    assert figures["modes"]["flips"]["delta"] == pytest.approx(expected_delta, abs=1e-6)
    assert figures["modes"]["flips"]["lo"] <= expected_delta <= figures["modes"]["flips"]["hi"]
    beats = figures["modes"]["flips"]["lo"] > 0
    assert figures["choice"] == ("flips" if beats else "none")
    assert printed.strip().splitlines()[-1].startswith(f"choose tta {figures['choice']}:")
    assert "4 images, 2 run(s) averaged" in printed


def test_several_models_without_a_tta_comparison_are_refused(folder, checkpoint, capsys):
    assert main(["evaluate", "--model", str(checkpoint), "--model", str(checkpoint), "--root", str(folder)]) == 2
    assert "--model: give one model, or several with two or more --tta modes" in capsys.readouterr().err
