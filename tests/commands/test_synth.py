from __future__ import annotations

import csv
import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch

from fgi.checkpoint import write_checkpoint
from fgi.cli import main
from fgi.method.engine import TeacherStudentTrainer
from tests.core.helpers import make_batches, tiny_config
from tests.synthetic import make_split

NORM = {"image_size": 32, "channels": 3, "mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]}


def test_budget_and_options_decide_size_counts_and_seed(tmp_path, capsys):
    out = tmp_path / "syn"
    assert main(["synth", "--out", str(out), "--budget", "smoke", "--seed", "3", "--test", "2", "--splits", "test"]) == 0
    assert f"wrote 2 test synthetic images and masks (32 px, seed 3) to {out.resolve()}" in capsys.readouterr().out
    expected = make_split("test", 2, 32, seed=3)
    for s in expected:
        image = cv2.cvtColor(cv2.imread(str(out / "images" / f"{s.id}.png")), cv2.COLOR_BGR2RGB)
        np.testing.assert_array_equal(image, s.image)
    assert (out / "test.txt").read_text().split() == [s.id for s in expected]


def test_config_file_gives_the_seed(tmp_path):
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text("data:\n  synthetic_seed: 5\n  image_size: 24\n  synthetic_test: 1\n")
    assert main(["synth", "--out", str(tmp_path / "syn"), "--config", str(cfg), "--splits", "test"]) == 0
    image = cv2.cvtColor(cv2.imread(str(tmp_path / "syn" / "images" / "syn-test-00000.png")), cv2.COLOR_BGR2RGB)
    np.testing.assert_array_equal(image, make_split("test", 1, 24, seed=5)[0].image)


def test_non_empty_folder_and_bad_values_are_one_line(tmp_path, capsys):
    out = tmp_path / "syn"
    out.mkdir()
    (out / "notes.txt").write_text("x")
    assert main(["synth", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{out}: folder is not empty" in err and "--force" in err
    assert main(["synth", "--out", str(out), "--force", "--test", "1", "--splits", "test"]) == 0
    assert (out / "images" / "syn-test-00000.png").is_file() and (out / "notes.txt").is_file()
    assert main(["synth", "--out", str(tmp_path / "other"), "--image-size", "4"]) == 2
    assert "data.image_size: 4" in capsys.readouterr().err


@pytest.mark.slow  # runs the README's synthetic commands as subprocesses
def test_readme_commands_export_predict_and_evaluate(tmp_path):
    cfg = tiny_config()
    trainer = TeacherStudentTrainer(cfg, torch.device("cpu"))
    for batch in make_batches(cfg, "train", 8, 4):
        trainer.train_step(batch)
    ckpt = write_checkpoint(tmp_path / "ckpt", trainer, {}, NORM)

    def fgi(*args: str) -> str:
        proc = subprocess.run([sys.executable, "-m", "fgi.cli", *args], cwd=tmp_path, capture_output=True, text=True,
                              timeout=600)
        assert proc.returncode == 0, proc.stderr
        return proc.stdout

    fgi("synth", "--out", "syn", "--budget", "smoke", "--splits", "test")
    assert "wrote 8 masks and overlays" in fgi("predict", "--model", str(ckpt), "--images", "syn/images", "--out", "pred")
    printed = fgi("evaluate", "--model", str(ckpt), "--dataset", "synthetic", "--root", "syn",
                  "--split-file", "syn/test.txt")
    assert "8 images" in printed and "dice" in printed
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt", "pred", "syn"]  # no CSV unless asked
    fgi("evaluate", "--model", str(ckpt), "--dataset", "synthetic", "--root", "syn", "--split-file", "syn/test.txt",
        "--csv", "per_image.csv")
    rows = list(csv.DictReader((tmp_path / "per_image.csv").open()))
    assert [r["id"] for r in rows] == [f"syn-test-{k:05d}" for k in range(8)]
    assert all(0.0 <= float(r["dice"]) <= 1.0 for r in rows)
