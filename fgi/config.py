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
import tempfile
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml


class ConfigError(ValueError):
    """A configuration value is unknown, of the wrong type or out of range. The message names the key."""


def _f(default: Any, lo: float | None = None, hi: float | None = None, choices: tuple | None = None,
       items_lo: int | None = None, items_hi: int | None = None) -> Any:
    """A field with validation metadata (``lo``/``hi`` inclusive bounds, ``choices``, item bounds)."""
    meta = {"lo": lo, "hi": hi, "choices": choices, "items_lo": items_lo, "items_hi": items_hi}
    if isinstance(default, (list, tuple)):
        return field(default_factory=lambda d=tuple(default): d, metadata=meta)
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class DataConfig:
    """Which dataset to read and how samples are turned into tensors."""

    dataset: str = "synthetic"  # registry name: synthetic, kvasir, nci-isbi, isic
    root: str = ""  # raw dataset folder; empty for the built-in synthetic set
    cache_dir: str = ""  # prepared cache; empty means $XDG_CACHE_HOME/fgi/<dataset>-<hash>
    fixations: str = ""  # eye-tracking CSV (GazeMedSeg format) for kvasir and nci-isbi; isic and synthetic simulate gaze
    split_dir: str = ""  # folder holding train.txt / val.txt / test.txt id lists; empty looks in root
    image_size: int = _f(128, lo=16, hi=2048)  # training and evaluation side length in pixels
    in_channels: int = _f(3, lo=1, hi=4)  # 3 for RGB photographs, 1 for MRI slices
    tight_level: float = _f(0.5, lo=0.01, hi=0.99)  # soft-map threshold of the tight gaze mask (teacher)
    loose_level: float = _f(0.3, lo=0.01, hi=0.99)  # soft-map threshold of the loose gaze mask (student)
    level_source: str = _f("crf", choices=("crf", "heatmap"))  # which soft map the levels threshold
    val_fraction: float = _f(0.1, lo=0.0, hi=0.9)  # share of train carved out for validation without a val file
    split_seed: int = _f(0, lo=0)  # seed of the carved validation subset, fixed across trials
    num_workers: int = _f(0, lo=0, hi=64)  # DataLoader worker processes
    synthetic_train: int = _f(96, lo=2)  # synthetic training images
    synthetic_val: int = _f(32, lo=1)  # synthetic validation images
    synthetic_test: int = _f(32, lo=1)  # synthetic test images
    synthetic_seed: int = _f(0, lo=0)  # seed of the synthetic generator (data identity, not training)
    supervision: str = _f("gaze", choices=("gaze", "ground_truth"))  # ground_truth is the fully supervised upper bound


@dataclass(frozen=True)
class AugmentConfig:
    """Joint image/map/mask augmentations (albumentations), applied to training samples only."""

    enabled: bool = True  # turn off for deterministic debugging
    hflip: float = _f(0.5, lo=0.0, hi=1.0)  # horizontal flip probability
    vflip: float = _f(0.5, lo=0.0, hi=1.0)  # vertical flip probability; endoscopy and dermoscopy have no up
    affine: float = _f(0.5, lo=0.0, hi=1.0)  # probability of a random affine warp
    rotate_limit: float = _f(20.0, lo=0.0, hi=180.0)  # affine rotation range in degrees
    scale_limit: float = _f(0.15, lo=0.0, hi=0.9)  # affine scale range (+-)
    shift_limit: float = _f(0.06, lo=0.0, hi=0.5)  # affine shift as a fraction of the side
    color: float = _f(0.5, lo=0.0, hi=1.0)  # probability of colour jitter (RGB) or intensity jitter (MRI)
    brightness: float = _f(0.2, lo=0.0, hi=1.0)  # brightness jitter amplitude
    contrast: float = _f(0.2, lo=0.0, hi=1.0)  # contrast jitter amplitude
    saturation: float = _f(0.1, lo=0.0, hi=1.0)  # saturation jitter amplitude (RGB only)
    hue: float = _f(0.02, lo=0.0, hi=0.5)  # hue jitter amplitude (RGB only)


