"""TeacherStudentTrainer: the method's training step and evaluation, in plain PyTorch.

The engine takes batches and a ``torch.device``; it never reads files and imports nothing from Ray
or MLflow. A variant overrides one hook (``build_models``, ``build_losses``, ``build_optimizer``); the loss it
minimizes is the weighted sum of its method's named terms (``fgi.method.terms.LOSS_TERMS``).

Batch keys: "image" (B, C, H, W) float; "tight" and "loose" (B, 1, H, W) bool gaze levels; "mask"
(B, 1, H, W) bool ground truth (used for training only with ``data.supervision: ground_truth``, and for
evaluation); "text" (B, D) or (B, L, D) with "text_mask" (B, L) bool, absent when ``text.mode`` is none.

The teacher-student step follows the reference (FGI ``GazeSupTrainer._update``): the teacher sees the
image with its text, the student the DARM-masked image; each model then predicts its own CutMix of the
noisy batch and is pulled by confidence-weighted consistency towards the other model's prediction
mixed the same way (the teacher towards the student's prediction on the masked image, the student
towards the teacher's); the student's adapted features align to the teacher's.
"""

from __future__ import annotations

import copy
import dataclasses
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import nullcontext

import torch
from torch import nn

from fgi.checkpoint import INFERENCE_ONLY
from fgi.config import Config, dump_yaml, load_yaml_text
from fgi.method.losses import (
    ConfidenceWeightedConsistency,
    FeatureAlignment,
    SegmentationLoss,
    sigmoid_rampup,
)
from fgi.method.masking import apply_darm, darm_mask, uncertain_region
from fgi.method.metrics import METRICS, batch_metrics, dice_per_image
from fgi.method.mixing import apply_mix, cutmix_boxes, reference_cutmix_boxes, uniform_noise
from fgi.method.terms import LOSS_TERMS, sum_terms
from fgi.method.views import flip_averaged
from fgi.models import Student, Teacher, TwoLevel
from fgi.seed import derive_seed, make_generator

ModelWrapper = Callable[[nn.Module], nn.Module]
PREDICTOR_MODELS = {"student": ("student",), "teacher": ("teacher",), "ensemble": ("student", "teacher")}
MODEL_DICE = ("dice_teacher", "dice_student", "dice_ensemble")  # per-model Dice logged when a teacher exists


def _unwrap(model: nn.Module) -> nn.Module:
    """The plain module under DDP and ``torch.compile`` wrappers."""
    while hasattr(model, "_orig_mod") or isinstance(getattr(model, "module", None), nn.Module):
        model = model._orig_mod if hasattr(model, "_orig_mod") else model.module
    return model


def schedule_steps(fraction: float, max_steps: int) -> int:
    """Length in steps of a schedule phase given as a fraction of the run (``loss.rampup_fraction``,
    ``optim.warmup_fraction``), so a config means the same at any ``train.max_steps``."""
    return int(round(fraction * max_steps))


def lr_lambda(warmup: int, total: int, floor: float) -> Callable[[int], float]:
    """Linear warm-up to 1, then cosine decay to ``floor`` at ``total`` steps."""

    def factor(step: int) -> float:
        if warmup and step < warmup:
            return (step + 1) / warmup
        span = max(total - warmup, 1)
        progress = min(max(step - warmup, 0) / span, 1.0)
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))

    return factor


