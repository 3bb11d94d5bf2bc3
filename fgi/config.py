"""Typed, frozen configuration for every knob of fgi.

Every hyperparameter is a dataclass field with a default and a one-line reason. Fields carry their
valid range or choices in ``metadata`` so that loading YAML, applying search-space overrides and the
search-space validator all share one check. Errors name the dotted key.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from fgi.fields import SECTION_NAMES, ConfigError, Section, bounded, hints
from fgi.files import atomic_write_bytes, atomic_write_text
from fgi.yamltext import load_yaml_data

# checks of data.dataset and text.template against their registries, run on every built config; the dataset
# registry (fgi.datasets, imported by the package itself) adds its check, so the root imports no part
NAME_CHECKS: list[Callable[[str, str], None]] = []
# model.tta's choices: the flipped views fgi.method.views.TTA_VIEWS averages
TTA_MODES = ("none", "hflip", "flips")


@dataclass(frozen=True)
class DataConfig(Section):
    """Which dataset to read and how samples are turned into tensors."""

    dataset: str = "synthetic"  # a name of the dataset registry (fgi/datasets.py), checked on construction
    root: str = ""  # raw dataset folder; empty for the built-in synthetic set
    cache_dir: str = ""  # prepared cache; empty means $XDG_CACHE_HOME/fgi/<dataset>-<hash>
    fixations: str = ""  # eye-tracking CSV (GazeMedSeg format) for kvasir and nci-isbi; isic and synthetic simulate gaze
    split_dir: str = ""  # folder holding train.txt / val.txt / test.txt id lists; empty looks in root
    image_size: int = bounded(128, lo=16, hi=2048)  # training and evaluation side length in pixels
    in_channels: int = bounded(3, lo=1, hi=4)  # 3 for RGB photographs, 1 for MRI slices
    tight_level: float = bounded(0.5, lo=0.01, hi=0.99)  # soft-map threshold of the tight gaze mask (teacher)
    loose_level: float = bounded(0.3, lo=0.01, hi=0.99)  # soft-map threshold of the loose gaze mask (student)
    level_source: str = bounded("crf", choices=("crf", "heatmap"))  # which soft map the levels threshold
    val_fraction: float = bounded(0.1, lo=0.0, hi=0.9)  # share of train carved out for validation without a val file
    split_seed: int = bounded(0, lo=0)  # seed of the carved validation subset, fixed across trials
    num_workers: int = bounded(0, lo=0, hi=64)  # DataLoader worker processes
    synthetic_train: int = bounded(96, lo=2)  # synthetic training images
    synthetic_val: int = bounded(32, lo=1)  # synthetic validation images
    synthetic_test: int = bounded(32, lo=1)  # synthetic test images
    synthetic_seed: int = bounded(0, lo=0)  # seed of the synthetic generator (data identity, not training)
    supervision: str = bounded("gaze", choices=("gaze", "ground_truth"))  # ground_truth is the fully supervised upper bound


@dataclass(frozen=True)
class AugmentConfig(Section):
    """Joint image/map/mask augmentations (albumentations), applied to training samples only."""

    enabled: bool = True  # turn off for deterministic debugging
    hflip: float = bounded(0.5, lo=0.0, hi=1.0)  # horizontal flip probability
    vflip: float = bounded(0.5, lo=0.0, hi=1.0)  # vertical flip probability; endoscopy and dermoscopy have no up
    affine: float = bounded(0.5, lo=0.0, hi=1.0)  # probability of a random affine warp
    rotate_limit: float = bounded(20.0, lo=0.0, hi=180.0)  # affine rotation range in degrees
    scale_limit: float = bounded(0.15, lo=0.0, hi=0.9)  # affine scale range (+-)
    shift_limit: float = bounded(0.06, lo=0.0, hi=0.5)  # affine shift as a fraction of the side
    color: float = bounded(0.5, lo=0.0, hi=1.0)  # probability of colour jitter (RGB) or intensity jitter (MRI)
    brightness: float = bounded(0.2, lo=0.0, hi=1.0)  # brightness jitter amplitude
    contrast: float = bounded(0.2, lo=0.0, hi=1.0)  # contrast jitter amplitude
    saturation: float = bounded(0.1, lo=0.0, hi=1.0)  # saturation jitter amplitude (RGB only)
    hue: float = bounded(0.02, lo=0.0, hi=0.5)  # hue jitter amplitude (RGB only)


@dataclass(frozen=True)
class GazeConfig(Section):
    """Fixations to soft heatmap (fgi prepare)."""

    canvas: int = bounded(192, lo=16, hi=4096)  # side of the square canvas; 192 matches 768 in Dice, 30x faster
    sigma_fraction: float = bounded(70.0 / 768.0, lo=0.001, hi=0.5)  # Gaussian sigma as a fraction of the canvas
    duration_weighted: bool = True  # weight each fixation by its duration
    on_missing: str = bounded("fail", choices=("fail", "skip"))  # images without fixations: stop, or skip and report
    sim_inside: float = bounded(0.75, lo=0.0, hi=1.0)  # simulation: share of fixations inside the lesion
    sim_border: float = bounded(0.15, lo=0.0, hi=1.0)  # simulation: share on the lesion border; the rest stray
    sim_count_median: float = bounded(25.0, lo=1.0, hi=1000.0)  # simulation: median fixations per image (Kvasir: 25)
    sim_count_min: int = bounded(5, lo=1)  # simulation: fewest fixations per image (Kvasir: 5)
    sim_count_max: int = bounded(99, lo=1)  # simulation: most fixations per image (Kvasir: 99)
    sim_count_spread: float = bounded(0.5, lo=0.0, hi=5.0)  # simulation: log-normal sigma of the count
    sim_duration_median: float = bounded(300.0, lo=1.0, hi=10000.0)  # simulation: median duration in ms (Kvasir: ~300)
    sim_duration_spread: float = bounded(0.5, lo=0.0, hi=5.0)  # simulation: log-normal sigma of durations
    sim_border_width: float = bounded(0.03, lo=0.0, hi=0.5)  # simulation: border band half-width, fraction of the side


@dataclass(frozen=True)
class CRFConfig(Section):
    """Dense-CRF refinement of the heatmap against the image (fgi prepare)."""

    enabled: bool = True  # off stores the heatmap as the CRF map
    sxy: float = bounded(80.0, lo=0.1, hi=1000.0)  # bilateral spatial std in pixels of the working size
    srgb: float = bounded(13.0, lo=0.1, hi=255.0)  # bilateral colour std
    compat: float = bounded(1.0, lo=0.0, hi=100.0)  # bilateral compatibility weight
    gaussian_sxy: float = bounded(3.0, lo=0.1, hi=100.0)  # smoothness kernel std
    gaussian_compat: float = bounded(0.0, lo=0.0, hi=100.0)  # smoothness weight; 0 keeps the soft map soft (measured Dice gate)
    iterations: int = bounded(10, lo=1, hi=100)  # mean-field iterations
    work_size: int = bounded(0, lo=0, hi=4096)  # longest side the CRF runs at; 0 runs at the prepared image size


@dataclass(frozen=True)
class TextConfig(Section):
    """The language signal given to the teacher."""

    mode: str = bounded("tokens", choices=("tokens", "pooled", "none"))  # token sequence (reference); pooled token or learned null token are ablations
    template: str = "structured"  # a name of the template registry (fgi/text/templates.yaml), checked on construction
    describer: str = bounded("morphology", choices=("morphology", "vlm"))  # how lesion descriptions are produced
    encoder: str = "minilm"  # text encoder: 'minilm' (packaged all-MiniLM-L6-v2) or a local model path
    vlm_path: str = ""  # local path of a vision-language model for describer 'vlm'
    max_tokens: int = bounded(48, lo=4, hi=512)  # token-sequence length kept for mode 'tokens'
    dim: int = bounded(384, lo=1, hi=8192)  # embedding width; set from the encoder by fgi prepare
    vlm_max_new_tokens: int = bounded(96, lo=1, hi=2048)  # VLM answer length cap (greedy decoding)
    vlm_batch_size: int = bounded(8, lo=1, hi=512)  # images per VLM generate call; bounded by accelerator memory


@dataclass(frozen=True)
class ModelConfig(Section):
    """Teacher and student U-Nets."""

    teacher_widths: tuple[int, ...] = bounded((32, 64, 128, 256, 512), lo=1, hi=4096, items_lo=2, items_hi=7)  # channels per level
    student_widths: tuple[int, ...] = bounded((16, 32, 64, 128, 256), lo=1, hi=4096, items_lo=2, items_hi=7)  # narrower; same depth
    norm_groups: int = bounded(8, lo=1, hi=64)  # GroupNorm groups (works at batch size 1)
    fusion_scales: tuple[int, ...] = bounded((1, 2, 3, 4), lo=0, hi=6, items_lo=0, items_hi=7)  # encoder levels with text cross-attention
    attn_heads: int = bounded(4, lo=1, hi=64)  # cross-attention heads; must divide each fused width
    dropout: float = bounded(0.0, lo=0.0, hi=0.9)  # attention dropout
    predictor: str = bounded("student", choices=("student", "teacher", "ensemble"))  # which model predicts at inference
    tta: str = bounded("none", choices=TTA_MODES)  # test-time flips averaged at inference (reference: none; flips: identity, h, v, both)
    fusion_skip: bool = True  # reference: fusion on skip features through an aligned projection; false chains fusion in the encoder
    student_adapter: str = bounded("projection", choices=("projection", "linear"))  # reference projection + conv-norm-ReLU, or one 1x1 conv
    level_init: str = bounded("copy", choices=("copy", "independent"))  # two_level baseline: GazeMedSeg deep-copies the first network; independent draws each


@dataclass(frozen=True)
class MaskingConfig(Section):
    """Disagreement-aware random masking (DARM) of the student's input."""

    source: str = bounded("gaze", choices=("gaze", "predictions"))  # uncertain region: gaze levels or model disagreement
    hide: str = bounded("block", choices=("block", "ring"))  # reference zeroes whole blocks; ring zeroes only region pixels in them
    placement: str = bounded("ring", choices=("ring", "uniform"))  # block centres on the uncertain region (reference) or anywhere: uniform keeps the budget but its positions do not outline the lesion
    mask_ratio: float = bounded(0.3, lo=0.0, hi=1.0)  # share of the uncertain region hidden (block: summed block area)
    block_min: float = bounded(3 / 224, lo=0.001, hi=1.0)  # smallest block size, fraction of the image side (reference: 3 px at 224)
    block_max: float = bounded(10 / 224, lo=0.001, hi=1.0)  # largest block size, fraction of the image side (reference: 10 px at 224)
    decoy_ratio: float = bounded(0.0, lo=0.0, hi=1.0)  # share of the rest of the image hidden by decoy blocks, so block positions don't outline the lesion (reference: 0)


