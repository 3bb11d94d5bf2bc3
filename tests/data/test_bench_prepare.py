from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_bench_prepare_smoke():
    out = subprocess.run([sys.executable, str(REPO / "benchmarks" / "bench_prepare.py"), "--smoke", "--workers", "1"],
                         capture_output=True, text=True, timeout=300, check=True)
    res = json.loads(out.stdout.strip().splitlines()[-1])
    assert res["images"] == 8 and res["rerun_computed"] == 0 and res["cold_s"] > 0
    assert res["heatmap_ms_canvas_192"] > 0 and res["heatmap_ms_canvas_768"] > 0
