"""One sweep trial, as a Ray Tune function trainable: in-process (one worker) or a Ray Train run (DDP).

A trial with one worker trains inside the Tune trial's own process (``run_in_process``): no Train
controller, no worker group, no process group, so a trial starts in about a second. Trials with two or
more workers run a Ray Train ``TorchTrainer`` (``run_distributed``). Both train through
``fgi.run.worker.train_worker``: the same loop, the same metrics and the same checkpoint folders; only
the ``fgi.method.loop.Reporter`` differs (``TuneReporter`` here, ``RayTrainReporter`` in ``fgi.run.worker``).

Every report that carries a checkpoint also carries ``checkpoint_path``, the folder where the checkpoint
is persisted, as Tune's report callback of the Ray Train path adds it: ``fgi.tracking.TrialCallback``
reads that key in both paths.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from fgi.config import Config, ConfigError, override
from fgi.fields import OptionError
from fgi.paths import staging_dir
from fgi.search.watchdog import Watchdog

CHECKPOINT_PATH_KEY = "checkpoint_path"  # the key of Ray's TuneReportCallback (ray.tune.integration.ray_train)


@dataclass(frozen=True)
class TrialSettings:
    """What every trial of a sweep shares (sent to trials with ``tune.with_parameters``).

    Args:
        base: the prepared base config (``data.cache_dir`` set); a trial overrides the searched keys.
        keys: the searched dotted keys, read from the trial config.
        train_storage: where each trial keeps its staging folder, and a Ray Train trial its run (``<trial id>/``).
        workers: data-parallel workers per trial; 1 trains in the trial's own process.
        cpus_per_worker: CPUs per worker.
        gpus_per_worker: GPUs per worker.
        max_failures: worker-group restarts inside a Ray Train trial.
        metric: the validation metric.
        mode: "max" or "min".
        trial_timeout: seconds a trial (each worker of a Ray Train trial) may go without an optimizer step
            or a report before its ``fgi.search.watchdog.Watchdog`` ends its process; 0 disables the watchdog.
    """

    base: Config
    keys: tuple[str, ...]
    train_storage: str
    workers: int = 1
    cpus_per_worker: float = 1.0
    gpus_per_worker: float = 0.0
    max_failures: int = 2
    metric: str = "val_dice"
    mode: str = "max"
    trial_timeout: float = 0.0

    @property
    def in_process(self) -> bool:
        """True when trials train inside the Tune trial's process (one worker)."""
        return self.workers == 1

    def resources(self) -> dict[str, float]:
        """Tune's reservation of one trial: the worker's CPUs and GPUs in-process; a Ray Train trial's
        driver reserves nothing, its workers reserve the CPUs and GPUs."""
        if self.in_process:
            return {"cpu": self.cpus_per_worker, "gpu": self.gpus_per_worker}
        return {"cpu": 0, "memory": _TRAIN_DRIVER_MEMORY}

    def trial_config(self, config: Mapping[str, Any]) -> Config:
        """The trial's config: the base with the searched values of the Tune config."""
        return override(self.base, {k: config[k] for k in self.keys})


_TRAIN_DRIVER_MEMORY = 64 * 1024**2  # Tune's reservation for a Ray Train trial's driver


class TuneReporter:
    """The ``fgi.method.loop.Reporter`` of in-process trials: ``ray.tune.report``.

    Tune copies a reported folder into the trial's storage (``checkpoint_<index>``); the staging copy is
    deleted afterwards, as Ray Train deletes its own.
    """

    def report(self, metrics: Mapping[str, Any], checkpoint_dir: Path | None) -> None:
        """Report ``metrics`` and, when given, the checkpoint folder ``checkpoint_dir``."""
        from ray import tune

        if checkpoint_dir is None:
            tune.report(dict(metrics))
            return
        out = {**metrics, CHECKPOINT_PATH_KEY: _next_checkpoint_path()}
        tune.report(out, checkpoint=tune.Checkpoint.from_directory(str(checkpoint_dir)))
        shutil.rmtree(checkpoint_dir, ignore_errors=True)


def _next_checkpoint_path() -> str:
    """Where Tune persists the next reported checkpoint of this trial.

    ``ray.tune.report`` advances the trial's checkpoint index, then copies the folder to
    ``<trial dir>/checkpoint_<index>``; Ray exposes that path only through the session's storage context.
    """
    from ray.train._internal.session import get_session

    storage = get_session().storage
    name = storage._make_checkpoint_dir_name(storage.current_checkpoint_index + 1)
    return Path(storage.trial_fs_path, name).as_posix()


def trial_device(gpus: float) -> torch.device:
    """The device of an in-process trial: the GPU Ray assigned it, else the CPU.

    Raises:
        ConfigError: when the trial reserved a GPU that torch cannot see.
    """
    if gpus <= 0:
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise OptionError("gpus_per_worker", f"{gpus} GPUs reserved but torch sees no CUDA device")
    return torch.device("cuda", 0)  # Ray sets CUDA_VISIBLE_DEVICES to the trial's GPU


