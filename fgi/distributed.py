"""Ray Train integration: one ``TeacherStudentTrainer`` per worker, DDP, checkpoints and reports.

``fit`` runs one training run (a sweep trial or the final training) as a Ray Train ``TorchTrainer``.
Each worker builds the engine from the run's config; ``ray.train.torch.prepare_model`` wraps the models
in DDP (NCCL on GPU, gloo on CPU). The global batch ``train.batch_size`` is split evenly over the
workers, and a ``DistributedSampler`` seeded with ``train.seed`` gives every worker its share of the same
permutation, so N workers see the same samples per step as one worker would.

At every evaluation the workers evaluate disjoint shards of the validation split and all-reduce the
metric sums, so the reported metrics cover the whole split. Rank 0 writes the checkpoint (engine state:
models, optimizers, step, RNG, config) into a staging folder owned by the run and hands it to
``ray.train.report``, which persists it under ``<storage_path>/<name>/`` and deletes the staging copy.
A restarted run (worker failure, retried or resumed trial) continues from ``ray.train.get_checkpoint()``,
at the saved step and at the same position of the data order.

This module knows nothing of Ray Tune or MLflow: callers pass Ray Train ``UserCallback``s.
"""

from __future__ import annotations

import itertools
import json
import math
import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler

from fgi.config import Config, ConfigError, atomic_write_bytes, atomic_write_text, dump_yaml, load_yaml_text, override
from fgi.seed import derive_seed

CHECKPOINT_FILE = "trainer.pt"  # engine state inside every checkpoint folder
CONFIG_FILE = "config.yaml"  # the resolved config, readable without torch
OVERLAY_FILE = "overlay.png"  # validation predictions at the checkpoint's step
METRICS_FILE = "metrics.json"  # the metrics reported with the checkpoint
NORMALIZATION_FILE = "normalization.json"  # image mean/std of the prepared cache, for prediction on new images
VAL_METRICS = ("val_dice", "val_iou", "val_hd95", "val_asd")


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


def _overlay_png(trainer: Any, batch: Mapping[str, Any], mean: np.ndarray, std: np.ndarray, step: int,
                 path: Path) -> None:
    """``fgi.viz.prediction_figure`` of the first validation image at this step, written atomically."""
    from fgi.viz import prediction_figure

    text, text_mask = (None, None) if trainer.cfg.text.mode == "none" else (batch.get("text"), batch.get("text_mask"))
    probs = trainer.predict(batch["image"][:1], None if text is None else text[:1],
                            None if text_mask is None else text_mask[:1]).cpu()
    chw = batch["image"][0].float().cpu().numpy()
    hwc = (chw.transpose(1, 2, 0) * std + mean).clip(0, 1)
    image = (hwc * 255).round().astype(np.uint8)

    def plane(key: str) -> np.ndarray | None:
        return batch[key][0, 0].cpu().numpy().astype(bool) if key in batch else None

    png = prediction_figure(image, None, plane("tight"), probs[0, 0].numpy() > 0.5, plane("mask"),
                            f"{batch['id'][0]} at step {step}")
    atomic_write_bytes(path, png)


def build_loaders(cfg: Config, rank: int, world: int, trial: int = 0) -> dict[str, Any]:
    """Training and validation loaders of one worker over the prepared cache.

    Args:
        cfg: resolved run config (``data.cache_dir`` set by ``prepare``).
        rank: this worker's rank.
        world: number of workers.
        trial: trial index (offsets the augmentation seed).
    """
    from fgi.data.dataset import build_datasets

    datasets: dict[str, Dataset] = build_datasets(cfg, derive_seed(cfg.train.seed, rank, trial))
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


def _means(sums: Mapping[str, float]) -> dict[str, float]:
    n = max(sums["n"], 1.0)
    out = {k: v / n for k, v in sums.items() if k != "n"}
    out["val_n"] = sums["n"]
    return out


