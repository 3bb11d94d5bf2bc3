"""Score a trained model on a raw dataset folder, at each image's original resolution.

Used by ``fgi evaluate --root DIR --split-file ids.txt``: it needs no prepared cache and no gaze, so
held-back test images in the Kvasir-SEG layout (``images/<id>.jpg``, ``masks/<id>.jpg``) can be scored
as they are. The model sees each image resized and normalized exactly as its training cache did; its
prediction is resized back to the original size before Dice, IoU, HD95 and ASD are computed.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from fgi.config import atomic_write_bytes
from fgi.data.prepare import resize_image
from fgi.data.sources import DataError, load_image, load_mask
from fgi.metrics import METRICS, image_metrics, summarize

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff")


def model_input(image: np.ndarray, normalization: Mapping[str, Any]) -> torch.Tensor:
    """Resize and normalize a decoded image like the training cache.

    Shape:
        image (H, W, C) uint8; returns (C, S, S) float32 with S = ``normalization["image_size"]``.
    """
    small = resize_image(image, int(normalization["image_size"])).astype(np.float32) / 255.0
    mean = np.asarray(normalization["mean"], dtype=np.float32)
    std = np.asarray(normalization["std"], dtype=np.float32)
    return torch.from_numpy(np.ascontiguousarray(((small - mean) / std).transpose(2, 0, 1)))


def predict_full_size(trainer: Any, image: np.ndarray, normalization: Mapping[str, Any]) -> np.ndarray:
    """Foreground probabilities at the image's own size.

    Shape:
        image (H, W, C) uint8; returns (H, W) float32.
    """
    probs = trainer.predict(model_input(image, normalization)[None])
    return F.interpolate(probs.float().cpu(), size=image.shape[:2], mode="bilinear", align_corners=False)[0, 0].numpy()


def _find(folder: Path, item_id: str, what: str) -> Path:
    for suffix in IMAGE_SUFFIXES:
        path = folder / f"{item_id}{suffix}"
        if path.is_file():
            return path
    raise DataError(f"{folder}: no {what} file for id {item_id!r} (looked for {', '.join(IMAGE_SUFFIXES)})")


def read_ids(split_file: Path) -> list[str]:
    """Ids of a split file (one per line; blank lines and '#' comments ignored)."""
    if not split_file.is_file():
        raise DataError(f"{split_file}: split file not found")
    ids = [line.strip() for line in split_file.read_text().splitlines()]
    ids = [i for i in ids if i and not i.startswith("#")]
    if not ids:
        raise DataError(f"{split_file}: no ids in the split file")
    return ids


def evaluate_folder(trainer: Any, normalization: Mapping[str, Any], root: Path, ids: Sequence[str],
                    threshold: float = 0.5) -> list[dict[str, Any]]:
    """Per-image metrics of ``trainer``'s predictor on ``root/images`` against ``root/masks``.

    Args:
        trainer: a ``TeacherStudentTrainer`` (its ``model.predictor`` decides which model predicts;
            the teacher needs text, so folders are scored with the student).
        normalization: the training cache's ``image_size``, ``channels``, ``mean`` and ``std``.
        root: dataset folder in the Kvasir-SEG layout.
        ids: image ids to score.
        threshold: probability above which a pixel is lesion.
    """
    if trainer.cfg.model.predictor != "student":
        raise ValueError(f"model.predictor is {trainer.cfg.model.predictor!r}; scoring a raw folder has no text, "
                         "so it uses the student: set model.predictor to student")
    images, masks = root / "images", root / "masks"
    for folder in (images, masks):
        if not folder.is_dir():
            raise DataError(f"{folder}: folder not found (expected the Kvasir-SEG layout images/ and masks/)")
    channels = int(normalization["channels"])
    rows = []
    for item_id in ids:
        image = load_image(str(_find(images, item_id, "image")), channels)
        mask = load_mask(str(_find(masks, item_id, "mask")), image.shape[:2])
        pred = predict_full_size(trainer, image, normalization) > threshold
        rows.append({"id": item_id, **image_metrics(pred, mask)})
    return rows


def write_rows_csv(rows: Sequence[Mapping[str, Any]], path: Path) -> None:
    """Per-image metrics as CSV (id, dice, iou, hd95, asd), written atomically."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=["id", *METRICS])
    writer.writeheader()
    for row in rows:
        writer.writerow({k: row[k] for k in ["id", *METRICS]})
    atomic_write_bytes(path, buffer.getvalue().encode())


def format_summary(rows: Sequence[Mapping[str, Any]]) -> str:
    """One line per metric: mean ± sd over images."""
    stats = summarize(list(rows))
    lines = [f"{len(rows)} images"]
    lines += [f"{name:5s} {mean:.4f} ± {sd:.4f}" for name, (mean, sd) in stats.items()]
    return "\n".join(lines)
