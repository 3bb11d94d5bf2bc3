"""The committed best config of protocol v2's arm (e) is what its sweep's seeded sampler proposes."""

from __future__ import annotations

import pytest
import yaml

from tests.benchmarks.scripts import ROOT, load_script

replay = load_script("replay_e_sweep")


def _header(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("#") and not line.startswith("# git commit ")]


def _leaves(data: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in data.items():
        out.update(_leaves(value, f"{prefix}{key}.") if isinstance(value, dict) else {prefix + key: value})
    return out


def test_the_replayed_sweep_rebuilds_the_committed_kvasir_config(d_fgi_config, tmp_path, capsys):
    # a change to the search space, the sampler's settings or the protocol's base config breaks this: the
    # committed file would no longer be the config the recorded sweep chose
    out = tmp_path / "kvasir.yaml"
    assert replay.main(["--config", str(d_fgi_config), "--out", str(out)]) == 0
    assert "8 finishing orders reproduce all 7 recorded trials; they agree on b22e9403" in capsys.readouterr().out
    committed = (ROOT / "benchmarks" / "results" / "e_sweep_kvasir.yaml").read_text()
    assert _header(out.read_text()) == _header(committed)
    # the sampler's floats agree to the last few bits only: another CPU's libm may round its logs differently
    replayed, expected = _leaves(yaml.safe_load(out.read_text())), _leaves(yaml.safe_load(committed))
    assert sorted(replayed) == sorted(expected)
    for key, value in expected.items():
        if isinstance(value, float):
            assert replayed[key] == pytest.approx(value, rel=1e-12, abs=0), key
        else:
            assert replayed[key] == value, key


def test_a_trial_outside_the_record_is_no_finishing_order(d_fgi_config, tmp_path, capsys, monkeypatch):
    # drop a searched trial from the record: no order can propose all the others and stay inside the record
    monkeypatch.setattr(replay, "RECORDED", {k: v for k, v in replay.RECORDED.items() if v[0] != "d5b91bfd"})
    out = tmp_path / "kvasir.yaml"
    assert replay.main(["--config", str(d_fgi_config), "--out", str(out)]) == 1
    assert "no finishing order reproduces the recorded trials" in capsys.readouterr().err
    assert not out.exists()
