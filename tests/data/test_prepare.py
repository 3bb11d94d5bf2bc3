from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from fgi.config import override
from fgi.data.cache import ITEMS_DIR, MANIFEST
from fgi.data.errors import DataError
from fgi.data.prepare import prepare_cache
from tests.data.conftest import config, make_kvasir

REPO = Path(__file__).resolve().parents[2]


def _entries(cache: Path) -> dict[str, float]:
    return {p.name: p.stat().st_mtime_ns for p in (cache / ITEMS_DIR).glob("*.npz")}


def test_prepare_writes_entries_and_manifest(kvasir, tmp_path):
    root, csv_path = kvasir
    cfg = config(dataset="kvasir", root=str(root), fixations=str(csv_path), val_fraction=0.34)
    cache = tmp_path / "cache"
    m = prepare_cache(cfg, cache, workers=2, progress=False, text=False, overlays=2)
    assert json.loads((cache / MANIFEST).read_text()) == m
    assert m["counts"]["items"] == 6 and m["counts"]["computed"] == 6
    assert sorted(len(v) for v in m["splits"].values()) == [2, 4]
    assert len(m["normalization"]["mean"]) == 3 and all(s > 0 for s in m["normalization"]["std"])
    rec = m["items"]["img000"]
    with np.load(cache / ITEMS_DIR / rec["file"]) as z:
        assert z["image"].shape == (32, 32, 3) and z["image"].dtype == np.uint8
        assert z["heatmap"].shape == z["crf"].shape == (32, 32) and z["crf"].dtype == np.float16
        assert z["mask"].dtype == bool and z["mask"].any()
    rows = {(r["map"], r["level"]): r["dice"] for r in m["report"]["rows"]}
    assert set(rows) == {("heatmap", 0.5), ("heatmap", 0.3), ("crf", 0.5), ("crf", 0.3)}
    assert all(0.2 < d <= 1.0 for d in rows.values())  # fixations lie inside the lesions
    assert len(list((cache / "overlays").glob("*.png"))) == 2


def test_rerun_is_idempotent_and_recomputes_only_changed_items(kvasir, tmp_path):
    root, csv_path = kvasir
    cfg = config(dataset="kvasir", root=str(root), fixations=str(csv_path))
    cache = tmp_path / "cache"
    prepare_cache(cfg, cache, workers=1, progress=False, text=False)
    before = _entries(cache)
    m = prepare_cache(cfg, cache, workers=1, progress=False, text=False)
    assert m["counts"]["computed"] == 0 and m["counts"]["reused"] == 6
    assert _entries(cache) == before
    # change one image: only that entry is recomputed and the stale one removed
    import cv2

    p = root / "images" / "img003.jpg"
    img = cv2.imread(str(p))
    cv2.imwrite(str(p), 255 - img)
    m = prepare_cache(cfg, cache, workers=1, progress=False, text=False)
    assert m["counts"]["computed"] == 1 and m["counts"]["removed_stale"] == 1
    after = _entries(cache)
    assert len(after) == 6 and len(set(after) & set(before)) == 5
    # a CRF change recomputes everything
    m = prepare_cache(override(cfg, {"crf.sxy": 40.0}), cache, workers=1, progress=False, text=False)
    assert m["counts"]["computed"] == 6


@pytest.mark.slow
def test_killed_run_leaves_whole_entries_and_rerun_completes(tmp_path):
    root, csv_path = make_kvasir(tmp_path / "kv", n=48, size=(180, 220))
    cache = tmp_path / "cache"
    cmd = [sys.executable, "-m", "fgi.cli", "prepare", "--dataset", "kvasir", "--root", str(root),
           "--fixations", str(csv_path), "--cache-dir", str(cache), "--image-size", "32", "--workers", "2",
           "--no-text", "--no-progress"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(cmd, env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            if len(list((cache / ITEMS_DIR).glob("*.npz"))) >= 4:
                break
            time.sleep(0.01)
        assert proc.poll() is None, "preparation finished before it could be interrupted"
        os.killpg(proc.pid, signal.SIGKILL)  # the run and its worker processes, like kill -9 of the job
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    assert not (cache / MANIFEST).exists()
    done = list((cache / ITEMS_DIR).glob("*.npz"))
    assert 4 <= len(done) < 48
    for p in done:  # every visible entry is whole
        with np.load(p) as z:
            assert z["crf"].shape == (32, 32)
    cfg = config(dataset="kvasir", root=str(root), fixations=str(csv_path))
    m = prepare_cache(cfg, cache, workers=1, progress=False, text=False)
    assert m["counts"]["items"] == 48 and m["counts"]["reused"] >= len(done)
    assert not [p for p in (cache / ITEMS_DIR).iterdir() if p.suffix != ".npz"]  # temp files cleaned
    for rec in m["items"].values():
        with np.load(cache / ITEMS_DIR / rec["file"]) as z:
            assert z["image"].shape == (32, 32, 3)


@pytest.mark.parametrize("bad", ["isic", "nci-isbi"])
def test_in_channels_must_match_dataset(bad, nci, isic, tmp_path):
    from fgi.config import ConfigError

    root = isic if bad == "isic" else nci[0]
    data = {"dataset": bad, "root": str(root), "in_channels": 1 if bad == "isic" else 3}
    if bad == "nci-isbi":
        data["fixations"] = str(nci[1])
    with pytest.raises(ConfigError, match=r"data.in_channels"):
        prepare_cache(config(**data), tmp_path / "c", workers=1, progress=False, text=False)


def test_image_without_fixations_fail_or_skip(kvasir, tmp_path):
    root, csv_path = kvasir
    lines = [ln for ln in csv_path.read_text().splitlines() if not ln.startswith("img004.jpg")]
    csv_path.write_text("\n".join(lines) + "\n")
    cfg = config(dataset="kvasir", root=str(root), fixations=str(csv_path), val_fraction=0.0)
    with pytest.raises(DataError, match=r"1 training image\(s\) have no fixations .*\['img004'\].*--on-missing-gaze skip"):
        prepare_cache(cfg, tmp_path / "c", workers=1, progress=False, text=False)
    m = prepare_cache(override(cfg, {"gaze.on_missing": "skip"}), tmp_path / "c", workers=1, progress=False, text=False)
    assert m["counts"]["skipped_no_gaze"] == 1 and m["skipped_no_gaze"] == ["img004"]
    assert "img004" not in m["items"] and m["counts"]["items"] == 5


def test_undecodable_image_surfaces_from_a_parallel_run(kvasir, tmp_path):
    root, csv_path = kvasir
    (root / "images" / "img002.jpg").write_bytes(b"not a jpeg at all")
    cfg = config(dataset="kvasir", root=str(root), fixations=str(csv_path), val_fraction=0.0)
    # the error of a worker process arrives as the DataError naming the file, not a worker traceback
    with pytest.raises(DataError, match=r"img002.jpg: cannot decode image"):
        prepare_cache(cfg, tmp_path / "cache", workers=2, progress=False, text=False)
