"""Scoring and applying a trained model: a prepared split, a raw dataset folder, a folder of new images.

- ``evaluate_split`` scores a split of the model's prepared cache (``fgi evaluate --split``, and the final
  training's test figures through ``evaluate_checkpoint``).
- ``evaluate_folder`` scores a raw folder at each image's original resolution (``fgi evaluate --root``):
  it needs no prepared cache and no gaze, so held-back test images can be scored as they are, in the files
  layout of any registered dataset (``fgi.datasets.FILE_DATASETS``): ``images/<id>``, ``masks/<id>``
  (Kvasir-SEG, NCI-ISBI, the synthetic export of ``fgi synth``) or ISIC 2018's part folders. The model sees
  each image resized and normalized exactly as its training cache did; its prediction is resized back to
  the original size before Dice, IoU, HD95 and ASD are computed.
- ``predict_folder`` writes a mask and an overlay per image of a folder (``fgi predict``).
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from fgi.config import ConfigError, atomic_write_bytes, atomic_write_text
from fgi.data.errors import DataError
from fgi.data.io import list_images, load_image, load_mask, resize_image
from fgi.data.sources import IsicSource
from fgi.datasets import get_dataset
from fgi.ensemble import Ensemble
from fgi.method.metrics import METRICS, batch_metrics, image_metrics, summarize

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff")
SPLITS = ("train", "val", "test")


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


def _find(folder: Path, stem: str, what: str, suffixes: Sequence[str] = IMAGE_SUFFIXES) -> Path:
    for suffix in suffixes:
        path = folder / f"{stem}{suffix}"
        if path.is_file():
            return path
    raise DataError(f"{folder}: no {what} file for id {stem!r} (looked for {', '.join(suffixes)})")


def raw_folders(dataset: str, root: Path, split: str = "test") -> tuple[Path, Path, str]:
    """Where the images and masks of a raw ``dataset`` folder lie (``DatasetInfo.files``).

    Args:
        dataset: a name of ``fgi.datasets.FILE_DATASETS``.
        root: the dataset folder.
        split: the ISIC part to score ("train", "val" or "test"); the other layouts keep every split in one
            folder and ignore it.

    Returns:
        The image folder, the mask folder, and what a mask's file name adds to its image id.

    Raises:
        ConfigError: an unknown dataset, or one without files to score.
    """
    info = get_dataset(dataset)
    if info.files == "isic":
        return (*IsicSource.folders(root, split), IsicSource.MASK_SUFFIX)
    if info.files == "folder":
        return root / "images", root / "masks", ""
    raise ConfigError(f"dataset {dataset!r} has no files to score (fgi.datasets: files is {info.files!r})")


def read_ids(split_file: Path) -> list[str]:
    """Ids of a split file (one per line; blank lines and '#' comments ignored)."""
    if not split_file.is_file():
        raise DataError(f"{split_file}: split file not found")
    ids = [line.strip() for line in split_file.read_text().splitlines()]
    ids = [i for i in ids if i and not i.startswith("#")]
    if not ids:
        raise DataError(f"{split_file}: no ids in the split file")
    return ids


def folder_ids(root: Path, dataset: str = "kvasir", split: str = "test") -> list[str]:
    """Sorted ids (file stems) of the images of a raw ``dataset`` folder (see ``raw_folders``).

    Raises:
        DataError: when the image folder is missing or holds no image.
    """
    images = raw_folders(dataset, root, split)[0]
    ids = sorted(list_images(images, get_dataset(dataset).image_exts)) if images.is_dir() else []
    if not ids:
        raise DataError(f"{images}: no images found ({', '.join(get_dataset(dataset).image_exts)})")
    return ids


def evaluate_folder(trainer: Any, normalization: Mapping[str, Any], root: Path, ids: Sequence[str],
                    threshold: float = 0.5, dataset: str = "kvasir", split: str = "test") -> list[dict[str, Any]]:
    """Per-image metrics of ``trainer``'s predictor on the images and masks of a raw ``dataset`` folder.

    Args:
        trainer: a ``TeacherStudentTrainer`` (its ``model.predictor`` decides which model predicts; a
            teacher or an ensemble needs an image-only teacher, ``text.mode: none``, since a folder has no text).
        normalization: the training cache's ``image_size``, ``channels``, ``mean`` and ``std``.
        root: the dataset folder, in the files layout of ``dataset`` (see ``raw_folders``).
        ids: image ids to score.
        threshold: probability above which a pixel is lesion.
        dataset: a name of ``fgi.datasets.FILE_DATASETS``.
        split: the ISIC part to score; ignored by the other layouts.

    Raises:
        ValueError: a teacher or ensemble predictor with a text-conditioned teacher, or a dataset whose image channels differ from the model's.
        DataError: a missing folder, image or mask, or an undecodable file.
    """
    if trainer.cfg.model.predictor != "student" and trainer.cfg.text.mode != "none":
        raise ValueError(f"model.predictor is {trainer.cfg.model.predictor!r} with a text-conditioned teacher "
                         f"(text.mode {trainer.cfg.text.mode!r}); a raw folder has no text, so it is scored with "
                         "the student (model.predictor student) or with an image-only teacher (text.mode none)")
    info = get_dataset(dataset)
    channels = int(normalization["channels"])
    if info.channels != channels:
        raise ValueError(f"dataset {dataset!r} has {info.channels}-channel images but the model takes {channels}")
    images, masks, mask_suffix = raw_folders(dataset, root, split)
    for folder in (images, masks):
        if not folder.is_dir():
            raise DataError(f"{folder}: folder not found (expected the {dataset} layout, see fgi evaluate --help)")
    rows = []
    for item_id in ids:
        image = load_image(str(_find(images, item_id, "image", info.image_exts)), channels)
        mask = load_mask(str(_find(masks, item_id + mask_suffix, "mask")), image.shape[:2])
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


def write_summary_json(rows: Sequence[Mapping[str, Any]], path: Path) -> None:
    """Image count and the mean and sd of each metric (``dice_mean``, ``dice_sd``, ...) as JSON, atomically."""
    stats = summarize(list(rows))
    atomic_write_text(path, json.dumps({"n": len(rows), **{f"{k}_mean": m for k, (m, _) in stats.items()},
                                        **{f"{k}_sd": sd for k, (_, sd) in stats.items()}}, indent=1) + "\n")


def split_rows(trainer: Any, split: str = "test", num_workers: int | None = None) -> list[dict[str, Any]]:
    """Per-image metrics (with "id") of ``trainer`` on one split of its prepared cache.

    Args:
        trainer: a ``TeacherStudentTrainer`` or an ``fgi.ensemble.Ensemble`` (scored on images alone); its config names the cache.
        split: "train", "val" or "test".
        num_workers: DataLoader processes (default: the config's ``data.num_workers``).

    Raises:
        ValueError: when the prepared data has no such split.
        DataError: when the cache is missing or was prepared with another config.
    """
    from torch.utils.data import DataLoader

    from fgi.data.dataset import build_datasets

    cfg = trainer.cfg
    datasets = build_datasets(cfg, cfg.train.seed)
    if split not in datasets:
        raise ValueError(f"split {split!r} is not in the prepared data; splits there: {sorted(datasets)}")
    workers = cfg.data.num_workers if num_workers is None else num_workers
    loader = DataLoader(datasets[split], batch_size=cfg.train.batch_size, num_workers=workers)
    if isinstance(trainer, Ensemble):
        return ensemble_rows(trainer, loader)[1]
    return [{**r, "id": str(r["id"])} for r in trainer.evaluate_rows(loader)]


def evaluate_split(trainer: Any, split: str = "test", num_workers: int | None = None) -> dict[str, float]:
    """Mean Dice, IoU, HD95 and ASD of ``trainer`` on one split of its prepared cache (see ``split_rows``).

    Returns:
        ``{split}_dice``, ``{split}_iou``, ``{split}_hd95``, ``{split}_asd`` and ``{split}_n`` (an engine's
        ``evaluate`` keys, renamed).
    """
    rows = split_rows(trainer, split, num_workers)
    if isinstance(trainer, Ensemble):
        means = row_means(rows) | {"n": float(len(rows))}
    else:
        sums = trainer.row_sums(rows)
        means = {k: (v / max(sums["n"], 1.0) if k != "n" else v) for k, v in sums.items()}
    return {k.replace("val_", f"{split}_") if k != "n" else f"{split}_n": v for k, v in means.items()}


def ensemble_rows(ensemble: Ensemble, loader: Any, threshold: float = 0.5) -> tuple[list[list[dict[str, Any]]],
                                                                                  list[dict[str, Any]]]:
    """Per-image metrics (with "id") of each member of an ensemble and of the ensemble, on the image alone (as
    on a new image); each member predicts once per batch and the ensemble's answer is the mean of theirs.

    Args:
        ensemble: the members and how they are combined (``Ensemble.combine``).
        loader: batches with "image", "mask" and "id", at the prepared cache's resolution.
        threshold: probability above which a pixel is lesion.

    Returns:
        (one list of rows per member, the ensemble's rows).
    """
    members: list[list[dict[str, Any]]] = [[] for _ in ensemble.members]
    rows: list[dict[str, Any]] = []

    def add(out: list[dict[str, Any]], batch: Mapping[str, Any], probs: torch.Tensor) -> None:
        pred = (probs > threshold).cpu().numpy()
        for item_id, metrics in zip(batch["id"], batch_metrics(pred, batch["mask"].bool().numpy()), strict=True):
            out.append({"id": str(item_id), **metrics})

    with torch.no_grad():
        for batch in loader:
            probs = [m.predict(batch["image"]).float() for m in ensemble.members]
            for out, p in zip(members, probs, strict=True):
                add(out, batch, p)
            add(rows, batch, ensemble.combine(probs))
    return members, rows


def row_means(rows: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    """Mean of each of ``METRICS`` over per-image rows, as "val_<metric>"."""
    return {f"val_{m}": float(np.mean([r[m] for r in rows])) for m in METRICS}


def evaluate_checkpoint(path: str | os.PathLike, split: str = "test", device: str | None = None) -> dict[str, float]:
    """``evaluate_split`` of a checkpoint file or folder, on ``device`` (default CUDA when available, else CPU)."""
    from fgi.checkpoint import load_checkpoint
    from fgi.method.engine import TeacherStudentTrainer

    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    return evaluate_split(load_checkpoint(path, TeacherStudentTrainer, dev), split)


def predict_folder(trainer: Any, normalization: Mapping[str, Any], images: Path, out: Path,
                   threshold: float = 0.5) -> list[Path]:
    """Write ``<name>_mask.png`` (0/255) and ``<name>_overlay.png`` (lesion tinted red) for each image, all or
    nothing: the outputs are built in a hidden folder beside ``out`` and moved in only once every image is done,
    so an unreadable image leaves ``out`` as it was.

    Args:
        trainer: a ``TeacherStudentTrainer`` (or anything with ``predict``).
        normalization: the training cache's ``image_size``, ``channels``, ``mean`` and ``std``.
        images: folder of images (``IMAGE_SUFFIXES``).
        out: destination folder (created).
        threshold: probability above which a pixel is lesion, in (0, 1).

    Returns:
        The images processed.

    Raises:
        DataError: when ``images`` is not a folder or holds no image, or naming the first image that cannot be
            read (nothing is written then).
        ValueError: when ``threshold`` is outside (0, 1).
    """
    import shutil
    import tempfile

    from PIL import Image

    from fgi.viz import png_bytes, tint

    if not images.is_dir():
        raise DataError(f"{images}: not a folder")
    if not 0.0 < threshold < 1.0:
        raise ValueError(f"threshold: {threshold} must lie in (0, 1)")
    files = sorted(p for p in images.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise DataError(f"{images}: no images ({', '.join(IMAGE_SUFFIXES)})")
    out = out.resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.", suffix=".partial"))
    try:
        for f in files:
            try:
                image = load_image(str(f), int(normalization["channels"]))
                rgb = np.asarray(Image.open(f).convert("RGB"))
            except (DataError, OSError, ValueError) as exc:
                raise DataError(f"{f}: cannot be read ({str(exc)[:200]}); nothing was written to {out}") from None
            mask = predict_full_size(trainer, image, normalization) > threshold
            (staging / f"{f.stem}_mask.png").write_bytes(png_bytes(mask.astype(np.uint8) * 255))
            (staging / f"{f.stem}_overlay.png").write_bytes(png_bytes(tint(rgb, mask)))
        out.mkdir(exist_ok=True)
        for made in sorted(staging.iterdir()):
            os.replace(made, out / made.name)  # same file system: each output appears whole
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return files
