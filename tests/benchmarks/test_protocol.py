"""benchmarks/protocol_kvasir.py: the gated report, the records, and one tiny end-to-end run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.benchmarks.scripts import load_script
from tests.data.conftest import make_kvasir

pk = load_script("protocol_kvasir")


def _record(arm: str, seed: int, dice: dict[str, float], val_dice: float) -> dict:
    rows = [{"id": i, "dice": d, "iou": d / (2 - d), "hd95": 10.0, "asd": 2.0} for i, d in dice.items()]
    return {"arm": arm, "seed": seed, "curve": [{"step": 10, "val_dice": val_dice}], "test_rows": rows,
            "train_seconds": 60.0}


def test_per_image_dice_averages_seeds():
    runs = [_record("d_fgi", 0, {"x": 0.2, "y": 0.4}, 0.5), _record("d_fgi", 1, {"x": 0.6, "y": 0.8}, 0.5)]
    assert pk.per_image_dice(runs) == pytest.approx({"x": 0.4, "y": 0.6})


def test_report_withholds_comparisons_until_the_gate_is_met():
    weak = {"a_full": [_record("a_full", 0, {"x": 0.6}, 0.70)],
            "b_gaze": [_record("b_gaze", 0, {"x": 0.5}, 0.6)], "d_fgi": [_record("d_fgi", 0, {"x": 0.55}, 0.6)]}
    text = pk.report(weak)
    assert "NOT met" in text and "Comparisons withheld" in text and "mean Δ" not in text


def test_report_prints_the_paired_difference_once_the_gate_is_met():
    runs = {"a_full": [_record("a_full", 0, {"x": 0.9, "y": 0.9}, 0.80)],
            "b_gaze": [_record("b_gaze", s, {"x": 0.5, "y": 0.6}, 0.6) for s in (0, 1)],
            "d_fgi": [_record("d_fgi", s, {"x": 0.6, "y": 0.7}, 0.6) for s in (0, 1)]}
    text = pk.report(runs)
    assert "Gate: (a) last val Dice 0.8000" in text and ": met" in text
    row = next(line for line in text.splitlines() if line.startswith("| (d) FGI, reference defaults − (b) gaze"))
    assert "+10.00" in row and row.count("[+10.00, +10.00]") == 2 and "2 vs 2" in row
    assert "95 % CI over seeds and images" in text
    # arms without records leave no row
    assert "(b2) two-level" not in text and "(e) FGI, tuned" not in text


def test_arm_e_needs_a_tuned_config():
    args = pk.parse_args(["--root", "r", "--fixations", "f.csv", "--splits", "s"])
    with pytest.raises(pk.ProtocolError, match="--tuned-config"):
        pk.arm_config("e_tuned", pk.base_config(args), 0, {})


def test_arm_e_keeps_the_searched_knobs_and_takes_data_and_compute_from_the_protocol():
    args = pk.parse_args(["--root", "r", "--fixations", "f.csv", "--splits", "s"])
    base = pk.base_config(args)
    tuned = pk.override(pk.Config(), {"data.tight_level": 0.62, "data.loose_level": 0.21, "masking.mask_ratio": 0.05,
                                      "optim.lr": 4e-4, "data.image_size": 48, "train.max_steps": 300,
                                      "data.root": "elsewhere"})
    cfg = pk.arm_config("e_tuned", base, 1, {"e_tuned": tuned})
    # searched knobs, gaze levels included, come from the sweep
    assert (cfg.data.tight_level, cfg.data.loose_level) == (0.62, 0.21)
    assert (cfg.masking.mask_ratio, cfg.optim.lr) == (0.05, 4e-4)
    # compute, data paths and seed come from the protocol
    assert (cfg.data.image_size, cfg.train.max_steps, cfg.data.root, cfg.train.seed) == (96, 5000, "r", 1)


def _args(tmp_path: Path, *extra: str) -> list[str]:
    return ["--root", "r", "--fixations", "f.csv", "--splits", "s", "--records", str(tmp_path / "records"), *extra]


def test_a_record_from_before_a_new_config_field_still_counts_as_the_same_run():
    args = pk.parse_args(["--root", "r", "--fixations", "f.csv", "--splits", "s"])
    cfg = pk.arm_config("d_fgi", pk.base_config(args), 0, {})
    old = pk.to_dict(cfg)
    del old["masking"]["decoy_ratio"]  # a record written before the field existed (at its default)
    assert pk.config_changes(pk.from_dict(old), cfg) == []
    changed = pk.to_dict(cfg)
    changed["masking"]["mask_ratio"] = 0.0
    assert pk.config_changes(pk.from_dict(changed), cfg) == ["masking.mask_ratio: 0.0 -> 0.3"]
    assert pk.config_changes(pk.from_dict(old), pk.override(cfg, {"masking.decoy_ratio": 0.3})) == [
        "masking.decoy_ratio: 0.0 -> 0.3"]


def test_paths_and_threads_do_not_make_another_run_but_precision_does():
    cfg = pk.arm_config("d_fgi", pk.base_config(pk.parse_args(["--root", "r", "--fixations", "f.csv", "--splits", "s"])), 0, {})
    elsewhere = pk.override(cfg, {"data.root": "/other/kvasir", "data.cache_dir": "/tmp/c", "train.threads": 1})
    assert pk.config_changes(cfg, elsewhere) == []
    assert pk.config_changes(cfg, pk.override(cfg, {"train.amp": "bf16"})) == ["train.amp: 'none' -> 'bf16'"]


def test_a_finished_record_of_another_config_is_never_overwritten(tmp_path):
    cfg = pk.arm_config("b_gaze", pk.base_config(pk.parse_args(_args(tmp_path))), 0, {})
    path = tmp_path / "b_gaze-seed0.json"
    pk.check_record(path, cfg)  # no record yet: nothing to protect
    path.write_text(json.dumps({"arm": "b_gaze", "seed": 0, "config": pk.to_dict(cfg)}))
    pk.check_record(path, pk.override(cfg, {"train.threads": 1}))  # the same run
    with pytest.raises(pk.ProtocolError, match=r"b_gaze-seed0.json.*train.max_steps: 5000 -> 2"):
        pk.check_record(path, pk.override(cfg, {"train.max_steps": 2}))
    path.write_text("{not json")
    with pytest.raises(pk.ProtocolError, match="b_gaze-seed0.json: not a protocol record"):
        pk.check_record(path, cfg)


def test_resuming_from_the_state_of_another_config_is_refused(tmp_path):
    from fgi.config import save_yaml

    cfg = pk.arm_config("d_fgi", pk.base_config(pk.parse_args(_args(tmp_path))), 1, {})
    last = tmp_path / "d_fgi-seed1" / "last"
    last.mkdir(parents=True)
    save_yaml(pk.override(cfg, {"data.cache_dir": "/elsewhere"}), last / "config.yaml")
    pk.check_state(last, cfg)
    save_yaml(pk.override(cfg, {"masking.mask_ratio": 0.0}), last / "config.yaml")
    with pytest.raises(pk.ProtocolError, match=r"d_fgi-seed1/last: saved by a run of another config \(masking.mask_ratio"):
        pk.check_state(last, cfg)


def test_records_are_checked_as_they_load(tmp_path):
    records = tmp_path / "records"
    with pytest.raises(pk.ProtocolError, match="no records folder"):
        pk.load_records(records)
    records.mkdir()
    base = pk.base_config(pk.parse_args(_args(tmp_path)))

    def write(name: str, arm: str, seed: int, **updates) -> None:
        cfg = pk.override(pk.arm_config(arm, base, seed, {}), updates)
        (records / name).write_text(json.dumps({**_record(arm, seed, {"x": 0.5}, 0.6), "config": pk.to_dict(cfg)}))

    write("b_gaze-seed0.json", "b_gaze", 0)
    write("b_gaze-seed1.json", "b_gaze", 1, **{"train.threads": 1})
    assert [r["seed"] for r in pk.load_records(records)["b_gaze"]] == [0, 1]
    write("b_gaze-seed2.json", "b_gaze", 2, **{"train.max_steps": 600})
    with pytest.raises(pk.ProtocolError, match=r"b_gaze-seed2.json and .*b_gaze-seed0.json: arm b_gaze trained "
                                               r"with different configs \(train.max_steps: 5000 -> 600\)"):
        pk.load_records(records)
    (records / "b_gaze-seed2.json").unlink()
    write("b_gaze-seed7.json", "b_gaze", 3)
    with pytest.raises(pk.ProtocolError, match="b_gaze-seed7.json: holds arm b_gaze seed 3"):
        pk.load_records(records)
    (records / "b_gaze-seed7.json").write_text('{"arm": "b_gaze"}')
    with pytest.raises(pk.ProtocolError, match="b_gaze-seed7.json: not a protocol record"):
        pk.load_records(records)


def test_a_missing_tuned_config_fails_before_anything_is_prepared_or_trained(tmp_path, capsys):
    root, csv_path = make_kvasir(tmp_path / "kvasir", n=4)
    splits = tmp_path / "splits"
    splits.mkdir()
    for part in ("train", "val", "test"):
        (splits / f"{part}.txt").write_text("")
    cache = tmp_path / "cache"
    assert pk.main(["--root", str(root), "--fixations", str(csv_path), "--splits", str(splits), "--cache-dir", str(cache),
                    "--records", str(tmp_path / "records"), "--arms", "a_full", "e_tuned"]) == 2
    assert "arm e_tuned needs --tuned-config" in capsys.readouterr().err
    assert not cache.exists() and not (tmp_path / "records").exists()


def test_written_config_is_the_base_of_a_laptop_proxy_sweep_for_arm_e(d_fgi_config, tmp_path):
    from fgi.config import load_yaml_text
    from fgi.search.settings import SweepOptions, new_record

    record, _ = new_record(SweepOptions(dataset="kvasir", config=str(d_fgi_config), budget="laptop",
                                        max_steps=1000))
    base = load_yaml_text(record.base_config, "base")
    assert (base.data.image_size, base.train.max_steps, base.train.eval_every) == (96, 1000, 250)
    assert base.data.split_dir == str(tmp_path / "splits") and base.data.root == str(tmp_path / "kvasir")
    # the protocol's training settings travel with the config; the budget only sets compute
    assert base.optim.lr == 1e-3 and base.augment.color == 0.0 and base.loss.rampup_fraction == 0.3
    assert base.train.method == "teacher_student" and base.masking.decoy_ratio == 0.0


def test_absent_data_is_named_with_exit_code_2(tmp_path, capsys):
    assert pk.main(["--root", str(tmp_path / "nowhere"), "--out", str(tmp_path / "out"),
                    "--records", str(tmp_path / "records")]) == 2
    assert str(tmp_path / "nowhere") in capsys.readouterr().err


@pytest.mark.slow  # prepares a real cache (CRF, text encoder) and trains two arms
def test_tiny_protocol_runs_resumes_and_reports(tmp_path, capsys):
    root, csv_path = make_kvasir(tmp_path / "kvasir", n=12)
    splits = tmp_path / "splits"
    splits.mkdir()
    names = sorted(p.stem for p in (root / "images").iterdir())
    for part, ids in (("train", names[:8]), ("val", names[8:10]), ("test", names[10:])):
        (splits / f"{part}.txt").write_text("\n".join(ids) + "\n")
    args = ["--root", str(root), "--fixations", str(csv_path), "--splits", str(splits), "--out", str(tmp_path / "out"),
            "--records", str(tmp_path / "records"), "--cache-dir", str(tmp_path / "cache"), "--steps", "2",
            "--image-size", "32", "--threads", "1", "--arms", "a_full", "d_fgi", "--seeds", "0", "--resume"]
    assert pk.main(args) == 0
    first = capsys.readouterr().out
    records = {p.name: json.loads(p.read_text()) for p in (tmp_path / "records").glob("*.json")}
    assert sorted(records) == ["a_full-seed0.json", "d_fgi-seed0.json"]
    full, fgi = records["a_full-seed0.json"], records["d_fgi-seed0.json"]
    assert full["config"]["data"]["supervision"] == "ground_truth" and full["config"]["train"]["method"] == "student_only"
    assert fgi["config"]["train"]["method"] == "teacher_student" and fgi["config"]["text"]["mode"] == "tokens"
    assert sorted(r["id"] for r in fgi["test_rows"]) == names[10:]  # the test part, and only it
    assert sorted(r["id"] for r in fgi["val_rows"]) == names[8:10]  # per-image val Dice, for stage B's pairing
    assert all(0.0 <= r["dice"] <= 1.0 for r in fgi["val_rows"])
    assert [c["step"] for c in fgi["curve"]] == [2] and "val_dice_teacher" in fgi["curve"][0]
    assert "| (a) full supervision | 0 |" in first and "| (d) FGI, reference defaults | 0 |" in first
    assert fgi["curve"][-1]["run_seconds"] > 0 and fgi["train_seconds"] >= fgi["curve"][-1]["run_seconds"]
    # a second call with --resume reuses both finished runs and trains nothing
    assert pk.main(args) == 0
    again = capsys.readouterr().out
    assert again.count("finished earlier") == 2 and "step 2/2" not in again
    # a longer run of the same arm neither overwrites the finished record nor resumes from its weights
    longer = [a if a != "2" else "3" for a in args]
    assert pk.main(longer) == 2
    assert "a_full-seed0.json: a finished run of another config (train.eval_every: 2 -> 3; train.max_steps: 2 -> 3)" in capsys.readouterr().err
    longer[longer.index("--records") + 1] = str(tmp_path / "records_longer")
    assert pk.main(longer) == 2
    assert "a_full-seed0/last: saved by a run of another config (train.eval_every: 2 -> 3; train.max_steps: 2 -> 3)" in capsys.readouterr().err
    assert json.loads((tmp_path / "records" / "a_full-seed0.json").read_text()) == full
    # arm f_search given d_fgi's own config as the searched one is the same run: d_fgi's record is taken, not retrained
    search = tmp_path / "search.yaml"
    paths = args[:args.index("--out")]
    assert pk.main([*paths, "--steps", "2", "--image-size", "32", "--write-config", str(search)]) == 0
    capsys.readouterr()
    reused = [*paths, "--out", str(tmp_path / "out_f"), "--records", str(tmp_path / "records_f"), "--cache-dir",
              str(tmp_path / "cache"), "--steps", "2", "--image-size", "32", "--threads", "1", "--arms", "f_search",
              "--seeds", "0", "--search-config", str(search), "--reuse", str(tmp_path / "records")]
    assert pk.main(reused) == 0
    out = capsys.readouterr().out
    rec = json.loads((tmp_path / "records_f" / "f_search-seed0.json").read_text())
    assert "step 2/2" not in out and rec["reused_from"] == "d_fgi-seed0.json"
    assert (rec["arm"], rec["test_rows"], rec["val_rows"]) == ("f_search", fgi["test_rows"], fgi["val_rows"])
    assert "| (f) staged search's exported config | 0 |" in out
    # the same searched config with test-time flips: d_fgi's run is scored again from its last state, under them
    flips = tmp_path / "search_flips.yaml"
    flips.write_text(search.read_text().replace("  tta: none", "  tta: flips"))
    assert "tta: flips" in flips.read_text()
    rescored = [a if a != str(search) else str(flips) for a in reused]
    rescored[rescored.index("--records") + 1] = str(tmp_path / "records_flips")
    assert pk.main(rescored) == 2  # no saved state under this --out
    assert f"{tmp_path / 'out_f' / 'd_fgi-seed0' / 'last'}: no saved state of d_fgi-seed0.json" in capsys.readouterr().err
    rescored[rescored.index("--out") + 1] = str(tmp_path / "out")
    assert pk.main(rescored) == 0
    out = capsys.readouterr().out
    rec = json.loads((tmp_path / "records_flips" / "f_search-seed0.json").read_text())
    assert "step 2/2" not in out and rec["reused_from"] == "d_fgi-seed0.json"
    assert rec["rescored"]["keys"] == {"model.tta": {"was": "none", "now": "flips"}}
    assert rec["config"]["model"]["tta"] == "flips" and rec["curve"] == fgi["curve"]
    from fgi.checkpoint import read_checkpoint
    from fgi.config import load_yaml, override
    from fgi.method.engine import TeacherStudentTrainer
    from fgi.run.evaluation import evaluate_folder

    last = tmp_path / "out" / "d_fgi-seed0" / "last"
    trainer = TeacherStudentTrainer(override(load_yaml(last / "config.yaml"), {"model.tta": "flips"}), pk.torch.device("cpu"))
    trainer.load_state_dict(read_checkpoint(last))
    expected = evaluate_folder(trainer, json.loads((last / "normalization.json").read_text()), root, names[10:])
    assert [r["dice"] for r in rec["test_rows"]] == pytest.approx([r["dice"] for r in expected], abs=1e-6)
    assert sorted(r["id"] for r in rec["val_rows"]) == names[8:10]
