"""Slow: the weak-label quality on the shared Kvasir-SEG images with real GazeMedSeg gaze."""

from __future__ import annotations

from pathlib import Path

import pytest

from fgi.data.prepare import prepare_cache
from tests.data.conftest import config

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data"
ROOT, CSV = SHARED / "kvasir-seg", SHARED / "gazemedseg" / "kvasir_fixation.csv"

# Measured on the first 100 image ids (sorted) with the command in docs/RESULTS.md (Preparation),
# the default bilateral-only CRF (crf.gaussian_compat 0) at the original resolution. On all 1000 images the
# reference is 0.746 / 0.752 / 0.782; this subset is harder, so it has its own expected values.
EXPECTED = {("heatmap", 0.5): 0.7224, ("crf", 0.5): 0.7330, ("crf", 0.3): 0.7518}


@pytest.mark.slow
@pytest.mark.skipif(not (ROOT.is_dir() and CSV.is_file()), reason=f"real data absent at {SHARED}")
def test_weak_label_dice_on_100_kvasir_images(tmp_path):
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
    from bench_prepare import subset_root

    root, fix = subset_root(ROOT, CSV, 100, tmp_path / "raw" / "kvasir")
    cfg = config(dataset="kvasir", root=str(root), fixations=str(fix), image_size=128)
    m = prepare_cache(cfg, tmp_path / "cache", workers=2, progress=False, text=False)
    assert m["report"]["n"] == 100
    got = {(r["map"], r["level"]): r["dice"] for r in m["report"]["rows"]}
    for key, want in EXPECTED.items():
        assert abs(got[key] - want) <= 0.01, (key, got[key], want)