@dataclass(frozen=True)
class GazeConfig:
    """Fixations to soft heatmap (fgi prepare)."""

    canvas: int = _f(192, lo=16, hi=4096)  # side of the square canvas; 192 matches 768 in Dice, 30x faster
    sigma_fraction: float = _f(70.0 / 768.0, lo=0.001, hi=0.5)  # Gaussian sigma as a fraction of the canvas
    duration_weighted: bool = True  # weight each fixation by its duration
    on_missing: str = _f("fail", choices=("fail", "skip"))  # images without fixations: stop, or skip and report
    sim_inside: float = _f(0.75, lo=0.0, hi=1.0)  # simulation: share of fixations inside the lesion
    sim_border: float = _f(0.15, lo=0.0, hi=1.0)  # simulation: share on the lesion border; the rest stray
    sim_count_median: float = _f(25.0, lo=1.0, hi=1000.0)  # simulation: median fixations per image (Kvasir: 25)
    sim_count_min: int = _f(5, lo=1)  # simulation: fewest fixations per image (Kvasir: 5)
    sim_count_max: int = _f(99, lo=1)  # simulation: most fixations per image (Kvasir: 99)
    sim_count_spread: float = _f(0.5, lo=0.0, hi=5.0)  # simulation: log-normal sigma of the count
    sim_duration_median: float = _f(300.0, lo=1.0, hi=10000.0)  # simulation: median duration in ms (Kvasir: ~300)
    sim_duration_spread: float = _f(0.5, lo=0.0, hi=5.0)  # simulation: log-normal sigma of durations
    sim_border_width: float = _f(0.03, lo=0.0, hi=0.5)  # simulation: border band half-width, fraction of the side


@dataclass(frozen=True)
class CRFConfig:
    """Dense-CRF refinement of the heatmap against the image (fgi prepare)."""

    enabled: bool = True  # off stores the heatmap as the CRF map
    sxy: float = _f(80.0, lo=0.1, hi=1000.0)  # bilateral spatial std in pixels of the working size
    srgb: float = _f(13.0, lo=0.1, hi=255.0)  # bilateral colour std
    compat: float = _f(1.0, lo=0.0, hi=100.0)  # bilateral compatibility weight
    gaussian_sxy: float = _f(3.0, lo=0.1, hi=100.0)  # smoothness kernel std
    gaussian_compat: float = _f(0.0, lo=0.0, hi=100.0)  # smoothness weight; 0 keeps the soft map soft (measured Dice gate)
    iterations: int = _f(10, lo=1, hi=100)  # mean-field iterations
    work_size: int = _f(0, lo=0, hi=4096)  # longest side the CRF runs at; 0 runs at the prepared image size


@dataclass(frozen=True)
class TextConfig:
    """The language signal given to the teacher."""

    mode: str = _f("pooled", choices=("pooled", "tokens", "none"))  # one pooled token, token sequence, or a learned null token
    template: str = "structured"  # prompt template name (search_spaces/templates.yaml)
    describer: str = _f("morphology", choices=("morphology", "vlm"))  # how lesion descriptions are produced
    encoder: str = "minilm"  # text encoder: 'minilm' (packaged all-MiniLM-L6-v2) or a local model path
    vlm_path: str = ""  # local path of a vision-language model for describer 'vlm'
    max_tokens: int = _f(48, lo=4, hi=512)  # token-sequence length kept for mode 'tokens'
    dim: int = _f(384, lo=1, hi=8192)  # embedding width; set from the encoder by fgi prepare
    vlm_max_new_tokens: int = _f(96, lo=1, hi=2048)  # VLM answer length cap (greedy decoding)
    vlm_batch_size: int = _f(8, lo=1, hi=512)  # images per VLM generate call; bounded by accelerator memory


@dataclass(frozen=True)
class ModelConfig:
    """Teacher and student U-Nets."""

    teacher_widths: tuple[int, ...] = _f((32, 64, 128, 256, 512), lo=1, hi=4096, items_lo=2, items_hi=7)  # channels per level
    student_widths: tuple[int, ...] = _f((16, 32, 64, 128, 256), lo=1, hi=4096, items_lo=2, items_hi=7)  # narrower; same depth
    norm_groups: int = _f(8, lo=1, hi=64)  # GroupNorm groups (works at batch size 1)
    fusion_scales: tuple[int, ...] = _f((1, 2, 3, 4), lo=0, hi=6, items_lo=0, items_hi=7)  # encoder levels with text cross-attention
    attn_heads: int = _f(4, lo=1, hi=64)  # cross-attention heads; must divide each fused width
    dropout: float = _f(0.0, lo=0.0, hi=0.9)  # attention dropout
    predictor: str = _f("student", choices=("student", "teacher", "ensemble"))  # which model predicts at inference


