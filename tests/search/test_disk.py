"""The disk guard's rule on a real filesystem: stop when free space falls below what the next checkpoints need,
or when a trial failed with ENOSPC; once per sweep."""

from __future__ import annotations

import shutil
from types import SimpleNamespace

from fgi.search.disk import FULL, DiskGuard


def _checkpoint(folder, size: int):
    folder.mkdir(parents=True)
    (folder / "trainer.pt").write_bytes(b"\0" * size)
    return folder


def test_free_space_below_the_reserve_stops_once(tmp_path):
    storage = str(tmp_path / "sweep")
    calls: list[str] = []
    free = shutil.disk_usage(tmp_path).free
    size = 1_000_000
    # enough room for two checkpoints of every running trial: goes on
    roomy = DiskGuard(storage, writers=1, on_full=lambda: calls.append("roomy"))
    roomy.on_trial_result(0, [], SimpleNamespace(trial_id="a"), {"checkpoint_path": str(_checkpoint(tmp_path / "c1", size))})
    assert roomy.largest == size and not calls and storage not in FULL
    # so many trials writing at once that twice their checkpoints exceed the free space: stops, once
    crowded = DiskGuard(storage, writers=free // size + 1, on_full=lambda: calls.append("crowded"))
    for name in ("c2", "c3"):
        crowded.on_trial_result(0, [], SimpleNamespace(trial_id="a"),
                                {"checkpoint_path": str(_checkpoint(tmp_path / name, size))})
    try:
        assert calls == ["crowded"]
        assert FULL[storage].endswith(f"2 x {size / 1e6:.1f} MB per running trial)")
        assert f"under {storage}" in FULL[storage]
    finally:
        FULL.pop(storage, None)


def test_a_report_without_a_checkpoint_measures_nothing(tmp_path):
    guard = DiskGuard(str(tmp_path), writers=10**12, on_full=lambda: None)
    guard.on_trial_result(0, [], SimpleNamespace(trial_id="a"), {"val_dice": 0.5})
    assert guard.largest == 0 and str(tmp_path) not in FULL


def test_a_trial_that_failed_for_lack_of_space_stops_the_sweep(tmp_path):
    storage = str(tmp_path / "sweep")
    calls: list[int] = []
    guard = DiskGuard(storage, writers=1, on_full=lambda: calls.append(1))
    other = tmp_path / "other.txt"
    other.write_text("RuntimeError: loss is nan\n")
    guard.on_trial_recover(0, [], SimpleNamespace(trial_id="t1", error_file=str(other)))
    assert not calls
    full = tmp_path / "error.txt"
    full.write_text("OSError: [Errno 28] Error writing bytes to file. Detail: [errno 28] No space left on device\n")
    try:
        guard.on_trial_error(0, [], SimpleNamespace(trial_id="t2", error_file=str(full)))
        assert calls == [1] and FULL[storage].startswith(f"trial t2 could not write under {storage}: no space left")
    finally:
        FULL.pop(storage, None)
