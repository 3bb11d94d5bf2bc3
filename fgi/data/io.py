"""Decoding raw image and mask files (JPEG, PNG, 16-bit PNG, DICOM) and resizing them to the working size.

Every failure raises ``DataError`` naming the file and the reason.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from fgi.data.errors import DataError

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff")
_ID_EXTS = IMAGE_EXTS + (".dcm",)  # extensions dropped from a file name to give its image id
_MASK_THRESHOLD = 127  # JPEG masks: Kvasir leaves no grey values between 64 and 191
_MRI_PERCENTILES = (0.5, 99.5)  # per-slice intensity window of MRI slices, robust to a few hot pixels


def image_id(name: str) -> str:
    """The image id of a file name: its stem when it has an image extension, else the name itself."""
    p = Path(name.strip())
    return p.stem if p.suffix.lower() in _ID_EXTS else p.name


def list_images(folder: Path, exts: tuple[str, ...]) -> dict[str, Path]:
    """Image files of ``folder`` with one of ``exts``, by image id (hidden files left out).

    Raises:
        DataError: the folder does not exist.
    """
    if not folder.is_dir():
        raise DataError(f"{folder}: image folder not found")
    return {p.stem: p for p in sorted(folder.iterdir()) if p.suffix.lower() in exts and not p.name.startswith(".")}


def read_bytes(path: str) -> bytes:
    """The bytes of ``path``; an unreadable file raises ``DataError`` naming it."""
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror})") from None


def _read_dicom(path: str) -> np.ndarray:
    try:
        import pydicom
    except ImportError:
        raise DataError(f"{path}: reading DICOM needs pydicom; install the extra: pip install 'fgi[dicom]'") from None
    try:
        return np.asarray(pydicom.dcmread(path).pixel_array)
    except Exception as exc:  # pydicom raises many types for corrupt files
        raise DataError(f"{path}: cannot decode DICOM ({type(exc).__name__}: {exc})") from None


def _decode(path: str, flags: int) -> np.ndarray:
    if path.lower().endswith(".dcm"):
        return _read_dicom(path)
    buf = np.frombuffer(read_bytes(path), dtype=np.uint8)
    img = cv2.imdecode(buf, flags) if buf.size else None
    if img is None:
        raise DataError(f"{path}: cannot decode image (corrupt or not an image file)")
    return img


def normalize_slice(arr: np.ndarray) -> np.ndarray:
    """Per-slice intensity normalization of an MRI slice to uint8 (robust percentile window).

    Shape:
        arr: (H, W) any numeric dtype; returns (H, W) uint8.
    """
    a = arr.astype(np.float32)
    lo, hi = np.percentile(a, _MRI_PERCENTILES)
    if hi <= lo:
        return np.zeros(a.shape, dtype=np.uint8)
    return (np.clip((a - lo) / (hi - lo), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def load_image(path: str, channels: int) -> np.ndarray:
    """Decode an image file to (H, W, C) uint8 with C = ``channels``; clear errors name the file."""
    img = _decode(path, cv2.IMREAD_UNCHANGED)
    if channels == 1:
        if img.ndim == 3:
            img = img[:, :, :3].mean(axis=2) if img.shape[2] >= 3 else img[:, :, 0]
        return normalize_slice(img)[:, :, None]
    if img.dtype != np.uint8:
        img = normalize_slice(img) if img.ndim == 2 else (img / max(float(img.max()), 1.0) * 255).astype(np.uint8)
    if img.ndim == 2:
        img = np.repeat(img[:, :, None], 3, axis=2)
    elif img.shape[2] == 4:
        img = cv2.cvtColor(img, cv2.COLOR_BGRA2RGB)
    else:
        img = cv2.cvtColor(img[:, :, :3], cv2.COLOR_BGR2RGB)
    return np.ascontiguousarray(img)


def load_mask(path: str, hw: tuple[int, int]) -> np.ndarray:
    """Decode a mask file to (H, W) bool and check it matches its image size ``hw``."""
    m = _decode(path, cv2.IMREAD_GRAYSCALE)
    if m.ndim == 3:
        m = m.max(axis=2)
    if m.shape != hw:
        raise DataError(f"{path}: mask size {m.shape[1]}x{m.shape[0]} differs from its image {hw[1]}x{hw[0]}")
    # 0/255 masks (JPEG noise included) binarize at 127; label masks (NCI-ISBI: 1, 2) are foreground where > 0
    return m > _MASK_THRESHOLD if m.max() > _MASK_THRESHOLD else m > 0


def resize_image(image: np.ndarray, size: int) -> np.ndarray:
    """Resize an image to the square working size the way the cache does (area when shrinking).

    Shape:
        image (H, W, C) or (H, W) uint8; returns (size, size, C) uint8.
    """
    h, w = image.shape[:2]
    out = cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA if max(h, w) > size else cv2.INTER_LINEAR)
    return (out[:, :, None] if out.ndim == 2 else out).astype(np.uint8)


__all__ = ["IMAGE_EXTS", "image_id", "list_images", "load_image", "load_mask", "normalize_slice", "read_bytes",
           "resize_image"]
