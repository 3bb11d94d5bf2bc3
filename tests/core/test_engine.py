from __future__ import annotations

import pytest
import torch

from fgi.checkpoint import load_checkpoint, read_checkpoint, save_checkpoint
from fgi.config import ConfigError, dump_yaml, override
from fgi.method.engine import TeacherStudentTrainer
from tests.core.helpers import make_batches, tiny_config

CPU = torch.device("cpu")


def test_training_lowers_loss_and_beats_untrained_student():
    cfg = tiny_config(
        train={"max_steps": 80, "batch_size": 8, "seed": 0},
        optim={"lr": 5e-3, "warmup_fraction": 0.0625},
        loss={"rampup_fraction": 0.375},
    )
    train = make_batches(cfg, "train", 48, 8)
    val = make_batches(cfg, "val", 24, 8)
    trainer = TeacherStudentTrainer(cfg, CPU)
    untrained = trainer.evaluate(val)["val_dice"]
    losses = [trainer.train_step(train[i % len(train)])["loss_student_seg"] for i in range(cfg.train.max_steps)]
    trained = trainer.evaluate(val)
    first, last = sum(losses[:10]) / 10, sum(losses[-10:]) / 10
    assert last < 0.7 * first, (first, last)
    assert trained["val_dice"] > untrained + 0.2, (untrained, trained)
    assert trained["val_dice"] > 0.6


def _same_next_step(a: TeacherStudentTrainer, b: TeacherStudentTrainer, batch: dict) -> None:
    out_a, out_b = a.train_step(batch), b.train_step(batch)
    assert out_a == out_b
    for name in a.models:
        for (ka, pa), (_, pb) in zip(a.models[name].state_dict().items(), b.models[name].state_dict().items(), strict=True):
            assert torch.equal(pa, pb), ka


@pytest.mark.parametrize("optim", ["adamw", "sgd"])
def test_state_dict_round_trip_gives_identical_next_step(tmp_path, optim):
    cfg = tiny_config(optim={"name": optim}, masking={"source": "predictions"})
    batches = make_batches(cfg, "train", 8, 4)
    a = TeacherStudentTrainer(cfg, CPU)
    for i in range(3):
        a.train_step(batches[i % 2])
    path = tmp_path / "ckpt.pt"
    save_checkpoint(a, path)
    b = load_checkpoint(path, TeacherStudentTrainer)
    assert b.step == a.step == 3
    _same_next_step(a, b, batches[1])


def test_load_state_dict_into_fresh_trainer_in_process():
    cfg = tiny_config()
    batches = make_batches(cfg, "train", 4, 4)
    a = TeacherStudentTrainer(cfg, CPU)
    a.train_step(batches[0])
    b = TeacherStudentTrainer(cfg, CPU, rank=1)
    b.load_state_dict(a.state_dict())
    _same_next_step(a, b, batches[0])


def test_checkpoint_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        read_checkpoint(tmp_path / "missing.pt")
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="bad.pt: not a readable fgi checkpoint"):
        read_checkpoint(bad)
    other = TeacherStudentTrainer(tiny_config(model={"fusion_skip": False}), CPU)
    with pytest.raises(ValueError, match="different model config"):
        TeacherStudentTrainer(tiny_config(), CPU).load_state_dict(other.state_dict())


def test_a_state_loads_under_another_predictor_and_the_ensemble_averages_both_models():
    cfg = tiny_config(text={"mode": "none"})
    trained = TeacherStudentTrainer(cfg, CPU)
    trained.train_step(make_batches(cfg, "train", 4, 4)[0])
    image = make_batches(cfg, "val", 2, 2)[0]["image"]
    ensemble = TeacherStudentTrainer(tiny_config(text={"mode": "none"}, model={"predictor": "ensemble"}), CPU)
    ensemble.load_state_dict(trained.state_dict())
    student = trained.predict(image)
    with torch.no_grad():
        teacher = torch.sigmoid(trained.models["teacher"](image, None, None)["logits"])
    assert not torch.allclose(student, teacher)
    assert torch.allclose(ensemble.predict(image), (student + teacher) / 2, atol=1e-6)


def test_non_finite_loss_names_step_and_term():
    cfg = tiny_config()
    batch = make_batches(cfg, "train", 4, 4)[0]
    trainer = TeacherStudentTrainer(cfg, CPU)
    trainer.train_step(batch)
    batch = dict(batch, image=batch["image"].clone())
    batch["image"][0, 0, 0, 0] = float("nan")
    with pytest.raises(FloatingPointError, match=r"step 1: loss term loss"):
        trainer.train_step(batch)


