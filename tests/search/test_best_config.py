"""Portable best configs: the method's hyperparameters under a header, the same at any budget."""

from __future__ import annotations

from pathlib import Path

import yaml

from fgi.budgets import BUDGETS, MACHINE_KEYS, apply_budget, method_dict, portable_config_text
from fgi.config import Config, flatten, load_yaml, load_yaml_text, override

REPO = Path(__file__).resolve().parents[2]


def test_a_portable_config_drops_data_paths_and_compute_and_keeps_the_method():
    cfg = override(apply_budget(Config(), "cpu"), {
        "data.dataset": "kvasir", "data.root": "/d/kvasir", "data.cache_dir": "/c", "data.fixations": "/d/f.csv",
        "train.threads": 2, "loss.tau_pos": 0.77, "loss.rampup_fraction": 0.4})
    text = portable_config_text(cfg, ["loss.tau_pos"], "sweep s, trial t\nval_dice 0.5")
    assert text.startswith("# sweep s, trial t\n# val_dice 0.5\n")
    flat = {f"{s}.{k}" for s, fields in yaml.safe_load(text).items() for k in fields}
    assert not flat & (set(MACHINE_KEYS) | {k for b in BUDGETS.values() for k in b})
    again = load_yaml_text(text)
    assert again.data.dataset == "kvasir" and again.loss.tau_pos == 0.77 and again.loss.rampup_fraction == 0.4
    # read back under any budget it is the same method: only compute and data keys differ from the original
    for budget in BUDGETS:
        differs = {k for k, v in flatten(apply_budget(again, budget)).items() if flatten(cfg)[k] != v}
        assert differs <= set(MACHINE_KEYS) | set(BUDGETS[budget]) | set(BUDGETS["cpu"]), (budget, differs)


def test_a_searched_compute_key_is_kept():
    cfg = apply_budget(Config(), "smoke")
    assert method_dict(cfg, ["data.image_size"])["data"]["image_size"] == 32
    assert "image_size" not in method_dict(cfg)["data"]


def test_the_committed_kvasir_config_is_portable():
    path = REPO / "best_configs" / "kvasir.yaml"
    text = path.read_text()
    assert text.startswith("# fgi best config of sweep kvasir-final (dataset kvasir)\n")
    assert "# exported top1: top1 − published: +19.50 Dice points on val" in text
    data = yaml.safe_load(text)
    flat = {f"{s}.{k}" for s, fields in data.items() for k in fields}
    assert not flat & (set(MACHINE_KEYS) | {k for b in BUDGETS.values() for k in b})
    cfg = load_yaml(path)
    # the final stage's top1 (docs/RESULTS.md, arm (f)): image-only teacher, uniform blocks, ensemble predictor
    assert cfg.data.dataset == "kvasir" and cfg.text.mode == "none"
    assert (cfg.masking.placement, cfg.model.predictor) == ("uniform", "ensemble")
    assert cfg.data.loose_level < cfg.data.tight_level
