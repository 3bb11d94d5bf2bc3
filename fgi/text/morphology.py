"""The offline ``morphology`` describer: measured region attributes rendered through a prompt template.

No model weights: the lesion region (the gaze pseudo-mask, or a predicted mask at inference) is measured
for location, size, shape, boundary, colour, brightness and texture, and the words fill the template.
"""

from __future__ import annotations

import colorsys
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from scipy import ndimage
from scipy.spatial import ConvexHull, QhullError

from fgi.text.items import TextItem, check_item
from fgi.text.templates import Template

MORPHOLOGY_MODEL_ID = "morphology-v1"  # bump when the measurements or vocabulary below change: it keys the cache

# Vocabulary cut-points of the morphology describer. They define what the words mean (and are part of
# MORPHOLOGY_MODEL_ID), so they are not hyperparameters a trial could change.
_MEASURE_SIDE = 256  # shape measures are scale-free; measuring at most 256 px keeps prepare fast
_THIRD = 1.0 / 3.0  # location grid: thirds of the image
_SMALL_PCT, _LARGE_PCT = 5.0, 20.0  # area % below which a lesion is small, above which large
_ROUND_ECC = 0.6  # eccentricity under this is round (axis ratio under 1.25), over it oval
_SMOOTH_SOLIDITY = 0.9  # solidity at or over this is a smooth boundary
_IRREGULAR_SOLIDITY, _IRREGULAR_CIRC = 0.85, 0.6  # under either is an irregular shape
_RING_FRACTION = 0.05  # surrounding ring width as a fraction of the image side
_BRIGHTNESS_DELTA = 0.04  # luminance difference (0..1) that counts as brighter or darker
_TEXTURE_LOW, _TEXTURE_HIGH = 0.02, 0.06  # std of high-pass luminance: homogeneous / mildly textured / heterogeneous
_GREY_SATURATION = 0.15  # mean colour under this saturation has no hue name


