"""Staged best checkpoints outlive the folder Tune deletes, and carry the metric of the copy on disk."""

from __future__ import annotations

import shutil

import pytest
import torch

from fgi.tracking.staging import stage, staged


def _step_of(folder) -> int:
    return torch.load(folder / "trainer.pt", weights_only=True)["step"]


def _checkpoint(folder, step):
    folder.mkdir(parents=True)
    torch.save({"step": step, "weights": torch.zeros(64)}, folder / "trainer.pt")
    (folder / "sub").mkdir()
    (folder / "sub" / "x.json").write_text(str(step))
    return folder


def test_staged_copy_survives_deletion_of_the_source(tmp_path):
    src = _checkpoint(tmp_path / "trial" / "checkpoint_000001", 4)
    folder = stage(src, tmp_path / "staging", "t1", 0.5, 4)
    shutil.rmtree(src)  # what num_to_keep does
    assert _step_of(folder) == 4
    assert (folder / "sub" / "x.json").read_text() == "4"
    found = staged(tmp_path / "staging", "t1")
    assert found is not None and found[1]["value"] == 0.5 and found[1]["step"] == 4


def test_a_new_best_replaces_the_staged_copy(tmp_path):
    stage(_checkpoint(tmp_path / "a", 4), tmp_path / "staging", "t1", 0.5, 4)
    stage(_checkpoint(tmp_path / "b", 8), tmp_path / "staging", "t1", 0.7, 8)
    folder, meta = staged(tmp_path / "staging", "t1")
    assert _step_of(folder) == 8 and meta["step"] == 8
    assert sorted(p.name for p in (tmp_path / "staging").iterdir()) == ["t1"]


def test_a_deleted_source_is_an_error_and_leaves_the_old_copy(tmp_path):
    stage(_checkpoint(tmp_path / "a", 4), tmp_path / "staging", "t1", 0.5, 4)
    with pytest.raises(FileNotFoundError, match="gone"):
        stage(tmp_path / "gone", tmp_path / "staging", "t1", 0.9, 12)
    assert staged(tmp_path / "staging", "t1")[1]["step"] == 4
    assert staged(tmp_path / "staging", "t2") is None


def test_a_truncated_checkpoint_is_never_staged_and_the_good_copy_stays(tmp_path):
    stage(_checkpoint(tmp_path / "a", 4), tmp_path / "staging", "t1", 0.5, 4)
    bad = _checkpoint(tmp_path / "b", 8)
    (bad / "trainer.pt").write_bytes((bad / "trainer.pt").read_bytes()[:100])  # what a full disk leaves
    with pytest.raises(ValueError, match=r"b/trainer.pt: truncated or corrupt"):
        stage(bad, tmp_path / "staging", "t1", 0.9, 8)
    folder, meta = staged(tmp_path / "staging", "t1")
    assert _step_of(folder) == 4 and meta["step"] == 4
    assert sorted(p.name for p in (tmp_path / "staging").iterdir()) == ["t1"]  # no half-staged folder
