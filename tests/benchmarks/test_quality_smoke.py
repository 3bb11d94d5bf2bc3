"""Smoke run of benchmarks/quality_kvasir.py on a tiny Kvasir-layout folder, end to end (all five arms)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import mlflow
import pytest

from fgi.checkpoint import METRICS_FILE, NORMALIZATION_FILE, load_checkpoint, load_folder
from fgi.config import Config, override, save_yaml
from fgi.engine import TeacherStudentTrainer
from fgi.tracking import fetch_model
from tests.data.conftest import make_kvasir

pytestmark = pytest.mark.slow  # every test runs the script in a subprocess

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "quality_kvasir.py"


def run_script(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=timeout,
                          cwd=ROOT)


def test_quality_kvasir_smoke(tmp_path):
    root, csv_path = make_kvasir(tmp_path / "kvasir", n=8)
    tuned = tmp_path / "tuned.yaml"
    # a tuned config as tune.py writes it: its own compute budget and cache, which the script must replace
    save_yaml(override(Config(), {"data.dataset": "kvasir", "data.image_size": 48, "data.cache_dir": str(tmp_path / "x"),
                                  "loss.tau_pos": 0.9, "masking.mask_ratio": 0.4, "text.template": "clinical"}), tuned)
    out = tmp_path / "out"
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    proc = run_script("--smoke", "--root", str(root), "--fixations", str(csv_path), "--cache-dir",
                      str(tmp_path / "cache"), "--out", str(out), "--tuned-config", str(tuned), "--threads", "1",
                      "--workers", "1", "--register-as", "fgi-kvasir-smoke", "--mlflow-uri", uri)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    text = proc.stdout
    for label in ("(a) full supervision", "(b) gaze only", "(c) teacher-student, no text",
                  "(d) full method", "(e) full method, tuned"):
        assert label in text
    assert text.count("goal (") == 3

    record = json.loads((out / "quality_kvasir.json").read_text())
    assert (out / "quality_kvasir.md").read_text() in text
    assert sorted(r["arm"] for r in record["runs"]) == sorted(["full", "gaze", "no_text", "full_method", "tuned"])
    by_arm = {r["arm"]: r for r in record["runs"]}
    assert by_arm["full"]["config"]["data"]["supervision"] == "ground_truth"
    assert by_arm["gaze"]["config"]["train"]["method"] == "student_only"
    assert by_arm["no_text"]["config"]["text"]["mode"] == "none"
    tuned_cfg = by_arm["tuned"]["config"]
    assert tuned_cfg["loss"]["tau_pos"] == 0.9 and tuned_cfg["text"]["template"] == "clinical"
    # the budget and the data replace the tuned file's own
    assert tuned_cfg["data"]["image_size"] == by_arm["full_method"]["config"]["data"]["image_size"] == 32
    assert tuned_cfg["data"]["cache_dir"] == str(tmp_path / "cache")
    for r in record["runs"]:
        assert r["best"]["val_dice"] == max(p["val_dice"] for p in r["curve"])
        assert 0.0 <= r["best"]["val_dice"] <= 1.0 and r["curve"][-1]["step"] == 4
    assert record["summary"]["full"]["pseudo_mask_dice"] is None
    assert 0.0 < record["summary"]["gaze"]["pseudo_mask_dice"] <= 1.0

    final = out / "final-tuned"
    assert record["final_model"] == str(final)
    assert (final / NORMALIZATION_FILE).is_file()
    trainer = load_checkpoint(final, TeacherStudentTrainer)
    assert trainer.cfg.loss.tau_pos == 0.9 and trainer.cfg.train.method == "teacher_student"
    best_tuned = max(by_arm["tuned"]["best"]["val_dice"], 0.0)
    assert json.loads((final / METRICS_FILE).read_text())["val_dice"] == best_tuned

    # the hand-over model is registered too, with its val metrics, and loads back from the registry
    assert "registered models:/fgi-kvasir-smoke/1" in text
    with fetch_model("models:/fgi-kvasir-smoke/1", uri) as folder:
        registered, normalization = load_folder(folder, TeacherStudentTrainer)
    assert registered.cfg == trainer.cfg
    assert normalization == json.loads((final / NORMALIZATION_FILE).read_text())
    # the registered pyfunc wrapper (MLflow serving) rebuilds the same engine
    mlflow.set_registry_uri(uri)
    pyfunc = mlflow.pyfunc.load_model("models:/fgi-kvasir-smoke/1")
    assert pyfunc.unwrap_python_model().trainer.cfg == trainer.cfg
    run = mlflow.MlflowClient(uri).get_run(mlflow.MlflowClient(uri).get_model_version("fgi-kvasir-smoke", "1").run_id)
    assert run.data.metrics["best_val_dice"] == pytest.approx(best_tuned)


def test_quality_kvasir_skips_absent_tuned_config_and_resumes(tmp_path):
    root, csv_path = make_kvasir(tmp_path / "kvasir", n=6)
    args = ["--smoke", "--root", str(root), "--fixations", str(csv_path), "--cache-dir", str(tmp_path / "cache"),
            "--out", str(tmp_path / "out"), "--arms", "gaze", "tuned", "--tuned-config", str(tmp_path / "absent.yaml"),
            "--threads", "1", "--workers", "1"]
    proc = run_script(*args)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"arm (e) tuned skipped: {tmp_path / 'absent.yaml'} not found" in proc.stdout
    record = json.loads((tmp_path / "out" / "quality_kvasir.json").read_text())
    assert [r["arm"] for r in record["runs"]] == ["gaze"]
    assert record["final_model"] is None

    again = run_script(*args, "--resume")
    assert again.returncode == 0, again.stdout + again.stderr
    assert "reusing the finished run" in again.stdout and " step 2/4 " not in again.stdout
    assert json.loads((tmp_path / "out" / "quality_kvasir.json").read_text())["runs"] == record["runs"]


def test_quality_kvasir_names_absent_data(tmp_path):
    proc = run_script("--root", str(tmp_path / "nowhere"), "--out", str(tmp_path / "out"))
    assert proc.returncode == 2
    assert str(tmp_path / "nowhere") in proc.stderr and "Traceback" not in proc.stderr


def test_write_splits_is_seeded(tmp_path):
    root, _ = make_kvasir(tmp_path / "kvasir", n=10)
    for name in ("a", "b"):
        proc = run_script("--write-splits", "--root", str(root), "--split-dir", str(tmp_path / name), "--n-val", "3")
        assert proc.returncode == 0, proc.stderr
    train = (tmp_path / "a" / "train.txt").read_text().split()
    val = (tmp_path / "a" / "val.txt").read_text().split()
    assert len(train) == 7 and len(val) == 3 and not set(train) & set(val)
    assert (tmp_path / "b" / "val.txt").read_text() == (tmp_path / "a" / "val.txt").read_text()
