from __future__ import annotations

import cv2
import numpy as np
import pytest

from fgi.data.errors import DataError
from fgi.data.io import image_id, load_image, load_mask, resize_image


def test_image_id_drops_image_extensions_only():
    assert image_id(" img001.JPG ") == "img001"
    assert image_id("Prostate3T-01-0021_17.dcm") == "Prostate3T-01-0021_17"
    assert image_id("Prostate3T-01-0021_17") == "Prostate3T-01-0021_17"
    assert image_id("case.v2") == "case.v2"


def test_colour_order_and_alpha(tmp_path):
    rgb = np.zeros((4, 5, 3), np.uint8)
    rgb[..., 0] = 200  # red
    cv2.imwrite(str(tmp_path / "a.png"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    cv2.imwrite(str(tmp_path / "b.png"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGRA))
    for name in ("a.png", "b.png"):
        img = load_image(str(tmp_path / name), 3)
        assert img.shape == (4, 5, 3) and img.dtype == np.uint8 and (img[..., 0] == 200).all() and img[..., 2].max() == 0


def test_sixteen_bit_slice_is_windowed_to_uint8(tmp_path):
    ramp = (np.arange(32 * 32, dtype=np.uint16).reshape(32, 32) * 60)
    cv2.imwrite(str(tmp_path / "s.png"), ramp)
    grey = load_image(str(tmp_path / "s.png"), 1)
    assert grey.shape == (32, 32, 1) and grey.dtype == np.uint8 and grey.min() == 0 and grey.max() == 255
    assert (np.diff(grey[..., 0].ravel().astype(int)) >= 0).all()  # the window keeps the intensity order


def test_label_and_jpeg_masks_binarize(tmp_path):
    labels = np.zeros((6, 6), np.uint8)
    labels[1:3, 1:3], labels[4, 4] = 1, 2
    cv2.imwrite(str(tmp_path / "l.png"), labels)
    assert load_mask(str(tmp_path / "l.png"), (6, 6)).sum() == 5
    noisy = np.where(labels > 0, 250, 3).astype(np.uint8)
    cv2.imwrite(str(tmp_path / "n.png"), noisy)
    assert load_mask(str(tmp_path / "n.png"), (6, 6)).sum() == 5  # 0/255 masks with noise binarize at 127
    with pytest.raises(DataError, match=r"l.png: mask size 6x6 differs from its image 7x6"):
        load_mask(str(tmp_path / "l.png"), (6, 7))


def test_unreadable_and_empty_files_are_named(tmp_path):
    with pytest.raises(DataError, match=r"missing.png: cannot read"):
        load_image(str(tmp_path / "missing.png"), 3)
    (tmp_path / "empty.jpg").write_bytes(b"")
    with pytest.raises(DataError, match=r"empty.jpg: cannot decode image"):
        load_image(str(tmp_path / "empty.jpg"), 3)


def test_resize_keeps_the_channel_axis():
    assert resize_image(np.zeros((40, 60, 1), np.uint8), 16).shape == (16, 16, 1)
    assert resize_image(np.zeros((10, 12, 3), np.uint8), 32).shape == (32, 32, 3)
