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
from collections.abc import Iterable, Sequence
from pathlib import Path

import torch
from filelock import FileLock

from fgi.config import TextConfig, atomic_write_bytes, atomic_write_text
from fgi.text.describe import (
    Describer,
    DescriberError,
    TextItem,
    describer_model_id,
    make_describer,
    read_descriptions,
    write_descriptions,
)
from fgi.text.encode import TextEncoder, encoder_dim, encoder_id
from fgi.text.templates import load_templates

DESCRIPTIONS_FILE = "descriptions.jsonl"
EMBEDDINGS_DIR = "embeddings"
LOCK_FILE = ".text-cache.lock"
PREPARE_HINT = "fgi prepare ... (it describes and embeds every template the search space can choose)"
_FLUSH_SECONDS = 30.0  # rewrite descriptions.jsonl at most this often during long VLM runs, so a crash loses little
_PENDING_PAIRS = 256  # (item, template) pairs held before describing them: bounds the images kept in memory


class TextCacheError(FileNotFoundError):
    """The text cache lacks what was asked for. The message names the template, cache dir and the fix."""


def description_hash(text: str) -> str:
    """Key of a description in the embedding tables."""
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


def _embeddings_path(cache_dir: Path, template: str, enc_id: str) -> Path:
    return cache_dir / EMBEDDINGS_DIR / template / f"{_safe(enc_id)}.safetensors"


def _index_path(cache_dir: Path, template: str, model_id: str) -> Path:
    return cache_dir / EMBEDDINGS_DIR / template / f"index-{_safe(model_id)}.json"


def _load_rows(path: Path) -> tuple[list[str], torch.Tensor, torch.Tensor, torch.Tensor] | None:
    """Hashes, pooled (R, D), tokens (T, D) and offsets (R + 1) of an embeddings file, or None if absent."""
    from safetensors import safe_open

    if not path.is_file():
        return None
    with safe_open(str(path), framework="pt") as fh:
        meta = fh.metadata() or {}
        hashes = json.loads(meta["hashes"])
        return hashes, fh.get_tensor("pooled"), fh.get_tensor("tokens"), fh.get_tensor("offsets")


def _save_rows(path: Path, enc_id: str, hashes: list[str], pooled: torch.Tensor, tokens: torch.Tensor,
               offsets: torch.Tensor) -> None:
    from safetensors.torch import save

    meta = {"hashes": json.dumps(hashes), "encoder": enc_id, "dim": str(pooled.shape[1])}
    data = save({"pooled": pooled.contiguous(), "tokens": tokens.contiguous(), "offsets": offsets.contiguous()}, meta)
    atomic_write_bytes(path, data)


def build_text_cache(cache_dir: Path, items: Iterable[TextItem], text_cfg: TextConfig, dataset: str,
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
        dataset: dataset registry name, for dataset-aware templates and VLM prompts.
        templates: template names; None means every template in ``search_spaces/templates.yaml``.
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
    context = tset.context(dataset)
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
            rows = _load_rows(emb_path)
            have = set(rows[0]) if rows is not None else set()
            missing = sorted(h for h in hash_to_text if h not in have)
            if missing:
                if encoder is None:
                    encoder = TextEncoder(text_cfg, device)
                out = encoder.encode([hash_to_text[h] for h in missing])
                new_pooled = out.pooled.half()
                new_tokens = torch.cat(out.tokens).half() if out.tokens else torch.zeros(0, encoder.dim, dtype=torch.float16)
                lengths = torch.tensor([t.shape[0] for t in out.tokens], dtype=torch.int64)
                if rows is None:
                    hashes, pooled, tokens, offsets = missing, new_pooled, new_tokens, torch.cat(
                        [torch.zeros(1, dtype=torch.int64), lengths.cumsum(0)])
                else:
                    old_h, old_p, old_t, old_o = rows
                    hashes = old_h + missing
                    pooled = torch.cat([old_p, new_pooled])
                    tokens = torch.cat([old_t, new_tokens])
                    offsets = torch.cat([old_o, old_o[-1] + lengths.cumsum(0)])
                _save_rows(emb_path, enc_id, hashes, pooled, tokens, offsets)
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
        "dataset": dataset,
        "templates": names,
        "items": len(ids),
        "descriptions_computed": computed,
        "descriptions_total": len(ids) * len(names),
        "embeddings_computed": encoded,
        "unique_descriptions": unique,
        "seconds": round(time.perf_counter() - t0, 3),
        "seconds_describe": round(t_describe, 3),
    }


