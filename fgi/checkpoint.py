"""The checkpoint folder format: one writer, one reader.

A checkpoint folder holds::

    trainer.pt           engine state (``state_dict``): models, optimizers, step, RNG, config (YAML text)
    config.yaml          the resolved config, readable without torch
    metrics.json         the metrics reported with the checkpoint (always has "step")
    normalization.json   image size, channels, mean and std of the prepared cache, for new images
    overlay.png          validation predictions at the checkpoint's step (optional)
    val_rows.json        per-image val Dice at the checkpoint's step, ``[{"id", "dice"}]`` (optional)

A released folder (``fgi release``) holds an inference-only state: the models' weights, config and step, with
``"inference_only": True`` and no optimizer, scheduler or RNG state, its floating tensors optionally stored
in half precision (``"precision": "fp16"``); it predicts and evaluates like any checkpoint but cannot resume
training.

Writes are atomic: a folder is filled under a temporary name next to its destination and renamed into
place, and a lone ``trainer.pt`` goes through a temporary file and a rename. Reading uses
``torch.load(weights_only=True)``: a file that holds anything but tensors and plain data (a pickle that
would import or call code) is refused before any of it runs.

This module imports no training code: ``load_checkpoint`` is handed the trainer class to rebuild
(``fgi.method.engine.TeacherStudentTrainer`` or a variant of it), so ``fgi.tracking`` can use the format
without reaching the engine.
"""

from __future__ import annotations

import io
import json
import math
import os
import pickle
import re
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol, TypeVar

import torch

from fgi.budgets import without_machine
from fgi.config import Config, dump_yaml, load_yaml_text
from fgi.files import atomic_write_bytes, current_umask

CHECKPOINT_FILE = "trainer.pt"  # engine state inside every checkpoint folder
CONFIG_FILE = "config.yaml"  # the resolved config, readable without torch
METRICS_FILE = "metrics.json"  # the metrics reported with the checkpoint
NORMALIZATION_FILE = "normalization.json"  # image normalization of the prepared cache, for prediction on new images
OVERLAY_FILE = "overlay.png"  # validation predictions at the checkpoint's step
VAL_ROWS_FILE = "val_rows.json"  # per-image val Dice at the checkpoint's step (a staged search pairs runs on it)
STATE_KEYS = ("config", "models", "step")  # what marks a trainer state; the engine checks the rest as it loads
INFERENCE_ONLY = "inference_only"  # state key of a released state: weights only, no optimizer or RNG state
PRECISIONS = {"fp32": torch.float32, "fp16": torch.float16}  # how a released state stores its floating weights
NORMALIZATION_KEYS = ("image_size", "channels", "mean", "std")


class Trainer(Protocol):
    """What the format needs of an engine (``fgi.method.engine.TeacherStudentTrainer`` has it)."""

    cfg: Config
    step: int

    def __init__(self, cfg: Config, device: torch.device) -> None: ...

    def state_dict(self) -> dict: ...

    def load_state_dict(self, state: Mapping) -> None: ...


T = TypeVar("T", bound=Trainer)


def checkpoint_name(step: int) -> str:
    """Folder name of the checkpoint at ``step`` (``step_0000120``): sorts by step as text."""
    return f"step_{int(step):07d}"


