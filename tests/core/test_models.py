from __future__ import annotations

import pytest
import torch

from fgi.models import Student, Teacher, UNet
from fgi.models.fusion import CrossAttentionFusion
from fgi.models.unet import ProjectionBlock

WIDTHS = (8, 16, 16, 32)
STUDENT_WIDTHS = (8, 8, 16, 16)
TEXT_DIM = 12


def _teacher(text_mode: str = "tokens", fusion_skip: bool = True, in_channels: int = 3) -> Teacher:
    return Teacher(in_channels=in_channels, widths=WIDTHS, text_dim=TEXT_DIM, fusion_scales=(1, 2, 3), align_scales=(1, 2, 3), heads=2,
                   dropout=0.0, text_mode=text_mode, norm_groups=4, fusion_skip=fusion_skip)


def _student(adapter: str = "projection", in_channels: int = 3) -> Student:
    return Student(in_channels=in_channels, widths=STUDENT_WIDTHS, teacher_widths=WIDTHS, align_scales=(1, 2, 3), norm_groups=4, adapter=adapter)


def _tokens(b: int, length: int, valid: int, dim: int = TEXT_DIM) -> tuple[torch.Tensor, torch.Tensor]:
    text = torch.randn(b, length, dim, generator=torch.Generator().manual_seed(7))
    mask = torch.zeros(b, length, dtype=torch.bool)
    mask[:, :valid] = True
    return text, mask


def _qk_grad_norms(fusion: CrossAttentionFusion) -> tuple[float, float]:
    attn = fusion.attn
    if attn.in_proj_weight is not None:
        q, k, _ = attn.in_proj_weight.grad.chunk(3)
    else:
        q, k = attn.q_proj_weight.grad, attn.k_proj_weight.grad
    return float(q.norm()), float(k.norm())


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("size", [(32, 32), (40, 24), (33, 47)])
def test_unet_shapes_any_size_and_batch_one(channels, size):
    net = UNet(in_channels=channels, widths=(8, 16, 32), norm_groups=4)
    x = torch.randn(1, channels, *size, requires_grad=True)
    y = net(x)
    assert y.shape == (1, 1, *size)
    y.sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()


@pytest.mark.parametrize("fusion_skip", [True, False])
@pytest.mark.parametrize("mode", ["pooled", "tokens", "none"])
def test_teacher_shapes_and_gradients(mode, fusion_skip):
    teacher = _teacher(mode, fusion_skip)
    image = torch.randn(2, 3, 32, 32)
    text = mask = None
    if mode == "pooled":
        text = torch.randn(2, TEXT_DIM)
    elif mode == "tokens":
        text, mask = _tokens(2, 10, 8)
    out = teacher(image, text, mask)
    assert out["logits"].shape == (2, 1, 32, 32)
    assert sorted(out["features"]) == [1, 2, 3]
    assert out["features"][1].shape == (2, WIDTHS[1], 16, 16)
    (out["logits"].mean() + sum(f.mean() for f in out["features"].values())).backward()
    for name, p in teacher.named_parameters():
        assert p.grad is not None, name


@pytest.mark.parametrize("fusion_skip", [True, False])
def test_fusion_query_and_key_projections_learn_from_token_sequences(fusion_skip):
    # with L >= 8 distinct real tokens the attention weights depend on queries and keys, so their
    # projections get a gradient; a single pooled token makes the softmax constant and theirs exactly 0
    teacher = _teacher("tokens", fusion_skip)
    image = torch.randn(2, 3, 32, 32)
    target = (torch.rand(2, 1, 32, 32, generator=torch.Generator().manual_seed(1)) > 0.5).float()
    text, mask = _tokens(2, 12, 9)
    assert torch.unique(text[0, :9], dim=0).shape[0] == 9
    torch.nn.functional.binary_cross_entropy_with_logits(teacher(image, text, mask)["logits"], target).backward()
    for key, fusion in teacher.fusion.items():
        q, k = _qk_grad_norms(fusion)
        assert q > 1e-6 and k > 1e-6, (key, q, k)
    pooled = _teacher("pooled", fusion_skip)
    torch.nn.functional.binary_cross_entropy_with_logits(pooled(image, text[:, 0])["logits"], target).backward()
    assert all(max(_qk_grad_norms(f)) < 1e-6 for f in pooled.fusion.values())