class TeacherStudentTrainer:
    """Trains the text-conditioned teacher and the image-only student together.

    Args:
        cfg: resolved run config.
        device: where models and batches live.
        rank: data-parallel rank (offsets the masking/mixing seed so ranks draw different blocks).
        wrap_model: applied to each model after it is built, e.g. ``ray.train.torch.prepare_model``.
    """

    def __init__(self, cfg: Config, device: torch.device, rank: int = 0,
                 wrap_model: ModelWrapper | None = None) -> None:
        self.cfg = cfg
        self.device = torch.device(device)
        self.rank = rank
        self.step = 0
        self.inference_only = False  # loaded from a released state: it predicts, it cannot train
        if cfg.train.threads:
            torch.set_num_threads(cfg.train.threads)
        # model init is identical on every rank and reproducible, and leaves the global RNG as it was:
        # models are built on the CPU under a forked, locally seeded CPU generator
        with torch.random.fork_rng(devices=[]):
            torch.random.default_generator.manual_seed(derive_seed(cfg.train.seed, 0))
            self.teacher, self.student = self.build_models()
        self.models: dict[str, nn.Module] = {"student": self.student}
        if self.teacher is not None:
            self.models["teacher"] = self.teacher
        memory_format = torch.channels_last if cfg.train.channels_last else torch.preserve_format
        for name, model in self.models.items():
            model.to(self.device, memory_format=memory_format)
            if wrap_model is not None:
                model = wrap_model(model)
            if cfg.train.compile:
                model = torch.compile(model)
            self.models[name] = model
        self.losses = self.build_losses()
        self.loss_terms = LOSS_TERMS[cfg.train.method]
        self.optimizers = {name: self.build_optimizer(_unwrap(m)) for name, m in self.models.items()}
        factor = lr_lambda(schedule_steps(cfg.optim.warmup_fraction, cfg.train.max_steps), cfg.train.max_steps,
                           cfg.optim.min_lr_ratio)
        self.schedulers = {name: torch.optim.lr_scheduler.LambdaLR(opt, factor) for name, opt in self.optimizers.items()}
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=cfg.train.amp == "fp16")
        self.generator = make_generator(derive_seed(cfg.train.seed, rank), self.device)

    # hooks a variant overrides
    def build_models(self) -> tuple[nn.Module | None, nn.Module]:
        """Teacher (None for the student-only baseline) and student, from the config's fields."""
        cfg, m = self.cfg, self.cfg.model
        teacher = None
        if cfg.train.method == "teacher_student":
            teacher = Teacher(in_channels=cfg.data.in_channels, widths=m.teacher_widths, text_dim=cfg.text.dim,
                              fusion_scales=m.fusion_scales, align_scales=cfg.loss.align_scales, heads=m.attn_heads,
                              dropout=m.dropout, text_mode=cfg.text.mode, norm_groups=m.norm_groups,
                              fusion_skip=m.fusion_skip)
        if cfg.train.method == "two_level":
            return None, TwoLevel(in_channels=cfg.data.in_channels, widths=m.student_widths, norm_groups=m.norm_groups,
                                  copy_init=m.level_init == "copy", prop_radius=cfg.loss.prop_radius,
                                  prop_dilation=cfg.loss.prop_dilation)
        student = Student(in_channels=cfg.data.in_channels, widths=m.student_widths, teacher_widths=m.teacher_widths,
                          align_scales=cfg.loss.align_scales, norm_groups=m.norm_groups, adapter=m.student_adapter)
        return teacher, student

    def build_losses(self) -> dict[str, nn.Module]:
        """The loss modules the terms use: segmentation of teacher and student, consistency, alignment."""
        lc = self.cfg.loss
        seg = SegmentationLoss(lc.seg, lc.bce_weight, lc.dice_weight)
        return {"seg_teacher": seg, "seg_student": seg, "cwc": ConfidenceWeightedConsistency(lc.tau_pos, lc.tau_neg, lc.cwc_form),
                "align": FeatureAlignment()}

    def build_optimizer(self, model: nn.Module) -> torch.optim.Optimizer:
        """AdamW, or SGD with Nesterov momentum."""
        oc = self.cfg.optim
        params = [p for p in model.parameters() if p.requires_grad]
        if oc.name == "sgd":
            return torch.optim.SGD(params, lr=oc.lr, momentum=oc.momentum, nesterov=oc.momentum > 0,
                                   weight_decay=oc.weight_decay)
        return torch.optim.AdamW(params, lr=oc.lr, betas=(oc.beta1, oc.beta2), weight_decay=oc.weight_decay)

    # helpers
    def autocast(self):
        """``torch.autocast`` on this device with the configured dtype, or a no-op."""
        amp = self.cfg.train.amp
        if amp == "none":
            return nullcontext()
        return torch.autocast(self.device.type, dtype=torch.bfloat16 if amp == "bf16" else torch.float16)

    def _to_device(self, batch: Mapping) -> dict:
        out = {}
        for key, value in batch.items():
            if isinstance(value, torch.Tensor):
                value = value.to(self.device, non_blocking=True)
                if key == "image" and self.cfg.train.channels_last:
                    value = value.contiguous(memory_format=torch.channels_last)
            out[key] = value
        return out

    def _targets(self, batch: Mapping) -> tuple[torch.Tensor, torch.Tensor]:
        if self.cfg.data.supervision == "ground_truth":
            if "mask" not in batch:
                raise KeyError("data.supervision is ground_truth but the batch has no 'mask'")
            return batch["mask"].bool(), batch["mask"].bool()
        return batch["tight"].bool(), batch["loose"].bool()

    def _text(self, batch: Mapping) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        if self.cfg.text.mode == "none":
            return None, None
        if "text" not in batch:
            raise KeyError(f"text.mode is {self.cfg.text.mode!r} but the batch has no 'text'")
        return batch["text"], batch.get("text_mask")

    def _check(self, losses: Mapping[str, torch.Tensor]) -> dict[str, float]:
        out = {}
        for name, value in losses.items():
            v = float(value.detach())
            if not math.isfinite(v):
                raise FloatingPointError(f"step {self.step}: loss term {name} is {v}")
            out[name] = v
        return out

    def _hidden(self, region: torch.Tensor) -> torch.Tensor:
        mc = self.cfg.masking
        return darm_mask(region, mc.mask_ratio, mc.block_min, mc.block_max, self.generator, mc.hide, mc.decoy_ratio,
                         placement=mc.placement)

    def _cutmix(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One CutMix of the noisy batch: the mixed input, its boxes and partners."""
        mc, (n, _, h, w) = self.cfg.mix, image.shape
        if mc.form == "reference":
            box, perm = reference_cutmix_boxes(n, h, w, mc.cutmix_prob, mc.beta_alpha, self.generator, self.device)
            return apply_mix(uniform_noise(image, mc.noise, self.generator), box, perm), box, perm
        box, perm = cutmix_boxes(n, h, w, mc.cutmix_prob, mc.beta_alpha, self.generator, self.device)
        return uniform_noise(apply_mix(image, box, perm), mc.noise, self.generator), box, perm

    def train_step(self, batch: Mapping) -> dict[str, float]:
        """One optimizer step of both models; returns every loss term, the ramp weight and the lr."""
        if self.inference_only:
            raise ValueError("this trainer was loaded from a released (inference-only) state; it cannot train")
        for model in self.models.values():
            model.train()
        batch = self._to_device(batch)
        image = batch["image"]
        tight, loose = self._targets(batch)
        if self.cfg.train.method == "two_level":
            losses = self._two_level_losses(image, tight, loose)
        elif self.teacher is None:
            losses = self._student_only_losses(image, tight, loose)
        else:
            losses = self._teacher_student_losses(image, tight, loose, *self._text(batch))
        values = self._check(losses)
        for opt in self.optimizers.values():
            opt.zero_grad(set_to_none=True)
        self.scaler.scale(losses["loss"]).backward()
        clip = self.cfg.optim.grad_clip
        for name, opt in self.optimizers.items():
            if clip > 0:
                self.scaler.unscale_(opt)
                torch.nn.utils.clip_grad_norm_(self.models[name].parameters(), clip)
            self.scaler.step(opt)
        self.scaler.update()
        values["lr"] = self.optimizers["student"].param_groups[0]["lr"]
        for sched in self.schedulers.values():
            sched.step()
        self.step += 1
        return values

    def _student_only_losses(self, image: torch.Tensor, tight: torch.Tensor, loose: torch.Tensor) -> dict:
        hidden = self._hidden(uncertain_region(tight, loose))
        masked_image, masked_target = apply_darm(image, loose, hidden)
        with self.autocast():
            out = self.models["student"](masked_image)
        return sum_terms(self.loss_terms, self.losses, {"logits": out["logits"], "masked_target": masked_target},
                         self.cfg.loss)

    def _two_level_losses(self, image: torch.Tensor, tight: torch.Tensor, loose: torch.Tensor) -> dict:
        """GazeMedSeg's two-level step: each network learns its level; their predictions agree (no masking)."""
        prop = self.cfg.loss.level_mode == "prop"
        with self.autocast():
            out = self.models["student"](image, propagate=prop)
        outputs = {"levels": out["levels"].float(), "propagated": out["propagated"].float() if prop else None,
                   "tight": tight, "loose": loose}
        return sum_terms(self.loss_terms, self.losses, outputs, self.cfg.loss)

    def _teacher_student_losses(self, image: torch.Tensor, tight: torch.Tensor, loose: torch.Tensor,
                                text: torch.Tensor | None, text_mask: torch.Tensor | None) -> dict:
        cfg, n = self.cfg, image.shape[0]
        teacher, student = self.models["teacher"], self.models["student"]
        reference = cfg.mix.form == "reference"
        mixed_t, box_t, perm_t = self._cutmix(image)
        mixed_s, box_s, perm_s = self._cutmix(image) if reference else (mixed_t, box_t, perm_t)
        both_text = None if text is None else torch.cat([text, text])
        both_mask = None if text_mask is None else torch.cat([text_mask, text_mask])
        student_clean = None
        with self.autocast():
            if not reference or cfg.masking.source == "predictions":
                with torch.no_grad():
                    student_clean = torch.sigmoid(student(image)["logits"].float())
            t_out = teacher(torch.cat([image, mixed_t]), both_text, both_mask)
        t_clean, t_mixed = t_out["logits"].float().split(n)
        teacher_prob = torch.sigmoid(t_clean.detach())
        if cfg.masking.source == "gaze":
            region = uncertain_region(tight, loose)
        else:
            region = uncertain_region(teacher_prob > 0.5, student_clean > 0.5)
        masked_image, masked_target = apply_darm(image, loose, self._hidden(region))
        with self.autocast():
            s_out = student(torch.cat([masked_image, mixed_s]))
        s_masked, s_mixed = s_out["logits"].float().split(n)

        # the reference ramps with its 1-based iteration count
        weight = sigmoid_rampup(self.step + 1, schedule_steps(cfg.loss.rampup_fraction, cfg.train.max_steps),
                                cfg.loss.rampup_shape)
        outputs = {
            "t_clean": t_clean, "t_mixed": t_mixed, "s_masked": s_masked, "s_mixed": s_mixed, "tight": tight,
            "masked_target": masked_target, "teacher_prob": teacher_prob,
            "student_target": torch.sigmoid(s_masked.detach()) if reference else student_clean,
            "box_t": box_t, "perm_t": perm_t, "box_s": box_s, "perm_s": perm_s,
            "t_feats": {k: v[:n] for k, v in t_out["features"].items()},
            "s_feats": {k: v[:n] for k, v in s_out["features"].items()},
        }
        return {**sum_terms(self.loss_terms, self.losses, outputs, cfg.loss, weight), "rampup": torch.tensor(weight)}

    @torch.no_grad()
    def _probabilities(self, image: torch.Tensor, text: torch.Tensor | None, text_mask: torch.Tensor | None,
                       names: Iterable[str]) -> dict[str, torch.Tensor]:
        """Foreground probabilities of each named model, one forward pass per ``model.tta`` view (float32)."""
        for model in self.models.values():
            model.eval()
        image = image.to(self.device, non_blocking=True)
        if self.cfg.train.channels_last:
            image = image.contiguous(memory_format=torch.channels_last)
        text = None if text is None else text.to(self.device)
        text_mask = None if text_mask is None else text_mask.to(self.device)
        models = {"student": lambda x: self.models["student"](x)["logits"],
                  "teacher": lambda x: self.models["teacher"](x, text, text_mask)["logits"]}
        probs = {}
        with self.autocast():
            for name in names:
                probs[name] = flip_averaged(lambda x, f=models[name]: torch.sigmoid(f(x).float()), image,
                                            self.cfg.model.tta)
        return probs

    def _predictor_models(self) -> tuple[str, ...]:
        predictor = self.cfg.model.predictor
        if predictor != "student" and self.teacher is None:
            raise ValueError(f"model.predictor is {predictor!r} but train.method student_only has no teacher")
        return PREDICTOR_MODELS[predictor]

    def predict(self, image: torch.Tensor, text: torch.Tensor | None = None,
                text_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Foreground probabilities from ``model.predictor`` (student, teacher, or their average).

        Shape:
            image (B, C, H, W). Returns (B, 1, H, W) float32.
        """
        names = self._predictor_models()
        probs = self._probabilities(image, text, text_mask, names)
        return torch.stack([probs[k] for k in names]).mean(0)

    def evaluate_rows(self, loader: Iterable[Mapping]) -> list[dict]:
        """Per-image metrics (with "id") over a loader whose batches carry "mask".

        Each row holds ``fgi.method.metrics.METRICS`` of ``model.predictor``, and, when a teacher exists and the
        batch has its text, the Dice of the teacher, the student and their ensemble ("dice_teacher",
        "dice_student", "dice_ensemble"); each model predicts once per batch.
        """
        predictor = self._predictor_models()
        rows = []
        # the leak check draws the same blocks at every evaluation, apart from the training draws
        generator = make_generator(derive_seed(self.cfg.train.seed, self.rank), self.device)
        for batch in loader:
            if "mask" not in batch:
                raise KeyError("evaluation needs ground-truth 'mask' in every batch")
            text = None if self.cfg.text.mode == "none" else batch.get("text")
            text_mask = None if text is None else batch.get("text_mask")
            both = self.teacher is not None and (self.cfg.text.mode == "none" or text is not None)
            region = self._leak_region(batch, both)
            names = ("student", "teacher") if both else predictor
            if region is not None and "student" not in names:
                names = (*names, "student")
            probs = self._probabilities(batch["image"], text, text_mask, names)
            pred = torch.stack([probs[k] for k in predictor]).mean(0) > 0.5
            gt = batch["mask"].to(self.device).bool()
            extra = {}
            if both:
                ensemble = torch.stack([probs[k] for k in PREDICTOR_MODELS["ensemble"]]).mean(0)
                for key, p in zip(MODEL_DICE, (probs["teacher"], probs["student"], ensemble), strict=True):
                    extra[key] = dice_per_image(p > 0.5, gt).tolist()
            if region is not None:
                if isinstance(region, str):
                    region = uncertain_region(probs["teacher"] > 0.5, probs["student"] > 0.5)
                mc = self.cfg.masking
                hidden = darm_mask(region, mc.mask_ratio, mc.block_min, mc.block_max, generator, mc.hide,
                                   mc.decoy_ratio, placement=mc.placement)
                blocked = self._probabilities(apply_darm(batch["image"].to(self.device), gt, hidden)[0], None, None,
                                              ("student",))["student"]
                with_blocks = dice_per_image(blocked > 0.5, gt)
                extra["dice_blocks"] = with_blocks.tolist()
                extra["leak"] = (with_blocks - dice_per_image(probs["student"] > 0.5, gt)).tolist()
            ids = batch.get("id", [None] * len(gt))
            metrics = batch_metrics(pred.cpu().numpy(), batch["mask"].cpu().numpy())
            for i, (row, image_id) in enumerate(zip(metrics, ids, strict=True)):
                rows.append({"id": image_id, **row, **{k: v[i] for k, v in extra.items()}})
        return rows

    def _leak_region(self, batch: Mapping, both: bool) -> torch.Tensor | str | None:
        """Where the leak check draws DARM blocks on a val batch: the gaze region, "predictions" (the models'
        disagreement, computed once their probabilities exist), or None when the run has no DARM to check."""
        mc = self.cfg.masking
        if mc.mask_ratio <= 0 or self.cfg.train.method == "two_level":
            return None
        if mc.source == "predictions":
            return "predictions" if both else None
        if "tight" not in batch or "loose" not in batch:
            return None
        return uncertain_region(batch["tight"].to(self.device), batch["loose"].to(self.device))

    def evaluate_sums(self, loader: Iterable[Mapping]) -> dict[str, float]:
        """Sums of each metric over images and the image count "n" (for all-reducing across ranks).

        Keys: "val_<metric>" of ``model.predictor`` and, when every row has them, "val_dice_teacher",
        "val_dice_student" and "val_dice_ensemble"; with DARM on, the leak check's "val_dice_blocks" (the
        student's Dice with the training-time blocks drawn on the val image) and "val_leak" (that minus its
        clean Dice: above 0, the student reads the lesion from where the blocks are).
        """
        return self.row_sums(self.evaluate_rows(loader))

    def row_sums(self, rows: Sequence[Mapping]) -> dict[str, float]:
        """``evaluate_sums`` of rows that ``evaluate_rows`` returned (a caller that keeps the rows too)."""
        sums = {f"val_{m}": float(sum(r[m] for r in rows)) for m in METRICS}
        if self.teacher is not None and all(k in r for r in rows for k in MODEL_DICE):
            sums.update({f"val_{k}": float(sum(r[k] for r in rows)) for k in MODEL_DICE})
        if rows and all("leak" in r for r in rows):
            sums.update({f"val_{k}": float(sum(r[k] for r in rows)) for k in ("dice_blocks", "leak")})
        sums["n"] = float(len(rows))
        return sums

    def evaluate(self, loader: Iterable[Mapping]) -> dict[str, float]:
        """Mean of each ``evaluate_sums`` entry over the loader's images, and the count "n"."""
        sums = self.evaluate_sums(loader)
        n = max(sums["n"], 1.0)
        return {k: (v / n if k != "n" else v) for k, v in sums.items()}

    def state_dict(self) -> dict:
        """Models, optimizers, schedulers, scaler, step, the masking/mixing generator state and the config
        (YAML text): tensors and plain Python values only."""
        return {
            "models": {name: _unwrap(m).state_dict() for name, m in self.models.items()},
            "optimizers": {name: opt.state_dict() for name, opt in self.optimizers.items()},
            "schedulers": {name: s.state_dict() for name, s in self.schedulers.items()},
            "scaler": self.scaler.state_dict(),
            "step": self.step,
            "generator": self.generator.get_state(),
            "config": dump_yaml(self.cfg),
        }

    def load_state_dict(self, state: Mapping) -> None:
        """Restore everything ``state_dict`` saved; the saved config must match this trainer's."""
        saved = load_yaml_text(state["config"], "checkpoint config")
        # the predictor and the test-time flips only choose how trained models answer: a state loads under any
        as_here = dataclasses.replace(saved.model, predictor=self.cfg.model.predictor, tta=self.cfg.model.tta)
        if as_here != self.cfg.model or saved.train.method != self.cfg.train.method:
            raise ValueError("checkpoint was saved with a different model config; build the trainer from its config")
        for name, model in self.models.items():
            _unwrap(model).load_state_dict(state["models"][name])  # copies cast a half-precision release back
        self.step = int(state["step"])
        self.inference_only = bool(state.get(INFERENCE_ONLY))
        if self.inference_only:
            return
        for name, opt in self.optimizers.items():
            # the optimizer would otherwise share moment tensors with the source of ``state``
            opt.load_state_dict(copy.deepcopy(state["optimizers"][name]))
        for name, sched in self.schedulers.items():
            sched.load_state_dict(state["schedulers"][name])
        self.scaler.load_state_dict(state["scaler"])
        self.generator.set_state(state["generator"])
