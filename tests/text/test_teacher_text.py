"""The teacher trains end to end on cached embeddings of every template (pooled and token modes)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fgi.config import TextConfig, from_dict
from fgi.datasets import dataset_context
from fgi.models.teacher import Teacher
from fgi.text.cache import build_text_cache, open_embeddings
from fgi.text.encode import encoder_dim
from fgi.text.templates import template_names

SIZE = 32


@pytest.fixture(scope="module")
def cache(tmp_path_factory, gaze_items, minilm):
    folder = tmp_path_factory.mktemp("text-cache")
    items = gaze_items(4, size=SIZE)
    build_text_cache(folder, items, TextConfig(), dataset_context("synthetic"), progress=False, encoder=minilm)
    image = torch.from_numpy(np.stack([i.image for i in items])).permute(0, 3, 1, 2).float() / 127.5 - 1.0
    target = torch.from_numpy(np.stack([i.region for i in items]))[:, None].float()
    return folder, [i.id for i in items], image, target


def _teacher(cfg) -> Teacher:
    torch.manual_seed(0)
    m = cfg.model
    return Teacher(in_channels=cfg.data.in_channels, widths=m.teacher_widths, text_dim=cfg.text.dim,
                   fusion_scales=m.fusion_scales, align_scales=cfg.loss.align_scales, heads=m.attn_heads,
                   dropout=m.dropout, text_mode=cfg.text.mode, norm_groups=m.norm_groups, fusion_skip=m.fusion_skip)


def _config(mode: str, template: str):
    return from_dict({
        "data": {"image_size": SIZE},
        "model": {"teacher_widths": [8, 16, 16], "student_widths": [8, 8, 16], "norm_groups": 4,
                  "fusion_scales": [1, 2], "attn_heads": 2},
        "loss": {"align_scales": [1, 2]},
        "text": {"mode": mode, "template": template, "dim": encoder_dim(TextConfig()), "max_tokens": 24},
    })


@pytest.mark.parametrize("mode", ["pooled", "tokens"])
@pytest.mark.parametrize("template", template_names())
def test_teacher_trains_on_every_template(cache, template, mode):
    folder, ids, image, target = cache
    cfg = _config(mode, template)
    table = open_embeddings(folder, cfg.text.template, cfg.text)
    assert table.dim == cfg.text.dim == 384
    if mode == "pooled":
        text, text_mask = table.pooled_batch(ids), None
    else:
        text, text_mask = table.tokens_batch(ids)
        assert text.shape == (4, 24, 384) and int(text_mask.sum(1).min()) >= 8
    teacher = _teacher(cfg)
    opt = torch.optim.Adam(teacher.parameters(), lr=3e-3)
    fusion = {n: p.detach().clone() for n, p in teacher.named_parameters() if n.startswith("fusion")}
    losses = []
    for _ in range(4):
        logits = teacher(image, text, text_mask)["logits"]
        assert logits.shape == (4, 1, SIZE, SIZE)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, target)
        opt.zero_grad()
        loss.backward()
        if mode == "tokens":  # real token sequences train the attention's query and key projections
            for fusion_module in teacher.fusion.values():
                attn = fusion_module.attn
                q, k = (attn.q_proj_weight.grad, attn.k_proj_weight.grad) if attn.in_proj_weight is None \
                    else attn.in_proj_weight.grad.chunk(3)[:2]
                assert float(q.norm()) > 1e-6 and float(k.norm()) > 1e-6
        opt.step()
        losses.append(loss.item())
    assert all(np.isfinite(losses)) and losses[-1] < losses[0]
    assert any(not torch.equal(p, fusion[n]) for n, p in teacher.named_parameters() if n in fusion)


def test_no_text_ablation_trains_through_the_null_token(cache):
    _, _, image, target = cache
    cfg = _config("none", "structured")
    teacher = _teacher(cfg)
    opt = torch.optim.Adam(teacher.parameters(), lr=3e-3)
    start = teacher.null_text.detach().clone()
    for _ in range(3):
        loss = torch.nn.functional.binary_cross_entropy_with_logits(teacher(image, None, None)["logits"], target)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert not torch.equal(teacher.null_text, start)
