"""``fgi describe``: prints cached descriptions; bad input is one error line and exit code 2."""

from __future__ import annotations

from fgi.cli import main
from fgi.config import TextConfig
from fgi.datasets import dataset_context
from fgi.text.cache import build_text_cache, load_descriptions
from fgi.text.items import TextItem
from tests.synthetic import make_split
from tests.text.conftest import gaze_region


def test_prints_the_cached_descriptions(tmp_path, capsys):
    items = [TextItem(s.id, s.image, gaze_region(s.fixations, 64, 64)) for s in make_split("train", 6, 64, 0)]
    build_text_cache(tmp_path, items, TextConfig(), dataset_context("synthetic"), templates=["clinical"], progress=False)
    assert main(["describe", "--dataset", "synthetic", "--template", "clinical", "--n", "3",
                 "--cache-dir", str(tmp_path)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith("# dataset synthetic, template clinical")
    expected = load_descriptions(tmp_path, "clinical", TextConfig())
    assert [ln.split("\t")[0] for ln in lines[1:]] == sorted(expected)[:3]
    for line in lines[1:]:
        image_id, text = line.split("\t")
        assert expected[image_id] == text and text.startswith("A ")


def test_errors_are_one_line_with_exit_code_2(tmp_path, capsys):
    assert main(["describe", "--template", "clinical", "--cache-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("fgi describe: error:") and "fgi prepare" in err and len(err.strip().splitlines()) == 1
    assert main(["describe", "--template", "nope", "--cache-dir", str(tmp_path)]) == 2
    assert "valid templates are" in capsys.readouterr().err
    assert main(["describe", "--n", "0", "--cache-dir", str(tmp_path)]) == 2
    assert "--n must be at least 1" in capsys.readouterr().err
