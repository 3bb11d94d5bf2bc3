from __future__ import annotations

import numpy as np
import pytest

from fgi.datasets import dataset_context
from fgi.text.items import TextItem
from fgi.text.morphology import MorphologyDescriber, measure_region
from fgi.text.templates import get_template


def _image(size: int, fill=(120, 110, 100)) -> np.ndarray:
    return np.broadcast_to(np.array(fill, np.uint8), (size, size, 3)).copy()


def test_centred_disc_is_central_round_smooth(shapes):
    region = shapes["disc"](96, 48, 48, 20)
    attrs = measure_region(_image(96), region)
    assert attrs["location"] == "central"
    assert attrs["shape"] == "round"
    assert attrs["boundary"] == "smooth"
    assert attrs["circularity"] > 0.9 and attrs["solidity"] > 0.95 and attrs["eccentricity"] < 0.2
    assert attrs["area_pct"] == pytest.approx(100 * region.mean())


def test_star_is_irregular(shapes):
    attrs = measure_region(_image(96), shapes["star"](96))
    assert attrs["location"] == "central"
    assert attrs["shape"] == "irregular"
    assert attrs["boundary"] == "irregular"
    assert attrs["solidity"] < 0.8


def test_ellipse_is_oval_and_corner_disc_is_located(shapes):
    yy, xx = np.mgrid[0:96, 0:96]
    ellipse = ((yy - 48) / 12) ** 2 + ((xx - 48) / 30) ** 2 <= 1
    attrs = measure_region(_image(96), ellipse)
    assert attrs["shape"] == "oval" and attrs["boundary"] == "smooth" and attrs["eccentricity"] > 0.85
    assert measure_region(_image(96), shapes["disc"](96, 15, 15, 8))["location"] == "upper left"
    assert measure_region(_image(96), shapes["disc"](96, 80, 48, 8))["location"] == "lower"
    assert measure_region(_image(96), shapes["disc"](96, 48, 80, 8))["location"] == "right"


def test_size_colour_brightness_texture_against_the_ring(shapes):
    region = shapes["disc"](96, 48, 48, 10)
    image = _image(96, (90, 90, 90))
    image[region] = (200, 60, 60)
    attrs = measure_region(image, region)
    assert attrs["size"] == "small"
    assert attrs["color"] == "reddish"
    assert attrs["texture"] == "homogeneous"
    dark = _image(96, (200, 200, 200))
    dark[region] = (40, 40, 40)
    assert measure_region(dark, region)["brightness"] == "darker than its surroundings"
    noisy = image.copy()
    rng = np.random.default_rng(0)
    noisy[region] = np.clip(noisy[region] + rng.normal(0, 40, noisy[region].shape), 0, 255).astype(np.uint8)
    assert measure_region(noisy, region)["texture"] == "heterogeneous"
    big = shapes["disc"](96, 48, 48, 30)
    assert measure_region(image, big)["size"] == "large"


def test_grayscale_large_and_empty_regions(shapes):
    gray = np.full((600, 600, 1), 50, np.uint8)
    region = shapes["disc"](600, 300, 300, 120)
    gray[region] = 180
    attrs = measure_region(gray, region)
    assert attrs["color"] == "grey" and attrs["brightness"] == "brighter than its surroundings"
    assert attrs["shape"] == "round" and attrs["location"] == "central"
    empty = measure_region(gray, np.zeros((600, 600), bool))
    assert empty["area_pct"] == 0.0 and empty["location"] == "undetermined"


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="region shape"):
        measure_region(np.zeros((8, 8, 3), np.uint8), np.zeros((8, 9), bool))
    with pytest.raises(ValueError, match="uint8"):
        measure_region(np.zeros((8, 8, 3), np.float32), np.zeros((8, 8), bool))
    item = TextItem("bad-1", np.zeros((8, 8, 3), np.uint8), np.zeros((4, 4), bool))
    with pytest.raises(ValueError, match="bad-1"):
        MorphologyDescriber().describe([(item, get_template("clinical"))], dataset_context("kvasir"))