@dataclass(frozen=True)
class MaskingConfig:
    """Disagreement-aware random masking (DARM) of the student's input."""

    source: str = _f("gaze", choices=("gaze", "predictions"))  # uncertain region: gaze levels or model disagreement
    mask_ratio: float = _f(0.3, lo=0.0, hi=1.0)  # share of the uncertain region hidden
    block_min: float = _f(0.03, lo=0.001, hi=1.0)  # smallest block side, fraction of the image side
    block_max: float = _f(0.12, lo=0.001, hi=1.0)  # largest block side, fraction of the image side


@dataclass(frozen=True)
class MixConfig:
    """CutMix inputs of the consistency loss."""

    cutmix_prob: float = _f(0.5, lo=0.0, hi=1.0)  # probability that a sample gets a pasted box
    beta_alpha: float = _f(4.0, lo=0.01, hi=100.0)  # Beta(a, a) draws the box area ratio
    noise: float = _f(0.2, lo=0.0, hi=2.0)  # amplitude of uniform noise added to mixed inputs


@dataclass(frozen=True)
class LossConfig:
    """Loss terms and their weights."""

    seg: str = _f("bce+dice", choices=("bce", "dice", "bce+dice"))  # supervised segmentation loss
    bce_weight: float = _f(1.0, lo=0.0, hi=100.0)  # BCE share of the segmentation loss
    dice_weight: float = _f(1.0, lo=0.0, hi=100.0)  # Dice share of the segmentation loss
    tau_pos: float = _f(0.8, lo=0.5, hi=1.0)  # confidence needed for a positive consistency target
    tau_neg: float = _f(0.2, lo=0.0, hi=0.5)  # probability under which a class is a negative target
    cwc_weight: float = _f(1.0, lo=0.0, hi=100.0)  # lambda of the confidence-weighted consistency
    align_scales: tuple[int, ...] = _f((1, 2, 3, 4), lo=0, hi=6, items_lo=0, items_hi=7)  # levels aligned; () is off
    align_weight: float = _f(0.05, lo=0.0, hi=100.0)  # lambda of the feature alignment
    rampup_steps: int = _f(200, lo=0)  # sigmoid ramp-up length of the unsupervised weights
    rampup_shape: float = _f(5.0, lo=0.0, hi=50.0)  # exponent of exp(-k (1 - t/T)^2)


@dataclass(frozen=True)
class OptimConfig:
    """Optimizer and learning-rate schedule (one optimizer per model, same settings)."""

    name: str = _f("adamw", choices=("adamw", "sgd"))  # AdamW, or SGD with Nesterov momentum
    lr: float = _f(2e-3, lo=1e-7, hi=10.0)  # peak learning rate
    weight_decay: float = _f(1e-4, lo=0.0, hi=1.0)  # decoupled (AdamW) or L2 (SGD) weight decay
    momentum: float = _f(0.9, lo=0.0, hi=0.999)  # SGD momentum
    beta1: float = _f(0.9, lo=0.0, hi=0.9999)  # AdamW beta1
    beta2: float = _f(0.999, lo=0.0, hi=0.99999)  # AdamW beta2
    warmup_steps: int = _f(20, lo=0)  # linear warm-up length
    min_lr_ratio: float = _f(0.01, lo=0.0, hi=1.0)  # cosine floor as a fraction of lr
    grad_clip: float = _f(0.0, lo=0.0)  # max global grad norm; 0 turns clipping off


