from __future__ import annotations

import json

from fgi.text.fingerprint import model_fingerprint, safe_name


def test_safe_name_keeps_only_portable_characters():
    assert safe_name("Qwen2-VL 2B/instruct:v1.5") == "Qwen2-VL_2B_instruct_v1.5"
    assert safe_name("minilm-0123abcd_x.y") == "minilm-0123abcd_x.y"


def test_model_fingerprint_reads_config_and_weight_sizes_only(tmp_path):
    def folder(name: str, weights: dict[str, int], config: dict) -> str:
        path = tmp_path / name
        path.mkdir()
        (path / "config.json").write_text(json.dumps(config))
        for file, size in weights.items():
            (path / file).write_bytes(b"\1" * size)
        return model_fingerprint(path)

    base = folder("a", {"model.safetensors": 8}, {"hidden_size": 4})
    assert len(base) == 12 and int(base, 16) >= 0
    assert folder("b", {"model.safetensors": 8, "tokenizer.json": 99}, {"hidden_size": 4}) == base
    assert folder("c", {"model.safetensors": 9}, {"hidden_size": 4}) != base
    assert folder("d", {"model-00001.safetensors": 8}, {"hidden_size": 4}) != base
    assert folder("e", {"model.bin": 8}, {"hidden_size": 4}) != base
    assert folder("f", {"model.safetensors": 8}, {"hidden_size": 5}) != base
