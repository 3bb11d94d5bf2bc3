"""The VLM describer on a real code path: a tiny random LLaVA saved to disk and loaded back by path."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import fgi.text.cache as text_cache
from fgi.config import TextConfig
from fgi.datasets import dataset_context
from fgi.text.cache import build_text_cache, load_descriptions, open_embeddings, read_descriptions
from fgi.text.describe import describer_model_id
from fgi.text.items import TextItem
from fgi.text.templates import get_template
from fgi.text.vlm import VLMDescriber

WORDS = ("the a lesion polyp is in upper lower left right central round oval irregular smooth red pale small "
         "large image describe margin texture colour location").split()
CHAT = ("{% for m in messages %}USER: {% for c in m['content'] %}{% if c['type'] == 'image' %}<image> "
        "{% else %}{{ c['text'] }}{% endif %}{% endfor %}{% endfor %}{% if add_generation_prompt %} ASSISTANT:{% endif %}")


@pytest.fixture(scope="module")
def tiny_vlm(tmp_path_factory) -> Path:
    """A randomly initialised LLaVA (CLIP vision tower, one-layer Llama) with a tokenizer built offline."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import (
        CLIPImageProcessor,
        CLIPVisionConfig,
        LlamaConfig,
        LlavaConfig,
        LlavaForConditionalGeneration,
        LlavaProcessor,
        PreTrainedTokenizerFast,
    )

    specials = ["<pad>", "<unk>", "<s>", "</s>", "<image>"]
    vocab = {w: i for i, w in enumerate(specials + WORDS)}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, bos_token="<s>", eos_token="</s>",
                                        pad_token="<pad>", unk_token="<unk>", extra_special_tokens=["<image>"])
    image_processor = CLIPImageProcessor(size={"shortest_edge": 28}, crop_size={"height": 28, "width": 28})
    processor = LlavaProcessor(image_processor=image_processor, tokenizer=tokenizer, patch_size=14,
                               vision_feature_select_strategy="default", num_additional_image_tokens=1,
                               chat_template=CHAT)
    config = LlavaConfig(
        vision_config=CLIPVisionConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                       num_attention_heads=2, image_size=28, patch_size=14),
        text_config=LlamaConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
                                num_key_value_heads=2, vocab_size=len(vocab), pad_token_id=0, bos_token_id=2,
                                eos_token_id=3, max_position_embeddings=256),
        image_token_index=vocab["<image>"], vision_feature_select_strategy="default", vision_feature_layer=-1,
    )
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("tiny-llava")
    LlavaForConditionalGeneration(config).save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


def _items(n: int) -> list[TextItem]:
    rng = np.random.default_rng(0)
    out = []
    for k in range(n):
        channels = 1 if k == 1 else 3  # one MRI-like single-channel image goes through the same path
        out.append(TextItem(f"img-{k}", rng.integers(0, 256, (40 + k, 50, channels), dtype=np.uint8),
                            np.ones((40 + k, 50), bool)))
    return out


def test_tiny_vlm_describes_in_batches_and_caches(tmp_path, tiny_vlm, minilm, monkeypatch):
    cfg = TextConfig(describer="vlm", vlm_path=str(tiny_vlm), vlm_max_new_tokens=6, vlm_batch_size=2)
    describer = VLMDescriber(cfg, torch.device("cpu"))
    calls: list[int] = []
    generate = describer.model.generate

    def counting_generate(**kwargs):
        calls.append(kwargs["input_ids"].shape[0])
        out = generate(**kwargs)
        assert out.shape[1] - kwargs["input_ids"].shape[1] <= 6
        return out

    monkeypatch.setattr(describer.model, "generate", counting_generate)
    items = _items(3)
    manifest = build_text_cache(tmp_path, items, cfg, dataset_context("kvasir"), templates=["structured", "clinical"], progress=False,
                                encoder=minilm, describer=describer)
    assert calls == [2, 2, 2]  # 3 images x 2 templates, two per generate call
    assert manifest["descriptions_computed"] == 6 and manifest["describer_model"] == describer_model_id(cfg)
    texts = load_descriptions(tmp_path, "structured", cfg)
    assert set(texts) == {i.id for i in items}
    assert all(set(t.split()) <= set(WORDS) for t in texts.values())  # decoded from the tiny vocabulary
    records = read_descriptions(tmp_path / "descriptions.jsonl")
    assert {r["describer"] for r in records} == {"vlm"} and {r["model"] for r in records} == {describer.model_id}

    # greedy decoding is deterministic: describing again gives the same answers
    again = describer.describe([(i, get_template("structured")) for i in items], dataset_context("kvasir"))
    assert again == [texts[i.id] for i in items]

    # a rerun neither loads the VLM nor generates
    def boom(*args, **kwargs):
        raise AssertionError("cached rerun loaded a model")

    monkeypatch.setattr(text_cache, "make_describer", boom)
    monkeypatch.setattr(text_cache, "TextEncoder", boom)
    calls.clear()
    rerun = build_text_cache(tmp_path, items, cfg, dataset_context("kvasir"), templates=["structured", "clinical"], progress=False)
    assert rerun["descriptions_computed"] == 0 and calls == []
    table = open_embeddings(tmp_path, "clinical", cfg)
    assert table.pooled("img-0").shape == (384,)


def test_vlm_describer_is_built_from_the_config(tmp_path, tiny_vlm, minilm):
    cfg = TextConfig(describer="vlm", vlm_path=str(tiny_vlm), vlm_max_new_tokens=3, vlm_batch_size=4)
    manifest = build_text_cache(tmp_path, _items(2), cfg, dataset_context("isic"), templates=["morphology"], progress=False,
                                device=torch.device("cpu"), encoder=minilm)
    assert manifest["descriptions_computed"] == 2 and manifest["describer"] == "vlm"
    # a different answer-length cap is a different describer model: nothing is reused across them
    longer = TextConfig(describer="vlm", vlm_path=str(tiny_vlm), vlm_max_new_tokens=4)
    assert describer_model_id(longer) != describer_model_id(cfg)
