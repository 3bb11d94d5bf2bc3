from __future__ import annotations

import json
import pathlib
import pickle

import pytest
import torch

from fgi.checkpoint import (
    CHECKPOINT_FILE,
    VAL_ROWS_FILE,
    best_checkpoint,
    checkpoint_name,
    load_checkpoint,
    load_folder,
    read_checkpoint,
    read_metrics,
    read_val_rows,
    write_checkpoint,
)
from fgi.config import dump_yaml
from fgi.method.engine import TeacherStudentTrainer
from tests.core.helpers import make_batches, tiny_config

CPU = torch.device("cpu")
NORM = {"image_size": 32, "channels": 3, "mean": [0.5, 0.4, 0.3], "std": [0.2, 0.2, 0.2]}


class TouchOnUnpickle:
    """Unpickling this creates ``path``: a stand-in for a pickle that runs code."""

    def __init__(self, path: pathlib.Path) -> None:
        self.path = path

    def __reduce__(self):
        return pathlib.Path.touch, (self.path,)


def trained(cfg=None, steps: int = 1) -> TeacherStudentTrainer:
    cfg = cfg or tiny_config()
    trainer = TeacherStudentTrainer(cfg, CPU)
    batches = make_batches(cfg, "train", 4, 4)
    for _ in range(steps):
        trainer.train_step(batches[0])
    return trainer


def test_folder_round_trip_gives_the_same_next_step(tmp_path):
    a = trained(steps=2)
    folder = write_checkpoint(tmp_path / "run" / checkpoint_name(a.step), a, {"val_dice": 0.25}, NORM, b"png")
    assert folder.name == "step_0000002"
    assert sorted(p.name for p in folder.iterdir()) == [
        "config.yaml", "metrics.json", "normalization.json", "overlay.png", "trainer.pt"]
    assert read_metrics(folder) == {"step": 2, "val_dice": 0.25}
    assert (folder / "config.yaml").read_text() == dump_yaml(a.cfg)
    assert (folder / "overlay.png").read_bytes() == b"png"
    b, norm = load_folder(folder, TeacherStudentTrainer)
    assert norm == NORM and b.step == 2 and b.cfg == a.cfg
    batch = make_batches(a.cfg, "train", 4, 4, seed=3)[0]
    assert a.train_step(batch) == b.train_step(batch)
    for name in a.models:
        for (key, pa), pb in zip(a.models[name].state_dict().items(), b.models[name].state_dict().values(), strict=True):
            assert torch.equal(pa, pb), key


@pytest.mark.parametrize("sections", [{"optim": {"name": "sgd"}}, {"train": {"amp": "fp16"}},
                                      {"train": {"method": "student_only"}, "text": {"mode": "none"}}])
def test_every_trainer_state_loads_with_weights_only(tmp_path, sections):
    trainer = trained(tiny_config(**sections))
    write_checkpoint(tmp_path / "ck", trainer, {}, NORM)
    raw = torch.load(tmp_path / "ck" / CHECKPOINT_FILE, weights_only=True)
    assert raw["step"] == 1 and set(raw) == set(trainer.state_dict())
    assert load_checkpoint(tmp_path / "ck", TeacherStudentTrainer).step == 1


def test_a_pickle_that_runs_code_is_refused_and_runs_nothing(tmp_path):
    marker, control = tmp_path / "ran", tmp_path / "ran_unsafely"
    state = trained(steps=0).state_dict()
    folder = tmp_path / "evil"
    folder.mkdir()
    torch.save({**state, "extra": TouchOnUnpickle(marker)}, folder / CHECKPOINT_FILE)
    (folder / "normalization.json").write_text(json.dumps(NORM))
    with pytest.raises(ValueError) as err:
        load_folder(folder, TeacherStudentTrainer)
    message = str(err.value)
    assert message.startswith(f"{folder / CHECKPOINT_FILE}: not a plain fgi checkpoint") and "\n" not in message
    assert "(global " in message and "safe_globals" not in message  # names what it refused, offers no bypass
    assert not marker.exists()
    # the payload is live: an unsafe load of the same kind of file runs it
    torch.save({"extra": TouchOnUnpickle(control)}, tmp_path / "control.pt")
    torch.load(tmp_path / "control.pt", weights_only=False)
    assert control.exists()


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_unreadable_and_foreign_files_get_one_line_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.pt: checkpoint not found"):
        read_checkpoint(tmp_path / "missing.pt")
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="bad.pt: not a readable fgi checkpoint") as err:
        read_checkpoint(bad)
    assert "\n" not in str(err.value)
    raw = tmp_path / "raw.pt"
    raw.write_bytes(pickle.dumps({"models": {}}))
    with pytest.raises(ValueError, match="raw.pt: not a readable fgi checkpoint"):
        read_checkpoint(raw)
    other = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(2)}, other)
    with pytest.raises(ValueError, match=r"other.pt: not an fgi checkpoint \(trainer state lacks \['config', 'models', 'step'\]\)"):
        read_checkpoint(other)
    torch.save([1, 2], other)
    with pytest.raises(ValueError, match="holds a list"):
        read_checkpoint(other)


