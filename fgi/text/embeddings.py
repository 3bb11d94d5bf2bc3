"""The embedding file of one (template, encoder): fp16 rows keyed by description hash, and lookups by image id.

A file holds pooled (R, D), the concatenated valid tokens (T, D) of all rows and row offsets (R + 1),
with the description hashes of the rows in its metadata. Rows are only ever appended, and every write
is a whole new file renamed into place, so readers without a lock see a whole table.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import torch

from fgi.files import atomic_write_bytes
from fgi.text.encode import Encoded

PREPARE_HINT = "fgi prepare ... (it describes and embeds every template the search space can choose)"


def load_rows(path: Path) -> tuple[list[str], torch.Tensor, torch.Tensor, torch.Tensor] | None:
    """Hashes, pooled (R, D), tokens (T, D) and offsets (R + 1) of an embeddings file, or None if absent."""
    from safetensors import safe_open

    if not path.is_file():
        return None
    with safe_open(str(path), framework="pt") as fh:
        meta = fh.metadata() or {}
        hashes = json.loads(meta["hashes"])
        return hashes, fh.get_tensor("pooled"), fh.get_tensor("tokens"), fh.get_tensor("offsets")


def save_rows(path: Path, enc_id: str, hashes: list[str], pooled: torch.Tensor, tokens: torch.Tensor,
              offsets: torch.Tensor) -> None:
    """Write an embeddings file atomically; ``hashes`` names the rows, in order.

    Shape:
        pooled (R, D), tokens (T, D) and offsets (R + 1,), the start of each row's tokens.
    """
    from safetensors.torch import save

    meta = {"hashes": json.dumps(hashes), "encoder": enc_id, "dim": str(pooled.shape[1])}
    data = save({"pooled": pooled.contiguous(), "tokens": tokens.contiguous(), "offsets": offsets.contiguous()}, meta)
    atomic_write_bytes(path, data)


def append_rows(path: Path, enc_id: str, hashes: list[str], encoded: Encoded) -> None:
    """Add the embeddings of new descriptions to an embeddings file (created when absent), as fp16.

    Args:
        path: the embeddings file.
        enc_id: the encoder's identity (stored in the file's metadata).
        hashes: description hashes of the new rows, in the order of ``encoded``.
        encoded: their embeddings.
    """
    new_pooled = encoded.pooled.half()
    dim = encoded.pooled.shape[1]
    new_tokens = torch.cat(encoded.tokens).half() if encoded.tokens else torch.zeros(0, dim, dtype=torch.float16)
    lengths = torch.tensor([t.shape[0] for t in encoded.tokens], dtype=torch.int64)
    rows = load_rows(path)
    if rows is None:
        save_rows(path, enc_id, hashes, new_pooled, new_tokens,
                  torch.cat([torch.zeros(1, dtype=torch.int64), lengths.cumsum(0)]))
        return
    old_h, old_p, old_t, old_o = rows
    save_rows(path, enc_id, old_h + hashes, torch.cat([old_p, new_pooled]), torch.cat([old_t, new_tokens]),
              torch.cat([old_o, old_o[-1] + lengths.cumsum(0)]))


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


__all__ = ["EmbeddingTable", "PREPARE_HINT", "append_rows", "load_rows", "save_rows"]
