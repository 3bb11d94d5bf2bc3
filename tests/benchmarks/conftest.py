"""Fixtures shared by the tests of benchmarks/ scripts."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.benchmarks.scripts import load_script
from tests.data.conftest import make_kvasir


@pytest.fixture
def d_fgi_config(tmp_path: Path) -> Path:
    """Arm (d)'s config as ``protocol_kvasir.py --write-config`` writes it for a tiny Kvasir layout.

    The data root is ``tmp_path / "kvasir"`` and the (empty) split folder ``tmp_path / "splits"``.
    """
    root, csv_path = make_kvasir(tmp_path / "kvasir", n=4)
    splits = tmp_path / "splits"
    splits.mkdir()
    out = tmp_path / "d_fgi.yaml"
    assert load_script("protocol_kvasir").main(["--root", str(root), "--fixations", str(csv_path), "--splits",
                                                str(splits), "--write-config", str(out)]) == 0
    return out