@dataclass(frozen=True)
class MixConfig(Section):
    """CutMix inputs of the consistency loss."""

    form: str = bounded("reference", choices=("reference", "single"))  # two independent CutMixes (reference); single: one shared box, earlier used with cutmix_prob 0.5
    cutmix_prob: float = bounded(1.0, lo=0.0, hi=1.0)  # probability that a sample gets a pasted box (reference: always)
    beta_alpha: float = bounded(4.0, lo=0.01, hi=100.0)  # Beta(a, a) draws the box area ratio
    noise: float = bounded(0.2, lo=0.0, hi=2.0)  # amplitude of uniform noise added to mixed inputs


@dataclass(frozen=True)
class LossConfig(Section):
    """Loss terms and their weights."""

    seg: str = bounded("bce+dice", choices=("bce", "dice", "bce+dice"))  # supervised segmentation loss
    bce_weight: float = bounded(1.0, lo=0.0, hi=100.0)  # BCE share of the segmentation loss
    dice_weight: float = bounded(1.0, lo=0.0, hi=100.0)  # Dice share of the segmentation loss
    tau_pos: float = bounded(0.8, lo=0.5, hi=1.0)  # confidence needed for a positive consistency target
    tau_neg: float = bounded(0.2, lo=0.0, hi=0.5)  # probability under which a class is a negative target
    cwc_form: str = bounded("reference", choices=("reference", "symmetric"))  # reference: min-P negative weight, per-term means
    cwc_weight: float = bounded(1.0, lo=0.0, hi=100.0)  # lambda of the confidence-weighted consistency
    level_weight: float = bounded(3.0, lo=0.0, hi=100.0)  # two_level baseline: cross-level consistency weight (GazeMedSeg's Kvasir script)
    level_mode: str = bounded("prop", choices=("prop", "pure"))  # two_level baseline: GazeMedSeg's consistency; prop (its default and Kvasir script) compares each level's neighbour-propagated prediction with the other's
    prop_radius: int = bounded(2, lo=1, hi=7)  # prop mode: neighbours on each side of a pixel (GazeMedSeg: a 5x5 window)
    prop_dilation: int = bounded(2, lo=1, hi=8)  # prop mode: spacing of those neighbours in pixels (GazeMedSeg: 2)
    align_scales: tuple[int, ...] = bounded((1, 2, 3, 4), lo=0, hi=6, items_lo=0, items_hi=7)  # levels aligned; () is off
    align_weight: float = bounded(0.05, lo=0.0, hi=100.0)  # lambda of the feature alignment
    rampup_fraction: float = bounded(0.3, lo=0.0, hi=1.0)  # sigmoid ramp-up of the unsupervised weights, as a share of train.max_steps
    rampup_shape: float = bounded(5.0, lo=0.0, hi=50.0)  # exponent of exp(-k (1 - t/T)^2)


