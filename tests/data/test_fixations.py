from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fgi.data.errors import DataError
from fgi.data.fixations import read_fixations
from tests.data.conftest import write_csv

REAL_CSV = Path(__file__).resolve().parents[2].parent / "shared/data/gazemedseg/kvasir_fixation.csv"


def test_fixations_come_in_viewing_order_with_sizes(tmp_path):
    rows = [["b.jpg", 2, 0.2, 0.3, 200, 0, 0, 10.0, 12.0],
            ["a.png", 1, 0.9, 0.9, 50, 0, 0, 8.0, 8.0],
            ["b.jpg", 1, 0.6, 0.7, 100, 0, 0, 10.0, 12.0],
            ["b.jpg", 3, 0.1, 0.1, 300, 0, 0, 10.0, 12.0]]
    fix, sizes = read_fixations(write_csv(tmp_path / "f.csv", rows))
    assert sorted(fix) == ["a", "b"] and sizes == {"a": (8, 8), "b": (10, 12)}
    assert fix["b"].dtype == np.float32
    np.testing.assert_allclose(fix["b"], [[0.6, 0.7, 100], [0.2, 0.3, 200], [0.1, 0.1, 300]], rtol=1e-6)


def test_csv_missing_columns(tmp_path):
    p = write_csv(tmp_path / "f.csv", [["a.jpg", 0.5, 0.5]], header=["IMAGE", "CURRENT_FIX_X", "CURRENT_FIX_Y"])
    with pytest.raises(DataError, match=r"f.csv: missing CSV columns \['CURRENT_FIX_DURATION'\]"):
        read_fixations(p)


def test_csv_fixation_outside_unit_square(tmp_path):
    p = write_csv(tmp_path / "f.csv", [["a.jpg", 1, 0.5, 1.2, 300, 0, 0, 10.0, 10.0]])
    with pytest.raises(DataError, match=r"f.csv: line 2: fixation \(0.5, 1.2\) of a lies outside \[0, 1\]"):
        read_fixations(p)


def test_csv_non_numeric(tmp_path):
    p = write_csv(tmp_path / "f.csv", [["a.jpg", 1, "abc", 0.2, 300, 0, 0, 10.0, 10.0]])
    with pytest.raises(DataError, match=r"f.csv: line 2: non-numeric CURRENT_FIX_X 'abc' for a"):
        read_fixations(p)


@pytest.mark.parametrize("value", ["nan", "NaN"])
def test_nan_coordinate_is_reported_as_missing_not_out_of_range(tmp_path, value):
    rows = [["a.jpg", 1, 0.5, 0.5, 300, 0, 0, 10.0, 10.0], ["a.jpg", 2, 0.5, value, 300, 0, 0, 10.0, 10.0]]
    with pytest.raises(DataError, match=r"f.csv: line 3: CURRENT_FIX_Y of a is NaN \(a missing value\)") as err:
        read_fixations(write_csv(tmp_path / "f.csv", rows))
    assert "outside" not in str(err.value)


def test_empty_cell_and_infinite_duration_are_named(tmp_path):
    with pytest.raises(DataError, match=r"f.csv: line 2: CURRENT_FIX_X of a is missing \(empty cell\)"):
        read_fixations(write_csv(tmp_path / "f.csv", [["a.jpg", 1, "", 0.5, 300, 0, 0, 10.0, 10.0]]))
    with pytest.raises(DataError, match=r"g.csv: line 2: CURRENT_FIX_DURATION of a is infinite"):
        read_fixations(write_csv(tmp_path / "g.csv", [["a.jpg", 1, 0.5, 0.5, "inf", 0, 0, 10.0, 10.0]]))


def test_size_that_changes_within_an_image(tmp_path):
    rows = [["a.jpg", 1, 0.5, 0.5, 300, 0, 0, 10.0, 10.0], ["a.jpg", 2, 0.5, 0.5, 300, 0, 0, 11.0, 10.0]]
    with pytest.raises(DataError, match=r"line 3: a has size \(11, 10\) here but \(10, 10\) earlier"):
        read_fixations(write_csv(tmp_path / "f.csv", rows))


@pytest.mark.skipif(not REAL_CSV.is_file(), reason=f"real gaze CSV absent at {REAL_CSV}")
def test_real_gazemedseg_csv_reads_whole():
    fix, sizes = read_fixations(REAL_CSV)
    assert len(fix) == 900 and set(sizes) == set(fix)
    counts = [len(f) for f in fix.values()]
    assert min(counts) == 5 and max(counts) == 99 and sum(counts) == 24290
    assert all((f[:, :2] >= 0).all() and (f[:, :2] <= 1).all() for f in fix.values())
