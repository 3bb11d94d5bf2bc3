"""One training run without Ray: loaders and samplers, and the one worker body.

``train_worker`` is the body of every run: a Ray Train worker (``fgi.search.ray_train``), an in-process
Tune trial (``fgi.search.trial``) and the benchmarks all call it, so they report the same metrics and write
the same checkpoint folders. The global batch ``train.batch_size`` is split evenly over the workers, and a
``DistributedSampler`` seeded with ``train.seed`` gives every worker its share of the same permutation, so
N workers see the same samples per step as one worker would.

At every evaluation the workers evaluate disjoint shards of the validation split and all-reduce the
metric sums (``torch.distributed``, when initialized), so the reported metrics cover the whole split; the
per-image val Dice of all ranks goes into the checkpoint (``val_rows.json``). Rank 0 writes the checkpoint
(engine state: models, optimizers, step, RNG, config) into a staging folder and hands it to the reporter.
A restarted run continues from the checkpoint it is given, at the saved step and at the same position of
the data order. This module imports nothing from Ray or MLflow.
"""
from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler

from fgi.checkpoint import checkpoint_name, read_checkpoint, read_metrics, write_checkpoint
from fgi.config import Config, ConfigError, override
from fgi.method.loop import Reporter, run_loop
from fgi.seed import derive_seed


class _ResumableSampler(Sampler[int]):
    """A ``DistributedSampler`` whose first epoch after a restart skips the samples already used."""

    def __init__(self, inner: DistributedSampler) -> None:
        self.inner = inner
        self.skip = 0

    def set_position(self, epoch: int, skip: int) -> None:
        self.inner.set_epoch(epoch)
        self.skip = skip

    def __iter__(self) -> Iterator[int]:
        skip, self.skip = self.skip, 0
        return itertools.islice(iter(self.inner), skip, None)

    def __len__(self) -> int:
        return len(self.inner) - self.skip


class _ShardSampler(Sampler[int]):
    """Indices ``rank::world`` without padding, so all-reduced sums count every image exactly once."""

    def __init__(self, n: int, rank: int, world: int) -> None:
        self.indices = list(range(rank, n, world))

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)


def local_batch_size(cfg: Config, world: int) -> int:
    """Per-worker batch of the global ``train.batch_size``.

    Raises:
        ConfigError: when the global batch does not split evenly over the workers.
    """
    if cfg.train.batch_size % world:
        raise ConfigError(f"train.batch_size: {cfg.train.batch_size} does not split evenly over {world} workers")
    return cfg.train.batch_size // world


def _all_reduce_sums(values: Mapping[str, float], device: torch.device) -> dict[str, float]:
    """Sum a dict of floats over all ranks (identity without a process group)."""
    import torch.distributed as dist

    keys = sorted(values)
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return {k: float(values[k]) for k in keys}
    backend_device = device if dist.get_backend() == "nccl" else torch.device("cpu")
    t = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64, device=backend_device)
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return dict(zip(keys, t.cpu().tolist(), strict=True))


def _gather_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every rank's per-image rows, in rank order (the rows as they are without a process group)."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return rows
    gathered: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, rows)
    return [row for part in gathered for row in part]


def build_loaders(cfg: Config, rank: int, world: int) -> dict[str, Any]:
    """Training and validation loaders of one worker over the prepared cache.

    Args:
        cfg: resolved run config (``data.cache_dir`` set by ``prepare``).
        rank: this worker's rank.
        world: number of workers.
    """
    from fgi.data.dataset import build_datasets

    datasets: dict[str, Dataset] = build_datasets(cfg, derive_seed(cfg.train.seed, rank))
    batch = local_batch_size(cfg, world)
    sampler = _ResumableSampler(DistributedSampler(datasets["train"], num_replicas=world, rank=rank, shuffle=True,
                                                   seed=cfg.train.seed, drop_last=False))
    steps_per_epoch = len(sampler.inner) // batch
    if steps_per_epoch == 0:
        raise ConfigError(f"train.batch_size: {cfg.train.batch_size} exceeds the {len(datasets['train'])} training images")
    common = {"num_workers": cfg.data.num_workers, "persistent_workers": False}
    train = DataLoader(datasets["train"], batch_size=batch, sampler=sampler, drop_last=True, **common)
    val = DataLoader(datasets["val"], batch_size=batch, sampler=_ShardSampler(len(datasets["val"]), rank, world), **common)
    norm = {"mean": np.asarray(datasets["train"].mean).tolist(), "std": np.asarray(datasets["train"].std).tolist(),
            "channels": cfg.data.in_channels, "image_size": cfg.data.image_size}
    return {"train": train, "val": val, "sampler": sampler, "steps_per_epoch": steps_per_epoch,
            "dataset": datasets["train"], "normalization": norm}


