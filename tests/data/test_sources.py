from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from fgi.data.prepare import prepare_cache
from fgi.data.sources import DataError, get_source, load_sample, read_fixations
from tests.data.conftest import CSV_HEADER, config, make_kvasir, write_csv


def _index(cfg):
    return get_source(cfg).index()


def test_kvasir_index_and_load(kvasir):
    root, csv_path = kvasir
    cfg = config(dataset="kvasir", root=str(root), fixations=str(csv_path), val_fraction=0.34)
    idx = _index(cfg)
    assert idx.channels == 3 and len(idx.items) == 6
    splits = {it.split for it in idx.items}
    assert splits == {"train", "val"} and sum(it.split == "val" for it in idx.items) == 2
    s = load_sample(idx.items[0], cfg, 3)
    assert s.image.shape == (40, 48, 3) and s.image.dtype == np.uint8
    assert s.mask.dtype == bool and 0 < s.mask.sum() < s.mask.size
    assert s.fixations.shape[1] == 3 and (s.fixations[:, :2] <= 1).all()
    # the carved validation subset depends only on split_seed
    again = {it.id for it in _index(cfg).items if it.split == "val"}
    assert again == {it.id for it in idx.items if it.split == "val"}


def test_kvasir_split_files(kvasir):
    root, csv_path = kvasir
    (root / "train.txt").write_text("img000.jpg\nimg001\nimg002\n")
    (root / "test.txt").write_text("img005\n")
    cfg = config(dataset="kvasir", root=str(root), fixations=str(csv_path), val_fraction=0.34)
    split = {it.id: it.split for it in _index(cfg).items}
    assert split["img005"] == "test" and "img003" not in split
    assert sorted(split.values()).count("val") == 1
    (root / "test.txt").write_text("nope\n")
    with pytest.raises(DataError, match=r"test.txt: line 1: id 'nope' matches no image"):
        _index(cfg)


def test_nci_grey_slices_grouped_by_case(nci):
    root, csv_path = nci
    cfg = config(dataset="nci-isbi", root=str(root), fixations=str(csv_path), in_channels=1, val_fraction=0.34)
    idx = _index(cfg)
    assert idx.channels == 1
    by_case = {}
    for it in idx.items:
        by_case.setdefault(it.group, set()).add(it.split)
    assert all(len(v) == 1 for v in by_case.values()) and len(by_case) == 3
    s = load_sample(idx.items[0], cfg, 1)
    assert s.image.shape == (32, 32, 1) and s.image.max() == 255 and s.mask.any()


def test_isic_simulates_gaze_for_training_only(isic):
    cfg = config(dataset="isic", root=str(isic))
    idx = _index(cfg)
    train = [it for it in idx.items if it.split == "train"]
    val = [it for it in idx.items if it.split == "val"]
    assert len(train) == 5 and len(val) == 2
    assert all(it.simulate for it in train) and not any(it.simulate for it in val)
    s1, s2 = load_sample(train[0], cfg, 3), load_sample(train[0], cfg, 3)
    assert np.array_equal(s1.fixations, s2.fixations)  # seeded by the id
    n = len(s1.fixations)
    assert cfg.gaze.sim_count_min <= n <= cfg.gaze.sim_count_max
    assert load_sample(val[0], cfg, 3).fixations is None


def test_unknown_dataset_lists_valid():
    with pytest.raises(DataError, match=r"unknown dataset 'kvasr'; valid datasets are \['isic', 'kvasir', 'nci-isbi', 'synthetic'\]"):
        get_source(config(dataset="kvasr"))


def test_csv_missing_columns(tmp_path):
    p = write_csv(tmp_path / "f.csv", [["a.jpg", 0.5, 0.5]], header=["IMAGE", "CURRENT_FIX_X", "CURRENT_FIX_Y"])
    with pytest.raises(DataError, match=r"f.csv: missing CSV columns \['CURRENT_FIX_DURATION'\]"):
        read_fixations(p)


def test_csv_fixation_outside_unit_square(tmp_path):
    p = write_csv(tmp_path / "f.csv", [["a.jpg", 1, 0.5, 1.2, 300, 0, 0, 10.0, 10.0]])
    with pytest.raises(DataError, match=r"f.csv: line 2: fixation \(0.5, 1.2\) of a lies outside \[0, 1\]"):
        read_fixations(p)