@dataclass(frozen=True)
class TrainConfig:
    """Loop length, batch, precision and seeding."""

    method: str = _f("teacher_student", choices=("teacher_student", "student_only"))  # student_only is the gaze-only baseline

    max_steps: int = _f(300, lo=1)  # optimizer steps
    batch_size: int = _f(8, lo=1, hi=4096)  # global batch (split across workers)
    eval_every: int = _f(50, lo=1)  # steps between validations and checkpoints
    amp: str = _f("none", choices=("none", "bf16", "fp16"))  # autocast dtype; bf16 works on CPU
    channels_last: bool = False  # NHWC memory format for convolutions
    compile: bool = False  # torch.compile the models
    seed: int = _f(0, lo=0)  # base seed; ranks and trials add offsets
    threads: int = _f(0, lo=0, hi=512)  # torch intra-op threads; 0 leaves the default


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
    if cfg.masking.block_min > cfg.masking.block_max:
        raise ConfigError(f"masking.block_min: {cfg.masking.block_min} exceeds masking.block_max={cfg.masking.block_max}")
    if cfg.gaze.sim_inside + cfg.gaze.sim_border > 1.0:
        raise ConfigError(f"gaze.sim_border: gaze.sim_inside + gaze.sim_border exceed 1 ({cfg.gaze.sim_inside} + {cfg.gaze.sim_border})")
    if cfg.gaze.sim_count_min > cfg.gaze.sim_count_max:
        raise ConfigError(f"gaze.sim_count_min: {cfg.gaze.sim_count_min} exceeds gaze.sim_count_max={cfg.gaze.sim_count_max}")
    if cfg.loss.tau_neg >= cfg.loss.tau_pos:
        raise ConfigError(f"loss.tau_neg: must be below loss.tau_pos ({cfg.loss.tau_neg} >= {cfg.loss.tau_pos})")


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _coerce(key: str, value: Any, hint: Any, meta: typing.Mapping[str, Any]) -> Any:
    """Check one leaf value against its type hint and metadata; return the canonical value."""
    origin = typing.get_origin(hint)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list, got {type(value).__name__} {value!r}")
        item_hint = typing.get_args(hint)[0]
        items = tuple(_coerce(f"{key}[{i}]", v, item_hint, {**meta, "choices": None}) for i, v in enumerate(value))
        lo, hi = meta.get("items_lo"), meta.get("items_hi")
        if lo is not None and len(items) < lo or hi is not None and len(items) > hi:
            raise ConfigError(f"{key}: needs {lo}..{hi} items, got {len(items)}")
        return items
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected true or false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                value = int(value)
            else:
                raise ConfigError(f"{key}: expected an integer, got {value!r}")
    elif hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        value = float(value)
    elif hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key}: expected a string, got {value!r}")
    lo, hi, choices = meta.get("lo"), meta.get("hi"), meta.get("choices")
    if choices is not None and value not in choices:
        raise ConfigError(f"{key}: {value!r} is not one of {list(choices)}")
    if lo is not None and value < lo or hi is not None and value > hi:
        raise ConfigError(f"{key}: {value!r} is outside [{lo}, {hi if hi is not None else 'inf'}]")
    return value


def _build(cls: type, data: Any, prefix: str) -> Any:
    if not isinstance(data, dict):
        raise ConfigError(f"{prefix or 'config'}: expected a mapping, got {type(data).__name__}")
    hints = _hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        key = f"{prefix}.{unknown[0]}" if prefix else unknown[0]
        raise ConfigError(f"{key}: unknown key; valid keys here are {sorted(fields)}")
    kwargs = {}
    for name, value in data.items():
        key = f"{prefix}.{name}" if prefix else name
        hint = hints[name]
        if dataclasses.is_dataclass(hint):
            kwargs[name] = _build(hint, value, key)
        else:
            kwargs[name] = _coerce(key, value, hint, fields[name].metadata)
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
    cls = _hints(Config)[section]
    fields = {f.name: f for f in dataclasses.fields(cls)}
    if name not in fields:
        raise ConfigError(f"{dotted}: unknown key; valid keys in {section} are {sorted(fields)}")
    return _hints(cls)[name], fields[name].metadata


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
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: not valid YAML ({exc})") from None
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


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write text through a temporary file in the same folder and a rename."""
    atomic_write_bytes(path, text.encode())


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write bytes through a temporary file in the same folder, fsync and rename."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=p.parent, prefix=f".{p.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, p)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_yaml(cfg: Config, path: str | os.PathLike) -> None:
    """Write the resolved config as YAML, atomically."""
    atomic_write_text(path, dump_yaml(cfg))


def config_hash(obj: Any) -> str:
    """Stable short hash of a config or config section (for cache keys)."""
    payload = to_dict(obj) if dataclasses.is_dataclass(obj) else obj
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


__all__ = [
    "AugmentConfig", "CRFConfig", "Config", "ConfigError", "DataConfig", "GazeConfig", "LossConfig",
    "MaskingConfig", "MixConfig", "ModelConfig", "OptimConfig", "TextConfig", "TrainConfig",
    "atomic_write_bytes", "atomic_write_text", "check_consistency", "config_hash", "dump_yaml", "field_spec",
    "flatten", "from_dict", "load_yaml", "load_yaml_text", "override", "save_yaml", "to_dict",
]
