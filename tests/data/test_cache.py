from __future__ import annotations

from fgi.data.cache import entry_name, resolve_cache_dir
from tests.data.conftest import config


def test_default_cache_dir_is_keyed_by_config(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    a = resolve_cache_dir(config())
    assert a == resolve_cache_dir(config()) and a.parent == tmp_path / "fgi" and a.name.startswith("synthetic-")
    assert resolve_cache_dir(config(synthetic_seed=1)) != a
    assert resolve_cache_dir(config(tight_level=0.6)) == a  # levels are applied at load time
    assert resolve_cache_dir(config(cache_dir=str(tmp_path / "x"))) == tmp_path / "x"


def test_entry_names_are_safe_file_names():
    assert entry_name("img 01/../x:y", "abc") == "img_01_.._x_y.abc.npz"
    assert entry_name("Prostate3T-01-0021_17", "k") == "Prostate3T-01-0021_17.k.npz"
