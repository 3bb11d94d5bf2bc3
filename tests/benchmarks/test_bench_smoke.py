"""Smoke runs of the benchmark scripts, so they keep working. Figures come from full runs by hand."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # each test runs a benchmark script in a subprocess (bench_search starts Ray)

ROOT = Path(__file__).resolve().parents[2]


def run_script(name: str, *args: str, timeout: float = 600) -> str:
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / name), *args], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def test_bench_masking_smoke():
    out = run_script("bench_masking.py", "--smoke")
    assert "speed-up" in out


def test_bench_step_smoke():
    # the baseline and the setting that exercises every option (autocast, channels_last, compile)
    out = run_script("bench_step.py", "--smoke", "--settings", "fp32 eager", "bf16 + channels_last + compile")
    assert "fp32 eager" in out and "bf16 + channels_last + compile speed-up vs fp32 eager" in out


def test_bench_overhead_smoke():
    out = run_script("bench_overhead.py", "--smoke")
    assert "ratio platform / bare" in out


def test_bench_search_smoke():
    out = run_script("bench_search.py", "--smoke")
    assert "asha+tpe" in out and "random, no stopping" in out and "steps to reach target" in out


def test_budget_probe_smoke():
    out = run_script("budget_probe.py", "--budget", "smoke", "--steps", "8")
    lines = [line for line in out.splitlines() if line.startswith("max_steps")]
    assert [int(line.split()[3]) for line in lines] == [4, 8], out  # one line per evaluation of the smoke budget


def test_bench_ensemble_smoke(tmp_path):
    import torch

    from fgi.budgets import apply_budget
    from fgi.checkpoint import write_checkpoint
    from fgi.config import Config, override
    from fgi.method.engine import TeacherStudentTrainer
    from fgi.run.worker import build_loaders, prepare

    cfg = prepare(apply_budget(Config(), "smoke"))
    norm = build_loaders(cfg, 0, 1)["normalization"]
    folders = [write_checkpoint(tmp_path / f"seed{seed}", TeacherStudentTrainer(override(cfg, {"train.seed": seed}),
                                torch.device("cpu")), {}, norm) for seed in (0, 1)]
    out = run_script("bench_ensemble.py", "--members", *map(str, folders))
    assert "| ensemble (mean of 2) |" in out and "(best member)" in out and "ensemble − best member:" in out, out
