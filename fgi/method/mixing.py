"""CutMix boxes and input noise, vectorized torch with an explicit generator."""

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
    """Random CutMix boxes and the partner of each sample.

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
