"""Benchmark ``fgi prepare``: cold build, idempotent rerun, and the heatmap canvas side by side.

Real data (default): the shared Kvasir-SEG images and GazeMedSeg fixations, on ``--workers`` processes.
``--smoke``: a tiny synthetic set, so CI checks that the benchmark runs.

    python benchmarks/bench_prepare.py --workers 2 [--limit N] [--config crf.yaml]
    python benchmarks/bench_prepare.py --smoke
"""

from __future__ import annotations

import argparse
import csv
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from fgi.config import Config, GazeConfig, load_yaml, override  # noqa: E402
from fgi.data.gaze import gaze_heatmap  # noqa: E402
from fgi.data.prepare import prepare_cache  # noqa: E402

SHARED = REPO.parent / "shared" / "data"


def subset_root(root: Path, fixations: Path, limit: int, out: Path) -> tuple[Path, Path]:
    """A raw folder of the first ``limit`` images (symlinks) and their fixation rows."""
    ids = sorted(p.stem for p in (root / "images").glob("*.jpg"))[:limit]
    for sub in ("images", "masks"):
        (out / sub).mkdir(parents=True)
        for i in ids:
            (out / sub / f"{i}.jpg").symlink_to(root / sub / f"{i}.jpg")
    keep = set(ids)
    dst = out.parent / "fixations.csv"
    with fixations.open() as src, dst.open("w", newline="") as fh:
        rd = csv.reader(src)
        wr = csv.writer(fh)
        wr.writerow(next(rd))
        wr.writerows(r for r in rd if Path(r[0]).stem in keep)
    return out, dst


def time_canvas(cfg: Config, n: int = 50) -> dict[str, float]:
    """Mean heatmap time per image at the configured canvas and at 768 (the reference canvas)."""
    rng = np.random.default_rng(0)
    fx = [np.column_stack([rng.uniform(0, 1, 25), rng.uniform(0, 1, 25), rng.uniform(100, 600, 25)]).astype(np.float32)
          for _ in range(n)]
    out = {}
    for canvas in (cfg.gaze.canvas, 768):
        g = GazeConfig(canvas=canvas)
        t = time.perf_counter()
        for f in fx:
            gaze_heatmap(f, 530, 622, g)
        out[f"heatmap_ms_canvas_{canvas}"] = round((time.perf_counter() - t) / n * 1e3, 2)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--smoke", action="store_true", help="tiny synthetic set (CI)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--limit", type=int, default=0, help="first N Kvasir images (0: all)")
    ap.add_argument("--config", help="YAML config (e.g. CRF settings)")
    ap.add_argument("--root", default=str(SHARED / "kvasir-seg"))
    ap.add_argument("--fixations", default=str(SHARED / "gazemedseg" / "kvasir_fixation.csv"))
    args = ap.parse_args(argv)
    cfg = load_yaml(args.config) if args.config else Config()
    with tempfile.TemporaryDirectory(prefix="fgi-bench-") as tmp:
        tmp = Path(tmp)
        if args.smoke:
            cfg = override(cfg, {"data.dataset": "synthetic", "data.image_size": 32, "data.synthetic_train": 4,
                                 "data.synthetic_val": 2, "data.synthetic_test": 2})
        else:
            root, fix = Path(args.root), Path(args.fixations)
            if not root.is_dir() or not fix.is_file():
                print(f"real data absent ({root}, {fix}); use --smoke", file=sys.stderr)
                return 2
            if args.limit:
                root, fix = subset_root(root, fix, args.limit, tmp / "raw" / "kvasir")
            cfg = override(cfg, {"data.dataset": "kvasir", "data.root": str(root), "data.fixations": str(fix)})
        cache = tmp / "cache"
        t = time.perf_counter()
        m = prepare_cache(cfg, cache, workers=args.workers, progress=False, text=False)
        cold = time.perf_counter() - t
        t = time.perf_counter()
        m2 = prepare_cache(cfg, cache, workers=args.workers, progress=False, text=False)
        warm = time.perf_counter() - t
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    own = resource.getrusage(resource.RUSAGE_SELF)
    result = {
        "dataset": cfg.data.dataset,
        "images": m["counts"]["items"],
        "workers": args.workers,
        "cold_s": round(cold, 2),
        "rerun_s": round(warm, 2),
        "rerun_computed": m2["counts"]["computed"],
        "cpu_s": round(children.ru_utime + children.ru_stime + own.ru_utime + own.ru_stime, 1),
        "report": {f"{r['map']}>={r['level']:g}": r["dice"] for r in m["report"]["rows"]},
        **time_canvas(cfg),
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
