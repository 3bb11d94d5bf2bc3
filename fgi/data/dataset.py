"""Torch Dataset over a prepared cache, with gaze levels thresholded at load time.

A batch (after default collate) holds:
    image: float32 (C, H, W), scaled to [0, 1] and normalized with the cache's per-channel mean and std;
    tight / loose: bool (1, H, W), the soft map (``data.level_source``) >= ``data.tight_level`` /
        ``data.loose_level`` (only for splits whose items all have gaze);
    mask: bool (1, H, W) ground truth (only for splits whose items all have it);
    text: float32 (D,) for text mode "pooled", or (L, D) with text_mask bool (L,) for "tokens"
        (only for splits whose items all have embeddings);
    id: str.

Augmentations (training split only) are applied jointly to the image, the soft map and the mask, and
the levels are thresholded after warping. Randomness comes from a per-process NumPy generator seeded by
the ``seed`` argument, the epoch (``set_epoch``) and the DataLoader worker's seed, never global state.
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from fgi.config import AugmentConfig, Config
from fgi.data.cache import ITEMS_DIR, MANIFEST, load_manifest, prepare_hash, resolve_cache_dir, text_spec
from fgi.data.errors import DataError
from fgi.data.prepare import prepare_cache


def build_augment(cfg: AugmentConfig, channels: int, size: int) -> Any:
    """The albumentations pipeline of training samples (image, then soft map and mask as ``masks``).

    Args:
        cfg: augmentation settings.
        channels: 3 applies colour jitter, 1 applies intensity (brightness/contrast) jitter.
        size: output side length.
    """
    import albumentations as A

    ts: list[Any] = []
    if cfg.enabled:
        ts += [A.HorizontalFlip(p=cfg.hflip), A.VerticalFlip(p=cfg.vflip),
               A.Affine(rotate=(-cfg.rotate_limit, cfg.rotate_limit), scale=(1 - cfg.scale_limit, 1 + cfg.scale_limit),
                        translate_percent=(-cfg.shift_limit, cfg.shift_limit), border_mode=cv2.BORDER_CONSTANT,
                        fill=0, fill_mask=0, p=cfg.affine)]
        if channels == 3:
            ts.append(A.ColorJitter(brightness=cfg.brightness, contrast=cfg.contrast, saturation=cfg.saturation,
                                    hue=cfg.hue, p=cfg.color))
        else:
            ts.append(A.RandomBrightnessContrast(brightness_limit=cfg.brightness, contrast_limit=cfg.contrast,
                                                 p=cfg.color))
    ts.append(A.Resize(size, size))
    return A.Compose(ts, mask_interpolation=cv2.INTER_LINEAR, seed=0)


class GazeDataset(Dataset):
    """One split of a prepared cache.

    Args:
        cache_dir: the prepared cache.
        manifest: its manifest (``manifest.json``).
        split: "train", "val" or "test".
        cfg: the run config (levels, level source, augmentations, text mode).
        seed: base seed of the augmentations.
        augment: apply the training augmentations (otherwise only the resize).
    """

    def __init__(self, cache_dir: Path, manifest: dict[str, Any], split: str, cfg: Config, seed: int,
                 augment: bool) -> None:
        self.cache_dir = Path(cache_dir)
        self.split = split
        self.ids: list[str] = list(manifest["splits"].get(split, []))
        recs = manifest["items"]
        self.files = [self.cache_dir / ITEMS_DIR / recs[i]["file"] for i in self.ids]
        self.has_levels = bool(self.ids) and all(recs[i]["has_maps"] for i in self.ids)
        self.has_mask = bool(self.ids) and all(recs[i]["has_mask"] for i in self.ids)
        self.channels = int(manifest["channels"])
        self.size = cfg.data.image_size
        self.tight_level, self.loose_level = cfg.data.tight_level, cfg.data.loose_level
        self.level_source = cfg.data.level_source
        norm = manifest["normalization"]
        self.mean = np.asarray(norm["mean"], dtype=np.float32)
        self.std = np.asarray(norm["std"], dtype=np.float32)
        self.seed = int(seed)
        self.epoch = 0
        self._augment = build_augment(cfg.augment if augment else AugmentConfig(enabled=False), self.channels, self.size)
        self._rng: np.random.Generator | None = None
        self._rng_key: tuple | None = None
        self.text_mode = cfg.text.mode
        self._table = None
        if self.text_mode != "none" and self.ids:
            from fgi.text.cache import open_embeddings

            table = open_embeddings(self.cache_dir, cfg.text.template, cfg.text)
            known = set(table.ids)
            if all(i in known for i in self.ids):
                self._table = table

    @property
    def has_text(self) -> bool:
        """Whether samples of this split carry a text embedding."""
        return self._table is not None

    def set_epoch(self, epoch: int) -> None:
        """Change the augmentation stream; call before creating each epoch's DataLoader iterator."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.ids)

    def _generator(self) -> np.random.Generator:
        info = torch.utils.data.get_worker_info()
        key = (self.seed, self.epoch, -1 if info is None else info.id, 0 if info is None else info.seed)
        if self._rng is None or key != self._rng_key:
            self._rng = np.random.default_rng(np.random.SeedSequence([k % (2**63) for k in key[:2]]
                                                                     + [key[2] + 1, key[3] % (2**63)]))
            self._rng_key = key
        return self._rng

    def __getitem__(self, index: int) -> dict[str, Any]:
        path = self.files[index]
        try:
            with np.load(path) as z:
                image = z["image"]
                soft = z[self.level_source].astype(np.float32) if self.has_levels else None
                mask = z["mask"].astype(np.float32) if self.has_mask else None
        except (OSError, KeyError, ValueError) as exc:
            raise DataError(f"{path}: unreadable cache entry ({exc}); rerun fgi prepare") from None
        masks = [m for m in (soft, mask) if m is not None]
        self._augment.set_random_seed(int(self._generator().integers(0, 2**31 - 1)))
        out = self._augment(image=image, masks=masks) if masks else self._augment(image=image)
        img = out["image"]
        if img.ndim == 2:
            img = img[:, :, None]
        x = (img.astype(np.float32) / 255.0 - self.mean) / self.std
        sample: dict[str, Any] = {"image": torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1)))}
        warped = list(out.get("masks", []))
        if soft is not None:
            s = torch.from_numpy(np.asarray(warped.pop(0), dtype=np.float32))[None]
            sample["tight"] = s >= self.tight_level
            sample["loose"] = s >= self.loose_level
        if mask is not None:
            sample["mask"] = torch.from_numpy(np.asarray(warped.pop(0), dtype=np.float32) >= 0.5)[None]
        if self._table is not None:
            i = self.ids[index]
            if self.text_mode == "pooled":
                sample["text"] = self._table.pooled(i).float()
            else:
                tokens, valid = self._table.tokens(i)
                sample["text"] = tokens.float()
                sample["text_mask"] = valid.bool()
        sample["id"] = self.ids[index]
        return sample