def inference_state(state: Mapping[str, Any], precision: str = "fp32", config: str | None = None) -> dict[str, Any]:
    """The inference-only part of a trainer state: the models' weights, config and step.

    Args:
        state: a trainer state (``state_dict``).
        config: YAML text that replaces the state's config (the machine-free one of a release); None keeps it.
        precision: a key of ``PRECISIONS``: the dtype floating weights are stored in (integer buffers, such
            as batch norm's counters, stay as they are). The engine casts them back to its own dtype on load.

    Raises:
        ValueError: an unknown precision.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision {precision!r}: expected one of {sorted(PRECISIONS)}")
    dtype = PRECISIONS[precision]
    models = {name: {k: (v.to(dtype) if torch.is_floating_point(v) else v) for k, v in weights.items()}
              for name, weights in state["models"].items()}
    return {"models": models, "config": state["config"] if config is None else config, "step": state["step"],
            INFERENCE_ONLY: True, "precision": precision}


def _state_bytes(trainer: Trainer, precision: str | None = None, config: str | None = None) -> bytes:
    state = trainer.state_dict()
    buffer = io.BytesIO()
    torch.save(state if precision is None else inference_state(state, precision, config), buffer)
    return buffer.getvalue()


def save_checkpoint(trainer: Trainer, path: str | os.PathLike) -> None:
    """Write the trainer state alone to the file ``path``, atomically (temporary file and rename).

    Args:
        trainer: the engine whose ``state_dict`` is saved.
        path: destination file, usually ``<folder>/trainer.pt``.
    """
    atomic_write_bytes(path, _state_bytes(trainer))


def write_checkpoint(folder: str | os.PathLike, trainer: Trainer, metrics: Mapping[str, Any],
                     normalization: Mapping[str, Any], overlay: bytes | None = None,
                     val_rows: Sequence[Mapping[str, Any]] | None = None, release: str | None = None) -> Path:
    """Write a complete checkpoint folder, atomically: built under a temporary name, then renamed.

    An existing folder of the same name is replaced as a whole, so a reader never sees the state of one
    step next to the metrics of another.

    Args:
        folder: destination folder (its parent is created).
        trainer: the engine to save; its config goes into ``config.yaml`` too.
        metrics: the metrics of this checkpoint; "step" defaults to the trainer's step.
        normalization: ``image_size``, ``channels``, ``mean`` and ``std`` of the training images.
        overlay: PNG bytes of the validation overlay, or None.
        val_rows: per-image val Dice (``id``, ``dice``) at this step, or None.
        release: None for the full state (training resumes from it), or a key of ``PRECISIONS`` for an
            inference-only state whose floating weights are stored at that precision (``inference_state``);
            a release's config (in the state and ``config.yaml``) drops the machine's paths and settings
            (``fgi.budgets.without_machine``), so the folder travels.

    Returns:
        The folder.
    """
    dest = Path(folder)
    missing = [k for k in NORMALIZATION_KEYS if k not in normalization]
    if missing:
        raise ValueError(f"{dest / NORMALIZATION_FILE}: normalization lacks {missing}")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".tmp"))
    try:
        os.chmod(tmp, 0o777 & ~current_umask())  # mkdtemp's 0o700 would hide it on shared storage
        config = dump_yaml(trainer.cfg if release is None else without_machine(trainer.cfg))
        files = {
            CHECKPOINT_FILE: _state_bytes(trainer, release, None if release is None else config),
            CONFIG_FILE: config.encode(),
            METRICS_FILE: json.dumps({"step": trainer.step, **metrics}, indent=1).encode(),
            NORMALIZATION_FILE: json.dumps(dict(normalization)).encode(),
        }
        if overlay is not None:
            files[OVERLAY_FILE] = overlay
        if val_rows is not None:
            files[VAL_ROWS_FILE] = json.dumps([{"id": r["id"], "dice": float(r["dice"])} for r in val_rows]).encode()
        for name, data in files.items():
            with open(tmp / name, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
        replace_dir(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dest


def replace_dir(src: Path, dest: Path) -> None:
    """Rename ``src`` to ``dest``; an existing ``dest`` is moved aside first and removed after."""
    if not dest.exists():
        os.replace(src, dest)
        return
    old = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".old"))
    os.replace(dest, old / dest.name)
    os.replace(src, dest)
    shutil.rmtree(old, ignore_errors=True)


def state_file(path: str | os.PathLike) -> Path:
    """The ``trainer.pt`` of a checkpoint folder, or ``path`` itself when it is a file."""
    p = Path(path)
    return p / CHECKPOINT_FILE if p.is_dir() else p


def _load_error(file: Path, exc: Exception) -> str:
    """One line for a file ``torch.load(weights_only=True)`` rejected, naming the file and the reason."""
    text = str(exc)
    refused = re.search(r"GLOBAL ([\w.]+)", text)
    if isinstance(exc, pickle.UnpicklingError) and refused:
        return (f"{file}: not a plain fgi checkpoint: it holds objects other than tensors and plain data, which "
                f"fgi never writes; refused without running them (global {refused.group(1)})")
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    reason = next((line for line in lines if "Unsupported" in line), lines[0] if lines else "")
    return f"{file}: not a readable fgi checkpoint ({type(exc).__name__}: {reason[:200]})"


def read_checkpoint(path: str | os.PathLike) -> dict:
    """The trainer state of a checkpoint file (or folder) on the CPU, read with ``weights_only=True``.

    Args:
        path: a ``trainer.pt`` file or a checkpoint folder.

    Raises:
        FileNotFoundError: when the file is missing.
        ValueError: one line naming the file when it is unreadable, holds anything but tensors and plain
            data (nothing in it runs), or lacks the keys of an fgi trainer state.
    """
    file = state_file(path)
    if not file.is_file():
        raise FileNotFoundError(f"{file}: checkpoint not found")
    try:
        state = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several unrelated types for a corrupt or foreign file
        raise ValueError(_load_error(file, exc)) from None
    if not isinstance(state, dict):
        raise ValueError(f"{file}: not an fgi checkpoint (holds a {type(state).__name__}, not a trainer state)")
    missing = [k for k in STATE_KEYS if k not in state]
    if missing:
        raise ValueError(f"{file}: not an fgi checkpoint (trainer state lacks {missing})")
    return state


def verify_state_file(path: str | os.PathLike) -> None:
    """Check a checkpoint's ``trainer.pt`` is whole (its zip records and their CRCs), without unpickling it: cheap
    enough for the tracking callback to run on every checkpoint it stages for upload.

    Raises:
        FileNotFoundError: the file is missing.
        ValueError: naming the file, when it is truncated or corrupt.
    """
    import zipfile

    file = state_file(path)
    if not file.is_file():
        raise FileNotFoundError(f"{file}: checkpoint not found")
    try:
        with zipfile.ZipFile(file) as archive:
            bad = archive.testzip()
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise ValueError(f"{file}: truncated or corrupt ({exc})") from None
    if bad is not None:
        raise ValueError(f"{file}: corrupt record {bad}")


def load_checkpoint(path: str | os.PathLike, trainer_class: type[T], device: torch.device | str = "cpu") -> T:
    """Rebuild a trainer from a checkpoint file or folder, with the config stored inside its state.

    Args:
        path: a ``trainer.pt`` file or a checkpoint folder.
        trainer_class: the engine class to build, e.g. ``fgi.method.engine.TeacherStudentTrainer``.
        device: where the rebuilt models live.
    """
    state = read_checkpoint(path)
    cfg = load_yaml_text(state["config"], f"{state_file(path)} (config)")
    trainer = trainer_class(cfg, torch.device(device))
    trainer.load_state_dict(state)
    return trainer


def load_folder(folder: str | os.PathLike, trainer_class: type[T],
                device: torch.device | str = "cpu") -> tuple[T, dict[str, Any]]:
    """A trainer and its image normalization from a checkpoint folder (``trainer.pt`` + ``normalization.json``).

    Args:
        folder: the checkpoint folder, or its ``trainer.pt``.
        trainer_class: the engine class to build.
        device: where the rebuilt models live.
    """
    p = Path(folder)
    root = p if p.is_dir() else p.parent
    normalization = read_normalization(root)
    return load_checkpoint(root, trainer_class, device), normalization


def _read_json(file: Path) -> Any:
    if not file.is_file():
        raise FileNotFoundError(f"{file}: not found; a checkpoint folder written by fgi has it")
    try:
        return json.loads(file.read_text())
    except ValueError as exc:
        raise ValueError(f"{file}: not valid JSON ({exc})") from None


def read_metrics(folder: str | os.PathLike) -> dict[str, Any]:
    """The ``metrics.json`` of a checkpoint folder."""
    metrics = _read_json(Path(folder) / METRICS_FILE)
    if not isinstance(metrics, dict):
        raise ValueError(f"{Path(folder) / METRICS_FILE}: expected a JSON object of metrics")
    return metrics


def read_val_rows(folder: str | os.PathLike) -> dict[str, float]:
    """Per-image val Dice (id -> Dice) of a checkpoint folder's ``val_rows.json``.

    Raises:
        FileNotFoundError: a folder written without per-image rows (before they were kept), naming the file.
        ValueError: rows that are not ``[{"id": str, "dice": number}]``, naming the file.
    """
    file = Path(folder) / VAL_ROWS_FILE
    rows = _read_json(file)
    try:
        return {str(r["id"]): float(r["dice"]) for r in rows}
    except (TypeError, KeyError, ValueError):
        raise ValueError(f"{file}: expected a list of {{\"id\", \"dice\"}} rows") from None


def read_normalization(folder: str | os.PathLike) -> dict[str, Any]:
    """The ``normalization.json`` of a checkpoint folder, checked for its four keys."""
    file = Path(folder) / NORMALIZATION_FILE
    norm = _read_json(file)
    missing = [k for k in NORMALIZATION_KEYS if not isinstance(norm, dict) or k not in norm]
    if missing:
        raise ValueError(f"{file}: normalization lacks {missing}")
    return norm


def best_checkpoint(run_dir: str | os.PathLike, metric: str = "val_dice", mode: str = "max") -> Path:
    """The checkpoint folder ``step_*`` under a run folder with the best ``metric`` in its ``metrics.json``.

    Ties go to the earlier step; a folder without ``metric`` ranks last.

    Raises:
        FileNotFoundError: when the folder holds no checkpoint.
    """
    folders = [p for p in Path(run_dir).glob("step_*")
               if (p / CHECKPOINT_FILE).is_file() and (p / METRICS_FILE).is_file()]
    if not folders:
        raise FileNotFoundError(f"{run_dir}: no checkpoint folders (step_*/{CHECKPOINT_FILE})")
    sign = 1.0 if mode == "max" else -1.0

    def score(p: Path) -> tuple[float, int]:
        value = read_metrics(p).get(metric, -math.inf * sign)
        return sign * float(value), -int(p.name.split("_")[1])

    return max(folders, key=score)


__all__ = [
    "CHECKPOINT_FILE", "CONFIG_FILE", "INFERENCE_ONLY", "METRICS_FILE", "PRECISIONS", "NORMALIZATION_FILE", "OVERLAY_FILE", "VAL_ROWS_FILE", "best_checkpoint",
    "checkpoint_name", "inference_state", "load_checkpoint", "load_folder", "read_checkpoint", "read_metrics", "read_normalization", "read_val_rows", "save_checkpoint", "verify_state_file",
    "replace_dir", "state_file", "write_checkpoint",
]
