"""The built-in synthetic dataset: procedural lesion images, masks and simulated gaze.

Each image has one or two lesion-like blobs (irregular outlines from random radial harmonics) with
their own colour and texture, on a textured background with illumination falloff. Everything is
deterministic given the seed, and fast enough for CPU tests at 64-128 px.

``export_folder`` writes the samples as files in the layout of a real dataset (``images/<id>.png``,
``masks/<id>.png``, ``<split>.txt``), so the commands that read raw folders (``fgi predict``,
``fgi evaluate --root``) run on it without any real data.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from scipy import ndimage

from fgi.config import DataConfig, GazeConfig
from fgi.data.errors import DataError
from fgi.data.gaze import simulate_fixations
from fgi.files import atomic_write_bytes, atomic_write_text
from fgi.seed import numpy_rng

SPLITS: dict[str, int] = {"train": 0, "val": 1, "test": 2}  # split -> seed stream, so splits never overlap


@dataclass(frozen=True)
class SyntheticSample:
    """One synthetic sample.

    Shape:
        image: (H, W, 3) uint8; mask: (H, W) bool; fixations: (N, 3) float32 as x, y (0..1), duration ms.
    """

    id: str
    image: np.ndarray
    mask: np.ndarray
    fixations: np.ndarray


def _texture(rng: np.random.Generator, size: int, scale: float) -> np.ndarray:
    """Smoothed noise in [-1, 1] with correlation length ``scale`` (fraction of the side)."""
    noise = rng.standard_normal((size, size))
    smooth = ndimage.gaussian_filter(noise, sigma=max(scale * size, 0.5), mode="wrap")
    return smooth / (np.abs(smooth).max() + 1e-8)


def _blob(rng: np.random.Generator, size: int, yy: np.ndarray, xx: np.ndarray) -> np.ndarray:
    """Boolean mask of one lesion with an irregular outline."""
    radius = rng.uniform(0.10, 0.24) * size
    cy, cx = rng.uniform(radius + 2, size - radius - 2, size=2)
    aspect = rng.uniform(0.7, 1.3)
    angle = np.arctan2(yy - cy, (xx - cx) * aspect)
    dist = np.hypot(yy - cy, (xx - cx) * aspect)
    outline = np.ones_like(angle)
    for k in range(2, 6):
        outline += rng.uniform(0.0, 0.12 / (k - 1)) * np.cos(k * angle + rng.uniform(0, 2 * np.pi))
    return dist <= radius * outline


def make_sample(index: int, size: int, seed: int, split: str = "train", gaze: GazeConfig | None = None) -> SyntheticSample:
    """Generate one sample deterministically from (seed, split, index).

    Args:
        index: sample index within the split.
        size: side length in pixels.
        seed: dataset seed (``DataConfig.synthetic_seed``).
        split: "train", "val" or "test".
        gaze: simulation parameters of the scanpath; defaults to ``GazeConfig()``.
    """
    if split not in SPLITS:
        raise ValueError(f"synthetic split {split!r} is unknown; valid splits are {list(SPLITS)}")
    rng = numpy_rng(np.random.SeedSequence([seed, SPLITS[split], index]).generate_state(1)[0])
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    mask = _blob(rng, size, yy, xx)
    if rng.uniform() < 0.3:
        mask |= _blob(rng, size, yy, xx)

    base = rng.uniform([0.55, 0.30, 0.25], [0.80, 0.45, 0.40])
    lesion = np.clip(base + rng.uniform([0.05, -0.05, -0.10], [0.20, 0.15, 0.05]), 0, 1)
    bg_tex = _texture(rng, size, 0.02)[..., None] * 0.08 + _texture(rng, size, 0.15)[..., None] * 0.10
    le_tex = _texture(rng, size, 0.01)[..., None] * 0.12
    soft = ndimage.gaussian_filter(mask.astype(np.float64), sigma=1.0)[..., None]
    img = (base + bg_tex) * (1 - soft) + (lesion + le_tex) * soft
    cy, cx = rng.uniform(0.2, 0.8, size=2) * size
    light = 1.0 - 0.35 * (np.hypot(yy - cy, xx - cx) / size)[..., None]
    img = np.clip(img * light + rng.normal(0, 0.02, img.shape), 0, 1)
    image = (img * 255).round().astype(np.uint8)
    fixations = simulate_fixations(mask, rng, gaze or GazeConfig())
    return SyntheticSample(id=f"syn-{split}-{index:05d}", image=image, mask=mask, fixations=fixations)


EXPORT_RECORD = "synthetic.json"  # what an export holds (seed, size, counts), beside its images


def split_counts(data: DataConfig) -> dict[str, int]:
    """Samples per split: ``data.synthetic_train``, ``synthetic_val`` and ``synthetic_test``."""
    return {"train": data.synthetic_train, "val": data.synthetic_val, "test": data.synthetic_test}


def _png(image: np.ndarray, path: Path) -> bytes:
    ok, buf = cv2.imencode(".png", cv2.cvtColor(image, cv2.COLOR_RGB2BGR) if image.ndim == 3 else image)
    if not ok:
        raise DataError(f"{path}: PNG encoding failed")
    return buf.tobytes()


def export_folder(out: Path, data: DataConfig, splits: Sequence[str] = tuple(SPLITS),
                  overwrite: bool = False) -> dict[str, list[str]]:
    """Write synthetic samples as a raw dataset folder, every file atomically.

    ``out/images/<id>.png`` (RGB), ``out/masks/<id>.png`` (0 background, 255 lesion), one ``out/<split>.txt``
    per exported split listing its ids, and ``out/synthetic.json`` recording the seed, size and counts. The
    pixels are those ``make_sample`` gives the prepared dataset for the same ``data.synthetic_seed`` and
    ``data.image_size``.

    Args:
        out: destination folder (created).
        data: ``synthetic_seed``, ``image_size`` and the per-split counts (``split_counts``).
        splits: which of "train", "val", "test" to write.
        overwrite: write into a folder that already holds files (same-named files are replaced, others kept).

    Returns:
        Split -> the ids written.

    Raises:
        DataError: ``out`` is a file, or a non-empty folder without ``overwrite``.
        ValueError: an unknown split.
    """
    unknown = [s for s in splits if s not in SPLITS]
    if unknown:
        raise ValueError(f"synthetic splits {unknown} are unknown; valid splits are {list(SPLITS)}")
    if out.exists() and not out.is_dir():
        raise DataError(f"{out}: exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise DataError(f"{out}: folder is not empty; refusing to overwrite it (fgi synth --force writes into it)")
    counts = split_counts(data)
    written: dict[str, list[str]] = {}
    for split in dict.fromkeys(splits):
        ids = []
        for index in range(counts[split]):
            sample = make_sample(index, data.image_size, data.synthetic_seed, split)
            for folder, pixels in (("images", sample.image), ("masks", sample.mask.astype(np.uint8) * 255)):
                path = out / folder / f"{sample.id}.png"
                atomic_write_bytes(path, _png(pixels, path))
            ids.append(sample.id)
        atomic_write_text(out / f"{split}.txt", "".join(f"{i}\n" for i in ids))
        written[split] = ids
    record = {"seed": data.synthetic_seed, "image_size": data.image_size, "counts": {s: len(v) for s, v in written.items()}}
    atomic_write_text(out / EXPORT_RECORD, json.dumps(record, indent=1) + "\n")
    return written