@pytest.mark.parametrize(
    "sections",
    [
        {"text": {"mode": "pooled"}},
        {"text": {"mode": "none"}},
        {"mix": {"form": "single", "cutmix_prob": 0.5}, "loss": {"cwc_form": "symmetric"}},
        {"masking": {"hide": "ring", "source": "predictions"}},
        {"model": {"fusion_skip": False, "student_adapter": "linear"}},
        {"train": {"amp": "bf16"}},
        {"train": {"channels_last": True}},
        {"optim": {"grad_clip": 1.0}},
        {"loss": {"align_scales": [], "seg": "dice"}},
        {"train": {"method": "student_only"}},
        {"train": {"method": "student_only"}, "data": {"supervision": "ground_truth"}},
    ],
)
def test_variants_train_and_evaluate(sections):
    cfg = tiny_config(**sections)
    batches = make_batches(cfg, "train", 8, 4)
    trainer = TeacherStudentTrainer(cfg, CPU)
    for batch in batches:
        out = trainer.train_step(batch)
        assert all(torch.isfinite(torch.tensor(v)) for v in out.values())
    metrics = trainer.evaluate(batches)
    assert metrics["n"] == 8 and 0 <= metrics["val_dice"] <= 1


@pytest.mark.parametrize("predictor", ["student", "teacher", "ensemble"])
def test_predictors(predictor):
    cfg = tiny_config(model={"predictor": predictor})
    batch = make_batches(cfg, "val", 2, 2)[0]
    trainer = TeacherStudentTrainer(cfg, CPU)
    probs = trainer.predict(batch["image"], batch["text"])
    assert probs.shape == (2, 1, 32, 32) and probs.min() >= 0 and probs.max() <= 1
    if predictor == "ensemble":
        student = TeacherStudentTrainer(tiny_config(), CPU).predict(batch["image"])
        teacher = TeacherStudentTrainer(tiny_config(model={"predictor": "teacher"}), CPU).predict(batch["image"], batch["text"])
        assert torch.allclose(probs, (student + teacher) / 2, atol=1e-6)


@pytest.mark.parametrize("predictor", ["student", "ensemble"])
def test_flip_tta_averages_each_models_answers_to_the_flipped_views(predictor):
    cfg = tiny_config(text={"mode": "none"}, model={"predictor": predictor})
    trained = TeacherStudentTrainer(cfg, CPU)
    trained.train_step(make_batches(cfg, "train", 4, 4)[0])
    image = make_batches(cfg, "val", 2, 2)[0]["image"]
    flips = TeacherStudentTrainer(tiny_config(text={"mode": "none"}, model={"predictor": predictor, "tta": "flips"}),
                                  CPU)
    flips.load_state_dict(trained.state_dict())
    # the expected answer from the plain predictor on hand-flipped copies, flipped back
    views = [trained.predict(image.flip(d)).flip(d) if d else trained.predict(image) for d in ((), (3,), (2,), (2, 3))]
    expected = torch.stack(views).mean(0)
    assert not torch.allclose(views[0], views[1], atol=1e-4)
    assert torch.allclose(flips.predict(image), expected, atol=1e-6)
    hflip = TeacherStudentTrainer(tiny_config(text={"mode": "none"}, model={"predictor": predictor, "tta": "hflip"}),
                                  CPU)
    hflip.load_state_dict(trained.state_dict())
    assert torch.allclose(hflip.predict(image), (views[0] + views[1]) / 2, atol=1e-6)
    # a flip-averaged model answers a flipped image with the flipped answer
    assert torch.allclose(flips.predict(image.flip(3)), flips.predict(image).flip(3), atol=1e-5)


def test_an_unknown_tta_is_refused_by_name():
    from fgi.config import TTA_MODES
    from fgi.method.views import TTA_VIEWS, flip_averaged

    assert set(TTA_VIEWS) == set(TTA_MODES)  # each mode a config accepts has its views
    with pytest.raises(ValueError, match="tta"):
        tiny_config(model={"tta": "rotate"})
    with pytest.raises(ValueError, match="model.tta must be one of"):
        flip_averaged(torch.sigmoid, torch.zeros(1, 1, 4, 4), "rotate")


def test_student_only_has_no_teacher_predictor():
    cfg = tiny_config(train={"method": "student_only"}, model={"predictor": "teacher"})
    trainer = TeacherStudentTrainer(cfg, CPU)
    with pytest.raises(ValueError, match="no teacher"):
        trainer.predict(torch.zeros(1, 3, 32, 32))


