"""Cache identities: file-system-safe names and fingerprints of local model folders.

A model fingerprint hashes the folder's ``config.json`` and the names and sizes of its weight files, so
retraining or swapping a model changes it while no weights are read.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

WEIGHT_SUFFIXES = (".safetensors", ".bin")
FINGERPRINT_CHARS = 12  # hex digits kept: collisions among the few models of one cache are negligible


def safe_name(name: str) -> str:
    """``name`` with every character but letters, digits, ``-``, ``_`` and ``.`` replaced by ``_``."""
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


def model_fingerprint(path: Path) -> str:
    """Short hash of a model folder's ``config.json`` and its weight files' names and sizes.

    Args:
        path: a folder saved with ``save_pretrained`` (it must hold ``config.json``).
    """
    path = Path(path)
    h = hashlib.sha256((path / "config.json").read_bytes())
    for f in sorted(path.iterdir()):
        if f.suffix in WEIGHT_SUFFIXES:
            h.update(f"{f.name}:{f.stat().st_size}".encode())
    return h.hexdigest()[:FINGERPRINT_CHARS]


__all__ = ["FINGERPRINT_CHARS", "WEIGHT_SUFFIXES", "model_fingerprint", "safe_name"]
