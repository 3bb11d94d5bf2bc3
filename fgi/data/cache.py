"""The prepared cache's identity and layout: spec, hashes, entry names and the manifest.

Layout of a cache dir::

    items/<id>.<key>.npz   image (S, S, C) uint8, heatmap and crf (S, S) float16 soft maps (absent when
                           the item has no gaze), mask (S, S) bool (absent without ground truth), stats
    manifest.json          config hash, versions, splits, counts, normalization, Dice report, text section
    overlays/<id>.png      optional pictures of the weak labels
    descriptions.jsonl, embeddings/   the text cache (``fgi.text.cache``)

``key`` hashes the item's input bytes (image, mask, fixations) with the gaze and CRF config, so a rerun
only computes items whose inputs changed, and a finished entry is never rewritten.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from fgi.config import Config, config_hash
from fgi.data.io import read_bytes
from fgi.data.sources import SourceItem
from fgi.text.fingerprint import safe_name

FORMAT_VERSION = 1  # bump when the entry layout or the map computation changes: every key changes with it
MANIFEST = "manifest.json"
ITEMS_DIR = "items"
LOCK_FILE = ".prepare.lock"
_KEY_BYTES = 10  # blake2b digest size of an entry key (20 hex digits)
_FILE_DIGEST_BYTES = 16  # blake2b digest size of one input file


def cache_root() -> Path:
    """The user cache folder of fgi (``$XDG_CACHE_HOME/fgi`` or ``~/.cache/fgi``)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "fgi"


def _abs(path: str) -> str:
    return str(Path(path).expanduser().resolve()) if path else ""


def prepare_spec(cfg: Config) -> dict[str, Any]:
    """The config entries a cache depends on (its identity). Levels and augmentations are not among them."""
    d = cfg.data
    spec: dict[str, Any] = {
        "format": FORMAT_VERSION,
        "dataset": d.dataset,
        "root": _abs(d.root),
        "fixations": _abs(d.fixations),
        "split_dir": _abs(d.split_dir),
        "image_size": d.image_size,
        "val_fraction": d.val_fraction,
        "split_seed": d.split_seed,
        "gaze": asdict(cfg.gaze),
        "crf": asdict(cfg.crf),
    }
    if d.dataset == "synthetic":
        spec["synthetic"] = [d.synthetic_train, d.synthetic_val, d.synthetic_test, d.synthetic_seed]
    return spec


def prepare_hash(cfg: Config) -> str:
    """Short hash of ``prepare_spec`` (names the default cache dir and marks a manifest as current)."""
    return config_hash(prepare_spec(cfg))


def text_spec(cfg: Config) -> dict[str, Any]:
    """The text config entries the text cache depends on."""
    return {"describer": cfg.text.describer, "encoder": cfg.text.encoder, "vlm_path": cfg.text.vlm_path}


def resolve_cache_dir(cfg: Config) -> Path:
    """``data.cache_dir`` when set, else ``<user cache>/fgi/<dataset>-<prepare hash>``.

    The default lives in the user cache dir (not under the raw root, which is often read-only), keyed by
    the config hash so repeated runs with the same config reuse it.
    """
    if cfg.data.cache_dir:
        return Path(cfg.data.cache_dir).expanduser()
    return cache_root() / f"{cfg.data.dataset}-{prepare_hash(cfg)}"


def entry_spec_hash(cfg: Config) -> str:
    """Hash of what every entry's content depends on (not splits, not val carving)."""
    spec = prepare_spec(cfg)
    keep = {k: spec[k] for k in ("format", "dataset", "image_size", "gaze", "crf")}
    if cfg.data.dataset == "synthetic":
        keep["synthetic_seed"] = cfg.data.synthetic_seed
    return config_hash(keep)


def _digest(*parts: bytes) -> str:
    h = hashlib.blake2b(digest_size=_KEY_BYTES)
    for p in parts:
        h.update(len(p).to_bytes(8, "little"))
        h.update(p)
    return h.hexdigest()


def _file_digest(path: str) -> bytes:
    return hashlib.blake2b(read_bytes(path), digest_size=_FILE_DIGEST_BYTES).digest() if path else b""


def item_key(item: SourceItem, spec_hash: str) -> str:
    """Content key of one cache entry: its input bytes plus the map-relevant config (``entry_spec_hash``)."""
    fix = b"" if item.fixations is None else np.ascontiguousarray(item.fixations, dtype=np.float32).tobytes()
    ident = json.dumps([item.id, item.split if item.synthetic_index >= 0 else "", item.synthetic_index,
                        item.simulate, item.expected_hw], default=list).encode()
    return _digest(spec_hash.encode(), ident, _file_digest(item.image_path), _file_digest(item.mask_path), fix)


def entry_name(item_id: str, key: str) -> str:
    """File name of an entry under ``items/``."""
    return f"{safe_name(item_id)}.{key}.npz"


def read_entry_stats(path: Path) -> dict[str, Any]:
    """The stats stored in one entry."""
    with np.load(path) as z:
        return json.loads(z["stats"].tobytes().decode())


def load_manifest(cache_dir: Path) -> dict[str, Any] | None:
    """The manifest of a cache dir, or None when there is none (or it is unreadable)."""
    p = Path(cache_dir) / MANIFEST
    try:
        return json.loads(p.read_text())
    except (OSError, ValueError):
        return None


__all__ = [
    "FORMAT_VERSION", "ITEMS_DIR", "LOCK_FILE", "MANIFEST", "cache_root", "entry_name", "entry_spec_hash",
    "item_key", "load_manifest", "prepare_hash", "prepare_spec", "read_entry_stats", "resolve_cache_dir",
    "text_spec",
]
