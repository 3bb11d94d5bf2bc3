from __future__ import annotations

import torch
from torch.utils.data import DataLoader

from fgi.config import override
from fgi.data.dataset import build_datasets, ensure_prepared
from fgi.data.prepare import load_manifest
from tests.data.conftest import config


def test_text_embeddings_pooled_and_tokens(tmp_path):
    cfg = config(synthetic_train=3, synthetic_val=2, synthetic_test=1, cache_dir=str(tmp_path / "cache"))
    cfg = override(cfg, {"text.mode": "pooled"})
    cache = ensure_prepared(cfg, workers=1)
    m = load_manifest(cache)
    assert m["text"] is not None and (cache / "descriptions.jsonl").is_file()
    batch = next(iter(DataLoader(build_datasets(cfg, seed=0)["train"], batch_size=3)))
    assert batch["text"].shape == (3, cfg.text.dim) and batch["text"].dtype == torch.float32
    assert not torch.equal(batch["text"][0], torch.zeros_like(batch["text"][0]))
    tok_cfg = override(cfg, {"text.mode": "tokens"})
    assert ensure_prepared(tok_cfg) == cache
    b = next(iter(DataLoader(build_datasets(tok_cfg, seed=0)["val"], batch_size=2)))
    L = b["text"].shape[1]
    assert b["text"].shape == (2, L, cfg.text.dim) and b["text_mask"].shape == (2, L) and b["text_mask"].dtype == torch.bool
    assert b["text_mask"][:, 0].all()
