from __future__ import annotations

import json

import pytest
import torch

from fgi.config import TextConfig
from fgi.text.encode import EncoderError, TextEncoder, encoder_dim, encoder_id, resolve_encoder_path

TEXTS = ["A small round polyp in the upper left region with smooth margins.",
         "irregular, irregular-bordered, heterogeneous",
         "central, large, about 40% of the image"]


def test_dimension_comes_from_the_encoder_config(minilm):
    assert encoder_dim(TextConfig()) == 384 == minilm.dim
    out = minilm.encode(TEXTS)
    assert out.pooled.shape == (3, 384) and out.pooled.dtype == torch.float32
    assert [t.shape[1] for t in out.tokens] == [384] * 3


def test_embeddings_are_deterministic_and_batch_independent(minilm):
    a = minilm.encode(TEXTS)
    b = minilm.encode(TEXTS)
    assert torch.equal(a.pooled, b.pooled)
    c = minilm.encode(TEXTS, batch_size=1)
    assert torch.allclose(a.pooled, c.pooled, atol=1e-5)
    for x, y in zip(a.tokens, c.tokens, strict=True):
        assert x.shape == y.shape and torch.allclose(x, y, atol=1e-4)


def test_pooled_is_normalised_and_tokens_are_the_valid_ones(minilm):
    out = minilm.encode(TEXTS)
    assert torch.allclose(out.pooled.norm(dim=1), torch.ones(3), atol=1e-5)
    lengths = [len(minilm.tokenizer(t)["input_ids"]) for t in TEXTS]
    assert [t.shape[0] for t in out.tokens] == lengths
    sims = out.pooled @ out.pooled.T
    assert sims[0, 1] < 0.99 and sims[0, 2] < 0.99


def test_encoder_id_is_stable_and_path_encoders_work(tmp_path):
    assert encoder_id(TextConfig()) == encoder_id(TextConfig())
    folder = resolve_encoder_path("minilm")
    assert (folder / "config.json").is_file()
    # a local folder with another config is another encoder
    copy = tmp_path / "my-encoder"
    copy.mkdir()
    cfg = json.loads((folder / "config.json").read_text())
    cfg["hidden_size"] = 96
    (copy / "config.json").write_text(json.dumps(cfg))
    assert encoder_dim(TextConfig(encoder=str(copy))) == 96
    assert encoder_id(TextConfig(encoder=str(copy))).startswith("my-encoder-")
    assert encoder_id(TextConfig(encoder=str(copy))) != encoder_id(TextConfig())


def test_missing_encoder_path_is_named(tmp_path):
    with pytest.raises(EncoderError, match=str(tmp_path / "nope")):
        encoder_dim(TextConfig(encoder=str(tmp_path / "nope")))
    with pytest.raises(EncoderError, match="config.json"):
        TextEncoder(TextConfig(encoder=str(tmp_path)))
