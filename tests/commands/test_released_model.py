"""The released Kvasir model (``models/kvasir``): small, weights only, deployable on images alone, and read by
``fgi predict`` and ``fgi evaluate``."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from fgi.checkpoint import INFERENCE_ONLY, read_checkpoint
from fgi.config import load_yaml
from fgi.ensemble import deployable, load_model_folder
from fgi.files import folder_bytes
from fgi.method.engine import TeacherStudentTrainer

REPO = Path(__file__).resolve().parents[2]
MODEL = REPO / "models" / "kvasir"
KVASIR = REPO.parent / "shared" / "data" / "kvasir-seg"
MAX_BYTES = 12_000_000  # the size a released model may take in the repository


def test_the_released_model_is_small_weights_only_and_deployable():
    assert folder_bytes(MODEL) <= MAX_BYTES
    state = read_checkpoint(MODEL)
    assert state[INFERENCE_ONLY] is True and "optimizers" not in state
    trainer, norm = load_model_folder(MODEL, TeacherStudentTrainer)
    assert deployable(trainer.cfg) is None, "it answers on the image alone"
    # it travels: no path of the machine it was trained on, in the state or in config.yaml
    data = trainer.cfg.data
    assert (data.root, data.cache_dir, data.fixations, data.split_dir) == ("", "", "", "")
    assert load_yaml(MODEL / "config.yaml") == trainer.cfg
    side = int(norm["image_size"])
    probs = trainer.predict(torch.zeros(2, int(norm["channels"]), side, side))
    assert probs.shape == (2, 1, side, side) and 0.0 <= float(probs.min()) <= float(probs.max()) <= 1.0


@pytest.mark.slow
def test_fgi_predict_and_evaluate_read_it_on_real_kvasir_images(tmp_path):
    if not (KVASIR / "images").is_dir():
        pytest.skip(f"the shared Kvasir-SEG copy is not at {KVASIR}")
    ids = (REPO / "benchmarks" / "splits_v2" / "val.txt").read_text().split()[:3]
    images = tmp_path / "images"
    images.mkdir()
    for item in ids:
        (images / f"{item}.jpg").symlink_to(KVASIR / "images" / f"{item}.jpg")
    (tmp_path / "ids.txt").write_text("\n".join(ids) + "\n")
    fgi = [sys.executable, "-m", "fgi.cli"]
    done = subprocess.run([*fgi, "predict", "--model", str(MODEL), "--images", str(images), "--out",
                           str(tmp_path / "out")], capture_output=True, text=True, timeout=300, cwd=REPO)
    assert done.returncode == 0, done.stderr[-2000:]
    assert sorted(p.name for p in (tmp_path / "out").glob("*_mask.png")) == sorted(f"{i}_mask.png" for i in ids)
    done = subprocess.run([*fgi, "evaluate", "--model", str(MODEL), "--dataset", "kvasir", "--root", str(KVASIR),
                           "--split-file", str(tmp_path / "ids.txt"), "--out", str(tmp_path / "scores.json")],
                          capture_output=True, text=True, timeout=300, cwd=REPO)
    assert done.returncode == 0, done.stderr[-2000:]
    scores = json.loads((tmp_path / "scores.json").read_text())
    assert scores["n"] == 3 and 0.0 <= scores["dice_mean"] <= 1.0