def epoch_batches(loaders: Mapping[str, Any], start_step: int = 0) -> Iterator[Mapping[str, Any]]:
    """Endless training batches of ``build_loaders``' loaders, epoch after epoch, from step ``start_step``.

    Each epoch sets the sampler's and the dataset's epoch (a new seeded permutation and new augmentation
    draws); a run resumed at ``start_step`` continues at the same position of the same data order.
    """
    per_epoch, local_batch = loaders["steps_per_epoch"], loaders["train"].batch_size
    epoch, done = divmod(start_step, per_epoch)
    while True:
        loaders["sampler"].set_position(epoch, done * local_batch)
        loaders["dataset"].set_epoch(epoch)
        yield from itertools.islice(loaders["train"], per_epoch - done)
        epoch, done = epoch + 1, 0


COST_REPEATS = 3  # timed passes over one val batch for the inference cost; the median is kept


def inference_cost(trainer: Any, batch: Mapping[str, Any]) -> dict[str, float]:
    """What the deployable predictor (``model.predictor``) costs: ``infer_ms`` per image, the median of
    ``COST_REPEATS`` passes over ``batch`` after one untimed pass, and ``infer_mparams``, its networks'
    parameters in millions. A multi-objective sweep can trade them against the val metrics."""
    import time

    from fgi.method.engine import PREDICTOR_MODELS

    names = PREDICTOR_MODELS[trainer.cfg.model.predictor]
    text = None if trainer.cfg.text.mode == "none" else batch.get("text")
    text_mask = None if text is None else batch.get("text_mask")
    image = batch["image"]

    def one_pass() -> float:
        t0 = time.perf_counter()
        trainer.predict(image, text, text_mask)
        if trainer.device.type == "cuda":
            torch.cuda.synchronize(trainer.device)
        return time.perf_counter() - t0

    one_pass()
    seconds = float(np.median([one_pass() for _ in range(COST_REPEATS)]))
    params = sum(p.numel() for name in names for p in trainer.models[name].parameters())
    return {"infer_ms": 1000.0 * seconds / max(len(image), 1), "infer_mparams": params / 1e6}


def _means(sums: Mapping[str, float]) -> dict[str, float]:
    n = max(sums["n"], 1.0)
    out = {k: v / n for k, v in sums.items() if k != "n"}
    out["val_n"] = sums["n"]
    return out


