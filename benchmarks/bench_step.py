"""Teacher-student training step: time and peak memory, fp32 eager against faster settings, side by side.

Each setting runs in its own subprocess so that its peak RSS is its own. The step is the full method:
teacher on clean + CutMix inputs, student no-grad pass, DARM, student on masked + mixed inputs, all four
loss terms, backward and both optimizer steps.

    python benchmarks/bench_step.py                       # 224 px, batch 8, published widths
    python benchmarks/bench_step.py --preset cpu          # the cpu budget
    python benchmarks/bench_step.py --smoke               # tiny, for CI
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time

PRESETS = {
    # published widths: teacher 64..1024, student 32..512
    "published": {"size": 224, "batch": 8, "teacher": [64, 128, 256, 512, 1024], "student": [32, 64, 128, 256, 512]},
    "cpu": {"size": 128, "batch": 8, "teacher": [32, 64, 128, 256, 512], "student": [16, 32, 64, 128, 256]},
    "smoke": {"size": 32, "batch": 2, "teacher": [8, 16, 16, 32], "student": [8, 8, 16, 16]},
}
SETTINGS = {
    "fp32 eager": {"amp": "none", "channels_last": False, "compile": False},
    "bf16 autocast": {"amp": "bf16", "channels_last": False, "compile": False},
    "bf16 + channels_last": {"amp": "bf16", "channels_last": True, "compile": False},
    "fp32 + channels_last": {"amp": "none", "channels_last": True, "compile": False},
    "bf16 + channels_last + compile": {"amp": "bf16", "channels_last": True, "compile": True},
}


def measure(preset: dict, setting: dict, steps: int, warmup: int, threads: int, device_name: str = "cpu") -> dict:
    """Run in a child process: median step time, peak memory and FLOPs of one setting."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from fgi.config import from_dict
    from fgi.method.engine import TeacherStudentTrainer

    torch.set_num_threads(threads)
    depth = len(preset["teacher"])
    cfg = from_dict({
        "data": {"image_size": preset["size"]},
        "model": {"teacher_widths": preset["teacher"], "student_widths": preset["student"],
                  "fusion_scales": list(range(1, depth)), "norm_groups": 8 if min(preset["student"]) >= 8 else 4},
        "loss": {"align_scales": list(range(1, depth))},
        "train": {"batch_size": preset["batch"], "max_steps": steps + warmup, **setting},
    })
    gen = torch.Generator().manual_seed(0)
    b, s = preset["batch"], preset["size"]
    yy, xx = torch.meshgrid(torch.arange(s), torch.arange(s), indexing="ij")
    r = ((yy - s / 2) ** 2 + (xx - s / 2) ** 2).sqrt()
    batch = {
        "image": torch.randn(b, 3, s, s, generator=gen),
        "tight": (r < s * 0.2).expand(b, 1, s, s).clone(),
        "loose": (r < s * 0.3).expand(b, 1, s, s).clone(),
        "text": torch.randn(b, cfg.text.dim, generator=gen),
    }
    device = torch.device(device_name)
    trainer = TeacherStudentTrainer(cfg, device)
    params = {name: sum(p.numel() for p in m.parameters()) for name, m in trainer.models.items()}
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    with FlopCounterMode(display=False) as counter:
        trainer.train_step(batch)
    times = []
    for i in range(warmup + steps):
        sync()
        t0 = time.perf_counter()
        trainer.train_step(batch)
        sync()
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    median = statistics.median(times)
    out = {"median_s": median, "peak_rss_gib": peak_kib / 2**20, "params": params,
           "flops": counter.get_total_flops(), "images_per_s": b / median}
    if device.type == "cuda":
        out["peak_gpu_gib"] = torch.cuda.max_memory_allocated(device) / 2**30
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", choices=sorted(PRESETS), default="published")
    parser.add_argument("--smoke", action="store_true", help="tiny model, 2 steps: checks the script runs")
    parser.add_argument("--steps", type=int, default=20, help="timed steps (median reported)")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--settings", nargs="*", default=list(SETTINGS), choices=list(SETTINGS))
    parser.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda")
    parser.add_argument("--batch", type=int, help="override the preset's batch size")
    parser.add_argument("--json", help="also write the results to this JSON file")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        spec = json.loads(args.child)
        print(json.dumps(measure(spec["preset"], spec["setting"], spec["steps"], spec["warmup"], spec["threads"],
                                 spec["device"])))
        return
    preset_name = "smoke" if args.smoke else args.preset
    steps, warmup = (2, 1) if args.smoke else (args.steps, args.warmup)
    preset = dict(PRESETS[preset_name])
    if args.batch:
        preset["batch"] = args.batch
    print(f"preset {preset_name}: {preset['size']} px, batch {preset['batch']}, teacher {preset['teacher']}, "
          f"student {preset['student']}, {args.threads} threads, median of {steps} after {warmup} warm-up")
    results = {}
    for name in args.settings:
        spec = {"preset": preset, "setting": SETTINGS[name], "steps": steps, "warmup": warmup, "threads": args.threads,
                "device": args.device}
        proc = subprocess.run([sys.executable, __file__, "--child", json.dumps(spec)], capture_output=True, text=True)
        if proc.returncode:
            raise SystemExit(f"setting {name!r} failed:\n{proc.stderr}")
        results[name] = json.loads(proc.stdout.strip().splitlines()[-1])
        r = results[name]
        gpu = f"   peak GPU {r['peak_gpu_gib']:6.2f} GiB" if "peak_gpu_gib" in r else ""
        print(f"{name:30s} median {r['median_s']:8.3f} s/step   {r['images_per_s']:8.1f} img/s   "
              f"peak RSS {r['peak_rss_gib']:6.2f} GiB{gpu}   {r['flops'] / r['median_s'] / 1e12:7.3f} TFLOP/s   "
              f"params {r['params']}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"preset": preset_name, **preset, "device": args.device, "results": results}, fh, indent=1)
    base = results.get("fp32 eager")
    if base:
        for name, r in results.items():
            if name != "fp32 eager":
                print(f"{name:30s} speed-up vs fp32 eager {base['median_s'] / r['median_s']:.2f}x, "
                      f"memory ratio {r['peak_rss_gib'] / base['peak_rss_gib']:.2f}")


if __name__ == "__main__":
    main()
