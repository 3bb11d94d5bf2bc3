"""The sweep console: one line per finished trial, a progress line, the closing summary."""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path

from fgi.commands.tune import summary
from fgi.search.console import ConsoleCallback
from fgi.search.sweep import SweepResult


@dataclass
class _Trial:
    """The attributes of a Tune trial the console reads."""

    trial_id: str
    status: str = "RUNNING"
    last_result: dict = field(default_factory=dict)
    error_file: str | None = None


def test_each_finished_trial_prints_its_line_and_the_progress(tmp_path):
    out = io.StringIO()
    cb = ConsoleCallback(total=4, metric="val_dice", mode="max", max_steps=12, stream=out)
    a, b, c = _Trial("a"), _Trial("b"), _Trial("c", status="PENDING")
    for t in (a, b):
        cb.on_trial_start(0, [a, b], t)
    cb.on_trial_result(0, [a, b], a, {"val_dice": 0.4, "step": 4})
    cb.on_trial_result(0, [a, b], a, {"val_dice": 0.3, "step": 8})
    cb.on_trial_result(0, [a, b], b, {"val_dice": 0.6, "step": 4})
    a.last_result = {"step": 12}
    cb.on_trial_complete(0, [a, b], a)
    a.status = "TERMINATED"
    b.last_result = {"step": 4}
    cb.on_trial_complete(0, [a, b, c], b)
    err = tmp_path / "error.txt"
    err.write_text("Traceback (most recent call last):\n  ...\nValueError: broken batch\n")
    c.error_file = str(err)
    cb.on_trial_start(0, [c], c)
    cb.on_trial_error(0, [c], c)
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("trial a finished") and "best val_dice 0.4000  12 steps" in lines[0]
    assert "[1/4 done, 1 running, 2 pending] best val_dice 0.6000 (trial b)" in lines[1]
    assert lines[2].startswith("trial b stopped early") and "best val_dice 0.6000  4 steps" in lines[2]
    assert "[2/4 done, 0 running, 2 pending] best val_dice 0.6000 (trial b)" in lines[3]
    assert lines[4].startswith("trial c failed") and "no val_dice" in lines[4]
    assert lines[6] == "  error: ValueError: broken batch" and len(lines) == 7


def test_minimized_metrics_rank_the_lowest_best():
    cb = ConsoleCallback(total=2, metric="val_hd95", mode="min", max_steps=4, stream=io.StringIO())
    cb.on_trial_result(0, [], _Trial("a"), {"val_hd95": 5.0})
    cb.on_trial_result(0, [], _Trial("b"), {"val_hd95": 3.0})
    cb.on_trial_result(0, [], _Trial("a"), {"val_hd95": 4.0})
    assert cb.best_so_far() == ("b", 3.0)


def test_summary_names_the_best_trial_and_the_next_commands():
    result = SweepResult(
        name="s", path="/r/s", trials=10, failed=1, metric="val_dice", best_metrics={"val_dice": 0.61234, "step": 45},
        best_config=None, best_config_path=Path("/h/best_configs/kvasir.yaml"), best_trial="abc", importances={},
        experiment="fgi-kvasir", parent_run_id="p1", mlflow_uri="sqlite:////h/mlflow.db", seconds=120.0,
        train_args=("--data-root", "/d/kvasir", "--budget", "cpu"))
    lines = summary(result)
    assert lines[1] == "best trial abc: val_dice 0.6123 at step 45"
    assert "best config: /h/best_configs/kvasir.yaml" in lines and "MLflow parent run: p1 (experiment fgi-kvasir)" in lines
    assert lines[-2] == "  mlflow ui --backend-store-uri sqlite:////h/mlflow.db"
    assert lines[-1] == "  python train.py --config /h/best_configs/kvasir.yaml --data-root /d/kvasir --budget cpu"
    assert len(lines) <= 8
