from __future__ import annotations

import pytest

from fgi.config import (
    Config,
    ConfigError,
    dump_yaml,
    flatten,
    from_dict,
    load_yaml,
    load_yaml_text,
    override,
    save_yaml,
)


def test_yaml_round_trip_is_exact(tmp_path):
    cfg = override(Config(), {"loss.align_scales": (3, 4), "loss.tau_pos": 0.9, "model.predictor": "ensemble"})
    path = tmp_path / "cfg.yaml"
    save_yaml(cfg, path)
    again = load_yaml(path)
    assert again == cfg
    assert dump_yaml(again) == dump_yaml(cfg)
    assert again.loss.align_scales == (3, 4)


def test_every_field_is_dumped():
    import dataclasses

    cfg = Config()
    expected = {f"{s.name}.{f.name}" for s in dataclasses.fields(cfg) for f in dataclasses.fields(getattr(cfg, s.name))}
    flat = flatten(cfg)
    assert set(flat) == expected and len(expected) > 90
    for key, value in flat.items():
        section, name = key.split(".")
        attr = getattr(getattr(cfg, section), name)
        assert value == (list(attr) if isinstance(attr, tuple) else attr), key


@pytest.mark.parametrize(
    ("data", "key"),
    [
        ({"loss": {"tau_poz": 0.8}}, "loss.tau_poz"),
        ({"lossy": {}}, "lossy"),
        ({"loss": {"tau_pos": "high"}}, "loss.tau_pos"),
        ({"loss": {"tau_pos": 1.5}}, "loss.tau_pos"),
        ({"train": {"max_steps": 2.5}}, "train.max_steps"),
        ({"train": {"compile": "yes"}}, "train.compile"),
        ({"optim": {"name": "lamb"}}, "optim.name"),
        ({"loss": {"align_scales": [1, "x"]}}, "loss.align_scales[1]"),
        ({"loss": {"align_scales": [9]}}, "loss.align_scales"),
        ({"data": {"tight_level": 0.3, "loose_level": 0.5}}, "data.loose_level"),
        ({"model": {"attn_heads": 3}}, "model.attn_heads"),
        ({"model": {"student_widths": [8, 16]}}, "model.student_widths"),
    ],
)
def test_errors_name_the_dotted_key(data, key):
    with pytest.raises(ConfigError) as err:
        from_dict(data)
    assert str(err.value).startswith(key), str(err.value)


def test_yaml_errors_name_the_file(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("optim:\n  lr: -1\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml: optim\.lr"):
        load_yaml(path)
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_yaml_text("a: [1,", "x.yaml")


def test_config_is_frozen_and_override_validates():
    cfg = Config()
    with pytest.raises(AttributeError):
        cfg.loss.tau_pos = 0.5  # type: ignore[misc]
    with pytest.raises(ConfigError, match="loss.nope"):
        override(cfg, {"loss.nope": 1})
    assert override(cfg, {"optim.lr": 1}).optim.lr == 1.0
