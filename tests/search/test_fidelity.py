"""Fidelity statistics of an early proxy for the final val Dice (``fgi.search.fidelity``, ``fgi fidelity``)."""

from __future__ import annotations

import json

import pytest

from fgi.cli import main as fgi_main
from fgi.search.fidelity import FidelityError, Run, fidelity, runs_from_records


def _run(name, early, final, step=10, max_steps=20, proxy="val_dice"):
    return Run(name, {step: {proxy: early}, max_steps: {"val_dice": final}}, max_steps)


FINALS = [0.1, 0.2, 0.3, 0.4]


def test_a_hand_computed_case():
    # proxy ranks 2 1 4 3 against final ranks 1 2 3 4: sum d^2 = 4, rho = 1 - 6*4/(4*15) = 0.6;
    # 4 concordant and 2 discordant pairs: tau = 2/6; the proxy's best (0.4) finished at 0.3: regret 10 points
    runs = [_run(f"r{i}", e, f) for i, (e, f) in enumerate(zip([0.2, 0.1, 0.4, 0.3], FINALS, strict=True))]
    row = fidelity(runs, "val_dice", 10, k=2, samples=200)
    assert row.runs == 4
    assert row.spearman.value == pytest.approx(0.6)
    assert row.kendall.value == pytest.approx(1 / 3)
    assert row.regret.value == pytest.approx(10.0)
    assert row.recall.value == 1.0  # both top-2 sets are {r2, r3}
    assert fidelity(runs, "val_dice", 10, k=1, samples=200).recall.value == 0.0
    assert row.spearman.low <= row.spearman.value <= row.spearman.high


def test_a_perfect_and_a_reversed_proxy():
    perfect = fidelity([_run(f"r{i}", f, f) for i, f in enumerate(FINALS)], "val_dice", 10, samples=200)
    assert (perfect.spearman.value, perfect.kendall.value, perfect.regret.value) == (1.0, 1.0, 0.0)
    assert perfect.spearman.low == 1.0  # every resample with two distinct runs agrees perfectly
    reversed_ = fidelity([_run(f"r{i}", -f, f) for i, f in enumerate(FINALS)], "val_dice", 10, samples=200)
    assert reversed_.spearman.value == -1.0 and reversed_.regret.value == pytest.approx(30.0)


def test_runs_without_the_proxy_are_left_out_and_too_few_is_an_error():
    runs = [_run(f"r{i}", f, f) for i, f in enumerate(FINALS)]
    runs.append(_run("student_only", 0.5, 0.5, proxy="val_dice_student"))
    assert fidelity(runs, "val_dice", 10, samples=50).runs == 4
    with pytest.raises(FidelityError, match="val_dice_teacher at step 10: 0 of 5 runs report it; need at least 3"):
        fidelity(runs, "val_dice_teacher", 10)
    with pytest.raises(FidelityError, match="at step 15: 0 of 5"):
        fidelity(runs, "val_dice", 15)
    with pytest.raises(FidelityError, match=r"proxy 'loss' is unknown; valid proxies are \['val_dice'"):
        fidelity(runs, "loss", 10)


def _record(folder, name, early, final, max_steps=20):
    rec = {"arm": name, "config": {"train": {"max_steps": max_steps}},
           "curve": [{"step": 10, "val_dice": early, "loss": 1.0}, {"step": 20, "val_dice": final}]}
    (folder / f"{name}.json").write_text(json.dumps(rec))


def test_the_command_reads_records_and_reports_bad_ones(tmp_path, capsys):
    for i, f in enumerate(FINALS):
        _record(tmp_path, f"arm{i}-seed0", f, f)
    _record(tmp_path, "gt-seed0", 0.0, 0.9)
    assert fgi_main(["fidelity", "--records", str(tmp_path), "--steps", "10", "--samples", "100"]) == 0
    out = capsys.readouterr().out
    assert "5 runs in" in out and "| val_dice | 10 | 5 |" in out
    assert fgi_main(["fidelity", "--records", str(tmp_path), "--steps", "10", "--samples", "100",
                     "--exclude", "gt", "--out", str(tmp_path / "t.md")]) == 0
    assert "| val_dice | 10 | 4 | +1.00" in (tmp_path / "t.md").read_text()
    _record(tmp_path, "short-seed0", 0.1, 0.2, max_steps=30)
    with pytest.raises(FidelityError, match=r"short-seed0.json: its curve ends before step 30"):
        runs_from_records(tmp_path)
    assert fgi_main(["fidelity", "--records", str(tmp_path / "none"), "--steps", "10"]) == 2
    assert capsys.readouterr().err.strip().endswith("none: no records folder")
