"""Fixtures: tiny raw datasets in the real on-disk formats (Kvasir, NCI-ISBI, ISIC), written to tmp_path."""

from __future__ import annotations

import csv
from pathlib import Path

import cv2
import numpy as np
import pytest

from fgi.config import Config, from_dict

CSV_HEADER = ["IMAGE", "CURRENT_FIX_INDEX", "CURRENT_FIX_X", "CURRENT_FIX_Y", "CURRENT_FIX_DURATION",
              "CURRENT_FIX_PUPIL", "CURRENT_FIX_START", "IMAGE_HEIGHT", "IMAGE_WIDTH"]


def blob_image(rng: np.random.Generator, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """An RGB image with one bright elliptical lesion, and its mask."""
    yy, xx = np.mgrid[0:h, 0:w]
    cy, cx = rng.uniform(0.35, 0.65) * h, rng.uniform(0.35, 0.65) * w
    ry, rx = rng.uniform(0.15, 0.25) * h, rng.uniform(0.15, 0.25) * w
    mask = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1
    img = np.full((h, w, 3), (90, 60, 50), np.float64) + rng.normal(0, 6, (h, w, 3))
    img[mask] = (200, 120, 100)
    return np.clip(img, 0, 255).astype(np.uint8), mask


def fixation_rows(name: str, mask: np.ndarray, rng: np.random.Generator, n: int = 12) -> list[list]:
    """CSV rows with fixations inside the mask (GazeMedSeg format)."""
    h, w = mask.shape
    pts = np.argwhere(mask)[rng.integers(0, int(mask.sum()), n)]
    return [[name, k + 1, (c + 0.5) / w, (r + 0.5) / h, int(rng.integers(150, 600)), 1000, 10 * k, float(h), float(w)]
            for k, (r, c) in enumerate(pts)]


def write_csv(path: Path, rows: list[list], header: list[str] = CSV_HEADER) -> Path:
    with path.open("w", newline="") as fh:
        wr = csv.writer(fh)
        wr.writerow(header)
        wr.writerows(rows)
    return path


def make_kvasir(root: Path, n: int = 6, seed: int = 0, size: tuple[int, int] = (40, 48)) -> tuple[Path, Path]:
    """Kvasir-SEG layout (JPEG images and RGB JPEG masks) plus a fixation CSV; returns (root, csv)."""
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    rows = []
    for k in range(n):
        name = f"img{k:03d}"
        img, mask = blob_image(rng, *size)
        cv2.imwrite(str(root / "images" / f"{name}.jpg"), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
        cv2.imwrite(str(root / "masks" / f"{name}.jpg"), np.repeat((mask * 255).astype(np.uint8)[:, :, None], 3, 2))
        rows += fixation_rows(f"{name}.jpg", mask, rng)
    return root, write_csv(root.parent / f"{root.name}_fixation.csv", rows)


def make_nci(root: Path, cases: int = 3, slices: int = 2, seed: int = 1) -> tuple[Path, Path]:
    """NCI-ISBI layout with 16-bit PNG slices and label PNG masks; returns (root, csv)."""
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    rows = []
    for c in range(cases):
        for s in range(slices):
            name = f"Prostate3T-01-{c:04d}_{s + 10}"
            img, mask = blob_image(rng, 32, 32)
            cv2.imwrite(str(root / "images" / f"{name}.png"), (img[:, :, 0].astype(np.uint16) * 40))
            cv2.imwrite(str(root / "masks" / f"{name}.png"), mask.astype(np.uint8) * 2)
            rows += fixation_rows(f"{name}.jpg", mask, rng)
    return root, write_csv(root.parent / "nci_fixation.csv", rows)


def make_isic(root: Path, n_train: int = 5, n_val: int = 2, seed: int = 2) -> Path:
    """ISIC 2018 Task 1 layout (Training and Validation)."""
    rng = np.random.default_rng(seed)
    for part, n in (("Training", n_train), ("Validation", n_val)):
        ind, gtd = root / f"ISIC2018_Task1-2_{part}_Input", root / f"ISIC2018_Task1_{part}_GroundTruth"
        ind.mkdir(parents=True)
        gtd.mkdir()
        for k in range(n):
            name = f"ISIC_{part[0]}{k:06d}"
            img, mask = blob_image(rng, 36, 44)
            cv2.imwrite(str(ind / f"{name}.jpg"), img)
            cv2.imwrite(str(gtd / f"{name}_segmentation.png"), mask.astype(np.uint8) * 255)
    return root


def config(**data) -> Config:
    """A small config (image_size 32, no augmentation randomness knobs changed)."""
    d = {"image_size": 32, **data}
    return from_dict({"data": d})


@pytest.fixture
def kvasir(tmp_path: Path) -> tuple[Path, Path]:
    return make_kvasir(tmp_path / "kvasir")


@pytest.fixture
def nci(tmp_path: Path) -> tuple[Path, Path]:
    return make_nci(tmp_path / "nci")


@pytest.fixture
def isic(tmp_path: Path) -> Path:
    return make_isic(tmp_path / "isic")
