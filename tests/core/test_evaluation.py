from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch

from fgi.cli import main
from fgi.engine import TeacherStudentTrainer, save_checkpoint
from fgi.evaluation import evaluate_folder, model_input
from fgi.metrics import image_metrics
from tests.core.helpers import tiny_config
from tests.data.conftest import make_kvasir

NORM = {"image_size": 32, "channels": 3, "mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]}


class ConstantTrainer:
    """A predictor that returns a fixed probability map, so expected metrics are known exactly."""

    def __init__(self, probs: torch.Tensor) -> None:
        self.cfg = tiny_config()
        self.probs = probs

    def predict(self, image: torch.Tensor) -> torch.Tensor:
        assert image.shape == (1, 3, 32, 32)
        return self.probs


@pytest.fixture()
def folder(tmp_path):
    root, _ = make_kvasir(tmp_path / "kv", n=4, size=(40, 48))
    return root


def test_model_input_matches_cache_normalization():
    image = np.full((40, 48, 3), 255, np.uint8)
    x = model_input(image, NORM)
    assert x.shape == (3, 32, 32)
    assert torch.allclose(x, torch.full_like(x, 2.0))


def test_scores_at_original_resolution(folder):
    trainer = ConstantTrainer(torch.ones(1, 1, 32, 32))
    rows = evaluate_folder(trainer, NORM, folder, ["img000", "img001"])
    assert [r["id"] for r in rows] == ["img000", "img001"]
    from fgi.data.sources import load_image, load_mask

    for row in rows:
        image = load_image(str(folder / "images" / f"{row['id']}.jpg"), 3)
        gt = load_mask(str(folder / "masks" / f"{row['id']}.jpg"), image.shape[:2])
        assert row == {"id": row["id"], **image_metrics(np.ones(image.shape[:2], bool), gt)}


def test_missing_mask_is_named(folder):
    (folder / "masks" / "img002.jpg").unlink()
    with pytest.raises(ValueError, match="no mask file for id 'img002'"):
        evaluate_folder(ConstantTrainer(torch.ones(1, 1, 32, 32)), NORM, folder, ["img002"])


def test_cli_writes_csv_and_summary(folder, tmp_path, capsys):
    trainer = TeacherStudentTrainer(tiny_config(), torch.device("cpu"))
    ckpt = tmp_path / "ckpt"
    save_checkpoint(trainer, ckpt / "trainer.pt")
    (ckpt / "normalization.json").write_text(json.dumps(NORM))
    split = tmp_path / "ids.txt"
    split.write_text("img000\nimg003\n")
    out_csv = tmp_path / "per_image.csv"
    assert main(["evaluate", "--model", str(ckpt), "--dataset", "kvasir", "--root", str(folder),
                 "--split-file", str(split), "--csv", str(out_csv)]) == 0
    printed = capsys.readouterr().out
    assert "2 images" in printed and "dice" in printed and "±" in printed
    rows = list(csv.DictReader(out_csv.open()))
    assert [r["id"] for r in rows] == ["img000", "img003"]
    assert set(rows[0]) == {"id", "dice", "iou", "hd95", "asd"}


def test_cli_reports_bad_split_file(folder, tmp_path):
    with pytest.raises(SystemExit, match="split file not found"):
        main(["evaluate", "--model", str(tmp_path), "--root", str(folder), "--split-file", str(tmp_path / "no.txt")])