def train_loop_per_worker(loop_config: dict[str, Any]) -> None:
    """The Ray Train worker function: train, evaluate, checkpoint and report until ``train.max_steps``.

    Args:
        loop_config: ``config_yaml`` (the resolved config), ``trial`` (seed offset) and ``staging_dir``
            (where rank 0 writes checkpoints before Ray persists them).
    """
    import ray.train
    import ray.train.torch

    from fgi.engine import TeacherStudentTrainer, read_checkpoint

    cfg = load_yaml_text(loop_config["config_yaml"], "trial config")
    trial = int(loop_config.get("trial", 0))
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    device = ray.train.torch.get_device()
    if not cfg.train.threads:
        torch.set_num_threads(worker_threads())

    trainer = TeacherStudentTrainer(cfg, device, rank=rank, trial=trial, wrap_model=ray.train.torch.prepare_model)
    checkpoint = ray.train.get_checkpoint()
    restored: dict[str, Any] = {}
    if checkpoint is not None:
        with checkpoint.as_directory() as folder:
            trainer.load_state_dict(read_checkpoint(Path(folder) / CHECKPOINT_FILE))
            restored = json.loads((Path(folder) / METRICS_FILE).read_text())
    if trainer.step >= cfg.train.max_steps and restored:
        # a run restarted after its last checkpoint: report its final metrics again so that the caller
        # (a resumed Tune trial) sees how it ended
        ray.train.report(restored)
        return

    loaders = build_loaders(cfg, rank, world, trial)
    sampler, per_epoch = loaders["sampler"], loaders["steps_per_epoch"]
    local_batch = local_batch_size(cfg, world)
    staging = Path(loop_config["staging_dir"])

    def batches() -> Iterator[Mapping[str, Any]]:
        epoch, done = divmod(trainer.step, per_epoch)
        while True:
            sampler.set_position(epoch, done * local_batch)
            loaders["dataset"].set_epoch(epoch)
            yield from itertools.islice(loaders["train"], per_epoch - done)
            epoch, done = epoch + 1, 0

    interval: dict[str, float] = {}
    count = 0
    stream = batches()
    while trainer.step < cfg.train.max_steps:
        logs = trainer.train_step(next(stream))
        for k, v in logs.items():
            interval[k] = interval.get(k, 0.0) + v
        count += 1
        if trainer.step % cfg.train.eval_every and trainer.step < cfg.train.max_steps:
            continue
        val = _means(_all_reduce_sums(trainer.evaluate_sums(loaders["val"]), device))
        train_means = _all_reduce_sums({k: v / max(count, 1) for k, v in interval.items()}, device)
        metrics = {k: v / world for k, v in train_means.items()}
        metrics.update(val)
        metrics.update({"step": trainer.step, "epoch": trainer.step / per_epoch})
        interval, count = {}, 0
        name = f"step_{trainer.step:07d}"
        if rank == 0:
            folder = staging / name
            folder.mkdir(parents=True, exist_ok=True)
            from fgi.engine import save_checkpoint

            save_checkpoint(trainer, folder / CHECKPOINT_FILE)
            atomic_write_text(folder / CONFIG_FILE, dump_yaml(cfg))
            atomic_write_text(folder / METRICS_FILE, json.dumps(metrics, indent=1))
            norm = loaders["normalization"]
            atomic_write_text(folder / NORMALIZATION_FILE, json.dumps(norm))
            _overlay_png(trainer, next(iter(loaders["val"])), np.asarray(norm["mean"]), np.asarray(norm["std"]),
                         trainer.step, folder / OVERLAY_FILE)
            ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(str(folder)),
                             checkpoint_dir_name=name, delete_local_checkpoint_after_upload=True)
        else:
            ray.train.report(metrics, checkpoint=None, checkpoint_dir_name=name)
    if rank == 0 and staging.is_dir() and not any(staging.iterdir()):
        staging.rmdir()


def worker_threads() -> int:
    """Torch intra-op threads of this Ray worker: the whole CPUs Ray assigned it (at least 1).

    Ray exports ``OMP_NUM_THREADS`` for an actor only as the actor starts; a worker process that imported
    torch before that (``RAY_preload_python_modules``) has sized its pool to every core of the node, and
    two trials on two cores then run four spinning threads, measured 10x slower than two.
    """
    import ray

    return max(int(ray.get_runtime_context().get_assigned_resources().get("CPU", 1)), 1)


def staging_dir(storage_path: str, name: str) -> str:
    """Folder where rank 0 writes checkpoints before Ray persists them: inside the run's own folder for
    local storage, under ``~/.cache/fgi/staging`` for URI storage."""
    if "://" in storage_path:
        return str(Path.home() / ".cache" / "fgi" / "staging" / name)
    return str(Path(storage_path).expanduser().resolve() / name / "staging")