@dataclass(frozen=True)
class OptimConfig(Section):
    """Optimizer and learning-rate schedule (one optimizer per model, same settings)."""

    name: str = bounded("adamw", choices=("adamw", "sgd"))  # AdamW, or SGD with Nesterov momentum
    lr: float = bounded(2e-3, lo=1e-7, hi=10.0)  # peak learning rate
    weight_decay: float = bounded(1e-4, lo=0.0, hi=1.0)  # decoupled (AdamW) or L2 (SGD) weight decay
    momentum: float = bounded(0.9, lo=0.0, hi=0.999)  # SGD momentum
    beta1: float = bounded(0.9, lo=0.0, hi=0.9999)  # AdamW beta1
    beta2: float = bounded(0.999, lo=0.0, hi=0.99999)  # AdamW beta2
    warmup_fraction: float = bounded(0.02, lo=0.0, hi=1.0)  # linear warm-up, as a share of train.max_steps
    min_lr_ratio: float = bounded(0.01, lo=0.0, hi=1.0)  # cosine floor as a fraction of lr
    grad_clip: float = bounded(0.0, lo=0.0)  # max global grad norm; 0 turns clipping off


@dataclass(frozen=True)
class TrainConfig(Section):
    """Loop length, batch, precision and seeding."""

    method: str = bounded("teacher_student", choices=("teacher_student", "student_only", "two_level"))  # student_only and two_level (GazeMedSeg) are the gaze-only baselines

    max_steps: int = bounded(300, lo=1)  # optimizer steps
    batch_size: int = bounded(8, lo=1, hi=4096)  # global batch (split across workers)
    eval_every: int = bounded(50, lo=1)  # steps between validations and checkpoints
    amp: str = bounded("none", choices=("none", "bf16", "fp16"))  # autocast dtype; bf16 works on CPU
    channels_last: bool = False  # NHWC memory format for convolutions
    compile: bool = False  # torch.compile the models
    seed: int = bounded(0, lo=0)  # base seed; ranks and trials add offsets
    threads: int = bounded(0, lo=0, hi=512)  # torch intra-op threads; 0 leaves the default