def run_in_process(config: dict[str, Any], settings: TrialSettings) -> None:
    """The Tune function trainable of one-worker trials: train here, report with ``ray.tune.report``.

    Restores from ``ray.tune.get_checkpoint()`` (a retried or resumed trial continues at the saved step
    and data position). Every trial uses seed offset 0, so a trial's result follows from its config alone.
    Everything runs under the trial's watchdog: a trial stuck anywhere, a ``tune.report`` that Tune never
    takes included, ends its process after ``settings.trial_timeout`` seconds and Tune fails or retries it.
    """
    from ray import tune

    from fgi.run.worker import train_worker
    from fgi.search.ray_train import worker_threads

    trial_id = tune.get_context().get_trial_id()
    with Watchdog(settings.trial_timeout, trial_id) as watchdog:
        cfg = settings.trial_config(config)
        cfg = override(cfg, {"train.threads": worker_threads(cfg.train.threads)})
        staging = Path(staging_dir(settings.train_storage, trial_id))
        train_worker(cfg, rank=0, world=1, device=trial_device(settings.gpus_per_worker),
                     reporter=TuneReporter(), checkpoint=tune.get_checkpoint(), staging=staging, beat=watchdog.beat)
    if staging.parent.is_dir() and not any(staging.parent.iterdir()):
        staging.parent.rmdir()  # Tune keeps this trial's checkpoints in its own folder


def run_distributed(config: dict[str, Any], settings: TrialSettings) -> None:
    """The Tune function trainable of DDP trials: one Ray Train ``TorchTrainer`` run per trial.

    The Train run is named after the trial id, so a retried or resumed trial continues from the run's
    latest checkpoint. Metrics and checkpoint paths reach Tune through ``TuneReportCallback``. Each worker
    runs under its own watchdog (``settings.trial_timeout``); a worker it ends fails the Train run's
    worker group, which Ray Train restarts or fails as ``settings.max_failures`` says.
    """
    from ray import tune
    from ray.tune.integration.ray_train import TuneReportCallback

    from fgi.search.ray_train import fit

    fit(settings.trial_config(config), storage_path=settings.train_storage,
                    name=tune.get_context().get_trial_id(), workers=settings.workers,
                    cpus_per_worker=settings.cpus_per_worker, gpus_per_worker=settings.gpus_per_worker,
                    max_failures=settings.max_failures, callbacks=[TuneReportCallback()], metric=settings.metric,
                    mode=settings.mode, trial_timeout=settings.trial_timeout)


def private_token() -> None:
    """Make the token a new local Ray will use readable by its owner only, before Ray writes one.

    A local ``ray.init`` with token authentication (Ray's default since 2.60) writes a missing
    ``~/.ray/auth_token`` with the process umask (0644: any local user could read it and drive the cluster).
    Unless the mode is set otherwise or ``RAY_AUTH_TOKEN`` gives the token, the token is written here first,
    0600 from its creation; an existing one readable by others is made 0600, and said so.
    """
    import secrets
    import stat

    if os.environ.get("RAY_AUTH_MODE", "token").lower() != "token" or os.environ.get("RAY_AUTH_TOKEN"):
        return
    path = Path(os.environ.get("RAY_AUTH_TOKEN_PATH") or Path.home() / ".ray" / "auth_token")
    if path.is_file():
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            path.chmod(0o600)
            print(f"fgi: {path} was readable by others ({mode:o}); made it 0600", file=sys.stderr, flush=True)
        return
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_hex(32))
            fh.flush()
            os.fsync(fh.fileno())
        os.link(tmp, path)  # whole or absent, and never over a token another sweep wrote meanwhile
    except FileExistsError:
        pass
    finally:
        tmp.unlink(missing_ok=True)


def start_ray(verbose: bool) -> None:
    """Connect to ``RAY_ADDRESS`` or start a local Ray without dashboard; quiet unless verbose.

    ``ray.init`` cannot keep a local Ray on loopback: it replaces 127.0.0.1 by the machine's address
    (``ray._private.services.resolve_ip_for_localhost``), so its servers listen there; a loopback-only sweep
    joins a head started with ``ray start --head --node-ip-address 127.0.0.1`` (README, "one machine").

    Without ``RAY_ADDRESS`` the sweep starts its own Ray (``address="local"``): Ray's default would attach to
    the cluster this machine last started with ``ray start --head`` (``/tmp/ray/ray_current_cluster``), even a
    dead or token-protected one, and hang there.
    """
    import ray

    if ray.is_initialized():
        return
    address = os.environ.get("RAY_ADDRESS")
    if address:
        try:
            ray.init(address=address, log_to_driver=verbose, configure_logging=False)
        except ConnectionError as exc:
            # Ray says why only in its C++ log: a cluster of `ray start --head` (Ray >= 2.60) wants a token
            hint = ("" if os.environ.get("RAY_AUTH_MODE") == "token" else
                    "; a cluster started with `ray start --head` uses token authentication by default: set "
                    "RAY_AUTH_MODE=token and RAY_AUTH_TOKEN to its token (the head's ~/.ray/auth_token)")
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ConfigError(f"RAY_ADDRESS={address}: cannot join the Ray cluster ({first}){hint}; or unset "
                              "RAY_ADDRESS to run on a local Ray of this machine") from None
    else:
        private_token()
        ray.init(address="local", include_dashboard=False, log_to_driver=verbose,
                 configure_logging=False)


def trainable(settings: TrialSettings) -> Any:
    """The Tune trainable of a sweep's trials, with its resources and shared settings."""
    from ray import tune

    fn = run_in_process if settings.in_process else run_distributed
    return tune.with_resources(tune.with_parameters(fn, settings=settings), settings.resources())


__all__ = ["CHECKPOINT_PATH_KEY", "TrialSettings", "TuneReporter", "run_distributed", "run_in_process",
           "start_ray", "trainable", "trial_device"]
