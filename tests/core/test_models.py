from __future__ import annotations

import pytest
import torch

from fgi.models import Student, Teacher, UNet
from fgi.models.fusion import CrossAttentionFusion
from tests.core.helpers import tiny_config


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("size", [(32, 32), (40, 24), (33, 47)])
def test_unet_shapes_any_size_and_batch_one(channels, size):
    net = UNet(channels, (8, 16, 32), groups=4)
    x = torch.randn(1, channels, *size, requires_grad=True)
    y = net(x)
    assert y.shape == (1, 1, *size)
    y.sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()


@pytest.mark.parametrize("mode", ["pooled", "tokens", "none"])
def test_teacher_shapes_and_gradients(mode):
    cfg = tiny_config(text={"mode": mode})
    teacher = Teacher(cfg)
    image = torch.randn(2, 3, 32, 32)
    text = mask = None
    if mode == "pooled":
        text = torch.randn(2, cfg.text.dim)
    elif mode == "tokens":
        text = torch.randn(2, 5, cfg.text.dim)
        mask = torch.tensor([[True, True, False, False, False], [True] * 5])
    out = teacher(image, text, mask)
    assert out["logits"].shape == (2, 1, 32, 32)
    assert sorted(out["features"]) == [1, 2, 3]
    assert out["features"][1].shape == (2, cfg.model.teacher_widths[1], 16, 16)
    out["logits"].mean().backward()
    for name, p in teacher.named_parameters():
        assert p.grad is not None, name


def test_teacher_uses_text_and_ignores_padding():
    cfg = tiny_config(text={"mode": "tokens"})
    teacher = Teacher(cfg).eval()
    image = torch.randn(1, 3, 32, 32)
    text = torch.randn(1, 4, cfg.text.dim)
    mask = torch.tensor([[True, True, False, False]])
    base = teacher(image, text, mask)["logits"]
    changed_pad = text.clone()
    changed_pad[:, 2:] = 100.0
    assert torch.allclose(teacher(image, changed_pad, mask)["logits"], base, atol=1e-5)
    changed_valid = text.clone()
    changed_valid[:, 0] = torch.randn(cfg.text.dim)
    assert not torch.allclose(teacher(image, changed_valid, mask)["logits"], base, atol=1e-5)


def test_teacher_requires_text_unless_mode_none():
    teacher = Teacher(tiny_config(text={"mode": "pooled"}))
    with pytest.raises(ValueError, match="text embeddings are required"):
        teacher(torch.randn(1, 3, 32, 32))


def test_fusion_works_at_any_resolution():
    fusion = CrossAttentionFusion(16, 12, 2, 0.0)
    for h, w in [(4, 4), (7, 9), (16, 12)]:
        x = torch.randn(2, 16, h, w)
        assert fusion(x, torch.randn(2, 1, 12)).shape == x.shape


def test_student_is_narrower_and_adapts_to_teacher_widths():
    cfg = tiny_config()
    student, teacher = Student(cfg), Teacher(cfg)
    assert sum(p.numel() for p in student.parameters()) < sum(p.numel() for p in teacher.parameters())
    out = student(torch.randn(1, 3, 32, 32))
    assert out["logits"].shape == (1, 1, 32, 32)
    for level, feat in out["features"].items():
        assert feat.shape[1] == cfg.model.teacher_widths[level]
    out["logits"].sum().backward()


def test_single_channel_input():
    cfg = tiny_config(data={"in_channels": 1})
    assert Student(cfg)(torch.randn(1, 1, 32, 32))["logits"].shape == (1, 1, 32, 32)
    assert Teacher(cfg)(torch.randn(1, 1, 32, 32), torch.randn(1, cfg.text.dim))["logits"].shape == (1, 1, 32, 32)