def test_evaluate_sums_and_rows():
    cfg = tiny_config()
    batches = make_batches(cfg, "val", 6, 4)
    trainer = TeacherStudentTrainer(cfg, CPU)
    sums, means = trainer.evaluate_sums(batches), trainer.evaluate(batches)
    assert sums["n"] == 6
    assert means["val_dice"] == pytest.approx(sums["val_dice"] / 6)
    rows = trainer.evaluate_rows(batches)
    assert [r["id"] for r in rows] == [i for b in batches for i in b["id"]]


def test_consistency_targets_follow_the_reference_wiring():
    # without boxes and noise each model's mixed input is the clean image, so the targets are exposed:
    # the teacher learns from the student's prediction on the MASKED image, the student from the teacher's
    cfg = tiny_config(mix={"cutmix_prob": 0.0, "noise": 0.0})
    batch = make_batches(cfg, "train", 4, 4)[0]
    trainer = TeacherStudentTrainer(cfg, CPU)
    inputs, outputs, calls = {}, {}, []
    def record(name):
        def hook(_module, args, out):
            inputs[name] = args[0].detach()
            outputs[name] = out["logits"].detach()
        return hook

    for name, model in trainer.models.items():
        model.register_forward_hook(record(name))
    real_cwc = trainer.losses["cwc"]

    def recording_cwc(logits, target):
        calls.append((logits.detach(), target.detach()))
        return real_cwc(logits, target)

    trainer.losses["cwc"] = recording_cwc
    trainer.train_step(batch)
    image = batch["image"]
    t_in, s_in = inputs["teacher"].split(4), inputs["student"].split(4)
    assert torch.equal(t_in[0], image) and torch.equal(t_in[1], image) and torch.equal(s_in[1], image)
    assert not torch.equal(s_in[0], image) and (s_in[0][s_in[0] != image] == 0).all()  # DARM-masked
    t_clean, t_mixed = outputs["teacher"].split(4)
    s_masked, s_mixed = outputs["student"].split(4)
    (teacher_logits, teacher_target), (student_logits, student_target) = calls
    assert torch.equal(teacher_logits, t_mixed) and torch.allclose(teacher_target, torch.sigmoid(s_masked))
    assert torch.equal(student_logits, s_mixed) and torch.allclose(student_target, torch.sigmoid(t_clean))


@pytest.mark.parametrize("decoys", [0.0, 0.5])
def test_student_input_is_hidden_away_from_the_uncertain_region_only_with_decoys(decoys):
    cfg = tiny_config(masking={"decoy_ratio": decoys})
    batch = make_batches(cfg, "train", 4, 4)[0]
    batch["image"] = batch["image"].abs() + 1  # no pixel is 0 before masking
    trainer = TeacherStudentTrainer(cfg, CPU)
    seen = {}

    def keep_first_input(_module, args, _out):
        seen.setdefault("input", args[0][:4])  # the masked image; the CutMix half follows it

    trainer.models["student"].register_forward_hook(keep_first_input)
    trainer.train_step(batch)
    zeroed = (seen["input"] == 0).all(1, keepdim=True)
    region = batch["tight"].bool() ^ batch["loose"].bool()
    reach = round(cfg.masking.block_max * cfg.data.image_size) // 2 + 1  # a block spills this far from its centre
    near = torch.nn.functional.max_pool2d(region.float(), 2 * reach + 1, stride=1, padding=reach).bool()
    assert zeroed.any()
    assert bool((zeroed & ~near).any()) == (decoys > 0)


@pytest.mark.parametrize("form", ["reference", "single"])
def test_each_model_gets_its_own_cutmix_in_the_reference_form(form):
    cfg = tiny_config(mix={"form": form})
    batch = make_batches(cfg, "train", 8, 8)[0]
    trainer = TeacherStudentTrainer(cfg, CPU)
    inputs = {}
    for name, model in trainer.models.items():
        model.register_forward_hook(lambda _m, args, _o, name=name: inputs.setdefault(name, []).append(args[0]))
    trainer.train_step(batch)
    mixed_t, mixed_s = inputs["teacher"][-1][8:], inputs["student"][-1][8:]
    assert not torch.equal(mixed_t, batch["image"]) and not torch.equal(mixed_s, batch["image"])
    assert torch.equal(mixed_t, mixed_s) == (form == "single")


def test_fusion_attention_and_skip_projection_train_in_tokens_mode():
    cfg = tiny_config()
    assert cfg.text.mode == "tokens" and cfg.model.fusion_skip
    batch = make_batches(cfg, "train", 4, 4)[0]
    assert int(batch["text_mask"].sum(1).min()) >= 8
    trainer = TeacherStudentTrainer(cfg, CPU)
    before = {n: p.detach().clone() for n, p in trainer.teacher.projection.named_parameters()}
    trainer.train_step(batch)
    for key, fusion in trainer.teacher.fusion.items():
        attn = fusion.attn
        q, k = (attn.q_proj_weight.grad, attn.k_proj_weight.grad) if attn.in_proj_weight is None \
            else attn.in_proj_weight.grad.chunk(3)[:2]
        assert float(q.norm()) > 1e-6 and float(k.norm()) > 1e-6, key
    for name, p in trainer.teacher.projection.named_parameters():
        assert p.grad is not None and float(p.grad.norm()) > 0, name
        assert not torch.equal(p, before[name]), name


