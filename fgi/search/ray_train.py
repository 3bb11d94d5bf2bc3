"""Ray Train integration: ``train_worker`` in each worker of a ``TorchTrainer``, DDP, checkpoints and reports.

``fit`` runs one training run (a sweep trial or the final training) as a Ray Train ``TorchTrainer``.
Each worker builds the engine from the run's config; ``ray.train.torch.prepare_model`` wraps the models
in DDP (NCCL on GPU, gloo on CPU). Rank 0's checkpoint folder goes to ``ray.train.report``, which persists
it under ``<storage_path>/<name>/`` and deletes the staging copy; a restarted worker group continues from
``ray.train.get_checkpoint()``. This module knows nothing of Ray Tune or MLflow: callers pass Ray Train
``UserCallback``s.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from fgi.checkpoint import checkpoint_name
from fgi.config import Config, dump_yaml, load_yaml_text, override
from fgi.fields import OptionError
from fgi.paths import staging_dir
from fgi.run.worker import local_batch_size, train_worker
from fgi.search.watchdog import Watchdog


class RayTrainReporter:
    """The ``fgi.method.loop.Reporter`` of Ray Train workers: ``ray.train.report``.

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
        loop_config: ``config_yaml`` (the resolved config), ``staging_dir``
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
        train_worker(cfg, rank=ctx.get_world_rank(),
                     world=ctx.get_world_size(), device=ray.train.torch.get_device(), reporter=RayTrainReporter(),
                     checkpoint=ray.train.get_checkpoint(), staging=Path(loop_config["staging_dir"]),
                     wrap_model=ray.train.torch.prepare_model, beat=watchdog.beat)


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
                  gpus_per_worker: float = 0.0, max_failures: int = 0,
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
        raise OptionError("workers", f"needs at least 1 worker, got {workers}")
    local_batch_size(cfg, workers)
    resources = {"CPU": cpus_per_worker}
    if gpus_per_worker:
        resources["GPU"] = gpus_per_worker
    return TorchTrainer(
        train_loop_per_worker,
        train_loop_config={"config_yaml": dump_yaml(cfg),
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


__all__ = ["RayTrainReporter", "build_trainer", "fit", "train_loop_per_worker", "worker_threads"]