def _prepare_command(cfg: Config, cache_dir: Path) -> str:
    parts = ["fgi", "prepare", "--dataset", cfg.data.dataset]
    if cfg.data.root:
        parts += ["--root", cfg.data.root]
    if cfg.data.fixations:
        parts += ["--fixations", cfg.data.fixations]
    parts += ["--image-size", str(cfg.data.image_size), "--cache-dir", str(cache_dir), "--config", "<your config.yaml>"]
    return shlex.join(parts)


def _is_current(cfg: Config, cache_dir: Path, manifest: dict[str, Any] | None) -> bool:
    if manifest is None or manifest.get("prepare_hash") != prepare_hash(cfg):
        return False
    if any(not (cache_dir / ITEMS_DIR / r["file"]).is_file() for r in manifest["items"].values()):
        return False
    if cfg.text.mode != "none":
        from fgi.text.cache import cache_ready

        if manifest.get("text_spec") != text_spec(cfg) or not cache_ready(cache_dir, [cfg.text.template], cfg.text):
            return False
    return True


def ensure_prepared(cfg: Config, workers: int | None = None, progress: bool = False) -> Path:
    """Prepare the cache of ``cfg`` if it is absent or stale, and return its folder.

    Stale means another prepare config (data, gaze, CRF), a missing entry, or missing text embeddings
    while ``text.mode`` needs them. Changed raw files are only noticed by ``fgi prepare`` itself.

    Args:
        cfg: the run config.
        workers: parallel processes (default: all CPUs).
        progress: show a progress bar.
    """
    import os

    cache_dir = resolve_cache_dir(cfg)
    if not _is_current(cfg, cache_dir, load_manifest(cache_dir)):
        prepare_cache(cfg, cache_dir, workers=workers or os.cpu_count() or 1, progress=progress,
                      text=cfg.text.mode != "none")
    return cache_dir


def build_datasets(cfg: Config, seed: int) -> dict[str, GazeDataset]:
    """Datasets of every split in the prepared cache ("train" augmented; "val" and "test" not).

    Args:
        cfg: the run config.
        seed: base seed of the training augmentations.

    Raises:
        DataError: no prepared cache, or one prepared with another config (the message names the
            cache dir and the command to run).
    """
    cache_dir = resolve_cache_dir(cfg)
    manifest = load_manifest(cache_dir)
    if manifest is None:
        raise DataError(f"{cache_dir / MANIFEST}: no prepared cache; run: {_prepare_command(cfg, cache_dir)}")
    if manifest.get("prepare_hash") != prepare_hash(cfg):
        raise DataError(f"{cache_dir}: the cache was prepared with another data/gaze/CRF config; "
                        f"run: {_prepare_command(cfg, cache_dir)}")
    return {split: GazeDataset(cache_dir, manifest, split, cfg, seed, augment=split == "train")
            for split in ("train", "val", "test") if manifest["splits"].get(split)}


__all__ = ["GazeDataset", "build_augment", "build_datasets", "ensure_prepared"]