def train_worker(cfg: Config, *, rank: int, world: int, device: torch.device, reporter: Reporter,
                 checkpoint: Any | None, staging: Path, wrap_model: Any | None = None,
                 beat: Callable[[], None] | None = None) -> None:
    """Train one worker of a run from its latest checkpoint to ``train.max_steps``, reporting at each evaluation.

    The one body of Ray Train workers and of in-process Tune trials (``fgi.search.trial``): only the reporter,
    the device and the checkpoint to restore differ, so both report the same metrics and write the same
    checkpoint folders.

    Args:
        cfg: the resolved run config.
        rank: this worker's rank.
        world: number of workers.
        device: where the engine trains.
        reporter: where metrics and checkpoint folders go.
        checkpoint: the checkpoint to restore (anything with ``as_directory()``), or None.
        staging: where rank 0 writes checkpoint folders before the reporter persists them.
        wrap_model: wraps the models (DDP); None keeps them as they are.
        beat: called at every optimizer step, every val batch, after every report and after each start-up
            phase (model build, restore, data loading): a ``fgi.search.watchdog.Watchdog``'s beat, so that
            only a phase that stops progressing, not a slow run, outlasts its timeout.
    """
    from fgi.method.engine import TeacherStudentTrainer
    from fgi.viz import validation_overlay

    progress = beat or _no_progress
    trainer = TeacherStudentTrainer(cfg, device, rank=rank, wrap_model=wrap_model)
    progress()
    restored: dict[str, Any] = {}
    if checkpoint is not None:
        state, restored = _readable_state(checkpoint)
        if state is not None:
            trainer.load_state_dict(state)
        progress()
    if trainer.step >= cfg.train.max_steps and restored:
        # a run restarted after its last checkpoint: report its final metrics again so that the caller
        # (a resumed Tune trial) sees how it ended
        reporter.report(restored, None)
        return

    loaders = build_loaders(cfg, rank, world)
    norm = loaders["normalization"]
    progress()

    val_rows: list[dict[str, Any]] = []  # per-image val Dice of the latest evaluation, all ranks

    def evaluate() -> dict[str, float]:
        rows = trainer.evaluate_rows(_beating(loaders["val"], progress))
        val_rows[:] = _gather_rows([{"id": r["id"], "dice": r["dice"]} for r in rows])
        return _means(_all_reduce_sums(trainer.row_sums(rows), device))

    def on_eval(step: int, val: Mapping[str, float], losses: Mapping[str, float]) -> None:
        train_means = _all_reduce_sums(losses, device)
        metrics = {k: v / world for k, v in train_means.items()}
        metrics.update(val)
        first = next(iter(loaders["val"]))  # one val batch for the cost and the overlay
        metrics.update(inference_cost(trainer, first))
        metrics.update({"step": step, "epoch": step / loaders["steps_per_epoch"]})
        folder = None
        if rank == 0:
            overlay = validation_overlay(trainer, first, np.asarray(norm["mean"]),
                                         np.asarray(norm["std"]), step)
            folder = write_checkpoint(staging / checkpoint_name(step), trainer, metrics, norm, overlay, val_rows)
        reporter.report(metrics, folder)
        progress()

    run_loop(trainer, epoch_batches(loaders, trainer.step), max_steps=cfg.train.max_steps,
             eval_every=cfg.train.eval_every, evaluate=evaluate, on_eval=on_eval, on_step=lambda _: progress())
    if rank == 0 and staging.is_dir() and not any(staging.iterdir()):
        staging.rmdir()


def _beating(batches: Iterable[Any], beat: Callable[[], None]) -> Iterator[Any]:
    """The batches, with a beat before each (a long val pass is progress too)."""
    for batch in batches:
        beat()
        yield batch


def _read_folder(folder: str | Path) -> tuple[dict[str, Any], dict[str, Any]]:
    return read_checkpoint(folder), read_metrics(folder)


def _readable_state(checkpoint: Any) -> tuple[dict[str, Any] | None, dict[str, Any]]:
    """The state and metrics of ``checkpoint`` or, when it cannot be read (a truncated ``trainer.pt``, say), of
    the newest readable checkpoint beside it (``checkpoint_*`` folders of the same trial); (None, {}) when
    none is readable, and the run starts afresh. Either fallback is said on stderr, in the trial's log."""
    import sys

    try:
        with checkpoint.as_directory() as folder:
            return _read_folder(folder)
    except (OSError, ValueError) as exc:
        reason = str(exc)
    path = Path(getattr(checkpoint, "path", ""))
    older = sorted((p for p in path.parent.glob("checkpoint_*") if p.is_dir() and p != path), reverse=True)
    for candidate in older:
        try:
            state, metrics = _read_folder(candidate)
        except (OSError, ValueError):
            continue
        print(f"fgi: checkpoint {path} is unreadable ({reason}); resuming from {candidate} (step {state['step']})",
              file=sys.stderr, flush=True)
        return state, metrics
    print(f"fgi: checkpoint {path} is unreadable ({reason}) and no older one is readable; starting afresh",
          file=sys.stderr, flush=True)
    return None, {}


def _no_progress() -> None:
    """The ``beat`` of a run without a watchdog."""


def prepare(cfg: Config) -> Config:
    """Prepare the dataset cache once (in the driver, before any worker starts) and point the config at it."""
    from fgi.data.dataset import ensure_prepared

    return override(cfg, {"data.cache_dir": str(ensure_prepared(cfg))})


__all__ = ["COST_REPEATS", "build_loaders", "epoch_batches", "inference_cost", "local_batch_size", "prepare", "train_worker"]
