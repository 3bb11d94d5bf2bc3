from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch

from fgi.checkpoint import write_checkpoint
from fgi.cli import main
from fgi.engine import TeacherStudentTrainer
from tests.core.helpers import tiny_config
from tests.data.conftest import make_kvasir

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
