"""The one worker body: what an evaluation leaves in its checkpoint folder."""

from __future__ import annotations

import contextlib
import shutil
import statistics
from pathlib import Path

import pytest
import torch

from fgi.budgets import apply_budget
from fgi.checkpoint import read_metrics, read_val_rows
from fgi.config import Config, override
from fgi.data.dataset import build_datasets
from fgi.run.worker import prepare, train_worker


class KeepFolders:
    """A reporter that keeps a copy of every reported checkpoint folder, as Tune does."""

    def __init__(self, out: Path) -> None:
        self.out, self.folders, self.steps = out, [], []

    def report(self, metrics, checkpoint_dir):
        self.steps.append(int(metrics["step"]))
        if checkpoint_dir is not None:
            kept = self.out / f"checkpoint_{len(self.folders):06d}"
            shutil.copytree(checkpoint_dir, kept)
            self.folders.append(kept)


class Folder:
    """A checkpoint as Tune hands it to a restarted trial: a folder path, read through ``as_directory``."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    @contextlib.contextmanager
    def as_directory(self):
        yield self.path


def _config(steps: int):
    return prepare(override(apply_budget(Config(), "smoke"), {"train.max_steps": steps, "train.eval_every": 2,
                                                              "train.threads": 1}))


def test_every_checkpoint_keeps_the_per_image_val_dice_behind_its_reported_mean(tmp_path):
    cfg = _config(4)
    reporter = KeepFolders(tmp_path)
    train_worker(cfg, rank=0, world=1, device=torch.device("cpu"), reporter=reporter, checkpoint=None,
                 staging=tmp_path / "staging")
    assert len(reporter.folders) == 2
    val_ids = {str(i) for i in build_datasets(cfg, 0)["val"].ids}
    assert len(val_ids) == cfg.data.synthetic_val
    for folder in reporter.folders:
        rows = read_val_rows(folder)
        assert set(rows) == val_ids  # every val image once
        assert statistics.fmean(rows.values()) == pytest.approx(read_metrics(folder)["val_dice"], abs=1e-6)


def test_a_corrupt_newest_checkpoint_falls_back_to_an_older_one_then_to_a_fresh_start(tmp_path, capsys):
    first = KeepFolders(tmp_path / "trial")
    train_worker(_config(4), rank=0, world=1, device=torch.device("cpu"), reporter=first, checkpoint=None,
                 staging=tmp_path / "staging")
    older, newest = first.folders  # steps 2 and 4
    (newest / "trainer.pt").write_bytes((newest / "trainer.pt").read_bytes()[:100])  # truncated, as a full disk leaves it
    again = KeepFolders(tmp_path / "again")
    train_worker(_config(6), rank=0, world=1, device=torch.device("cpu"), reporter=again, checkpoint=Folder(newest),
                 staging=tmp_path / "staging")
    assert again.steps == [4, 6]  # continued from step 2's state, not failed, not from scratch
    err = capsys.readouterr().err
    assert f"checkpoint {newest} is unreadable" in err and f"resuming from {older} (step 2)" in err
    (older / "trainer.pt").write_bytes(b"")
    fresh = KeepFolders(tmp_path / "fresh")
    train_worker(_config(4), rank=0, world=1, device=torch.device("cpu"), reporter=fresh, checkpoint=Folder(newest),
                 staging=tmp_path / "staging")
    assert fresh.steps == [2, 4] and "no older one is readable; starting afresh" in capsys.readouterr().err
