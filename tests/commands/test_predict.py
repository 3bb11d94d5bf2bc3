from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from fgi.checkpoint import write_checkpoint
from fgi.cli import main
from fgi.method.engine import TeacherStudentTrainer
from tests.core.helpers import tiny_config

NORM = {"image_size": 32, "channels": 3, "mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]}


def test_writes_a_binary_mask_and_an_overlay_per_image(tmp_path, capsys):
    ckpt = write_checkpoint(tmp_path / "ckpt", TeacherStudentTrainer(tiny_config(), torch.device("cpu")), {}, NORM)
    images = tmp_path / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    originals = {}
    for name, size in (("a", (40, 48)), ("b", (30, 30))):
        originals[name] = rng.integers(0, 256, (*size, 3), dtype=np.uint8)
        Image.fromarray(originals[name]).save(images / f"{name}.png")
    (images / "notes.txt").write_text("not an image")
    out = tmp_path / "out"
    assert main(["predict", "--model", str(ckpt), "--images", str(images), "--out", str(out)]) == 0
    assert "wrote 2 masks and overlays" in capsys.readouterr().out
    for name, original in originals.items():
        mask = np.asarray(Image.open(out / f"{name}_mask.png"))
        assert mask.shape == original.shape[:2] and set(np.unique(mask)) <= {0, 255}
        overlay = np.asarray(Image.open(out / f"{name}_overlay.png"))
        np.testing.assert_array_equal(overlay[mask == 0], original[mask == 0])
    assert sorted(p.name for p in out.iterdir()) == ["a_mask.png", "a_overlay.png", "b_mask.png", "b_overlay.png"]


def test_bad_threshold_and_folder_are_one_line(tmp_path, capsys):
    assert main(["predict", "--model", str(tmp_path), "--images", str(tmp_path), "--out", str(tmp_path / "o"),
                 "--threshold", "1.5"]) == 2
    assert "--threshold: 1.5 must lie in (0, 1)" in capsys.readouterr().err
    assert main(["predict", "--model", str(tmp_path), "--images", str(tmp_path / "none"), "--out",
                 str(tmp_path / "o")]) == 2
    assert f"--images: {tmp_path / 'none'} is not a folder" in capsys.readouterr().err


def test_predicts_every_image_of_a_synthetic_export(tmp_path, capsys):
    ckpt = write_checkpoint(tmp_path / "ckpt", TeacherStudentTrainer(tiny_config(), torch.device("cpu")), {}, NORM)
    root = tmp_path / "syn"
    assert main(["synth", "--out", str(root), "--image-size", "40", "--val", "2", "--test", "3",
                 "--splits", "val", "test"]) == 0
    out = tmp_path / "pred"
    assert main(["predict", "--model", str(ckpt), "--images", str(root / "images"), "--out", str(out)]) == 0
    assert "wrote 5 masks and overlays" in capsys.readouterr().out
    ids = [f"syn-val-{k:05d}" for k in range(2)] + [f"syn-test-{k:05d}" for k in range(3)]
    assert sorted(p.name for p in out.iterdir()) == sorted(f"{i}_{kind}.png" for i in ids for kind in ("mask", "overlay"))
    for i in ids:
        assert np.asarray(Image.open(out / f"{i}_mask.png")).shape == (40, 40)
