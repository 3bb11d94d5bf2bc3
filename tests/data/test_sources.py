from __future__ import annotations

import cv2
import numpy as np
import pytest

from fgi.data.errors import DataError
from fgi.data.sources import get_source, load_sample
from fgi.datasets import get_dataset
from tests.data.conftest import config


def _index(cfg):
    return get_source(cfg).index()


def test_kvasir_index_and_load(kvasir):
    root, csv_path = kvasir
    cfg = config(dataset="kvasir", root=str(root), fixations=str(csv_path), val_fraction=0.34)
    idx = _index(cfg)
    assert len(idx.items) == 6 and idx.unlisted == [] and idx.unmatched_gaze == []
    splits = {it.split for it in idx.items}
    assert splits == {"train", "val"} and sum(it.split == "val" for it in idx.items) == 2
    s = load_sample(idx.items[0], cfg, get_dataset("kvasir").channels)
    assert s.image.shape == (40, 48, 3) and s.image.dtype == np.uint8
    assert s.mask.dtype == bool and 0 < s.mask.sum() < s.mask.size
    assert s.fixations.shape[1] == 3 and (s.fixations[:, :2] <= 1).all()
    # the carved validation subset depends only on split_seed
    again = {it.id for it in _index(cfg).items if it.split == "val"}
    assert again == {it.id for it in idx.items if it.split == "val"}


def test_gaze_rows_without_an_image_are_reported(kvasir):
    root, csv_path = kvasir
    (root / "images" / "img005.jpg").unlink()
    (root / "masks" / "img005.jpg").unlink()
    idx = _index(config(dataset="kvasir", root=str(root), fixations=str(csv_path)))
    assert len(idx.items) == 5 and idx.unmatched_gaze == ["img005"]


def test_nci_grey_slices_grouped_by_case(nci):
    root, csv_path = nci
    cfg = config(dataset="nci-isbi", root=str(root), fixations=str(csv_path), in_channels=1, val_fraction=0.34)
    idx = _index(cfg)
    by_case = {}
    for it in idx.items:
        by_case.setdefault(it.group, set()).add(it.split)
    assert all(len(v) == 1 for v in by_case.values()) and len(by_case) == 3
    s = load_sample(idx.items[0], cfg, get_dataset("nci-isbi").channels)
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


def test_synthetic_items_load_the_generator_samples():
    cfg = config(synthetic_train=3, synthetic_val=2, synthetic_test=1)
    idx = _index(cfg)
    assert [it.id for it in idx.items] == ["syn-train-00000", "syn-train-00001", "syn-train-00002",
                                           "syn-val-00000", "syn-val-00001", "syn-test-00000"]
    s = load_sample(idx.items[3], cfg, 3)
    assert s.split == "val" and s.image.shape == (32, 32, 3) and s.mask.any() and len(s.fixations) > 0


def test_image_size_disagrees_with_csv(kvasir):
    root, csv_path = kvasir
    text = csv_path.read_text().replace(",40.0,48.0", ",41.0,48.0")
    csv_path.write_text(text)
    cfg = config(dataset="kvasir", root=str(root), fixations=str(csv_path))
    item = _index(cfg).items[0]
    with pytest.raises(DataError, match=r"img\d+.jpg: image is 48x40 \(WxH\) but .*IMAGE_WIDTH=48, IMAGE_HEIGHT=41"):
        load_sample(item, cfg, 3)


def test_undecodable_image(kvasir):
    root, csv_path = kvasir
    (root / "images" / "img002.jpg").write_bytes(b"not a jpeg at all")
    cfg = config(dataset="kvasir", root=str(root), fixations=str(csv_path), val_fraction=0.0)
    item = next(it for it in _index(cfg).items if it.id == "img002")
    with pytest.raises(DataError, match=r"img002.jpg: cannot decode image"):
        load_sample(item, cfg, 3)


def test_missing_mask(kvasir):
    root, csv_path = kvasir
    (root / "masks" / "img001.jpg").unlink()
    cfg = config(dataset="kvasir", root=str(root), fixations=str(csv_path))
    with pytest.raises(DataError, match=r"img001.jpg: mask is missing"):
        _index(cfg)


def test_missing_root_and_fixation_csv(kvasir, tmp_path):
    root, _ = kvasir
    with pytest.raises(DataError, match=r"nowhere: dataset root not found"):
        _index(config(dataset="kvasir", root=str(tmp_path / "nowhere")))
    with pytest.raises(DataError, match=r"needs a fixation CSV: data.fixations is empty \(set it in the config file"):
        _index(config(dataset="kvasir", root=str(root)))
    with pytest.raises(DataError, match=r"nothere.csv: fixation CSV not found"):
        _index(config(dataset="kvasir", root=str(root), fixations=str(root / "nothere.csv")))


def test_mask_size_differs(kvasir):
    root, csv_path = kvasir
    cv2.imwrite(str(root / "masks" / "img000.jpg"), np.zeros((10, 10, 3), np.uint8))
    cfg = config(dataset="kvasir", root=str(root), fixations=str(csv_path), val_fraction=0.0)
    item = next(it for it in _index(cfg).items if it.id == "img000")
    with pytest.raises(DataError, match=r"img000.jpg: mask size 10x10 differs from its image 48x40"):
        load_sample(item, cfg, 3)