@dataclass(frozen=True)
class Config:
    """The resolved configuration of one run."""

    data: DataConfig = field(default_factory=DataConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    gaze: GazeConfig = field(default_factory=GazeConfig)
    crf: CRFConfig = field(default_factory=CRFConfig)
    text: TextConfig = field(default_factory=TextConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    masking: MaskingConfig = field(default_factory=MaskingConfig)
    mix: MixConfig = field(default_factory=MixConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def __post_init__(self) -> None:
        check_consistency(self)


SECTION_NAMES.update({hint: name for name, hint in hints(Config).items()})


def check_consistency(cfg: Config) -> None:
    """Cross-field rules that a single field's range cannot express."""
    depth = len(cfg.model.teacher_widths)
    if len(cfg.model.student_widths) != depth:
        raise ConfigError(
            f"model.student_widths: needs {depth} levels like model.teacher_widths, got {len(cfg.model.student_widths)}"
        )
    for key, scales in (("model.fusion_scales", cfg.model.fusion_scales), ("loss.align_scales", cfg.loss.align_scales)):
        bad = [s for s in scales if s >= depth]
        if bad:
            raise ConfigError(f"{key}: levels {bad} do not exist; the U-Net has levels 0..{depth - 1}")
        if len(set(scales)) != len(scales):
            raise ConfigError(f"{key}: repeated levels in {list(scales)}")
    for s in cfg.model.fusion_scales:
        if cfg.model.teacher_widths[s] % cfg.model.attn_heads:
            raise ConfigError(
                f"model.attn_heads: {cfg.model.attn_heads} does not divide teacher width "
                f"{cfg.model.teacher_widths[s]} at fused level {s}"
            )
    for key, widths in (("model.teacher_widths", cfg.model.teacher_widths), ("model.student_widths", cfg.model.student_widths)):
        bad = [w for w in widths if w % cfg.model.norm_groups]
        if bad:
            raise ConfigError(f"{key}: widths {bad} are not divisible by model.norm_groups={cfg.model.norm_groups}")
    if cfg.data.loose_level >= cfg.data.tight_level:
        raise ConfigError(
            f"data.loose_level: must be below data.tight_level ({cfg.data.loose_level} >= {cfg.data.tight_level})"
        )
    if cfg.masking.placement == "uniform" and cfg.masking.hide == "ring":
        raise ConfigError("masking.placement: uniform needs masking.hide block; ring hides only uncertain pixels, "
                          "whose outline is what uniform placement removes")
    if cfg.masking.block_min > cfg.masking.block_max:
        raise ConfigError(f"masking.block_min: {cfg.masking.block_min} exceeds masking.block_max={cfg.masking.block_max}")
    if cfg.gaze.sim_inside + cfg.gaze.sim_border > 1.0:
        raise ConfigError(f"gaze.sim_border: gaze.sim_inside + gaze.sim_border exceed 1 ({cfg.gaze.sim_inside} + {cfg.gaze.sim_border})")
    if cfg.gaze.sim_count_min > cfg.gaze.sim_count_max:
        raise ConfigError(f"gaze.sim_count_min: {cfg.gaze.sim_count_min} exceeds gaze.sim_count_max={cfg.gaze.sim_count_max}")
    for check in NAME_CHECKS:
        check(cfg.data.dataset, cfg.text.template)
    if cfg.loss.tau_neg >= cfg.loss.tau_pos:
        raise ConfigError(f"loss.tau_neg: must be below loss.tau_pos ({cfg.loss.tau_neg} >= {cfg.loss.tau_pos})")


def _build(cls: type, data: Any, prefix: str) -> Any:
    if not isinstance(data, dict):
        raise ConfigError(f"{prefix or 'config'}: expected a mapping, got {type(data).__name__}")
    types = hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        key = f"{prefix}.{unknown[0]}" if prefix else unknown[0]
        raise ConfigError(f"{key}: unknown key; valid keys here are {sorted(fields)}")
    kwargs = {}
    for name, value in data.items():
        key = f"{prefix}.{name}" if prefix else name
        hint = types[name]
        kwargs[name] = _build(hint, value, key) if dataclasses.is_dataclass(hint) else value
    return cls(**kwargs)


def from_dict(data: dict[str, Any]) -> Config:
    """Build a validated ``Config`` from a nested mapping (missing keys take their defaults).

    Raises:
        ConfigError: naming the dotted key of the first bad entry.
    """
    return _build(Config, data or {}, "")


def to_dict(cfg: Any) -> dict[str, Any]:
    """Nested plain-Python mapping of a config (tuples become lists) for YAML and JSON."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(cfg):
        v = getattr(cfg, f.name)
        if dataclasses.is_dataclass(v):
            out[f.name] = to_dict(v)
        elif isinstance(v, tuple):
            out[f.name] = list(v)
        else:
            out[f.name] = v
    return out


def flatten(cfg: Config) -> dict[str, Any]:
    """Dotted-key view (``loss.tau_pos``) used for logging params and search overrides."""
    flat: dict[str, Any] = {}
    for section, values in to_dict(cfg).items():
        for k, v in values.items():
            flat[f"{section}.{k}"] = v
    return flat


def field_spec(dotted: str) -> tuple[Any, typing.Mapping[str, Any]]:
    """Type hint and validation metadata of a dotted field, for search-space validation.

    Raises:
        ConfigError: when the key does not name a config field.
    """
    parts = dotted.split(".")
    if len(parts) != 2:
        raise ConfigError(f"{dotted}: expected 'section.field'; sections are {[f.name for f in dataclasses.fields(Config)]}")
    section, name = parts
    sections = {f.name: f for f in dataclasses.fields(Config)}
    if section not in sections:
        raise ConfigError(f"{dotted}: unknown section {section!r}; valid sections are {sorted(sections)}")
    cls = hints(Config)[section]
    fields = {f.name: f for f in dataclasses.fields(cls)}
    if name not in fields:
        raise ConfigError(f"{dotted}: unknown key; valid keys in {section} are {sorted(fields)}")
    return hints(cls)[name], fields[name].metadata


def override(cfg: Config, updates: typing.Mapping[str, Any]) -> Config:
    """Return a new validated config with dotted-key updates applied (``{"loss.tau_pos": 0.9}``)."""
    data = to_dict(cfg)
    for dotted, value in updates.items():
        field_spec(dotted)
        section, name = dotted.split(".")
        data[section][name] = list(value) if isinstance(value, tuple) else value
    return from_dict(data)


def dump_yaml(cfg: Config) -> str:
    """YAML text of the resolved config; ``load_yaml_text`` reads it back to an equal config."""
    return yaml.safe_dump(to_dict(cfg), sort_keys=False)


def load_yaml_text(text: str, source: str = "<string>") -> Config:
    """Parse and validate YAML text. ``source`` names the file in errors."""
    data = load_yaml_data(text, source)
    try:
        return from_dict(data or {})
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc}") from None


def load_yaml(path: str | os.PathLike) -> Config:
    """Load and validate a YAML config file."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{p}: config file not found")
    return load_yaml_text(p.read_text(), str(p))


def save_yaml(cfg: Config, path: str | os.PathLike) -> None:
    """Write the resolved config as YAML, atomically."""
    atomic_write_text(path, dump_yaml(cfg))


def config_hash(obj: Any) -> str:
    """Stable short hash of a config or config section (for cache keys)."""
    payload = to_dict(obj) if dataclasses.is_dataclass(obj) else obj
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


__all__ = [
    "AugmentConfig", "CRFConfig", "Config", "ConfigError", "DataConfig", "GazeConfig", "LossConfig",
    "MaskingConfig", "MixConfig", "ModelConfig", "OptimConfig", "TTA_MODES", "TextConfig", "TrainConfig",
    "atomic_write_bytes", "atomic_write_text", "check_consistency", "config_hash", "dump_yaml", "field_spec",
    "flatten", "from_dict", "load_yaml", "load_yaml_data", "load_yaml_text", "override", "save_yaml", "to_dict",
]
