"""Reading GazeMedSeg fixation CSVs into per-image fixation arrays.

Every bad row raises ``DataError`` naming the file, the line and what is wrong with it.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np

from fgi.data.errors import DataError
from fgi.data.io import image_id

FIXATION_COLUMNS = ("IMAGE", "CURRENT_FIX_X", "CURRENT_FIX_Y", "CURRENT_FIX_DURATION")


def _number(row: dict[str, str | None], column: str, where: str, image: str) -> float:
    """One numeric cell; empty, NaN and non-numeric cells are errors that say which."""
    raw = (row.get(column) or "").strip()
    if not raw:
        raise DataError(f"{where}: {column} of {image} is missing (empty cell)")
    try:
        value = float(raw)
    except ValueError:
        raise DataError(f"{where}: non-numeric {column} {raw!r} for {image}") from None
    if math.isnan(value):
        raise DataError(f"{where}: {column} of {image} is NaN (a missing value)")
    if math.isinf(value):
        raise DataError(f"{where}: {column} of {image} is infinite ({raw!r})")
    return value


def read_fixations(path: Path) -> tuple[dict[str, np.ndarray], dict[str, tuple[int, int]]]:
    """Read a GazeMedSeg fixation CSV.

    Args:
        path: the CSV (columns IMAGE, CURRENT_FIX_X, CURRENT_FIX_Y, CURRENT_FIX_DURATION, and optionally
            CURRENT_FIX_INDEX, IMAGE_HEIGHT, IMAGE_WIDTH).

    Returns:
        (fixations by image id as (N, 3) float32 arrays in viewing order, (height, width) by image id
        where the CSV gives them).

    Raises:
        DataError: missing file or columns, an empty, NaN, infinite or non-numeric value, a fixation outside [0, 1],
            a negative duration, or image sizes that change within one image.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: fixation CSV not found")
    rows: dict[str, list[tuple[float, float, float, float]]] = {}
    sizes: dict[str, tuple[int, int]] = {}
    with path.open(newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        header = reader.fieldnames or []
        missing = [c for c in FIXATION_COLUMNS if c not in header]
        if missing:
            raise DataError(f"{path}: missing CSV columns {missing}; found {header}")
        has_size = "IMAGE_HEIGHT" in header and "IMAGE_WIDTH" in header
        has_index = "CURRENT_FIX_INDEX" in header
        for line, row in enumerate(reader, start=2):
            where = f"{path}: line {line}"
            image = image_id(row["IMAGE"] or "")
            if not image:
                raise DataError(f"{where}: empty IMAGE")
            x = _number(row, "CURRENT_FIX_X", where, image)
            y = _number(row, "CURRENT_FIX_Y", where, image)
            dur = _number(row, "CURRENT_FIX_DURATION", where, image)
            order = _number(row, "CURRENT_FIX_INDEX", where, image) if has_index else float(line)
            if not (0.0 <= x <= 1.0 and 0.0 <= y <= 1.0):
                raise DataError(f"{where}: fixation ({x}, {y}) of {image} lies outside [0, 1]")
            if dur < 0.0:
                raise DataError(f"{where}: negative duration {dur} for {image}")
            if has_size:
                hw = (int(_number(row, "IMAGE_HEIGHT", where, image)), int(_number(row, "IMAGE_WIDTH", where, image)))
                if sizes.setdefault(image, hw) != hw:
                    raise DataError(f"{where}: {image} has size {hw} here but {sizes[image]} earlier")
            rows.setdefault(image, []).append((order, x, y, dur))
    fix = {}
    for image, r in rows.items():
        arr = np.asarray(sorted(r), dtype=np.float64)
        fix[image] = arr[:, 1:].astype(np.float32)
    return fix, sizes


__all__ = ["FIXATION_COLUMNS", "read_fixations"]
