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
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler

from fgi.checkpoint import checkpoint_name, read_checkpoint, read_metrics, write_checkpoint
from fgi.config import Config, ConfigError, dump_yaml, load_yaml_text, override
from fgi.loop import Reporter, run_loop
from fgi.paths import staging_dir
from fgi.seed import derive_seed
from fgi.watchdog import Watchdog


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


def _means(sums: Mapping[str, float]) -> dict[str, float]:
    n = max(sums["n"], 1.0)
    out = {k: v / n for k, v in sums.items() if k != "n"}
    out["val_n"] = sums["n"]
    return out


class RayTrainReporter:
    """The ``fgi.loop.Reporter`` of Ray Train workers: ``ray.train.report``.

    Ray persists a reported checkpoint folder under the run's storage as ``step_<n>`` and then deletes
    the local copy. Every rank reports; only rank 0 passes a folder.
    """

    def report(self, metrics: Mapping[str, Any], checkpoint_dir: Path | None) -> None:
        """Report ``metrics`` and, when given, the checkpoint folder ``checkpoint_dir``."""
        import ray.train

        name = checkpoint_name(metrics["step"]) if "step" in metrics else None
        if checkpoint_dir is None:
            ray.train.report(dict(metrics), checkpoint=None, checkpoint_dir_name=name)
        else:
            ray.train.report(dict(metrics), checkpoint=ray.train.Checkpoint.from_directory(str(checkpoint_dir)),
                             checkpoint_dir_name=checkpoint_dir.name, delete_local_checkpoint_after_upload=True)


def train_loop_per_worker(loop_config: dict[str, Any]) -> None:
    """The Ray Train worker function: train, evaluate, checkpoint and report until ``train.max_steps``.

    Args:
        loop_config: ``config_yaml`` (the resolved config), ``trial`` (seed offset), ``staging_dir``
            (where rank 0 writes checkpoints before Ray persists them), and optionally ``trial_timeout``
            (seconds without progress before the worker's watchdog ends it; 0 or absent: no watchdog).
    """
    import ray.train
    import ray.train.torch

    ctx = ray.train.get_context()
    name = f"{ctx.get_experiment_name()} rank {ctx.get_world_rank()}"  # the Train run: a sweep's trial id
    with Watchdog(float(loop_config.get("trial_timeout", 0.0)), name) as watchdog:
        cfg = load_yaml_text(loop_config["config_yaml"], "trial config")
        cfg = override(cfg, {"train.threads": worker_threads(cfg.train.threads)})
        train_worker(cfg, trial=int(loop_config.get("trial", 0)), rank=ctx.get_world_rank(),
                     world=ctx.get_world_size(), device=ray.train.torch.get_device(), reporter=RayTrainReporter(),
                     checkpoint=ray.train.get_checkpoint(), staging=Path(loop_config["staging_dir"]),
                     wrap_model=ray.train.torch.prepare_model, beat=watchdog.beat)


def train_worker(cfg: Config, *, trial: int, rank: int, world: int, device: torch.device, reporter: Reporter,
                 checkpoint: Any | None, staging: Path, wrap_model: Any | None = None,
                 beat: Callable[[], None] | None = None) -> None:
    """Train one worker of a run from its latest checkpoint to ``train.max_steps``, reporting at each evaluation.

    The one body of Ray Train workers and of in-process Tune trials (``fgi.trial``): only the reporter,
    the device and the checkpoint to restore differ, so both report the same metrics and write the same
    checkpoint folders.

    Args:
        cfg: the resolved run config.
        trial: seed offset of the run.
        rank: this worker's rank.
        world: number of workers.
        device: where the engine trains.
        reporter: where metrics and checkpoint folders go.
        checkpoint: the checkpoint to restore (anything with ``as_directory()``), or None.
        staging: where rank 0 writes checkpoint folders before the reporter persists them.
        wrap_model: wraps the models (DDP); None keeps them as they are.
        beat: called at every optimizer step and after every report (a ``fgi.watchdog.Watchdog``'s beat).
    """
    from fgi.engine import TeacherStudentTrainer
    from fgi.viz import validation_overlay

    progress = beat or _no_progress
    trainer = TeacherStudentTrainer(cfg, device, rank=rank, trial=trial, wrap_model=wrap_model)
    restored: dict[str, Any] = {}
    if checkpoint is not None:
        with checkpoint.as_directory() as folder:
            trainer.load_state_dict(read_checkpoint(folder))
            restored = read_metrics(folder)
    if trainer.step >= cfg.train.max_steps and restored:
        # a run restarted after its last checkpoint: report its final metrics again so that the caller
        # (a resumed Tune trial) sees how it ended
        reporter.report(restored, None)
        return

    loaders = build_loaders(cfg, rank, world, trial)
    norm = loaders["normalization"]

    def evaluate() -> dict[str, float]:
        return _means(_all_reduce_sums(trainer.evaluate_sums(loaders["val"]), device))

    def on_eval(step: int, val: Mapping[str, float], losses: Mapping[str, float]) -> None:
        train_means = _all_reduce_sums(losses, device)
        metrics = {k: v / world for k, v in train_means.items()}
        metrics.update(val)
        metrics.update({"step": step, "epoch": step / loaders["steps_per_epoch"]})
        folder = None
        if rank == 0:
            overlay = validation_overlay(trainer, next(iter(loaders["val"])), np.asarray(norm["mean"]),
                                         np.asarray(norm["std"]), step)
            folder = write_checkpoint(staging / checkpoint_name(step), trainer, metrics, norm, overlay)
        reporter.report(metrics, folder)
        progress()

    run_loop(trainer, epoch_batches(loaders, trainer.step), max_steps=cfg.train.max_steps,
             eval_every=cfg.train.eval_every, evaluate=evaluate, on_eval=on_eval, on_step=lambda _: progress())
    if rank == 0 and staging.is_dir() and not any(staging.iterdir()):
        staging.rmdir()


def _no_progress() -> None:
    """The ``beat`` of a run without a watchdog."""


def worker_threads(requested: int = 0) -> int:
    """Torch intra-op threads of this Ray worker: ``requested`` (``train.threads``; 0: no request), at most
    the whole CPUs Ray assigned it (at least 1).

    Ray exports ``OMP_NUM_THREADS`` for an actor only as the actor starts; a worker process that imported
    torch before that (``RAY_preload_python_modules``) has sized its pool to every core of the node, and
    two trials on two cores then run four spinning threads, measured 10x slower than two. A config's
    thread count (written for a run that had the machine to itself) is capped the same way.
    """
    import ray

    assigned = max(int(ray.get_runtime_context().get_assigned_resources().get("CPU", 1)), 1)
    return min(requested, assigned) if requested > 0 else assigned


def build_trainer(cfg: Config, *, storage_path: str, name: str, workers: int = 1, cpus_per_worker: float = 1.0,
                  gpus_per_worker: float = 0.0, trial: int = 0, max_failures: int = 0,
                  callbacks: Sequence[Any] = (), metric: str = "val_dice", mode: str = "max",
                  keep: int = 1, trial_timeout: float = 0.0) -> Any:
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
        trial_timeout: seconds a worker may go without a step or a report before its watchdog ends its
            process (Ray Train then restarts the group as ``max_failures`` says); 0 disables it.
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
                           "staging_dir": staging_dir(storage_path, name), "trial_timeout": trial_timeout},
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


__all__ = [
    "RayTrainReporter", "build_loaders", "build_trainer", "epoch_batches", "fit", "local_batch_size", "prepare",
    "train_loop_per_worker", "train_worker", "worker_threads",
]
