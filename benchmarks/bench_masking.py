"""DARM + CutMix on an 8x3x224x224 batch: vectorized torch against a per-pixel Python loop.

Both follow the reference method: whole blocks of 3 to 10 px centred on distinct uncertain pixels until
their summed area reaches 0.3 of the region, and two independent CutMixes of the noisy batch (one per
model). The naive version is written the way research code often is: Python loops over blocks and
pixels with NumPy round trips.

    python benchmarks/bench_masking.py            # full size
    python benchmarks/bench_masking.py --smoke    # tiny, for CI
"""

from __future__ import annotations

import argparse
import math
import statistics
import time

import torch

from fgi.method.masking import apply_darm, darm_mask, uncertain_region
from fgi.method.mixing import apply_mix, reference_cutmix_boxes, uniform_noise
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
    hidden = darm_mask(uncertain_region(tight, loose), ratio, bmin, bmax, gen, "block")
    masked, target = apply_darm(image, loose, hidden)
    mixed = []
    for _ in range(2):  # one CutMix for each model's consistency input
        box, perm = reference_cutmix_boxes(image.shape[0], image.shape[2], image.shape[3], cutmix_prob, alpha, gen,
                                           image.device)
        mixed.append(apply_mix(uniform_noise(image, noise, gen), box, perm))
    return masked, target, mixed


def naive(image, tight, loose, rng, ratio, bmin, bmax, cutmix_prob, alpha, noise):
    image = image.numpy().copy()
    tight, loose = tight.numpy()[:, 0], loose.numpy()[:, 0]
    b, c, h, w = image.shape
    masked = image.copy()
    target = loose.copy()
    smin = max(1, round(bmin * min(h, w)))
    smax = max(smin, round(bmax * min(h, w)))
    for i in range(b):
        region = [(y, x) for y in range(h) for x in range(w) if tight[i, y, x] != loose[i, y, x]]
        need = math.floor(ratio * len(region))
        spent = 0
        for k in rng.permutation(len(region)):
            if spent >= need:
                break
            cy, cx = region[k]
            half = int(rng.integers(smin, smax + 1)) // 2
            for y in range(max(0, cy - half), min(h, cy + half + 1)):
                for x in range(max(0, cx - half), min(w, cx + half + 1)):
                    masked[i, :, y, x] = 0
                    target[i, y, x] = False
                    spent += 1
    mixed = []
    for _ in range(2):
        noisy = image + rng.uniform(-noise, noise, size=image.shape)
        out = noisy.copy()
        perm = rng.permutation(b)
        cut = math.sqrt(1 - rng.beta(alpha, alpha))
        cut_h, cut_w = int(h * cut), int(w * cut)
        for i in range(b):
            cy, cx = int(rng.integers(h // 8, h)), int(rng.integers(w // 8, w))
            if rng.uniform() >= cutmix_prob:
                continue
            for y in range(max(0, cy - cut_h // 2), min(h, cy + cut_h // 2)):
                for x in range(max(0, cx - cut_w // 2), min(w, cx + cut_w // 2)):
                    out[i, :, y, x] = noisy[perm[i], :, y, x]
        mixed.append(out)
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
    knobs = dict(ratio=0.3, bmin=3 / 224, bmax=10 / 224, cutmix_prob=1.0, alpha=4.0, noise=0.2)
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
