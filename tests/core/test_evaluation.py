from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from fgi.data.errors import DataError
from fgi.run.evaluation import evaluate_folder, folder_ids, model_input, predict_folder, read_ids
from tests.core.helpers import tiny_config
from tests.data.conftest import make_kvasir

NORM = {"image_size": 32, "channels": 3, "mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]}
H, W = 40, 48  # original size, different from the 32 px the model sees


class ConstantTrainer:
    """A predictor that returns a fixed probability map, so expected metrics are known exactly."""

    def __init__(self, probs: torch.Tensor) -> None:
        self.cfg = tiny_config()
        self.probs = probs

    def predict(self, image: torch.Tensor) -> torch.Tensor:
        assert image.shape == (1, 3, 32, 32)
        return self.probs


def left_half() -> ConstantTrainer:
    """Probability 1 in columns 0..15 of the 32 px map, 0 elsewhere."""
    probs = torch.zeros(1, 1, 32, 32)
    probs[..., :16] = 1.0
    return ConstantTrainer(probs)


@pytest.fixture()
def png_folder(tmp_path):
    """One 40 x 48 image whose ground truth is columns 12..35 (every row), as lossless PNGs."""
    root = tmp_path / "png"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    Image.fromarray(np.full((H, W, 3), 90, np.uint8)).save(root / "images" / "case.png")
    mask = np.zeros((H, W), np.uint8)
    mask[:, 12:36] = 255
    Image.fromarray(mask).save(root / "masks" / "case.png")
    return root


@pytest.fixture()
def folder(tmp_path):
    root, _ = make_kvasir(tmp_path / "kv", n=4, size=(H, W))
    return root


def test_model_input_matches_cache_normalization():
    image = np.full((H, W, 3), 255, np.uint8)
    x = model_input(image, NORM)
    assert x.shape == (3, 32, 32)
    assert torch.allclose(x, torch.full_like(x, 2.0))


def test_scores_at_original_resolution(png_folder):
    # bilinear upsampling of the 32 px left half to 48 columns keeps columns 0..23 above 0.5 (column 23
    # samples the map at x = 15.17 -> 0.83, column 24 at x = 15.83 -> 0.17): 24 x 40 = 960 pixels.
    # Ground truth: columns 12..35, 960 pixels; overlap columns 12..23, 480 pixels.
    rows = evaluate_folder(left_half(), NORM, png_folder, ["case"])
    assert [r["id"] for r in rows] == ["case"]
    assert rows[0]["dice"] == pytest.approx(2 * 480 / (960 + 960))
    assert rows[0]["iou"] == pytest.approx(480 / 1440)


def test_threshold_decides_the_mask(png_folder):
    # a map of 0.3 everywhere is lesion at threshold 0.2 (the whole image) and nothing at 0.5
    flat = ConstantTrainer(torch.full((1, 1, 32, 32), 0.3))
    everything = evaluate_folder(flat, NORM, png_folder, ["case"], threshold=0.2)[0]
    assert everything["dice"] == pytest.approx(2 * 960 / (H * W + 960))
    assert evaluate_folder(flat, NORM, png_folder, ["case"], threshold=0.5)[0]["dice"] == 0.0


def test_missing_mask_is_named(folder):
    (folder / "masks" / "img002.jpg").unlink()
    with pytest.raises(ValueError, match="no mask file for id 'img002'"):
        evaluate_folder(ConstantTrainer(torch.ones(1, 1, 32, 32)), NORM, folder, ["img002"])


def test_folder_predictor_must_be_the_student(folder):
    trainer = ConstantTrainer(torch.ones(1, 1, 32, 32))
    trainer.cfg = tiny_config(model={"predictor": "teacher"})
    with pytest.raises(ValueError, match="model.predictor is 'teacher'"):
        evaluate_folder(trainer, NORM, folder, ["img000"])


def test_ids_of_a_folder_and_of_a_split_file(folder, tmp_path):
    assert folder_ids(folder) == ["img000", "img001", "img002", "img003"]
    split = tmp_path / "ids.txt"
    split.write_text("# held back\nimg003\n\nimg001\n")
    assert read_ids(split) == ["img003", "img001"]
    with pytest.raises(DataError, match="no images found"):
        folder_ids(tmp_path / "empty")


def test_predict_folder_writes_masks_and_overlays_at_original_size(png_folder, tmp_path):
    out = tmp_path / "pred"
    files = predict_folder(left_half(), NORM, png_folder / "images", out)
    assert [f.name for f in files] == ["case.png"]
    mask = np.asarray(Image.open(out / "case_mask.png"))
    expected = np.zeros((H, W), np.uint8)
    expected[:, :24] = 255
    np.testing.assert_array_equal(mask, expected)
    overlay = np.asarray(Image.open(out / "case_overlay.png"))
    # grey 90 blended half with red (255, 0, 0) inside the mask, untouched outside
    np.testing.assert_array_equal(overlay[:, :24], np.broadcast_to(np.array([172, 45, 45], np.uint8), (H, 24, 3)))
    np.testing.assert_array_equal(overlay[:, 24:], np.full((H, 24, 3), 90, np.uint8))


def test_predict_folder_rejects_bad_input(tmp_path):
    with pytest.raises(DataError, match="not a folder"):
        predict_folder(left_half(), NORM, tmp_path / "nowhere", tmp_path / "out")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no images"):
        predict_folder(left_half(), NORM, tmp_path / "empty", tmp_path / "out")
    with pytest.raises(ValueError, match="threshold: 1.5"):
        predict_folder(left_half(), NORM, tmp_path / "empty", tmp_path / "out", threshold=1.5)


def test_predict_folder_writes_all_or_nothing(png_folder, tmp_path):
    images = tmp_path / "images"
    shutil.copytree(png_folder / "images", images)
    shutil.copy(images / "case.png", images / "another.png")
    (images / "zz_broken.png").write_bytes(b"not a png")  # sorted last: read after the good ones
    out = tmp_path / "pred"
    out.mkdir()
    (out / "kept.txt").write_text("from before")
    with pytest.raises(DataError, match=r"zz_broken.png: cannot be read .*nothing was written to"):
        predict_folder(left_half(), NORM, images, out)
    assert sorted(p.name for p in out.iterdir()) == ["kept.txt"]  # the earlier images' outputs never appeared
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging folder left behind
    (images / "zz_broken.png").unlink()
    predict_folder(left_half(), NORM, images, out)
    assert sorted(p.name for p in out.iterdir()) == ["another_mask.png", "another_overlay.png", "case_mask.png",
                                                     "case_overlay.png", "kept.txt"]
