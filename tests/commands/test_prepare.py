"""``fgi prepare``: options become a typed config, bad input is one error line and exit code 2."""

from __future__ import annotations

import argparse

import pytest

from fgi.cli import main
from fgi.commands.prepare import add_arguments, config_from_args
from tests.data.conftest import make_kvasir


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args(list(argv))


def test_options_override_the_config_and_bring_the_channels():
    cfg = config_from_args(_args("--dataset", "nci-isbi", "--root", "/raw", "--image-size", "64",
                                 "--on-missing-gaze", "skip", "--describer", "morphology"))
    assert cfg.data.dataset == "nci-isbi" and cfg.data.in_channels == 1 and cfg.data.root == "/raw"
    assert cfg.data.image_size == 64 and cfg.gaze.on_missing == "skip" and cfg.text.describer == "morphology"
    assert config_from_args(_args()).data.dataset == "synthetic"


def test_unknown_dataset_is_refused_with_the_valid_names(capsys):
    with pytest.raises(SystemExit) as exc:
        _args("--dataset", "kvasr")
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "invalid choice: 'kvasr'" in err and "'nci-isbi'" in err


def test_bad_input_is_one_error_line(tmp_path, capsys):
    root, csv_path = make_kvasir(tmp_path / "kvasir")
    (root / "images" / "img001.jpg").write_bytes(b"\xff\xd8broken")
    rc = main(["prepare", "--dataset", "kvasir", "--root", str(root), "--fixations", str(csv_path),
               "--cache-dir", str(tmp_path / "c"), "--workers", "1", "--no-text", "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 2
    assert "fgi prepare: error:" in err and "img001.jpg: cannot decode image" in err and "Traceback" not in err


def test_report_prints_dice_table(tmp_path, capsys):
    root, csv_path = make_kvasir(tmp_path / "kvasir")
    rc = main(["prepare", "--dataset", "kvasir", "--root", str(root), "--fixations", str(csv_path),
               "--cache-dir", str(tmp_path / "c"), "--image-size", "32", "--workers", "1", "--no-text",
               "--no-progress", "--report"])
    out = capsys.readouterr().out
    assert rc == 0
    assert "| heatmap >= 0.5 |" in out and "| crf >= 0.3 |" in out and "(6 images with masks)" in out


def test_report_over_one_split_at_chosen_levels(tmp_path, capsys):
    root, csv_path = make_kvasir(tmp_path / "kvasir")
    common = ["prepare", "--dataset", "kvasir", "--root", str(root), "--fixations", str(csv_path),
              "--cache-dir", str(tmp_path / "c"), "--image-size", "32", "--workers", "1", "--no-text", "--no-progress"]
    assert main([*common, "--report", "--report-split", "val", "--report-levels", "0.3", "0.4", "0.5"]) == 0
    out = capsys.readouterr().out
    assert "val split)" in out and "| crf >= 0.4 |" in out and "highest crf: >= " in out
    assert main([*common, "--report", "--report-levels", "0.355"]) == 2
    assert "--report-levels/--report-split: levels [0.355]" in capsys.readouterr().err
    assert main([*common, "--report-split", "val"]) == 2
    assert "need --report" in capsys.readouterr().err


def test_a_config_naming_an_unknown_template_fails_before_any_work(tmp_path, capsys):
    config = tmp_path / "c.yaml"
    config.write_text("text:\n  template: clinicl\n")
    rc = main(["prepare", "--config", str(config), "--cache-dir", str(tmp_path / "cache"), "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 2 and "text.template: unknown prompt template 'clinicl'" in err and "'clinical'" in err
    assert not (tmp_path / "cache").exists()