def test_skip_projection_gives_the_aligned_features_and_carries_the_text():
    teacher = _teacher("tokens", fusion_skip=True).eval()
    assert set(teacher.projection) == {"1", "2", "3"}
    assert all(isinstance(p, ProjectionBlock) for p in teacher.projection.values())
    seen = {}
    for key, proj in teacher.projection.items():
        proj.register_forward_hook(lambda _m, _i, out, key=key: seen.__setitem__(int(key), out))
    image = torch.randn(1, 3, 32, 32)
    text, mask = _tokens(1, 10, 8)
    out = teacher(image, text, mask)
    for level, feat in out["features"].items():
        assert torch.equal(feat, seen[level])
    other_text = torch.randn(text.shape, generator=torch.Generator().manual_seed(9))
    other = teacher(image, other_text, mask)["logits"]
    assert not torch.allclose(other, out["logits"], atol=1e-5)
    # the text reaches the decoder only through the projections: zero them and the text stops mattering
    with torch.no_grad():
        for proj in teacher.projection.values():
            proj[-1].weight.zero_()
            proj[-1].bias.zero_()
    base = teacher(image, text, mask)["logits"]
    assert torch.allclose(teacher(image, other_text, mask)["logits"], base, atol=1e-6)
    assert torch.allclose(teacher.unet(image), base, atol=1e-6)


def test_chained_fusion_ablation_has_no_projection_and_aligns_fused_features():
    teacher = _teacher("tokens", fusion_skip=False).eval()
    assert teacher.projection is None
    seen = {}
    teacher.fusion["2"].register_forward_hook(lambda _m, _i, out: seen.__setitem__(2, out))
    text, mask = _tokens(1, 10, 8)
    out = teacher(torch.randn(1, 3, 32, 32), text, mask)
    assert torch.equal(out["features"][2], seen[2])


def test_teacher_uses_text_and_ignores_padding():
    teacher = _teacher("tokens").eval()
    image = torch.randn(1, 3, 32, 32)
    text, mask = _tokens(1, 10, 8)
    base = teacher(image, text, mask)["logits"]
    changed_pad = text.clone()
    changed_pad[:, 8:] = 100.0
    assert torch.allclose(teacher(image, changed_pad, mask)["logits"], base, atol=1e-5)
    changed_valid = text.clone()
    changed_valid[:, 0] = torch.randn(TEXT_DIM)
    assert not torch.allclose(teacher(image, changed_valid, mask)["logits"], base, atol=1e-5)


def test_teacher_argument_errors():
    with pytest.raises(ValueError, match="text embeddings are required"):
        _teacher("pooled")(torch.randn(1, 3, 32, 32))
    with pytest.raises(ValueError, match="valid modes"):
        _teacher("sentence")
    with pytest.raises(ValueError, match=r"levels \[5\] do not exist"):
        Teacher(in_channels=3, widths=WIDTHS, text_dim=TEXT_DIM, fusion_scales=(5,), align_scales=(1,), heads=2,
                dropout=0.0, text_mode="tokens", norm_groups=4, fusion_skip=True)


def test_fusion_works_at_any_resolution():
    fusion = CrossAttentionFusion(channels=16, text_dim=12, heads=2, dropout=0.0)
    for h, w in [(4, 4), (7, 9), (16, 12)]:
        x = torch.randn(2, 16, h, w)
        assert fusion(x, torch.randn(2, 1, 12)).shape == x.shape


@pytest.mark.parametrize("adapter", ["projection", "linear"])
def test_student_is_narrower_and_adapts_to_teacher_widths(adapter):
    student, teacher = _student(adapter), _teacher()
    assert sum(p.numel() for p in student.parameters()) < sum(p.numel() for p in teacher.parameters())
    out = student(torch.randn(1, 3, 32, 32))
    assert out["logits"].shape == (1, 1, 32, 32)
    for level, feat in out["features"].items():
        assert feat.shape[1] == WIDTHS[level]
    if adapter == "projection":
        # the reference adapter ends in a ReLU
        assert all(f.min() >= 0 for f in out["features"].values())
        assert isinstance(student.adapters["1"][0], ProjectionBlock)
    else:
        assert isinstance(student.adapters["1"], torch.nn.Conv2d)
    sum(f.mean() for f in out["features"].values()).backward()
    assert all(p.grad is not None for p in student.adapters.parameters())


def test_student_argument_errors():
    with pytest.raises(ValueError, match="valid adapters"):
        Student(in_channels=3, widths=STUDENT_WIDTHS, teacher_widths=WIDTHS, align_scales=(1,), norm_groups=4,
                adapter="mlp")
    with pytest.raises(ValueError, match="teacher widths"):
        Student(in_channels=3, widths=STUDENT_WIDTHS, teacher_widths=WIDTHS[:3], align_scales=(1,), norm_groups=4)


def test_single_channel_input():
    assert _student(in_channels=1)(torch.randn(1, 1, 32, 32))["logits"].shape == (1, 1, 32, 32)
    teacher = _teacher("pooled", in_channels=1)
    assert teacher(torch.randn(1, 1, 32, 32), torch.randn(1, TEXT_DIM))["logits"].shape == (1, 1, 32, 32)


def test_models_do_not_import_the_config():
    import fgi.models.fusion
    import fgi.models.student
    import fgi.models.teacher
    import fgi.models.unet

    for module in (fgi.models.fusion, fgi.models.student, fgi.models.teacher, fgi.models.unet):
        source = open(module.__file__).read()
        assert "fgi.config" not in source, module.__name__