def build_trainer(cfg: Config, *, storage_path: str, name: str, workers: int = 1, cpus_per_worker: float = 1.0,
                  gpus_per_worker: float = 0.0, trial: int = 0, max_failures: int = 0,
                  callbacks: Sequence[Any] = (), metric: str = "val_dice", mode: str = "max",
                  keep: int = 1) -> Any:
    """A Ray Train ``TorchTrainer`` for one run.

    Args:
        cfg: resolved run config; ``data.cache_dir`` must point at the prepared cache.
        storage_path: local folder or URI under which ``<name>/`` holds the run's checkpoints. Shared
            storage on a multi-node cluster.
        name: run name; the same name resumes the run from its latest checkpoint.
        workers: number of data-parallel workers.
        cpus_per_worker: CPUs reserved per worker.
        gpus_per_worker: GPUs per worker; 0 trains on CPU with gloo.
        trial: seed offset of the run (trial index in a sweep).
        max_failures: worker-group restarts from the latest checkpoint before the run fails.
        callbacks: Ray Train ``UserCallback``s (for example Tune's report callback or MLflow logging).
        metric: metric that ranks checkpoints; the best ``keep`` and the latest are kept.
        mode: "max" or "min" for ``metric``.
        keep: how many best checkpoints to keep besides the latest.
    """
    import ray.train
    from ray.train.torch import TorchTrainer

    if workers < 1:
        raise ConfigError(f"--workers: needs at least 1 worker, got {workers}")
    local_batch_size(cfg, workers)
    resources = {"CPU": cpus_per_worker}
    if gpus_per_worker:
        resources["GPU"] = gpus_per_worker
    return TorchTrainer(
        train_loop_per_worker,
        train_loop_config={"config_yaml": dump_yaml(cfg), "trial": trial,
                           "staging_dir": staging_dir(storage_path, name)},
        scaling_config=ray.train.ScalingConfig(num_workers=workers, use_gpu=gpus_per_worker > 0,
                                               resources_per_worker=resources),
        run_config=ray.train.RunConfig(
            name=name,
            storage_path=storage_path,
            failure_config=ray.train.FailureConfig(max_failures=max_failures),
            checkpoint_config=ray.train.CheckpointConfig(num_to_keep=keep, checkpoint_score_attribute=metric,
                                                         checkpoint_score_order=mode),
            callbacks=list(callbacks),
        ),
    )


def fit(cfg: Config, **kwargs: Any) -> Any:
    """Build the ``TorchTrainer`` of ``build_trainer`` and run it; returns its ``ray.train.Result``."""
    return build_trainer(cfg, **kwargs).fit()


def prepare(cfg: Config) -> Config:
    """Prepare the dataset cache once (in the driver, before any worker starts) and point the config at it."""
    from fgi.data.dataset import ensure_prepared

    return override(cfg, {"data.cache_dir": str(ensure_prepared(cfg))})


def best_checkpoint(run_dir: str | os.PathLike, metric: str = "val_dice", mode: str = "max") -> Path:
    """The checkpoint folder under a run folder with the best ``metric`` in its ``metrics.json``.

    Raises:
        FileNotFoundError: when the folder holds no checkpoint.
    """
    folders = [p for p in Path(run_dir).glob("step_*") if (p / CHECKPOINT_FILE).is_file() and (p / METRICS_FILE).is_file()]
    if not folders:
        raise FileNotFoundError(f"{run_dir}: no checkpoint folders (step_*/{CHECKPOINT_FILE})")
    sign = 1.0 if mode == "max" else -1.0

    def score(p: Path) -> tuple[float, int]:
        value = json.loads((p / METRICS_FILE).read_text()).get(metric, -math.inf * sign)
        return sign * float(value), -int(p.name.split("_")[1])

    return max(folders, key=score)


def evaluate_checkpoint(path: str | os.PathLike, split: str = "test", device: str | None = None) -> dict[str, float]:
    """Mean Dice, IoU, HD95 and ASD of a checkpoint on one split of its dataset.

    Args:
        path: a checkpoint file or a checkpoint folder (``trainer.pt`` inside).
        split: "train", "val" or "test".
        device: torch device name; default CUDA when available, else CPU.

    Returns:
        ``{split}_dice``, ``{split}_iou``, ``{split}_hd95``, ``{split}_asd`` and ``{split}_n``.
    """
    from fgi.data.dataset import build_datasets
    from fgi.engine import load_checkpoint

    p = Path(path)
    file = p / CHECKPOINT_FILE if p.is_dir() else p
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    trainer = load_checkpoint(file, dev)
    datasets = build_datasets(trainer.cfg, trainer.cfg.train.seed)
    if split not in datasets:
        raise ValueError(f"split {split!r} is not one of {sorted(datasets)}")
    loader = DataLoader(datasets[split], batch_size=trainer.cfg.train.batch_size, num_workers=trainer.cfg.data.num_workers)
    means = trainer.evaluate(loader)
    return {k.replace("val_", f"{split}_") if k != "n" else f"{split}_n": v for k, v in means.items()}


__all__ = [
    "CHECKPOINT_FILE", "CONFIG_FILE", "METRICS_FILE", "NORMALIZATION_FILE", "OVERLAY_FILE", "VAL_METRICS", "best_checkpoint", "build_loaders", "build_trainer", "evaluate_checkpoint", "fit",
    "local_batch_size", "prepare", "staging_dir", "worker_threads",
    "train_loop_per_worker",
]
