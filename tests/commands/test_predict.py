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


def test_tta_answers_with_the_flip_averaged_model_whatever_its_config_says(tmp_path):
    from fgi.config import override
    from fgi.run.evaluation import predict_full_size

    cfg = tiny_config()
    trainer = TeacherStudentTrainer(cfg, torch.device("cpu"))
    ckpt = write_checkpoint(tmp_path / "ckpt", trainer, {}, NORM)
    images = tmp_path / "images"
    images.mkdir()
    image = np.random.default_rng(1).integers(0, 256, (36, 44, 3), dtype=np.uint8)
    Image.fromarray(image).save(images / "a.png")
    flips = TeacherStudentTrainer(override(cfg, {"model.tta": "flips"}), torch.device("cpu"))
    flips.load_state_dict(trainer.state_dict())
    probs = predict_full_size(flips, image, NORM)
    threshold = float(np.median(probs))  # a mask with both classes, so the flips can show
    for tta, source in (("flips", flips), ("none", trainer)):
        out = tmp_path / tta
        assert main(["predict", "--model", str(ckpt), "--images", str(images), "--out", str(out), "--tta", tta,
                     "--threshold", str(threshold)]) == 0
        mask = np.asarray(Image.open(out / "a_mask.png")) > 0
        np.testing.assert_array_equal(mask, predict_full_size(source, image, NORM) > threshold)
    assert not np.array_equal(np.asarray(Image.open(tmp_path / "flips" / "a_mask.png")),
                              np.asarray(Image.open(tmp_path / "none" / "a_mask.png")))
