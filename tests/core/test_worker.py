"""The one worker body: what an evaluation leaves in its checkpoint folder."""

from __future__ import annotations

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
        self.out, self.folders = out, []

    def report(self, metrics, checkpoint_dir):
        if checkpoint_dir is not None:
            kept = self.out / f"report_{len(self.folders)}"
            shutil.copytree(checkpoint_dir, kept)
            self.folders.append(kept)


def test_every_checkpoint_keeps_the_per_image_val_dice_behind_its_reported_mean(tmp_path):
    cfg = prepare(override(apply_budget(Config(), "smoke"), {"train.max_steps": 4, "train.eval_every": 2,
                                                             "train.threads": 1}))
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
