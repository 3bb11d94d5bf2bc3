from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from fgi.config import DataConfig
from fgi.data.errors import DataError
from fgi.data.synthetic import export_folder
from tests.synthetic import make_split

DATA = DataConfig(image_size=40, synthetic_train=3, synthetic_val=2, synthetic_test=4, synthetic_seed=7)


def read_rgb(path):
    return cv2.cvtColor(cv2.imread(str(path), cv2.IMREAD_UNCHANGED), cv2.COLOR_BGR2RGB)


def test_files_hold_the_generator_pixels(tmp_path):
    written = export_folder(tmp_path / "syn", DATA)
    assert {split: len(ids) for split, ids in written.items()} == {"train": 3, "val": 2, "test": 4}
    for split, n in (("train", 3), ("val", 2), ("test", 4)):
        samples = make_split(split, n, 40, seed=7)
        assert (tmp_path / "syn" / f"{split}.txt").read_text().split() == [s.id for s in samples]
        for s in samples:
            np.testing.assert_array_equal(read_rgb(tmp_path / "syn" / "images" / f"{s.id}.png"), s.image)
            mask = cv2.imread(str(tmp_path / "syn" / "masks" / f"{s.id}.png"), cv2.IMREAD_UNCHANGED)
            assert mask.dtype == np.uint8 and set(np.unique(mask)) <= {0, 255}
            np.testing.assert_array_equal(mask == 255, s.mask)
    assert len(list((tmp_path / "syn" / "images").iterdir())) == 9
    assert json.loads((tmp_path / "syn" / "synthetic.json").read_text()) == {
        "seed": 7, "image_size": 40, "counts": {"train": 3, "val": 2, "test": 4}}


def test_the_seed_decides_the_pixels(tmp_path):
    export_folder(tmp_path / "a", DATA, ["test"])
    export_folder(tmp_path / "b", DataConfig(image_size=40, synthetic_test=4, synthetic_seed=8), ["test"])
    a, b = (read_rgb(tmp_path / d / "images" / "syn-test-00000.png") for d in ("a", "b"))
    assert not np.array_equal(a, b)
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["images", "masks", "synthetic.json", "test.txt"]


def test_refuses_a_non_empty_folder_unless_asked(tmp_path):
    out = tmp_path / "syn"
    out.mkdir()
    (out / "mine.txt").write_text("keep me")
    with pytest.raises(DataError, match=f"{out}: folder is not empty; refusing to overwrite it"):
        export_folder(out, DATA, ["test"])
    assert sorted(p.name for p in out.iterdir()) == ["mine.txt"]
    export_folder(out, DATA, ["test"], overwrite=True)
    assert (out / "mine.txt").read_text() == "keep me"
    assert len(list((out / "images").iterdir())) == 4
    (out / "file").write_text("")
    with pytest.raises(DataError, match="is not a folder"):
        export_folder(out / "file", DATA)


def test_an_unknown_split_is_named(tmp_path):
    with pytest.raises(ValueError, match=r"synthetic splits \['tests'\] are unknown"):
        export_folder(tmp_path / "syn", DATA, ["test", "tests"])
