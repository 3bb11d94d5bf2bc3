"""Staged copies of trials' best checkpoints, owned by the tracking callback.

Tune's ``num_to_keep`` may delete a trial's checkpoint before the trial ends, so the tracking callback
copies (hard-links where it can) the best checkpoint into its own staging folder as soon as the result
that names it arrives, and uploads from there. A staged folder holds ``staged.json`` (metric value and
step): after a resume the upload pairs metrics with the checkpoint actually on disk.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from fgi.checkpoint import verify_state_file
from fgi.files import atomic_write_text

STAGED_FILE = "staged.json"  # {"value": metric value, "step": training step} of the staged checkpoint


def _link_tree(src: Path, dest: Path) -> None:
    for item in src.rglob("*"):
        target = dest / item.relative_to(src)
        if item.is_dir():
            target.mkdir(parents=True, exist_ok=True)
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(item, target)
        except OSError:  # another filesystem, or links not allowed
            shutil.copy2(item, target)


def stage(src: str | os.PathLike, root: str | os.PathLike, trial_id: str, value: float, step: int) -> Path:
    """Replace ``<root>/<trial_id>`` by a copy of checkpoint folder ``src`` with its ``staged.json``.

    The source's ``trainer.pt`` is verified first (``fgi.checkpoint.verify_state_file``): a truncated file is never
    staged, so it never replaces a good staged copy nor reaches MLflow as the trial's best.

    Raises:
        FileNotFoundError: ``src`` is not a folder (Tune deleted it already).
        ValueError: naming the file, when the checkpoint's state is truncated or corrupt.
    """
    src_p, folder = Path(src), Path(root) / trial_id
    if not src_p.is_dir():
        raise FileNotFoundError(f"checkpoint folder {src_p} does not exist")
    verify_state_file(src_p)  # the copy hard-links (or copies) these very bytes
    tmp = Path(root) / f".{trial_id}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    _link_tree(src_p, tmp)
    atomic_write_text(tmp / STAGED_FILE, json.dumps({"value": float(value), "step": int(step), "source": str(src_p)}))
    old = Path(root) / f".{trial_id}.old"
    shutil.rmtree(old, ignore_errors=True)
    if folder.exists():
        folder.rename(old)
    tmp.rename(folder)
    shutil.rmtree(old, ignore_errors=True)
    return folder


def staged(root: str | os.PathLike, trial_id: str) -> tuple[Path, dict[str, Any]] | None:
    """The staged checkpoint folder of a trial and its ``staged.json``, or None when none is on disk."""
    folder = Path(root) / trial_id
    try:
        return folder, json.loads((folder / STAGED_FILE).read_text())
    except (OSError, ValueError):
        return None


__all__ = ["STAGED_FILE", "stage", "staged"]