class EmbeddingTable:
    """Read-only text embeddings of one template, looked up by image id. Never loads the encoder.

    Args:
        template: the template name.
        ids: image id -> row.
        pooled: (R, D) fp16 rows.
        tokens: (T, D) fp16 valid tokens of all rows, concatenated.
        offsets: (R + 1,) start of each row's tokens.
        max_tokens: L, the padded token length returned by ``tokens``.
        source: the cache file, for error messages.
    """

    def __init__(self, template: str, ids: dict[str, int], pooled: torch.Tensor, tokens: torch.Tensor,
                 offsets: torch.Tensor, max_tokens: int, source: Path) -> None:
        self.template = template
        self._ids = ids
        self._pooled = pooled
        self._tokens = tokens
        self._offsets = offsets
        self.max_tokens = int(max_tokens)
        self.source = source

    @property
    def dim(self) -> int:
        """Embedding width D."""
        return int(self._pooled.shape[1])

    @property
    def ids(self) -> list[str]:
        """Image ids this table covers."""
        return list(self._ids)

    def __len__(self) -> int:
        return len(self._ids)

    def __contains__(self, image_id: object) -> bool:
        return image_id in self._ids

    def _row(self, image_id: str) -> int:
        try:
            return self._ids[image_id]
        except KeyError:
            raise KeyError(
                f"image id {image_id!r} has no text embedding for template {self.template!r} in {self.source}; "
                f"rerun {PREPARE_HINT}"
            ) from None

    def pooled(self, image_id: str) -> torch.Tensor:
        """The mean-pooled embedding of an image's description.

        Shape:
            (D,) float32.
        """
        return self._pooled[self._row(image_id)].float()

    def tokens(self, image_id: str) -> tuple[torch.Tensor, torch.Tensor]:
        """Token embeddings, truncated or zero-padded to ``max_tokens``, and their validity mask.

        Shape:
            (L, D) float32 and (L,) bool, True for a real token; L = ``text.max_tokens``.
        """
        r = self._row(image_id)
        start, stop = int(self._offsets[r]), int(self._offsets[r + 1])
        n = min(stop - start, self.max_tokens)
        out = torch.zeros(self.max_tokens, self.dim)
        out[:n] = self._tokens[start:start + n].float()
        mask = torch.zeros(self.max_tokens, dtype=torch.bool)
        mask[:n] = True
        return out, mask

    def pooled_batch(self, image_ids: Sequence[str]) -> torch.Tensor:
        """Stacked ``pooled``. Shape: (B, D) float32."""
        return torch.stack([self.pooled(i) for i in image_ids])

    def tokens_batch(self, image_ids: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Stacked ``tokens``. Shape: (B, L, D) float32 and (B, L) bool."""
        pairs = [self.tokens(i) for i in image_ids]
        return torch.stack([p[0] for p in pairs]), torch.stack([p[1] for p in pairs])


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
    load_templates().get(template)
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
    rows = _load_rows(emb_path)
    assert rows is not None
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
    load_templates().get(template)
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
    "DESCRIPTIONS_FILE", "EMBEDDINGS_DIR", "EmbeddingTable", "TextCacheError", "TextItem", "build_text_cache",
    "cache_ready", "description_hash", "encoder_dim", "load_descriptions", "open_embeddings",
]

