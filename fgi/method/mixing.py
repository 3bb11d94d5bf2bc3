"""CutMix boxes and input noise, vectorized torch with an explicit generator.

Two forms of the consistency inputs (``mix.form``):

- "reference" (FGI ``GazeSupTrainer.cut_mix`` and ``rand_bbox``): each call draws one area ratio
  1 - lam, lam ~ Beta(alpha, alpha), for the whole batch, box sides ``int(side * sqrt(1 - lam))``,
  and per sample an integer centre in [side // 8, side) and a partner; the training step makes two
  independent such mixes, one per model, each of its own noisy copy of the batch.
- "single" (ablation): one box per sample with its own Beta area and a uniform centre, shared by both
  models.
"""

from __future__ import annotations

import torch


def sample_gamma(alpha: float, n: int, generator: torch.Generator, device: torch.device) -> torch.Tensor:
    """Gamma(alpha, 1) draws (Marsaglia-Tsang, vectorized), reproducible from ``generator``.

    ``torch.distributions`` samplers take no generator, hence this small sampler.
    """
    boost = alpha < 1.0
    a = alpha + 1.0 if boost else alpha
    d = a - 1.0 / 3.0
    c = 1.0 / (9.0 * d) ** 0.5
    rounds = 32  # acceptance is above 95% per round, so 32 rounds fail with negligible probability
    x = torch.randn(rounds, n, generator=generator, device=device)
    u = torch.rand(rounds, n, generator=generator, device=device)
    v = (1 + c * x).clamp_min(0) ** 3
    ok = (v > 0) & (torch.log(u.clamp_min(torch.finfo(u.dtype).tiny)) < 0.5 * x * x + d - d * v + d * torch.log(v.clamp_min(torch.finfo(v.dtype).tiny)))
    first = torch.argmax(ok.to(torch.uint8), dim=0)
    g = d * v.gather(0, first[None]).squeeze(0)
    if boost:
        g = g * torch.rand(n, generator=generator, device=device) ** (1.0 / alpha)
    return g


def sample_beta(alpha: float, n: int, generator: torch.Generator, device: torch.device) -> torch.Tensor:
    """Beta(alpha, alpha) draws from two Gamma draws."""
    g1 = sample_gamma(alpha, n, generator, device)
    g2 = sample_gamma(alpha, n, generator, device)
    return g1 / (g1 + g2)


def cutmix_boxes(batch: int, height: int, width: int, prob: float, alpha: float,
                 generator: torch.Generator, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Random CutMix boxes and the partner of each sample (the "single" form).

    Each sample gets, with probability ``prob``, one box whose area ratio is Beta(alpha, alpha) and whose
    centre is uniform; inside the box, content comes from sample ``perm[i]``.

    Shape:
        returns box (B, 1, H, W) bool and perm (B,) long.
    """
    perm = torch.randperm(batch, generator=generator, device=device)
    ratio = sample_beta(alpha, batch, generator, device)
    use = torch.rand(batch, generator=generator, device=device) < prob
    side = ratio.sqrt()
    bh = (side * height).round()
    bw = (side * width).round()
    cy = torch.rand(batch, generator=generator, device=device) * height
    cx = torch.rand(batch, generator=generator, device=device) * width
    ys = torch.arange(height, device=device, dtype=torch.float32)
    xs = torch.arange(width, device=device, dtype=torch.float32)
    in_y = (ys[None] >= (cy - bh / 2)[:, None]) & (ys[None] < (cy + bh / 2)[:, None])
    in_x = (xs[None] >= (cx - bw / 2)[:, None]) & (xs[None] < (cx + bw / 2)[:, None])
    box = in_y[:, :, None] & in_x[:, None, :] & use[:, None, None]
    return box[:, None], perm


# the reference draws box centres from [side // 8, side)
_CENTRE_LOW_FRACTION = 8


def reference_cutmix_boxes(batch: int, height: int, width: int, prob: float, alpha: float,
                           generator: torch.Generator, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """CutMix boxes as the reference draws them: one area for the batch, a centre and partner per sample.

    Args:
        batch: samples.
        height: image height.
        width: image width.
        prob: probability that a sample gets its box (the reference always mixes: 1).
        alpha: Beta(alpha, alpha) parameter of the area.
        generator: seeded generator on ``device``.
        device: where the boxes live.

    Shape:
        returns box (B, 1, H, W) bool and perm (B,) long.
    """
    perm = torch.randperm(batch, generator=generator, device=device)
    cut = float((1 - sample_beta(alpha, 1, generator, device).double()).sqrt())
    cut_h, cut_w = int(height * cut), int(width * cut)
    cy = torch.randint(height // _CENTRE_LOW_FRACTION, height, (batch,), generator=generator, device=device)
    cx = torch.randint(width // _CENTRE_LOW_FRACTION, width, (batch,), generator=generator, device=device)
    use = torch.rand(batch, generator=generator, device=device) < prob
    y0, y1 = (cy - cut_h // 2).clamp(0, height), (cy + cut_h // 2).clamp(0, height)
    x0, x1 = (cx - cut_w // 2).clamp(0, width), (cx + cut_w // 2).clamp(0, width)
    ys = torch.arange(height, device=device)
    xs = torch.arange(width, device=device)
    in_y = (ys[None] >= y0[:, None]) & (ys[None] < y1[:, None])
    in_x = (xs[None] >= x0[:, None]) & (xs[None] < x1[:, None])
    box = in_y[:, :, None] & in_x[:, None, :] & use[:, None, None]
    return box[:, None], perm


def apply_mix(x: torch.Tensor, box: torch.Tensor, perm: torch.Tensor) -> torch.Tensor:
    """Paste ``x[perm]`` into ``x`` inside ``box``.

    Shape:
        x (B, C, H, W); box (B, 1, H, W) bool; perm (B,). Returns (B, C, H, W).
    """
    return torch.where(box, x[perm], x)


def uniform_noise(x: torch.Tensor, amplitude: float, generator: torch.Generator) -> torch.Tensor:
    """``x`` plus noise drawn uniformly from 256 levels spanning [-amplitude, amplitude]."""
    if amplitude == 0:
        return x
    # 8-bit noise levels, eight per 64-bit draw: the CPU generator is serial, so fewer draws is what
    # makes noise cheap; 256 levels are far finer than the augmentation needs
    count = x.numel()
    bits = torch.empty((count + 7) // 8, dtype=torch.int64, device=x.device)
    bits.random_(-(2**63), None, generator=generator)
    levels = bits.view(torch.uint8)[:count].view(x.shape)
    return x.add(levels, alpha=2 * amplitude / 255).sub_(amplitude)
