from __future__ import annotations

from pathlib import Path

import pytest

from fgi.data.errors import DataError
from fgi.data.prepare import prepare_cache
from fgi.data.sources import get_source
from fgi.data.splits import assign_splits, carve_validation, read_split_files
from tests.data.conftest import config


def test_split_files_with_train_list_leave_unlisted_images_out_and_report_them(kvasir, tmp_path, capsys):
    root, csv_path = kvasir
    (root / "train.txt").write_text("img000.jpg\nimg001\nimg002\n")
    (root / "test.txt").write_text("img005\n")
    cfg = config(dataset="kvasir", root=str(root), fixations=str(csv_path), val_fraction=0.34)
    idx = get_source(cfg).index()
    split = {it.id: it.split for it in idx.items}
    assert split["img005"] == "test" and set(split) == {"img000", "img001", "img002", "img005"}
    assert sorted(split.values()).count("val") == 1
    assert idx.unlisted == ["img003", "img004"]
    m = prepare_cache(cfg, tmp_path / "c", workers=1, progress=False, text=False)
    assert m["counts"]["unlisted_in_split_files"] == 2 and m["unlisted_in_split_files"] == ["img003", "img004"]
    warning = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("warning:")]
    assert len(warning) == 1 and "2 image(s) are in no split file" in warning[0] and "img003" in warning[0]


def test_without_train_list_unlisted_images_train(tmp_path):
    a = assign_splits(["a", "b", "c"], _dir({"test.txt": "c\n"}, tmp_path))
    assert a.split_of == {"c": "test", "a": "train", "b": "train"} and a.unlisted == [] and a.files == ("test",)


def test_id_that_names_no_image(kvasir):
    root, csv_path = kvasir
    (root / "test.txt").write_text("img001\n\nnope\n")
    with pytest.raises(DataError, match=r"test.txt: line 3: id 'nope' matches no image"):
        get_source(config(dataset="kvasir", root=str(root), fixations=str(csv_path))).index()


@pytest.mark.parametrize("line", ["images/img001.jpg", "/data/kvasir/img001", r"images\img001.jpg"])
def test_a_path_in_a_split_file_is_an_error_naming_file_and_line(tmp_path, line):
    folder = _dir({"train.txt": f"img000\n{line}\n"}, tmp_path)
    with pytest.raises(DataError, match=r"train.txt: line 2: .* is a path; list image ids"):
        read_split_files(folder, {"img000", "img001"})


def test_id_in_two_splits(tmp_path):
    folder = _dir({"train.txt": "a\nb\n", "val.txt": "b.png\n"}, tmp_path)
    with pytest.raises(DataError, match=r"val.txt: line 1: id 'b' is already in train.txt"):
        read_split_files(folder, {"a", "b"})


def test_carving_is_seeded_and_keeps_both_sides_non_empty():
    groups = [f"case{k}" for k in range(10)]
    a = carve_validation(groups, 0.3, seed=0)
    assert len(a) == 3 and a <= set(groups) and carve_validation(reversed(groups), 0.3, seed=0) == a
    assert any(carve_validation(groups, 0.3, seed=s) != a for s in range(1, 5))
    assert len(carve_validation(["x", "y"], 0.01, seed=0)) == 1  # at least one group moves
    assert len(carve_validation(["x", "y"], 0.9, seed=0)) == 1  # and at least one stays
    assert carve_validation(groups, 0.0, seed=0) == set()


def _dir(files: dict[str, str], folder: Path) -> Path:
    for name, text in files.items():
        (folder / name).write_text(text)
    return folder
