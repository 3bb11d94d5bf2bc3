from __future__ import annotations

import json
import re

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


def _encoder_folder(folder, config: dict, weight_bytes: int):
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "model.safetensors").write_bytes(b"\0" * weight_bytes)
    return folder


def test_encoder_id_follows_config_and_weights_not_location(tmp_path):
    assert re.fullmatch(r"minilm-[0-9a-f]{12}", encoder_id(TextConfig()))
    config = json.loads((resolve_encoder_path("minilm") / "config.json").read_text())
    config["hidden_size"] = 96
    a = _encoder_folder(tmp_path / "a" / "my encoder", config, 10)
    b = _encoder_folder(tmp_path / "b" / "my encoder", config, 10)
    assert encoder_dim(TextConfig(encoder=str(a))) == 96
    id_a = encoder_id(TextConfig(encoder=str(a)))
    assert id_a.startswith("my_encoder-") and id_a != encoder_id(TextConfig())
    # the same model in another place is the same encoder, so a moved cache stays valid
    assert encoder_id(TextConfig(encoder=str(b))) == id_a
    (a / "README.md").write_text("notes")  # files other than config and weights do not matter
    assert encoder_id(TextConfig(encoder=str(a))) == id_a
    # retrained weights (another size) or another config are another encoder
    (b / "model.safetensors").write_bytes(b"\0" * 11)
    assert encoder_id(TextConfig(encoder=str(b))) != id_a
    config["num_hidden_layers"] = 1
    (a / "config.json").write_text(json.dumps(config))
    assert encoder_id(TextConfig(encoder=str(a))) != id_a


def test_missing_encoder_path_is_named(tmp_path):
    with pytest.raises(EncoderError, match=str(tmp_path / "nope")):
        encoder_dim(TextConfig(encoder=str(tmp_path / "nope")))
    with pytest.raises(EncoderError, match="config.json"):
        TextEncoder(TextConfig(encoder=str(tmp_path)))
