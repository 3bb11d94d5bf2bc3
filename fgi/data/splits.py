"""Train/val/test assignment: split files (``train.txt``, ``val.txt``, ``test.txt``) and carved validation.

A split file lists one image id per line (the file name with or without its extension, never a path).
Where ``train.txt`` exists, images that no split file lists are left out and reported (the files may
legitimately list a subset, e.g. the 900 GazeMedSeg training images of the full Kvasir-SEG download).
Without ``train.txt`` every unlisted image is a training image.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from fgi.data.errors import DataError
from fgi.data.io import image_id
from fgi.seed import numpy_rng

SPLIT_NAMES = ("train", "val", "test")


@dataclass(frozen=True)
class SplitAssignment:
    """Which split each image is in.

    Args:
        split_of: image id -> split, split files first (in file order), then unlisted training images.
        files: the splits that have a split file.
        unlisted: ids no split file lists while ``train.txt`` exists; they are left out.
    """

    split_of: dict[str, str]
    files: tuple[str, ...]
    unlisted: list[str]


def read_split_files(split_dir: Path, known: set[str]) -> dict[str, list[str]]:
    """Read ``train.txt``, ``val.txt`` and ``test.txt`` (one id per line, extension optional) where present.

    Args:
        split_dir: the folder holding the split files.
        known: the image ids of the dataset.

    Returns:
        Split -> ids in file order, for each split that has a file.

    Raises:
        DataError: naming the file and line of a path instead of an id, an id that names no image, or an
            id listed in two splits.
    """
    out: dict[str, list[str]] = {}
    seen: dict[str, str] = {}
    for split in SPLIT_NAMES:
        p = split_dir / f"{split}.txt"
        if not p.is_file():
            continue
        ids = []
        for line_no, line in enumerate(p.read_text().splitlines(), start=1):
            entry = line.strip()
            if not entry:
                continue
            if "/" in entry or "\\" in entry:
                raise DataError(f"{p}: line {line_no}: {entry!r} is a path; list image ids (file names without "
                                f"folders), one per line")
            i = image_id(entry)
            if i not in known:
                raise DataError(f"{p}: line {line_no}: id {i!r} matches no image")
            if i in seen:
                raise DataError(f"{p}: line {line_no}: id {i!r} is already in {seen[i]}.txt")
            seen[i] = split
            ids.append(i)
        out[split] = ids
    return out


def assign_splits(ids: Sequence[str], split_dir: Path) -> SplitAssignment:
    """Assign every image id to a split from the split files of ``split_dir``.

    Args:
        ids: the dataset's image ids.
        split_dir: the folder holding the split files.
    """
    files = read_split_files(split_dir, set(ids))
    split_of = {i: split for split, listed in files.items() for i in listed}
    rest = [i for i in ids if i not in split_of]
    if "train" in files:
        return SplitAssignment(split_of, tuple(files), rest)
    split_of.update((i, "train") for i in rest)
    return SplitAssignment(split_of, tuple(files), [])


def carve_validation(train_groups: Iterable[str], fraction: float, seed: int) -> set[str]:
    """The groups of training images to move to "val": a seeded ``fraction`` of them.

    At least one group moves when ``fraction`` > 0, and at least one stays, when there are two or more.

    Args:
        train_groups: the group (case, or the image id itself) of every training image.
        fraction: share of training groups moved.
        seed: ``DataConfig.split_seed``; the subset depends only on it and the groups.
    """
    groups = sorted(set(train_groups))
    n_val = int(round(fraction * len(groups)))
    if fraction > 0 and len(groups) > 1:
        n_val = min(max(n_val, 1), len(groups) - 1)
    rng = numpy_rng(seed)
    return {groups[i] for i in rng.permutation(len(groups))[:n_val]}


__all__ = ["SPLIT_NAMES", "SplitAssignment", "assign_splits", "carve_validation", "read_split_files"]