def _shrink(image: np.ndarray, region: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    side = max(region.shape)
    if side <= _MEASURE_SIDE:
        return image, region
    step = int(np.ceil(side / _MEASURE_SIDE))
    return image[::step, ::step], region[::step, ::step]


def _location(cy: float, cx: float) -> str:
    vert = "upper" if cy < _THIRD else "lower" if cy > 1 - _THIRD else ""
    horiz = "left" if cx < _THIRD else "right" if cx > 1 - _THIRD else ""
    return " ".join(w for w in (vert, horiz) if w) or "central"


def _perimeter(mask: np.ndarray) -> float:
    """Crofton estimate: 4-connected boundary edge count times pi/4 (exact in expectation over orientation)."""
    padded = np.pad(mask, 1)
    edges = sum(int((padded & ~np.roll(padded, s, axis=a)).sum()) for a in (0, 1) for s in (1, -1))
    return edges * np.pi / 4.0


def _solidity(mask: np.ndarray) -> float:
    """Pixels of the region over pixels whose centres lie in the convex hull of the region's pixel centres."""
    ys, xs = np.nonzero(mask)
    pts = np.stack([ys, xs], 1).astype(np.float64)
    try:
        hull = ConvexHull(pts)
    except QhullError:  # collinear or tiny: the region is its own hull
        return 1.0
    y0, x0 = ys.min(), xs.min()
    gy, gx = np.mgrid[y0:ys.max() + 1, x0:xs.max() + 1]
    grid = np.stack([gy.ravel(), gx.ravel()], 1).astype(np.float64)
    inside = (grid @ hull.equations[:, :2].T + hull.equations[:, 2] <= 1e-9).all(1)
    return float(min(1.0, mask.sum() / max(int(inside.sum()), 1)))


def _colour_name(rgb: np.ndarray) -> str:
    h, s, v = colorsys.rgb_to_hsv(*[float(c) for c in rgb])
    if s < _GREY_SATURATION:
        return "whitish" if v > 0.75 else "dark" if v < 0.25 else "greyish"
    deg = h * 360.0
    if deg < 20 or deg >= 340:
        return "dark red" if v < 0.45 else "pinkish" if s < 0.45 else "reddish"
    if deg < 50:
        return "brownish" if v < 0.55 else "orange"
    if deg < 70:
        return "yellowish"
    if deg < 170:
        return "greenish"
    if deg < 260:
        return "bluish"
    return "purplish"


def measure_region(image: np.ndarray, region: np.ndarray) -> dict[str, Any]:
    """Measure the attributes of a lesion region that the templates render.

    Location and area use the whole region; shape and boundary use its largest connected component.
    Colour, brightness and texture compare the region with a surrounding ring.

    Args:
        image: the image.
        region: the lesion region (gaze pseudo-mask or predicted mask).

    Shape:
        image: (H, W, C) uint8, C = 3 or 1; region: (H, W) bool.

    Returns:
        ``location, area_pct, size, shape, boundary, color, brightness, texture`` (words or numbers) and
        ``circularity, eccentricity, solidity`` (0..1).
    """
    image, region = check_item(image, region, "measure_region")
    area_pct = float(region.mean() * 100.0)
    if not region.any():
        return {"location": "undetermined", "area_pct": 0.0, "size": "absent", "shape": "undetermined",
                "boundary": "undetermined", "color": "undetermined", "brightness": "undetermined",
                "texture": "undetermined", "circularity": 0.0, "eccentricity": 0.0, "solidity": 0.0}
    img, reg = _shrink(image, region)
    h, w = reg.shape
    ys, xs = np.nonzero(reg)
    location = _location((ys.mean() + 0.5) / h, (xs.mean() + 0.5) / w)
    size = "small" if area_pct < _SMALL_PCT else "large" if area_pct > _LARGE_PCT else "medium-sized"

    labels, n = ndimage.label(reg)
    main = labels == (np.argmax(np.bincount(labels.ravel())[1:]) + 1) if n > 1 else reg
    my, mx = np.nonzero(main)
    area = float(main.sum())
    circularity = float(min(1.0, 4.0 * np.pi * area / max(_perimeter(main), 1e-9) ** 2))
    if area >= 3:
        cov = np.cov(np.stack([my, mx]).astype(np.float64))
        lam = np.sort(np.linalg.eigvalsh(cov))[::-1]
        eccentricity = float(np.sqrt(max(0.0, 1.0 - lam[1] / lam[0]))) if lam[0] > 0 else 0.0
    else:
        eccentricity = 0.0
    solidity = _solidity(main)
    boundary = "smooth" if solidity >= _SMOOTH_SOLIDITY else "irregular"
    if solidity < _IRREGULAR_SOLIDITY or circularity < _IRREGULAR_CIRC:
        shape = "irregular"
    else:
        shape = "round" if eccentricity < _ROUND_ECC else "oval"

    pix = img.astype(np.float64) / 255.0
    lum = pix[..., 0] if pix.shape[2] == 1 else pix @ np.array([0.299, 0.587, 0.114])
    ring_w = max(2.0, _RING_FRACTION * max(h, w))
    ring = (ndimage.distance_transform_edt(~reg) <= ring_w) & ~reg
    if ring.any():
        delta = lum[reg].mean() - lum[ring].mean()
        brightness = ("brighter than its surroundings" if delta > _BRIGHTNESS_DELTA
                      else "darker than its surroundings" if delta < -_BRIGHTNESS_DELTA
                      else "as bright as its surroundings")
    else:
        brightness = "filling the image"
    color = "grey" if pix.shape[2] == 1 else _colour_name(pix[reg].mean(0))
    detail = lum - ndimage.gaussian_filter(lum, sigma=2.0)
    tex = float(detail[reg].std())
    texture = "homogeneous" if tex < _TEXTURE_LOW else "mildly textured" if tex < _TEXTURE_HIGH else "heterogeneous"
    return {"location": location, "area_pct": area_pct, "size": size, "shape": shape, "boundary": boundary,
            "color": color, "brightness": brightness, "texture": texture, "circularity": circularity,
            "eccentricity": eccentricity, "solidity": solidity}


class MorphologyDescriber:
    """Offline describer: measured region attributes rendered through the template (no model weights)."""

    name = "morphology"
    model_id = MORPHOLOGY_MODEL_ID

    def describe(self, pairs: Sequence[tuple[TextItem, Template]], context: Mapping[str, str]) -> list[str]:
        """Describe each (item, template) pair; each item is measured once however many templates ask."""
        measured: dict[str, dict[str, Any]] = {}
        out = []
        for item, template in pairs:
            if item.id not in measured:
                try:
                    measured[item.id] = measure_region(item.image, item.region)
                except ValueError as exc:
                    raise ValueError(f"image {item.id!r}: {exc}") from None
            out.append(template.render_text(measured[item.id], context))
        return out


__all__ = ["MORPHOLOGY_MODEL_ID", "MorphologyDescriber", "measure_region"]
