"""Quality protocol v2 on real Kvasir-SEG gaze data: six arms and an ablation at one budget, scored on a held-out test part.

Data: the 900 shared Kvasir-SEG images with GazeMedSeg's real fixations, split once (seeded, committed in
``benchmarks/splits_v2/``): 700 train, 100 val (the val ids of protocol v1), 100 test drawn from v1's
training ids with ``fgi.seed.numpy_rng(2026)``. Val is only watched (curves); the test part is read once
per run, after its last step, for the final table. No model is selected: every run reports its LAST
checkpoint, so nothing is tuned on test and nothing is picked on val.

Arms (``--arms``, ``--seeds``):
    a_full      student alone on ground-truth masks: the upper bound, and the gate.
    b_gaze      student alone on the loose CRF pseudo-mask (no masking).
    b2_prop     GazeMedSeg's two-level baseline as its Kvasir script runs it: two image-only networks, one
                per gaze level, whose neighbour-propagated predictions agree with the other level's
                (``loss.level_mode: prop``, weight 3); predicts with their mean. The second network starts
                as a copy of the first, as GazeMedSeg's ``deepcopy``.
    b2_two      b2_prop with GazeMedSeg's "pure" consistency (raw predictions agree), the only mode before.
    b2_indep    variant: b2_two with the two networks initialized independently (``model.level_init``).
    c_no_text   teacher-student with the learned null token instead of text.
    d_fgi       teacher-student, reference-exact defaults (tokens text, reference CWC, block DARM).
    e_tuned     d_fgi with the method knobs of ``--tuned-config`` (a platform sweep on val).
    f_search    d_fgi with the method knobs of ``--search-config``: the config a staged search exported
                (``tune.py --final-stage``; chosen on val only). ``--reuse DIR`` takes the final stage's runs of
                that config and seed as its records instead of training them again (a run that differs
                from it only in ``INFERENCE_KEYS``, the test-time flips, is scored again from its last state
                under ``--out``).
    d_no_darm   ablation: d_fgi without DARM (mask ratio 0), the term that holds its student back.
    d_decoys    variant: d_fgi with decoy blocks (``masking.decoy_ratio``), so DARM's blocks stop outlining
                the lesion while it still hides part of the uncertain region.
    d_uniform   variant: d_fgi with ``masking.placement: uniform`` (the same block budget and sizes, centres
                anywhere in the image), so block positions carry no outline.
    c_uniform_ens  variant: c_no_text with uniform placement, deployed as the mean of the image-only teacher
                and the student (``model.predictor: ensemble``), as (b2) deploys its two networks.

Budget ``v2`` (``--steps``, ``--image-size`` and ``--amp`` override it): 96 px, batch 8, 5000 steps,
AdamW 1e-3, 100 warm-up steps, cosine to 1e-5, consistency ramp-up over 30 % of the steps, flips and a
mild affine; teacher widths 16..256, student widths 16..256; fp32. The gate: arm a_full must reach 0.72
val Dice before any comparison is printed.

Every run writes its last state under ``--out`` at each evaluation and ``--resume`` continues an
interrupted run from it (same data order); a finished run writes its record (config, curve, per-image
test metrics) to ``--records`` (committed, so the table can be rebuilt in a later session without the
checkpoints). A record or a saved state counts as a run's only for the same config, paths and thread
counts aside: a run of another config (``--steps``, say) that would overwrite a record or resume from
another run's weights stops before training, naming the file and the fields that differ; it takes its own
``--records`` and ``--out``. The report refuses records of one arm trained with different configs.
The report gives, per arm, mean ± sd over seeds of test Dice, IoU, HD95 at original resolution, and for
the differences named in ``COMPARISONS`` two 95 % bootstrap CIs: paired over images (seeds averaged
first), and over seeds and images (each arm's seeds resampled too, so the seed spread counts).

    python benchmarks/protocol_kvasir.py --probe-steps 10                    # s/step of each arm
    python benchmarks/protocol_kvasir.py --arms a_full b_gaze d_fgi --seeds 0 1 2 --resume
    python benchmarks/protocol_kvasir.py --report                           # table from the records

Arm e_tuned: a platform sweep on val at a proxy budget (the same compute, fewer steps), from arm d_fgi's
config, then its best config at the protocol budget (it keeps every searched knob; compute, data and seed
come from the protocol):

    python benchmarks/protocol_kvasir.py --write-config /tmp/d_fgi.yaml
    python tune.py --dataset kvasir --config /tmp/d_fgi.yaml --budget laptop --max-steps 1000 \
        --max-concurrent 2 --best-dir /tmp/e_best  # data paths and split_dir come from the config
    python benchmarks/protocol_kvasir.py --arms e_tuned --seeds 0 1 --tuned-config /tmp/e_best/kvasir.yaml --resume

The committed ``best_configs/kvasir.yaml`` is that sweep's best (``replay_e_sweep.py``; docs/RESULTS.md).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from fgi.budgets import BUDGETS, MACHINE_KEYS, compute_keys  # noqa: E402
from fgi.checkpoint import read_checkpoint, write_checkpoint  # noqa: E402
from fgi.config import (  # noqa: E402
    Config,
    ConfigError,
    config_hash,
    dump_yaml,
    flatten,
    from_dict,
    load_yaml,
    override,
    to_dict,
)
from fgi.data.errors import DataError  # noqa: E402
from fgi.files import atomic_write_text  # noqa: E402
from fgi.search.compare import CompareError, mean_over_seeds, paired_bootstrap, seed_image_bootstrap  # noqa: E402
from fgi.search.space import dataset_space  # noqa: E402

SHARED = REPO.parent / "shared" / "data"
DEFAULT_ROOT = SHARED / "kvasir-seg"
DEFAULT_FIXATIONS = SHARED / "gazemedseg" / "kvasir_fixation.csv"
DEFAULT_SPLITS = REPO / "benchmarks" / "splits_v2"
DEFAULT_OUT = REPO / "benchmarks" / "out" / "protocol_v2"
DEFAULT_RECORDS = REPO / "benchmarks" / "results" / "protocol_v2"

COMPUTE: dict[str, Any] = dict(BUDGETS["laptop"])  # 96 px, widths 16..256, batch 8, 5000 steps, eval every 250
BUDGET: dict[str, Any] = {
    **COMPUTE,
    "optim.name": "adamw",
    "optim.lr": 1e-3,
    "optim.warmup_fraction": 0.02,  # 100 of 5000 steps
    "optim.min_lr_ratio": 0.01,
    "augment.hflip": 0.5,
    "augment.vflip": 0.5,
    "augment.affine": 0.5,
    "augment.rotate_limit": 15.0,
    "augment.scale_limit": 0.1,
    "augment.shift_limit": 0.05,
    "augment.color": 0.0,
}
RAMPUP_FRACTION = 0.3  # the consistency ramp-up covers this share of the steps
DECOY_RATIO = Config().masking.mask_ratio  # as many decoy blocks as real ones: the reference mask ratio
ARMS: dict[str, dict[str, Any]] = {
    "a_full": {"train.method": "student_only", "data.supervision": "ground_truth", "masking.mask_ratio": 0.0,
               "text.mode": "none"},
    "b_gaze": {"train.method": "student_only", "masking.mask_ratio": 0.0, "text.mode": "none"},
    "b2_prop": {"train.method": "two_level", "text.mode": "none", "loss.level_mode": "prop"},
    "b2_two": {"train.method": "two_level", "text.mode": "none", "loss.level_mode": "pure"},
    "b2_indep": {"train.method": "two_level", "text.mode": "none", "model.level_init": "independent",
                 "loss.level_mode": "pure"},
    "c_no_text": {"train.method": "teacher_student", "text.mode": "none"},
    "d_fgi": {"train.method": "teacher_student"},
    "e_tuned": {"train.method": "teacher_student"},
    "d_no_darm": {"train.method": "teacher_student", "masking.mask_ratio": 0.0},
    "d_decoys": {"train.method": "teacher_student", "masking.decoy_ratio": DECOY_RATIO},
    "d_uniform": {"train.method": "teacher_student", "masking.placement": "uniform"},
    "c_uniform_ens": {"train.method": "teacher_student", "text.mode": "none", "masking.placement": "uniform",
                      "model.predictor": "ensemble"},
    "f_search": {"train.method": "teacher_student"},
}
SEARCHED_ARMS = {"e_tuned": "--tuned-config", "f_search": "--search-config"}  # arm -> the flag of its config
LABELS = {
    "a_full": "(a) full supervision", "b_gaze": "(b) gaze, one student", "b2_prop": "(b2) two-level gaze, GazeMedSeg's prop mode",
    "b2_two": "(b2) two-level gaze, pure consistency",
    "b2_indep": "(b2) two-level, independent init (variant)",
    "c_no_text": "(c) FGI without text", "d_fgi": "(d) FGI, reference defaults", "e_tuned": "(e) FGI, tuned",
    "d_no_darm": "(d) without DARM (ablation)", "d_decoys": "(d) with decoy blocks (variant)",
    "d_uniform": "(d) with uniform block placement (variant)",
    "c_uniform_ens": "(c) uniform blocks, teacher + student ensemble (variant)",
    "f_search": "(f) staged search's exported config",
}
COMPARISONS = (("a_full", "b_gaze"), ("b2_two", "b_gaze"), ("b2_indep", "b_gaze"), ("b2_two", "b2_indep"),
               ("d_fgi", "b_gaze"), ("d_fgi", "b2_two"), ("d_fgi", "c_no_text"),
               ("e_tuned", "d_fgi"), ("e_tuned", "b_gaze"), ("e_tuned", "b2_two"),
               ("d_no_darm", "d_fgi"), ("d_no_darm", "b_gaze"), ("d_no_darm", "b2_two"),
               ("d_fgi", "b2_indep"), ("d_no_darm", "b2_indep"),
               ("d_decoys", "d_fgi"), ("d_decoys", "b_gaze"),
               ("d_uniform", "d_fgi"), ("d_uniform", "d_no_darm"), ("d_uniform", "b2_two"),
               ("c_uniform_ens", "c_no_text"), ("c_uniform_ens", "d_no_darm"), ("c_uniform_ens", "b2_two"),
               ("b2_prop", "b2_two"), ("b2_prop", "b_gaze"), ("d_no_darm", "b2_prop"), ("c_uniform_ens", "b2_prop"),
               ("f_search", "b2_prop"), ("f_search", "d_fgi"), ("f_search", "b_gaze"))
GATE_DICE = 0.72  # arm a_full's val Dice needed before comparisons mean anything
# what arm e_tuned takes from the protocol rather than from its tuned config (which keeps every searched knob):
# compute and machine settings, and the sections the prepared cache depends on
CACHE_SECTIONS = ("data", "gaze", "crf")
# where and how fast a run goes, not what it learns: left out when two configs are compared as the same run
PLACE_KEYS = frozenset(MACHINE_KEYS) - {"train.amp"}
# how a trained run answers, not what it learns: a finished run that differs only here is scored again under
# them, from its last state (the curve keeps the values of its training)
INFERENCE_KEYS = frozenset({"model.tta"})


class ProtocolError(RuntimeError):
    """Missing data or an inconsistent option; the message names it."""


def base_config(args: argparse.Namespace) -> Config:
    """Defaults with the budget, the data paths and the command-line compute settings."""
    steps = args.steps or BUDGET["train.max_steps"]
    updates = {
        **BUDGET, "data.dataset": "kvasir", "data.root": str(args.root), "data.fixations": str(args.fixations),
        "data.split_dir": str(args.splits), "data.num_workers": 0, "train.threads": args.threads,
        "train.max_steps": steps, "train.eval_every": min(BUDGET["train.eval_every"], steps),
        "loss.rampup_fraction": RAMPUP_FRACTION, "train.amp": args.amp,
    }
    if args.image_size:
        updates["data.image_size"] = args.image_size
    if args.cache_dir:
        updates["data.cache_dir"] = str(Path(args.cache_dir).resolve())
    return override(Config(), updates)


def arm_config(arm: str, base: Config, seed: int, tuned: Mapping[str, Config | None]) -> Config:
    """One run's config: the arm's method settings on the shared budget (a searched arm keeps its method knobs).

    Args:
        tuned: the searched config of each arm in ``SEARCHED_ARMS`` (None when not given).
    """
    if arm not in SEARCHED_ARMS:
        return override(base, {**ARMS[arm], "train.seed": seed})
    config = tuned.get(arm)
    if config is None:
        raise ProtocolError(f"arm {arm} needs {SEARCHED_ARMS[arm]} FILE")
    # the shipped kvasir space says which keys the sweep searched (the gaze levels among them): those stay
    searched = set(dataset_space("kvasir", base).keys)
    protocol = compute_keys()
    kept = {k: v for k, v in flatten(base).items()
            if (k in protocol or k.split(".")[0] in CACHE_SECTIONS) and k not in searched}
    return override(config, {**kept, **ARMS[arm], "train.seed": seed})


def check_data(args: argparse.Namespace) -> None:
    """Fail with the path when the dataset, the fixations or a split file is missing."""
    for path in (args.root / "images", args.root / "masks", args.fixations,
                 *(args.splits / f"{s}.txt" for s in ("train", "val", "test"))):
        if not path.exists():
            raise ProtocolError(f"{path}: not found (the shared Kvasir-SEG copy lives in {DEFAULT_ROOT})")


def train_run(cfg: Config, run_dir: Path, label: str, resume: bool, probe_steps: int = 0,
              stop_at: int = 0) -> dict[str, Any]:
    """Train one run to ``train.max_steps`` (or time ``probe_steps`` steps) and return its record.

    Args:
        cfg: the run's config with a prepared ``data.cache_dir``.
        run_dir: holds ``last/`` (the state at the latest evaluation) and ``curve.json``.
        label: printed with each progress line.
        resume: continue from ``last/`` when it exists.
        probe_steps: when > 0, time that many steps after one warm-up step and stop (nothing is written).
        stop_at: when > 0, stop after this step; the schedules still span ``train.max_steps``, so the curve
            matches the first ``stop_at`` steps of a full run.
    """
    from fgi.method.engine import TeacherStudentTrainer
    from fgi.method.loop import run_loop
    from fgi.run.worker import build_loaders, epoch_batches

    device = torch.device("cpu")
    t0 = time.perf_counter()
    trainer = TeacherStudentTrainer(cfg, device)
    loaders = build_loaders(cfg, rank=0, world=1)
    last, curve_file = run_dir / "last", run_dir / "curve.json"
    curve: list[dict[str, float]] = []
    if resume and not probe_steps and (last / "trainer.pt").is_file():
        check_state(last, cfg)
        trainer.load_state_dict(read_checkpoint(last))
        curve = json.loads(curve_file.read_text()) if curve_file.is_file() else []
        curve = [c for c in curve if c["step"] <= trainer.step]
        print(f"[{label}] resumed at step {trainer.step}", flush=True)
    # training time of the run so far (curves written before this field existed count from the resume)
    earlier = curve[-1].get("run_seconds", 0.0) if curve else 0.0
    max_steps = probe_steps + 1 if probe_steps else (stop_at or cfg.train.max_steps)

    def on_eval(step: int, val: Mapping[str, float], losses: Mapping[str, float]) -> None:
        if probe_steps:
            return
        curve.append({"step": step, **{k: round(float(v), 5) for k, v in {**val, **losses}.items()},
                      "run_seconds": round(earlier + time.perf_counter() - t0, 1)})
        write_checkpoint(last, trainer, dict(val), loaders["normalization"])
        atomic_write_text(curve_file, json.dumps(curve))
        models = " ".join(f"{k[9:]} {val[k]:.4f}" for k in ("val_dice_teacher", "val_dice_student") if k in val)
        print(f"[{label}] step {step}/{max_steps} val Dice {val['val_dice']:.4f} {models} "
              f"loss {losses.get('loss', float('nan')):.4f} ({time.perf_counter() - t0:.0f} s)", flush=True)

    times = run_loop(trainer, epoch_batches(loaders, trainer.step), max_steps=max_steps,
                     eval_every=max_steps if probe_steps else cfg.train.eval_every,
                     evaluate=lambda: trainer.evaluate(loaders["val"]), on_eval=on_eval)
    steps = times.step_wall[1:] or times.step_wall
    cpu_steps = times.step_cpu[1:] or times.step_cpu
    record = {"s_per_step": statistics.median(steps) if steps else None,
              "cpu_s_per_step": statistics.median(cpu_steps) if cpu_steps else None}
    if probe_steps:
        return record
    seconds = round(earlier + time.perf_counter() - t0, 1)
    # per-image val Dice of the last state, the paired sample of a staged search's final comparison
    val_rows = [{"id": r["id"], "dice": r["dice"]} for r in trainer.evaluate_rows(loaders["val"])]
    return {**record, "trainer": trainer, "normalization": loaders["normalization"], "curve": curve,
            "train_seconds": seconds, "val_rows": val_rows}


def test_rows(trainer: Any, normalization: Mapping[str, Any], root: Path, split_dir: Path) -> list[dict[str, Any]]:
    """Per-image test metrics of the deployable model at original resolution."""
    from fgi.run.evaluation import evaluate_folder, read_ids

    return evaluate_folder(trainer, normalization, root, read_ids(split_dir / "test.txt"))


def run_fields(cfg: Config, drop: frozenset[str] = frozenset()) -> dict[str, Any]:
    """The fields that make a run what it is: all but paths and thread counts (``PLACE_KEYS``) and ``drop``."""
    return {k: v for k, v in flatten(cfg).items() if k not in PLACE_KEYS | drop}


def config_changes(old: Config, new: Config, drop: frozenset[str] = frozenset()) -> list[str]:
    """``key: old -> new`` for each run field that differs (empty when both configs make the same run).

    Fields added to ``Config`` since ``old`` was written count at their defaults; paths and thread counts
    do not count, so a record stays finished in another checkout.
    """
    a, b = run_fields(old, drop), run_fields(new, drop)
    return [f"{k}: {a.get(k)!r} -> {b.get(k)!r}" for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]


def check_state(last: Path, cfg: Config) -> None:
    """Refuse to resume ``cfg`` from a saved state of another config (it would carry that run's weights).

    Raises:
        ProtocolError: naming the folder and the fields that differ.
    """
    changes = config_changes(load_yaml(last / "config.yaml"), cfg)
    if changes:
        raise ProtocolError(f"{last}: saved by a run of another config ({'; '.join(changes)}); "
                            f"move the folder away to start this run afresh")


def record_path(records: Path, arm: str, seed: int) -> Path:
    """Where a finished run's record lives."""
    return records / f"{arm}-seed{seed}.json"


def read_record(path: Path) -> tuple[dict[str, Any], Config]:
    """A record and its config.

    Raises:
        ProtocolError: naming the file, when it is not a protocol record.
    """
    try:
        rec = json.loads(path.read_text())
        return rec, from_dict(rec["config"])
    except (ValueError, KeyError, TypeError, ConfigError) as exc:
        raise ProtocolError(f"{path}: not a protocol record ({exc})") from None


def reusable(folders: Sequence[Path], cfg: Config) -> Path | None:
    """The first protocol record in ``folders`` of the same run as ``cfg`` (every run field, the seed included,
    equal; ``INFERENCE_KEYS`` aside), with its test rows."""
    for folder in folders:
        if not folder.is_dir():
            raise ProtocolError(f"{folder}: no records folder to reuse")
        for path in sorted(folder.glob("*.json")):
            try:
                rec, old = read_record(path)
            except ProtocolError:
                continue  # another kind of record
            if "test_rows" in rec and not config_changes(old, cfg, INFERENCE_KEYS):  # a sweep's export has none
                return path
    return None


def rescore(earlier: Path, rec: Mapping[str, Any], old: Config, cfg: Config, args: argparse.Namespace) -> dict[str, Any]:
    """The record ``rec`` (of config ``old``, read from ``earlier``) scored again under ``cfg``'s
    ``INFERENCE_KEYS``: val and test rows from the run's last state, ``--out``/<record name>/last (a released,
    half-precision state loads too).

    Raises:
        ProtocolError: naming the folder, when the state is missing or of another run.
    """
    from fgi.method.engine import TeacherStudentTrainer
    from fgi.run.worker import build_loaders

    last = args.out / earlier.stem / "last"
    if not (last / "config.yaml").is_file():
        raise ProtocolError(f"{last}: no saved state of {earlier.name} to score under "
                            f"{', '.join(sorted(INFERENCE_KEYS))}; train the run again (--resume) or restore it there")
    changes = config_changes(load_yaml(last / "config.yaml"), cfg, INFERENCE_KEYS)
    if changes:
        raise ProtocolError(f"{last}: saved by a run of another config ({'; '.join(changes)})")
    trainer = TeacherStudentTrainer(cfg, torch.device("cpu"))
    state = read_checkpoint(last)
    trainer.load_state_dict(state)
    loaders = build_loaders(cfg, rank=0, world=1)
    normalization = loaders["normalization"]
    rescored = {"config_hash": config_hash(cfg), "config": to_dict(cfg),
                # the curve was scored under the training run's values ("was"), the rows under "now"
                "rescored": {"from": str(last), "precision": state.get("precision", "fp32"),
                             "keys": {k: {"was": flatten(old)[k], "now": flatten(cfg)[k]} for k in sorted(INFERENCE_KEYS)}},
                "val_rows": [{"id": r["id"], "dice": r["dice"]} for r in trainer.evaluate_rows(loaders["val"])],
                "test_rows": test_rows(trainer, normalization, args.root, args.splits)}
    if cfg.model.predictor != "student":
        trainer.cfg = override(cfg, {"model.predictor": "student"})
        rescored["test_rows_student"] = test_rows(trainer, normalization, args.root, args.splits)
    return {**rec, **rescored}


def check_record(path: Path, cfg: Config) -> None:
    """Refuse to overwrite a finished record of another config (a variant run takes its own ``--records``).

    Raises:
        ProtocolError: naming the record and the fields that differ.
    """
    if not path.is_file():
        return
    changes = config_changes(read_record(path)[1], cfg)
    if changes:
        raise ProtocolError(f"{path}: a finished run of another config ({'; '.join(changes)}); give this run "
                            f"its own --records folder, or delete the record to replace it")


def load_records(records: Path) -> dict[str, list[dict[str, Any]]]:
    """Finished runs by arm, seeds in order.

    Raises:
        ProtocolError: naming the file, for a missing folder, an unreadable record, a record whose name is
            not its arm and seed, or two records of one arm trained with different configs.
    """
    if not records.is_dir():
        raise ProtocolError(f"{records}: no records folder")
    runs: dict[str, list[dict[str, Any]]] = {}
    first: dict[str, tuple[Path, Config]] = {}
    for path in sorted(records.glob("*.json")):
        rec, cfg = read_record(path)
        if "arm" not in rec or "seed" not in rec:
            raise ProtocolError(f"{path}: not a protocol record (no arm or seed)")
        arm, seed = rec["arm"], rec["seed"]
        if path != record_path(records, arm, seed):
            raise ProtocolError(f"{path}: holds arm {arm} seed {seed}, so it should be named "
                                f"{record_path(records, arm, seed).name}")
        if arm in first:
            changes = config_changes(first[arm][1], cfg, drop=frozenset({"train.seed"}))
            if changes:
                raise ProtocolError(f"{path} and {first[arm][0]}: arm {arm} trained with different configs "
                                    f"({'; '.join(changes)})")
        first.setdefault(arm, (path, cfg))
        runs.setdefault(arm, []).append(rec)
    for rs in runs.values():
        rs.sort(key=lambda r: r["seed"])
    return runs


def seed_dice(runs: Sequence[Mapping[str, Any]]) -> list[dict[str, float]]:
    """Test Dice per image, one mapping per seed of an arm."""
    return [{row["id"]: row["dice"] for row in r["test_rows"]} for r in runs]


def per_image_dice(runs: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    """Test Dice per image averaged over an arm's seeds."""
    return mean_over_seeds(seed_dice(runs))


def _mean_sd(values: Sequence[float], digits: int) -> str:
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{statistics.fmean(values):.{digits}f} ± {statistics.stdev(values):.{digits}f}"


def report(runs: Mapping[str, list[dict[str, Any]]]) -> str:
    """The markdown table, the gate, the paired CIs and the goals."""
    lines = ["| arm | seeds | test Dice | test IoU | test HD95 (px) | last val Dice | val Dice teacher / student | min/run |",
             "|---|---|---|---|---|---|---|---|"]
    for arm in ARMS:
        rs = runs.get(arm)
        if not rs:
            continue
        metric = {m: [statistics.fmean(row[m] for row in r["test_rows"]) for r in rs] for m in ("dice", "iou", "hd95")}
        last = [r["curve"][-1] for r in rs]
        models = "—"
        if "val_dice_teacher" in last[0]:
            models = (f"{statistics.fmean(c['val_dice_teacher'] for c in last):.4f} / "
                      f"{statistics.fmean(c['val_dice_student'] for c in last):.4f}")
        lines.append(f"| {LABELS[arm]} | {' '.join(str(r['seed']) for r in rs)} | {_mean_sd(metric['dice'], 4)} | "
                     f"{_mean_sd(metric['iou'], 4)} | {_mean_sd(metric['hd95'], 1)} | "
                     f"{_mean_sd([c['val_dice'] for c in last], 4)} | {models} | "
                     f"{statistics.fmean(r['train_seconds'] for r in rs) / 60:.0f} |")
    gate = runs.get("a_full")
    gate_dice = statistics.fmean(r["curve"][-1]["val_dice"] for r in gate) if gate else None
    met = gate_dice is not None and gate_dice >= GATE_DICE
    lines += ["", f"Gate: (a) last val Dice {'n/a' if gate_dice is None else f'{gate_dice:.4f}'} "
              f"(needs ≥ {GATE_DICE}): {'met' if met else 'NOT met'}.", ""]
    if not met:
        lines.append("Comparisons withheld: the gate is not met, so the budget does not train the strongest arm.")
        return "\n".join(lines) + "\n"
    lines += ["| difference | mean Δ test Dice | 95 % CI (paired bootstrap over images) "
              "| 95 % CI over seeds and images | seeds |", "|---|---|---|---|---|"]
    for x, y in COMPARISONS:
        if x in runs and y in runs:
            mean, lo, hi = paired_bootstrap(per_image_dice(runs[x]), per_image_dice(runs[y]))
            slo, shi = seed_image_bootstrap(seed_dice(runs[x]), seed_dice(runs[y]))
            lines.append(f"| {LABELS[x]} − {LABELS[y]} | {100 * mean:+.2f} | [{100 * lo:+.2f}, {100 * hi:+.2f}] | "
                         f"[{100 * slo:+.2f}, {100 * shi:+.2f}] | {len(runs[x])} vs {len(runs[y])} |")
    return "\n".join(lines) + "\n"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line (see the module docstring)."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--root", type=Path, default=DEFAULT_ROOT, help="Kvasir-SEG folder with images/ and masks/")
    ap.add_argument("--fixations", type=Path, default=DEFAULT_FIXATIONS, help="GazeMedSeg fixation CSV")
    ap.add_argument("--splits", type=Path, default=DEFAULT_SPLITS, help="folder with train/val/test.txt")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help="run states (git-ignored)")
    ap.add_argument("--records", type=Path, default=DEFAULT_RECORDS, help="finished-run records (committed)")
    ap.add_argument("--cache-dir", default="", help="prepared cache (default: fgi's cache location)")
    ap.add_argument("--arms", nargs="+", default=list(ARMS), choices=list(ARMS))
    ap.add_argument("--seeds", nargs="+", type=int, default=[0])
    ap.add_argument("--steps", type=int, default=0, help="override the budget's 5000 steps")
    ap.add_argument("--image-size", type=int, default=0, help="override the budget's 96 px")
    ap.add_argument("--amp", default="none", choices=("none", "bf16"), help="autocast dtype")
    ap.add_argument("--threads", type=int, default=2, help="torch threads")
    ap.add_argument("--tuned-config", type=Path, default=None, help="config of arm e_tuned")
    ap.add_argument("--search-config", type=Path, default=None,
                    help="config of arm f_search: the best config a staged search's final stage exported")
    ap.add_argument("--reuse", nargs="+", type=Path, default=[], metavar="DIR",
                    help="records folders whose run of the same config and seed (a final stage's run, say) "
                         "becomes this arm's record instead of training it again")
    ap.add_argument("--resume", action="store_true", help="continue interrupted runs and skip finished ones")
    ap.add_argument("--probe-steps", type=int, default=0, help="time this many steps per arm and stop")
    ap.add_argument("--report", action="store_true", help="print the table from the records and stop")
    ap.add_argument("--write-config", type=Path, default=None,
                    help="write arm d_fgi's config (the base of arm e_tuned's sweep, see above) here and stop")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run the protocol (or the probe, or the report)."""
    args = parse_args(argv)
    try:
        if args.report:
            print(report(load_records(args.records)), end="")
            return 0
        if args.write_config:
            atomic_write_text(args.write_config, dump_yaml(arm_config("d_fgi", base_config(args), 0, None)))
            print(f"wrote {args.write_config}")
            return 0
        check_data(args)
        tuned = {"e_tuned": load_yaml(args.tuned_config) if args.tuned_config else None,
                 "f_search": load_yaml(args.search_config) if args.search_config else None}
        # every run's config and record are checked before the first one trains for hours
        unprepared = base_config(args)
        planned = [(arm, seed, arm_config(arm, unprepared, seed, tuned)) for arm in args.arms for seed in args.seeds]
        if not args.probe_steps:
            for arm, seed, cfg in planned:
                check_record(record_path(args.records, arm, seed), cfg)
        from fgi.run.worker import prepare

        base = prepare(base_config(args))
        for arm, seed, _ in planned:
            cfg = arm_config(arm, base, seed, tuned)
            label = f"{arm} seed {seed}"
            if args.probe_steps:
                rec = train_run(cfg, args.out / "probe", label, False, args.probe_steps)
                print(f"{label}: {rec['s_per_step']:.3f} s/step wall, {rec['cpu_s_per_step']:.3f} CPU-s/step; "
                      f"{cfg.train.max_steps} steps ≈ {rec['s_per_step'] * cfg.train.max_steps / 60:.0f} min",
                      flush=True)
                continue
            done = record_path(args.records, arm, seed)
            if args.resume and done.is_file():  # check_record above: it is this config's
                print(f"[{label}] finished earlier: {done}", flush=True)
                continue
            earlier = reusable(args.reuse, cfg)
            if earlier is not None:
                rec, old = read_record(earlier)
                if config_changes(old, cfg):  # it differs in INFERENCE_KEYS only
                    rec = rescore(earlier, rec, old, cfg, args)
                rec.update(arm=arm, seed=seed, reused_from=str(earlier.name))
                atomic_write_text(done, json.dumps(rec, indent=None))
                print(f"[{label}] the same run as {earlier}: its record -> {done}", flush=True)
                continue
            run = train_run(cfg, args.out / f"{arm}-seed{seed}", label, args.resume)
            rows = test_rows(run["trainer"], run["normalization"], args.root, args.splits)
            rec = {"arm": arm, "seed": seed, "config_hash": config_hash(cfg), "config": to_dict(cfg),
                   "curve": run["curve"], "test_rows": rows, "train_seconds": run["train_seconds"],
                   "s_per_step": run["s_per_step"], "val_rows": run["val_rows"]}
            if cfg.model.predictor != "student":
                # what the deployed ensemble adds over its student alone (the predictor was fixed before the run)
                run["trainer"].cfg = override(cfg, {"model.predictor": "student"})
                rec["test_rows_student"] = test_rows(run["trainer"], run["normalization"], args.root, args.splits)
            atomic_write_text(done, json.dumps(rec, indent=None))
            print(f"[{label}] test Dice {statistics.fmean(r['dice'] for r in rows):.4f} -> {done}", flush=True)
        if not args.probe_steps:
            print(report(load_records(args.records)), end="")
    except (ProtocolError, ConfigError, DataError, CompareError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
