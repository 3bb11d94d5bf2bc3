"""The text cache: descriptions and embeddings built once by ``fgi prepare``, looked up by trials.

Layout under the dataset's cache dir::

    descriptions.jsonl                       one line per (image id, template, describer, model id)
    embeddings/<template>/<encoder id>.safetensors
                                             fp16 rows keyed by description hash: pooled (R, D),
                                             concatenated valid tokens (T, D) and row offsets (R + 1)
    embeddings/<template>/index-<describer model id>.json
                                             image id -> description hash

Every file is written through a temporary file and a rename, embeddings before the index that points
at them, all under one file lock: processes that start together wait for the first one and then find
everything cached. Readers take no lock: they only ever see whole files.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import torch
from filelock import FileLock

from fgi.config import TextConfig
from fgi.files import atomic_write_text
from fgi.text.describe import Describer, describer_model_id, make_describer
from fgi.text.embeddings import PREPARE_HINT, EmbeddingTable, append_rows, load_rows
from fgi.text.encode import TextEncoder, encoder_dim, encoder_id
from fgi.text.fingerprint import safe_name
from fgi.text.items import DescriberError, TextItem
from fgi.text.templates import check_context, get_template, load_templates

DESCRIPTIONS_FILE = "descriptions.jsonl"
EMBEDDINGS_DIR = "embeddings"
LOCK_FILE = ".text-cache.lock"
_FLUSH_SECONDS = 30.0  # rewrite descriptions.jsonl at most this often during long VLM runs, so a crash loses little
_PENDING_PAIRS = 256  # (item, template) pairs held before describing them: bounds the images kept in memory


class TextCacheError(FileNotFoundError):
    """The text cache lacks what was asked for. The message names the template, cache dir and the fix."""


def description_hash(text: str) -> str:
    """Key of a description in the embedding tables."""
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def _embeddings_path(cache_dir: Path, template: str, enc_id: str) -> Path:
    return cache_dir / EMBEDDINGS_DIR / template / f"{safe_name(enc_id)}.safetensors"


def _index_path(cache_dir: Path, template: str, model_id: str) -> Path:
    return cache_dir / EMBEDDINGS_DIR / template / f"index-{safe_name(model_id)}.json"


def read_descriptions(path: Path) -> list[dict[str, str]]:
    """Records of a descriptions JSONL file (empty when it does not exist).

    Raises:
        ValueError: naming the file and line of a malformed record.
    """
    path = Path(path)
    if not path.is_file():
        return []
    records = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}:{n}: not valid JSON ({exc}); delete the file to rebuild it") from None
        if not isinstance(rec, dict) or not {"id", "template", "describer", "model", "text"} <= set(rec):
            raise ValueError(f"{path}:{n}: a record needs id, template, describer, model and text")
        records.append(rec)
    return records


def write_descriptions(path: Path, records: Sequence[Mapping[str, str]]) -> None:
    """Write description records as JSONL, atomically."""
    atomic_write_text(path, "".join(json.dumps(dict(r), sort_keys=True) + "\n" for r in records))


def build_text_cache(cache_dir: Path, items: Iterable[TextItem], text_cfg: TextConfig, context: Mapping[str, str],
                     templates: Sequence[str] | None = None, progress: bool = True, *,
                     device: torch.device | None = None, encoder: TextEncoder | None = None,
                     describer: Describer | None = None) -> dict:
    """Describe every item with every template and cache the descriptions and their embeddings.

    Only what is missing is computed: a rerun over the same items loads neither the describer's model
    nor the encoder. Safe to call from several processes at once (one builds, the others wait and reuse).

    Args:
        cache_dir: the dataset's prepared cache folder.
        items: images with their gaze pseudo-mask regions (never ground truth). Streamed, not held.
        text_cfg: describer, VLM path and encoder.
        context: what the dataset's images show (lesion, modality, organ), for dataset-aware templates and
            VLM prompts: ``fgi.datasets.dataset_context(name)``.
        templates: template names; None means every template of the registry (``fgi/text/templates.yaml``).
        progress: show a progress bar.
        device: where the VLM and the encoder run (default CPU).
        encoder: an already loaded encoder to reuse (it must match ``text_cfg.encoder``).
        describer: an already built describer to reuse (it must match ``text_cfg``).

    Returns:
        A JSON-able manifest section: encoder id and dim, describer and its model id, templates, counts.
    """
    cache_dir = Path(cache_dir)
    tset = load_templates()
    names = list(templates) if templates is not None else tset.names
    chosen = [tset.get(n) for n in names]
    context = check_context(context)
    model_id = describer.model_id if describer is not None else describer_model_id(text_cfg)
    enc_id = encoder.id if encoder is not None else encoder_id(text_cfg)
    cache_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    with FileLock(str(cache_dir / LOCK_FILE)):
        desc_path = cache_dir / DESCRIPTIONS_FILE
        records = read_descriptions(desc_path)
        known = {(r["id"], r["template"], r["describer"], r["model"]): r["text"] for r in records}
        ids: list[str] = []
        pending: list[tuple[TextItem, str]] = []
        computed = 0
        last_flush = time.monotonic()

        def run_pending() -> None:
            nonlocal describer, computed
            if not pending:
                return
            if describer is None:
                describer = make_describer(text_cfg, device)
            texts = describer.describe([(item, tset.get(t)) for item, t in pending], context)
            for (item, t), text in zip(pending, texts, strict=True):
                rec = {"id": item.id, "template": t, "describer": text_cfg.describer, "model": model_id, "text": text}
                records.append(rec)
                known[(item.id, t, text_cfg.describer, model_id)] = text
            computed += len(pending)
            pending.clear()

        iterator: Iterable[TextItem] = items
        if progress:
            from tqdm import tqdm

            iterator = tqdm(items, desc=f"describe ({text_cfg.describer})", unit="img")
        batch = max(1, text_cfg.vlm_batch_size) if text_cfg.describer == "vlm" else _PENDING_PAIRS
        seen: set[str] = set()
        for item in iterator:
            if not isinstance(item, TextItem):
                raise TypeError(f"build_text_cache: items must be TextItem, got {type(item).__name__}")
            if item.id in seen:
                raise ValueError(f"build_text_cache: image id {item.id!r} appears twice")
            seen.add(item.id)
            ids.append(item.id)
            for tpl in chosen:
                if (item.id, tpl.name, text_cfg.describer, model_id) not in known:
                    pending.append((item, tpl.name))
            if len(pending) >= batch:
                run_pending()
                if time.monotonic() - last_flush > _FLUSH_SECONDS:
                    write_descriptions(desc_path, records)
                    last_flush = time.monotonic()
        run_pending()
        if computed:
            write_descriptions(desc_path, records)
        t_describe = time.perf_counter() - t0

        encoded = 0
        unique: dict[str, int] = {}
        for tpl in chosen:
            id_to_hash = {i: description_hash(known[(i, tpl.name, text_cfg.describer, model_id)]) for i in ids}
            hash_to_text = {description_hash(known[(i, tpl.name, text_cfg.describer, model_id)]):
                            known[(i, tpl.name, text_cfg.describer, model_id)] for i in ids}
            emb_path = _embeddings_path(cache_dir, tpl.name, enc_id)
            rows = load_rows(emb_path)
            have = set(rows[0]) if rows is not None else set()
            missing = sorted(h for h in hash_to_text if h not in have)
            if missing:
                if encoder is None:
                    encoder = TextEncoder(text_cfg, device)
                append_rows(emb_path, enc_id, missing, encoder.encode([hash_to_text[h] for h in missing]))
                encoded += len(missing)
            index_path = _index_path(cache_dir, tpl.name, model_id)
            index = {"describer": text_cfg.describer, "model": model_id, "template": tpl.name, "ids": {}}
            if index_path.is_file():
                index = json.loads(index_path.read_text())
            if any(index["ids"].get(i) != h for i, h in id_to_hash.items()):
                index["ids"].update(id_to_hash)
                atomic_write_text(index_path, json.dumps(index, sort_keys=True))
            unique[tpl.name] = len(hash_to_text)
    dim = encoder.dim if encoder is not None else encoder_dim(text_cfg)
    return {
        "encoder": enc_id,
        "encoder_path": str(text_cfg.encoder),
        "dim": dim,
        "describer": text_cfg.describer,
        "describer_model": model_id,
        "context": context,
        "templates": names,
        "items": len(ids),
        "descriptions_computed": computed,
        "descriptions_total": len(ids) * len(names),
        "embeddings_computed": encoded,
        "unique_descriptions": unique,
        "seconds": round(time.perf_counter() - t0, 3),
        "seconds_describe": round(t_describe, 3),
    }


def _pick_index(cache_dir: Path, template: str, text_cfg: TextConfig) -> Path:
    folder = cache_dir / EMBEDDINGS_DIR / template
    try:
        return _index_path(cache_dir, template, describer_model_id(text_cfg))
    except DescriberError:
        # The VLM folder is absent on this machine (trials never need it): use the one VLM index there is.
        found = []
        for p in sorted(folder.glob("index-*.json")):
            if json.loads(p.read_text()).get("describer") == text_cfg.describer:
                found.append(p)
        if len(found) == 1:
            return found[0]
        raise


def open_embeddings(cache_dir: Path, template: str, text_cfg: TextConfig) -> EmbeddingTable:
    """Open the cached embeddings of ``template`` for lookups (the encoder is never loaded).

    Args:
        cache_dir: the dataset's prepared cache folder.
        template: template name (``text.template``).
        text_cfg: describer, encoder and ``max_tokens`` pick the table and the padded length.

    Raises:
        TemplateError: the template name is unknown (the message lists the valid names).
        TextCacheError: the cache has no embeddings for this template, describer or encoder.
    """
    cache_dir = Path(cache_dir)
    get_template(template)
    folder = cache_dir / EMBEDDINGS_DIR / template
    if not folder.is_dir():
        raise TextCacheError(
            f"no text embeddings for template {template!r} in cache dir {cache_dir}; build them with {PREPARE_HINT}"
        )
    index_path = _pick_index(cache_dir, template, text_cfg)
    enc_id = encoder_id(text_cfg)
    emb_path = _embeddings_path(cache_dir, template, enc_id)
    if not index_path.is_file() or not emb_path.is_file():
        missing = index_path if not index_path.is_file() else emb_path
        raise TextCacheError(
            f"template {template!r} in cache dir {cache_dir} has no embeddings for describer "
            f"{text_cfg.describer!r} and encoder {enc_id!r} ({missing.name} is missing); build them with {PREPARE_HINT}"
        )
    index = json.loads(index_path.read_text())
    rows = load_rows(emb_path)
    if rows is None:
        raise TextCacheError(f"{emb_path}: removed while opening it; rerun {PREPARE_HINT}")
    hashes, pooled, tokens, offsets = rows
    row_of = {h: r for r, h in enumerate(hashes)}
    ids: dict[str, int] = {}
    for image_id, h in index["ids"].items():
        if h not in row_of:
            raise TextCacheError(
                f"{emb_path}: the description of image {image_id!r} (template {template!r}) has no embedding; "
                f"rerun {PREPARE_HINT}"
            )
        ids[image_id] = row_of[h]
    return EmbeddingTable(template, ids, pooled, tokens, offsets, text_cfg.max_tokens, emb_path)


def load_descriptions(cache_dir: Path, template: str, text_cfg: TextConfig) -> dict[str, str]:
    """Cached descriptions of one template and describer, by image id (for captions and ``fgi describe``).

    Raises:
        TextCacheError: when the cache has no descriptions for them.
    """
    cache_dir = Path(cache_dir)
    get_template(template)
    path = cache_dir / DESCRIPTIONS_FILE
    index_path = _pick_index(cache_dir, template, text_cfg) if (cache_dir / EMBEDDINGS_DIR / template).is_dir() else None
    model_id = json.loads(index_path.read_text())["model"] if index_path and index_path.is_file() else None
    out = {r["id"]: r["text"] for r in read_descriptions(path)
           if r["template"] == template and r["describer"] == text_cfg.describer and (model_id is None or r["model"] == model_id)}
    if not out:
        raise TextCacheError(
            f"no {text_cfg.describer!r} descriptions for template {template!r} in {path}; build them with {PREPARE_HINT}"
        )
    return out


def cache_ready(cache_dir: Path, templates: Sequence[str], text_cfg: TextConfig) -> bool:
    """True when every template has an index and an embeddings file for this describer and encoder."""
    try:
        for t in templates:
            open_embeddings(cache_dir, t, text_cfg)
    except (TextCacheError, DescriberError, KeyError):
        return False
    return True


__all__ = [
    "DESCRIPTIONS_FILE", "EMBEDDINGS_DIR", "TextCacheError", "build_text_cache", "cache_ready", "description_hash",
    "load_descriptions", "open_embeddings", "read_descriptions", "write_descriptions",
]

