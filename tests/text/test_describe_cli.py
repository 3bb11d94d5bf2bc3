from __future__ import annotations

import pytest

from fgi.cli import main
from fgi.config import TextConfig
from fgi.text.pipeline import build_text_cache, load_descriptions


def test_fgi_describe_prints_cached_descriptions(tmp_path, gaze_items, minilm, capsys):
    items = gaze_items(6)
    build_text_cache(tmp_path, items, TextConfig(), "synthetic", templates=["clinical"], progress=False, encoder=minilm)
    assert main(["describe", "--dataset", "synthetic", "--template", "clinical", "--n", "3",
                 "--cache-dir", str(tmp_path)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith("# dataset synthetic, template clinical")
    expected = load_descriptions(tmp_path, "clinical", TextConfig())
    assert len(lines) == 4
    for line in lines[1:]:
        image_id, text = line.split("\t")
        assert expected[image_id] == text and text.startswith("A ")


def test_fgi_describe_errors_are_clear(tmp_path):
    with pytest.raises(SystemExit, match="fgi prepare"):
        main(["describe", "--template", "clinical", "--cache-dir", str(tmp_path)])
    with pytest.raises(SystemExit, match="valid templates"):
        main(["describe", "--template", "nope", "--cache-dir", str(tmp_path)])