def test_evaluation_logs_teacher_student_and_ensemble_dice_in_one_pass():
    cfg = tiny_config(train={"max_steps": 4})
    train = make_batches(cfg, "train", 8, 4)
    val = make_batches(cfg, "val", 6, 3)
    trainer = TeacherStudentTrainer(cfg, CPU)
    for batch in train:
        trainer.train_step(batch)
    calls = {"teacher": 0, "student": 0}
    for name, model in trainer.models.items():
        model.register_forward_hook(lambda *_a, name=name: calls.__setitem__(name, calls[name] + 1))
    metrics = trainer.evaluate(val)
    # the student's second pass per batch is the leak check's, on the images with DARM blocks drawn
    assert calls == {"teacher": len(val), "student": 2 * len(val)}
    assert metrics["val_dice"] == pytest.approx(metrics["val_dice_student"])
    state = trainer.state_dict()
    for predictor in ("teacher", "ensemble"):
        other = TeacherStudentTrainer(tiny_config(train={"max_steps": 4}, model={"predictor": predictor}), CPU)
        other.load_state_dict({**state, "config": dump_yaml(other.cfg)})
        assert other.evaluate(val)["val_dice"] == pytest.approx(metrics[f"val_dice_{predictor}"])
    rows = trainer.evaluate_rows(val)
    assert all({"dice_teacher", "dice_student", "dice_ensemble"} <= set(r) for r in rows)
    only = TeacherStudentTrainer(tiny_config(train={"method": "student_only"}), CPU).evaluate(val)
    assert not {"val_dice_teacher", "val_dice_student", "val_dice_ensemble"} & set(only)


def test_construction_leaves_the_global_rng_alone_and_init_is_reproducible():
    cfg = tiny_config()
    torch.manual_seed(123)
    state = torch.get_rng_state()
    a = TeacherStudentTrainer(cfg, CPU)
    assert torch.equal(torch.get_rng_state(), state)
    torch.manual_seed(456)
    b = TeacherStudentTrainer(cfg, CPU)
    c = TeacherStudentTrainer(override(cfg, {"train.seed": cfg.train.seed + 1}), CPU)
    for name in a.models:
        sa, sb, sc = (t.models[name].state_dict() for t in (a, b, c))
        assert all(torch.equal(sa[k], sb[k]) for k in sa)
        assert not all(torch.equal(sa[k], sc[k]) for k in sa)


def test_state_dict_loads_with_weights_only(tmp_path):
    cfg = tiny_config()
    trainer = TeacherStudentTrainer(cfg, CPU)
    trainer.train_step(make_batches(cfg, "train", 4, 4)[0])
    state = trainer.state_dict()
    assert "torch_rng" not in state
    torch.save(state, tmp_path / "state.pt")
    loaded = torch.load(tmp_path / "state.pt", weights_only=True)
    fresh = TeacherStudentTrainer(cfg, CPU)
    fresh.load_state_dict(loaded)
    assert fresh.step == 1 and torch.equal(fresh.generator.get_state(), trainer.generator.get_state())


def test_leak_check_scores_the_student_with_training_blocks_drawn_on_val():
    cfg = tiny_config(text={"mode": "none"}, masking={"mask_ratio": 0.6, "block_min": 0.1, "block_max": 0.3})
    val = make_batches(cfg, "val", 8, 4)
    trainer = TeacherStudentTrainer(cfg, CPU)
    for batch in make_batches(cfg, "train", 8, 4):
        trainer.train_step(batch)
    first, again = trainer.evaluate(val), trainer.evaluate(val)
    assert first == again  # the check's blocks are the same at every evaluation
    assert first["val_dice_blocks"] != first["val_dice_student"]
    assert first["val_leak"] == pytest.approx(first["val_dice_blocks"] - first["val_dice_student"])
    off = TeacherStudentTrainer(tiny_config(text={"mode": "none"}, masking={"mask_ratio": 0.0}), CPU)
    assert "val_leak" not in off.evaluate(val) and "val_dice_student" in off.evaluate(val)


def test_uniform_placement_with_ring_hiding_is_refused_by_the_config():
    with pytest.raises(ConfigError, match="masking.placement"):
        tiny_config(masking={"placement": "uniform", "hide": "ring"})
