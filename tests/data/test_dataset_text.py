from __future__ import annotations

import torch
from torch.utils.data import DataLoader

from fgi.config import override
from fgi.data.cache import load_manifest
from fgi.data.dataset import build_datasets, ensure_prepared
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


def test_overlays_are_captioned_with_the_description(tmp_path, monkeypatch):
    import fgi.viz
    from fgi.data.prepare import prepare_cache
    from fgi.text.cache import load_descriptions

    seen = {}
    real = fgi.viz.weak_label_figure

    def spy(*args, **kwargs):
        seen[kwargs["title"]] = kwargs["caption"]
        return real(*args, **kwargs)

    monkeypatch.setattr(fgi.viz, "weak_label_figure", spy)
    cfg = config(synthetic_train=2, synthetic_val=1, synthetic_test=1)
    cache = tmp_path / "cache"
    prepare_cache(cfg, cache, workers=1, progress=False, text=True, overlays=2)
    descriptions = load_descriptions(cache, cfg.text.template, cfg.text)
    assert len(seen) == 2
    for item_id, caption in seen.items():
        assert caption == f"{cfg.text.template}: {descriptions[item_id]}"
    assert len(list((cache / "overlays").glob("*.png"))) == 2


def test_caption_makes_the_figure_taller():
    import io

    import numpy as np
    from PIL import Image

    from fgi.viz import weak_label_figure

    img = np.zeros((16, 16, 3), np.uint8)
    soft = np.zeros((16, 16), np.float32)
    plain = Image.open(io.BytesIO(weak_label_figure(img, soft, soft, 0.5, 0.3, None)))
    captioned = Image.open(io.BytesIO(weak_label_figure(img, soft, soft, 0.5, 0.3, None, caption="a round polyp " * 30)))
    assert captioned.size[0] == plain.size[0] and captioned.size[1] > plain.size[1]
