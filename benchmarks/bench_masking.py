"""DARM + CutMix on an 8x3x224x224 batch: vectorized torch against a per-pixel Python loop.

The naive version has the same semantics (blocks centred in the uncertain region until the requested
share is hidden, only uncertain pixels zeroed, one CutMix box pasted per sample) and is written the way
research code often is: Python loops over blocks and pixels with NumPy round trips.

    python benchmarks/bench_masking.py            # full size
    python benchmarks/bench_masking.py --smoke    # tiny, for CI
"""

from __future__ import annotations

import argparse
import math
import statistics
import time

import numpy as np
import torch

from fgi.method.masking import apply_darm, darm_mask, uncertain_region
from fgi.method.mixing import apply_mix, cutmix_boxes, uniform_noise
from fgi.seed import make_generator, numpy_rng


def make_inputs(batch: int, size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Images and tight/loose rings of different radii per sample."""
    gen = make_generator(0)
    image = torch.randn(batch, 3, size, size, generator=gen)
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    r = ((yy - size / 2) ** 2 + (xx - size / 2) ** 2).sqrt()
    radii = torch.linspace(0.15, 0.3, batch)[:, None, None, None] * size
    tight = r[None, None] < radii
    loose = r[None, None] < radii * 1.8
    return image, tight, loose


def vectorized(image, tight, loose, gen, ratio, bmin, bmax, cutmix_prob, alpha, noise):
    hidden = darm_mask(uncertain_region(tight, loose), ratio, bmin, bmax, gen)
    masked, target = apply_darm(image, loose, hidden)
    box, perm = cutmix_boxes(image.shape[0], image.shape[2], image.shape[3], cutmix_prob, alpha, gen, image.device)
    mixed = uniform_noise(apply_mix(image, box, perm), noise, gen)
    return masked, target, mixed


def naive(image, tight, loose, rng, ratio, bmin, bmax, cutmix_prob, alpha, noise):
    image = image.numpy().copy()
    tight, loose = tight.numpy()[:, 0], loose.numpy()[:, 0]
    b, c, h, w = image.shape
    masked = image.copy()
    target = loose.copy()
    for i in range(b):
        region = [(y, x) for y in range(h) for x in range(w) if tight[i, y, x] != loose[i, y, x]]
        need = math.ceil(ratio * len(region))
        hidden = np.zeros((h, w), bool)
        covered = 0
        smin, smax = max(1, round(bmin * min(h, w))), max(1, round(bmax * min(h, w)))
        while covered < need:
            cy, cx = region[rng.integers(len(region))]
            side = int(rng.integers(smin, smax + 1))
            for y in range(cy - side // 2, cy - side // 2 + side):
                for x in range(cx - side // 2, cx - side // 2 + side):
                    if 0 <= y < h and 0 <= x < w and tight[i, y, x] != loose[i, y, x] and not hidden[y, x]:
                        hidden[y, x] = True
                        covered += 1
        for y in range(h):
            for x in range(w):
                if hidden[y, x]:
                    masked[i, :, y, x] = 0
                    target[i, y, x] = False
    mixed = image.copy()
    perm = rng.permutation(b)
    for i in range(b):
        if rng.uniform() < cutmix_prob:
            lam = rng.beta(alpha, alpha)
            bh, bw = round(math.sqrt(lam) * h), round(math.sqrt(lam) * w)
            cy, cx = rng.uniform(0, h), rng.uniform(0, w)
            for y in range(h):
                for x in range(w):
                    if cy - bh / 2 <= y < cy + bh / 2 and cx - bw / 2 <= x < cx + bw / 2:
                        mixed[i, :, y, x] = image[perm[i], :, y, x]
        mixed[i] += rng.uniform(-noise, noise, size=(c, h, w))
    return masked, target, mixed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, one repetition")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--repeats", type=int, default=20, help="timed repetitions of the vectorized version")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    if args.smoke:
        args.batch, args.size, args.repeats = 2, 32, 2
    torch.set_num_threads(args.threads)
    knobs = dict(ratio=0.3, bmin=0.03, bmax=0.12, cutmix_prob=0.5, alpha=4.0, noise=0.2)
    image, tight, loose = make_inputs(args.batch, args.size)
    gen = make_generator(0)
    vectorized(image, tight, loose, gen, **knobs)  # warm-up
    fast = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        vectorized(image, tight, loose, gen, **knobs)
        fast.append(time.perf_counter() - t0)
    t0 = time.perf_counter()
    naive(image, tight, loose, numpy_rng(0), **knobs)
    slow = time.perf_counter() - t0
    median = statistics.median(fast)
    print(f"batch {args.batch}x3x{args.size}x{args.size}, {args.threads} threads")
    print(f"vectorized DARM+CutMix: median {median * 1e3:.1f} ms over {args.repeats}")
    print(f"per-pixel loop        : {slow * 1e3:.1f} ms (one run)")
    print(f"speed-up              : {slow / median:.0f}x")


if __name__ == "__main__":
    main()