def test_csv_non_numeric(tmp_path):
    p = write_csv(tmp_path / "f.csv", [["a.jpg", 1, "abc", 0.2, 300, 0, 0, 10.0, 10.0]])
    with pytest.raises(DataError, match=r"f.csv: line 2: non-numeric"):
        read_fixations(p)


def test_image_size_disagrees_with_csv(kvasir):
    root, csv_path = kvasir
    text = csv_path.read_text().replace(",40.0,48.0", ",41.0,48.0")
    csv_path.write_text(text)
    cfg = config(dataset="kvasir", root=str(root), fixations=str(csv_path))
    item = _index(cfg).items[0]
    with pytest.raises(DataError, match=r"img\d+.jpg: image is 48x40 \(WxH\) but .*IMAGE_WIDTH=48, IMAGE_HEIGHT=41"):
        load_sample(item, cfg, 3)


def test_undecodable_image(kvasir, tmp_path):
    root, csv_path = kvasir
    (root / "images" / "img002.jpg").write_bytes(b"not a jpeg at all")
    cfg = config(dataset="kvasir", root=str(root), fixations=str(csv_path), val_fraction=0.0)
    item = next(it for it in _index(cfg).items if it.id == "img002")
    with pytest.raises(DataError, match=r"img002.jpg: cannot decode image"):
        load_sample(item, cfg, 3)
    # the same error surfaces from a parallel prepare, not a worker traceback
    with pytest.raises(DataError, match=r"img002.jpg: cannot decode image"):
        prepare_cache(cfg, tmp_path / "cache", workers=2, progress=False, text=False)


def test_missing_mask(kvasir):
    root, csv_path = kvasir
    (root / "masks" / "img001.jpg").unlink()
    cfg = config(dataset="kvasir", root=str(root), fixations=str(csv_path))
    with pytest.raises(DataError, match=r"img001.jpg: mask is missing"):
        _index(cfg)


def test_missing_fixation_csv(kvasir):
    root, _ = kvasir
    with pytest.raises(DataError, match=r"needs a fixation CSV: pass --fixations"):
        _index(config(dataset="kvasir", root=str(root)))
    with pytest.raises(DataError, match=r"nothere.csv: fixation CSV not found"):
        _index(config(dataset="kvasir", root=str(root), fixations=str(root / "nothere.csv")))


def test_image_without_fixations_fail_or_skip(kvasir, tmp_path):
    root, csv_path = kvasir
    lines = [ln for ln in csv_path.read_text().splitlines() if not ln.startswith("img004.jpg")]
    csv_path.write_text("\n".join(lines) + "\n")
    cfg = config(dataset="kvasir", root=str(root), fixations=str(csv_path), val_fraction=0.0)
    with pytest.raises(DataError, match=r"1 training image\(s\) have no fixations .*\['img004'\].*--on-missing-gaze skip"):
        prepare_cache(cfg, tmp_path / "c", workers=1, progress=False, text=False)
    from fgi.config import override

    m = prepare_cache(override(cfg, {"gaze.on_missing": "skip"}), tmp_path / "c", workers=1, progress=False, text=False)
    assert m["counts"]["skipped_no_gaze"] == 1 and m["skipped_no_gaze"] == ["img004"]
    assert "img004" not in m["items"] and m["counts"]["items"] == 5


def test_mask_size_differs(kvasir):
    root, csv_path = kvasir
    cv2.imwrite(str(root / "masks" / "img000.jpg"), np.zeros((10, 10, 3), np.uint8))
    cfg = config(dataset="kvasir", root=str(root), fixations=str(csv_path), val_fraction=0.0)
    item = next(it for it in _index(cfg).items if it.id == "img000")
    with pytest.raises(DataError, match=r"img000.jpg: mask size 10x10 differs from its image 48x40"):
        load_sample(item, cfg, 3)


def test_header_constant_matches_real_format():
    real = Path(__file__).resolve().parents[2].parent / "shared/data/gazemedseg/kvasir_fixation.csv"
    if not real.is_file():
        pytest.skip(f"real gaze CSV absent at {real}")
    assert real.open().readline().strip().split(",") == CSV_HEADER


def test_make_kvasir_helper_is_deterministic(tmp_path):
    a, _ = make_kvasir(tmp_path / "a")
    b, _ = make_kvasir(tmp_path / "b")
    assert (a / "images/img000.jpg").read_bytes() == (b / "images/img000.jpg").read_bytes()