def test_rewriting_replaces_the_whole_folder_and_leaves_no_temporaries(tmp_path):
    trainer = trained(steps=0)
    dest = tmp_path / "best"
    write_checkpoint(dest, trainer, {"val_dice": 0.1}, NORM, b"old overlay")
    (dest / "stale.txt").write_text("from an older run")
    write_checkpoint(dest, trainer, {"val_dice": 0.2}, NORM)
    assert sorted(p.name for p in dest.iterdir()) == ["config.yaml", "metrics.json", "normalization.json", "trainer.pt"]
    assert read_metrics(dest)["val_dice"] == 0.2
    assert [p.name for p in tmp_path.iterdir()] == ["best"]


def test_a_failed_write_keeps_the_previous_folder(tmp_path):
    trainer = trained(steps=0)
    dest = tmp_path / "best"
    write_checkpoint(dest, trainer, {"val_dice": 0.1}, NORM)
    before = {p.name: p.read_bytes() for p in dest.iterdir()}

    class Unsaveable:
        cfg, step = trainer.cfg, 5

        def state_dict(self) -> dict:
            raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        write_checkpoint(dest, Unsaveable(), {"val_dice": 0.9}, NORM)
    assert {p.name: p.read_bytes() for p in dest.iterdir()} == before
    assert [p.name for p in tmp_path.iterdir()] == ["best"]
    with pytest.raises(ValueError, match=r"normalization.json: normalization lacks \['std'\]"):
        write_checkpoint(dest, trainer, {}, {k: v for k, v in NORM.items() if k != "std"})


def test_metrics_and_normalization_errors_name_the_file(tmp_path):
    folder = write_checkpoint(tmp_path / "ck", trained(steps=0), {}, NORM)
    (folder / "metrics.json").write_text("{not json")
    with pytest.raises(ValueError, match="metrics.json: not valid JSON"):
        read_metrics(folder)
    (folder / "normalization.json").write_text(json.dumps({"image_size": 32}))
    with pytest.raises(ValueError, match=r"normalization.json: normalization lacks \['channels', 'mean', 'std'\]"):
        load_folder(folder, TeacherStudentTrainer)
    (folder / "normalization.json").unlink()
    with pytest.raises(FileNotFoundError, match="normalization.json: not found"):
        load_folder(folder / CHECKPOINT_FILE, TeacherStudentTrainer)


def test_best_checkpoint_ranks_by_metric_then_earlier_step(tmp_path):
    run = tmp_path / "run"
    for step, dice, hd in ((10, 0.5, 9.0), (20, 0.7, 4.0), (30, 0.7, 6.0), (40, 0.6, 3.0)):
        folder = run / checkpoint_name(step)
        folder.mkdir(parents=True)
        (folder / CHECKPOINT_FILE).write_bytes(b"")
        (folder / "metrics.json").write_text(json.dumps({"step": step, "val_dice": dice, "val_hd95": hd}))
    (run / "step_0000050").mkdir()  # no files: not a checkpoint
    assert best_checkpoint(run).name == "step_0000020"
    assert best_checkpoint(run, "val_hd95", "min").name == "step_0000040"
    with pytest.raises(FileNotFoundError, match="no checkpoint folders"):
        best_checkpoint(tmp_path / "empty")


def test_per_image_val_rows_round_trip_and_bad_rows_name_the_file(tmp_path):
    trainer = trained()
    rows = [{"id": "a", "dice": 0.5}, {"id": "b", "dice": 0.25}]
    folder = write_checkpoint(tmp_path / "ck", trainer, {"val_dice": 0.375}, NORM, val_rows=rows)
    assert read_val_rows(folder) == {"a": 0.5, "b": 0.25}
    bare = write_checkpoint(tmp_path / "bare", trainer, {"val_dice": 0.375}, NORM)
    with pytest.raises(FileNotFoundError, match="val_rows.json: not found"):
        read_val_rows(bare)
    (bare / VAL_ROWS_FILE).write_text('[{"id": "a"}]')
    with pytest.raises(ValueError, match=r"bare/val_rows.json: expected a list"):
        read_val_rows(bare)
