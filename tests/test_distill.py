"""DistillationClassifier: the frozen teacher, the loss, re-normalisation, ensembles, feature
hints, checkpoints and resume, the CLI on real Fashion-MNIST, publish and ONNX export.

Teachers are the shipped ``resnet20.fashion_mnist`` or tiny random checkpoints written here
(ResNet-20 layout at widths 8/16/32, BatchNorm statistics randomised so that eval mode and train
mode give different outputs); students are the same tiny layout.
"""

from __future__ import annotations

import copy
import json
import math
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import lightning as L
import pytest
import torch
import torch.nn.functional as F
import yaml
from torch import nn

from resnet_pl import create_model, transforms
from resnet_pl.cli import cli_main, main
from resnet_pl.lightning import (
    ConfigError,
    DistillationClassifier,
    ImageDataModule,
    ResNetClassifier,
    TeacherMismatchError,
)
from resnet_pl.lightning.augment import batch_augment
from resnet_pl.lightning.distill import FeatureTap
from tests.test_reliability import FIT_ARGS, KILLER, STEPS, _assert_same_training_state, _env

REPO = Path(__file__).resolve().parents[1]
KD_CONFIG = REPO / "configs" / "fashion_mnist_kd.yaml"
SHIPPED = "resnet20.fashion_mnist"
TINY = {"widths": [8, 16, 32]}
FASHION = {"mean": [0.286], "std": [0.353]}


def _teacher_ckpt(
    path: Path,
    seed: int,
    *,
    in_chans: int = 1,
    size: int = 28,
    mean: tuple[float, ...] = (0.286,),
    std: tuple[float, ...] = (0.353,),
) -> Path:
    """A resnet-pl checkpoint (the contract: ``model.*`` weights, plain hyperparameters) of a
    tiny random network whose BatchNorm running statistics are not the defaults."""
    g = torch.Generator().manual_seed(seed)
    net = create_model("resnet20", num_classes=10, in_chans=in_chans, **TINY)
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.3)
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.2)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)
    hp = {
        "arch": "resnet20",
        "num_classes": 10,
        "in_chans": in_chans,
        "model_kwargs": dict(TINY),
        "mean": list(mean),
        "std": list(std),
        "input_size": [in_chans, size, size],
        "dataset": None,
    }
    state = {f"model.{k}": v for k, v in net.state_dict().items()}
    torch.save({"state_dict": state, "hyper_parameters": hp}, path)
    return path


def _student(teacher: Any, **kwargs: Any) -> DistillationClassifier:
    info = {**FASHION, **kwargs.pop("data_info", {})}
    options: dict[str, Any] = {"in_chans": 1, "model_kwargs": dict(TINY), "data_info": info}
    options.update(kwargs)
    return DistillationClassifier("resnet20", teacher=teacher, **options)


def _u8(n: int = 6, size: int = 28, channels: int = 1, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, channels, size, size), generator=g, dtype=torch.uint8)


def _teacher_state(module: DistillationClassifier) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in module.teachers.state_dict().items()}


def _trainer(root: Path, steps: int, **kwargs: Any) -> L.Trainer:
    return L.Trainer(
        max_steps=steps,
        default_root_dir=str(root),
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        limit_val_batches=1,
        **kwargs,
    )


def _data(fashion_mnist_dir: Path, n: int = 256) -> ImageDataModule:
    return ImageDataModule(
        "fashion_mnist",
        data_dir=str(fashion_mnist_dir),  # a Path would not load under weights_only=True
        batch_size=32,
        train_subset=n,
        val_subset=64,
        num_workers=0,
    )


# ---- the teacher: frozen, eval, outside the optimizer and the state_dict ---------------------
def test_teacher_frozen_in_eval_and_outside_module_tree() -> None:
    module = _student(SHIPPED)
    module.train()
    (teacher,) = module.teachers
    assert not any(m.training for m in teacher.modules())
    assert not any(p.requires_grad for p in teacher.parameters())
    teacher.train()  # even asked directly
    assert not any(m.training for m in teacher.modules())
    module.unfreeze()
    assert not any(p.requires_grad for p in teacher.parameters())
    teacher_ids = {id(p) for p in teacher.parameters()}
    assert not teacher_ids & {id(p) for p in module.parameters()}
    assert all(k.startswith("model.") for k in module.state_dict())
    groups = module.parameter_groups()
    assert not teacher_ids & {id(p) for g in groups for p in g["params"]}
    # ... yet device/dtype moves reach it (they go through _apply).
    module.double()
    assert all(p.dtype == torch.float64 for p in teacher.parameters())


@pytest.mark.parametrize("ema_decay", [0.0, 0.9])
def test_training_changes_student_not_teacher(
    tmp_path: Path, fashion_mnist_dir: Path, ema_decay: float
) -> None:
    """Also with the weight average (its copy of the module must not average the teacher)."""
    module = _student(SHIPPED, optim={"lr": 0.05}, evaluation={"ema_decay": ema_decay})
    before_t = _teacher_state(module)
    before_s = {k: v.clone() for k, v in module.model.state_dict().items()}
    _trainer(tmp_path, 6).fit(module, datamodule=_data(fashion_mnist_dir))
    after_t = module.teachers.state_dict()
    assert all(torch.equal(before_t[k], after_t[k]) for k in before_t)  # BN stats included
    assert not any(m.training for m in module.teachers.modules())
    changed = [k for k, v in module.model.state_dict().items() if not torch.equal(v, before_s[k])]
    assert any(k.endswith("conv1.weight") for k in changed)
    ckpt = tmp_path / "kd.ckpt"
    module.trainer.save_checkpoint(ckpt)
    saved = torch.load(ckpt, weights_only=True)
    assert all(k.startswith("model.") for k in saved["state_dict"])
    assert saved["distillation"]["teachers"][0]["source"] == SHIPPED
    assert saved["hyper_parameters"]["teacher_sha256"] == [module.teachers[0].sha256]
    n_opt = sum(len(g["params"]) for g in saved["optimizer_states"][0]["param_groups"])
    assert n_opt == len(list(module.model.parameters()))


# ---- the loss ------------------------------------------------------------------------------
def _hand_kd(s: torch.Tensor, t: torch.Tensor, y: torch.Tensor, temp: float, alpha: float) -> float:
    """The KD formula written out with plain sums, in float64."""
    s, t = s.double().tolist(), t.double().tolist()
    kd = ce = 0.0
    for si, ti, yi in zip(s, t, y.tolist(), strict=True):
        zs = [v / temp for v in si]
        zt = [v / temp for v in ti]
        ls = math.log(sum(math.exp(v) for v in zs))
        lt = math.log(sum(math.exp(v) for v in zt))
        p_t = [math.exp(v - lt) for v in zt]
        kd += sum(p * ((a - lt) - (b - ls)) for p, a, b in zip(p_t, zt, zs, strict=True))
        ce += -(si[yi] - math.log(sum(math.exp(v) for v in si)))
    n = len(s)
    return alpha * temp * temp * kd / n + (1 - alpha) * ce / n


@pytest.mark.parametrize(("temp", "alpha"), [(4.0, 0.9), (1.0, 0.5), (2.5, 0.0), (3.0, 1.0)])
def test_loss_equals_hand_computation(temp: float, alpha: float) -> None:
    module = _student(SHIPPED, distill={"temperature": temp, "alpha": alpha})
    g = torch.Generator().manual_seed(1)
    s, t = torch.randn(5, 10, generator=g) * 3, torch.randn(5, 10, generator=g) * 3
    y = torch.tensor([0, 3, 9, 3, 7])
    parts = module.distillation_loss(s, t, y)
    assert parts["loss"].item() == pytest.approx(_hand_kd(s, t, y, temp, alpha), rel=1e-5)
    # KL of a distribution with itself is 0: only the CE part remains.
    same = module.distillation_loss(s, s, y)
    assert same["kd"].item() == pytest.approx(0.0, abs=1e-6)


def test_kd_warmup_ramps_the_kd_share() -> None:
    """``kd_warmup_epochs``: alpha rises linearly with the optimizer step over that many epochs
    (here 2 epochs of 10 steps), the cross-entropy takes the rest; full alpha outside
    training and without a warm-up."""
    from types import SimpleNamespace

    module = _student(SHIPPED, distill={"alpha": 0.8, "temperature": 2.0, "kd_warmup_epochs": 2})
    fake = SimpleNamespace(training=True, num_training_batches=10, accumulate_grad_batches=1,
                           global_step=0)  # fmt: skip
    module._trainer = fake  # type: ignore[assignment]
    g = torch.Generator().manual_seed(0)
    s, te = torch.randn(4, 10, generator=g), torch.randn(4, 10, generator=g)
    y = torch.tensor([0, 3, 9, 1])
    for step, share in [(0, 0.0), (5, 0.2), (10, 0.4), (19, 0.76), (20, 0.8), (35, 0.8)]:
        fake.global_step = step
        assert module.kd_share() == pytest.approx(share)
        parts = module.distillation_loss(s, te, y)
        expected = share * parts["kd"] + (1 - share) * parts["ce"]
        assert parts["loss"].item() == pytest.approx(expected.item(), rel=1e-6)
    fake.global_step, fake.training = 5, False
    assert module.kd_share() == 0.8
    plain = _student(SHIPPED, distill={"alpha": 0.8})
    plain._trainer = SimpleNamespace(training=True, global_step=0)  # type: ignore[assignment]
    assert plain.kd_share() == 0.8
    # Two batches per optimizer step: the same 2 epochs are 10 steps.
    accumulating = _student(SHIPPED, distill={"alpha": 0.8, "kd_warmup_epochs": 2})
    accumulating._trainer = SimpleNamespace(training=True, num_training_batches=10,
                                            accumulate_grad_batches=2, global_step=5)  # type: ignore[assignment]  # fmt: skip
    assert accumulating.kd_share() == pytest.approx(0.4)


def test_compute_loss_uses_the_teacher_on_the_same_batch() -> None:
    module = _student(SHIPPED, distill={"temperature": 3.0, "alpha": 0.7})
    x = batch_augment(_u8(), size=28, mean=[0.286], std=[0.353])
    y = torch.tensor([1, 2, 3, 4, 5, 6])
    module.train()
    logits = module(x)
    loss = module.compute_loss(logits, y)
    with torch.no_grad():
        t = module.teachers[0].model(x)  # same statistics: the teacher sees x itself
    assert loss.item() == pytest.approx(_hand_kd(logits.detach(), t, y, 3.0, 0.7), rel=1e-5)
    with pytest.raises(RuntimeError, match="needs the batch"):
        module.compute_loss(logits, y)  # the kept batch is used once


# ---- re-normalisation ----------------------------------------------------------------------
def _teacher_inputs(module: DistillationClassifier, x: torch.Tensor) -> list[torch.Tensor]:
    """What each teacher network receives for the student batch ``x``."""
    seen: list[torch.Tensor] = []
    hooks = [
        t.model.register_forward_pre_hook(lambda m, args: seen.append(args[0]))
        for t in module.teachers
    ]
    module.teacher_logits(x)
    for h in hooks:
        h.remove()
    return seen


def test_teacher_input_is_its_own_eval_transform(tmp_path: Path) -> None:
    """Student normalised with (0.5, 0.25); the teacher was trained with (0.2, 0.4): it gets
    exactly what its eval transform makes of the same uint8 images."""
    ckpt = _teacher_ckpt(tmp_path / "t.ckpt", 0, mean=(0.2,), std=(0.4,))
    module = _student(str(ckpt), data_info={"mean": [0.5], "std": [0.25]})
    images = _u8()
    x = batch_augment(images, size=28, mean=[0.5], std=[0.25])
    (seen,) = _teacher_inputs(module, x)
    cfg = {"input_size": (1, 28, 28), "mean": (0.2,), "std": (0.4,), "crop_pct": 1.0}
    expected = transforms(cfg)(images)
    torch.testing.assert_close(seen, expected, atol=1e-5, rtol=0)
    # With the same statistics the batch passes through untouched.
    same = _student(str(ckpt), data_info={"mean": [0.2], "std": [0.4]})
    assert _teacher_inputs(same, x)[0] is x


def test_teacher_input_resized_and_expanded(tmp_path: Path) -> None:
    """A 3-channel 32 px teacher behind a gray 28 px student: resized and channel-copied, equal
    to its eval transform up to one uint8 level (that transform resizes in uint8 with
    torchvision's fixed-point kernel and rounds; the teacher's input is resized in float)."""
    mean, std = (0.4, 0.5, 0.6), (0.2, 0.25, 0.3)
    ckpt = _teacher_ckpt(tmp_path / "t.ckpt", 0, in_chans=3, size=32, mean=mean, std=std)
    module = _student(str(ckpt))
    images = _u8()
    x = batch_augment(images, size=28, **FASHION)  # type: ignore[arg-type]
    (seen,) = _teacher_inputs(module, x)
    cfg = {"input_size": (3, 32, 32), "mean": mean, "std": std, "crop_pct": 1.0}
    expected = transforms(cfg)(images.expand(-1, 3, -1, -1))
    assert seen.shape == expected.shape == (6, 3, 32, 32)
    atol = 1.01 / 255 / min(std)
    torch.testing.assert_close(seen, expected, atol=atol, rtol=0)


# ---- ensembles -----------------------------------------------------------------------------
def test_ensemble_averages_logits(tmp_path: Path) -> None:
    a = _teacher_ckpt(tmp_path / "a.ckpt", 1)
    b = _teacher_ckpt(tmp_path / "b.ckpt", 2, mean=(0.3,), std=(0.3,))
    module = _student([str(a), str(b)])
    x = batch_augment(_u8(), size=28, **FASHION)  # type: ignore[arg-type]
    both = module.teacher_logits(x)
    one = [_student(str(p)).teacher_logits(x) for p in (a, b)]
    assert not torch.allclose(one[0], one[1])
    torch.testing.assert_close(both, (one[0] + one[1]) / 2)
    assert len(module.hparams["teacher_sha256"]) == 2


# ---- feature distillation ------------------------------------------------------------------
def test_feature_projection_trains_and_is_not_exported(
    tmp_path: Path, fashion_mnist_dir: Path
) -> None:
    from resnet_pl.deploy.source import load_checkpoint
    from resnet_pl.hub.checkpoint import build_model, read_checkpoint

    module = _student(
        SHIPPED, distill={"feature_weight": 2.0, "feature_stage": 2}, optim={"lr": 0.05}
    )
    (proj,) = module.feature_proj  # type: ignore[misc]
    assert (proj.in_channels, proj.out_channels) == (16, 32)  # student / teacher stage 2
    before = proj.weight.detach().clone()
    trainer = _trainer(tmp_path, 4, log_every_n_steps=1)
    trainer.fit(module, datamodule=_data(fashion_mnist_dir, 128))
    assert not torch.equal(before, proj.weight)
    assert "train_feature_loss_step" in trainer.logged_metrics
    assert "train_kd_loss_step" in trainer.logged_metrics
    ckpt = tmp_path / "feat.ckpt"
    trainer.save_checkpoint(ckpt)
    saved = torch.load(ckpt, weights_only=True)["state_dict"]
    assert {k for k in saved if not k.startswith("model.")} == {
        "feature_proj.0.weight",
        "feature_proj.0.bias",
    }
    # The exported network is the student alone, rebuilt strictly.
    net = build_model(read_checkpoint(ckpt))
    assert set(net.state_dict()) == set(module.model.state_dict())
    assert not any("feature_proj" in k for k in load_checkpoint(ckpt).model.state_dict())
    x = batch_augment(_u8(), size=28, **FASHION)  # type: ignore[arg-type]
    module.eval()
    with torch.no_grad():
        torch.testing.assert_close(net(x), module(x))
    # The student's hook is a small tap: copying the network (EMA, export) copies no teacher.
    copied = copy.deepcopy(module.model)
    assert all(isinstance(h, FeatureTap) for h in copied.layer2._forward_hooks.values())


# ---- checkpoints and resume ----------------------------------------------------------------
def test_checkpoint_reloads_teacher_and_refuses_a_changed_one(
    tmp_path: Path, fashion_mnist_dir: Path
) -> None:
    teacher = _teacher_ckpt(tmp_path / "teacher.ckpt", 3)
    module = _student(str(teacher))
    trainer = _trainer(tmp_path, 2)
    trainer.fit(module, datamodule=_data(fashion_mnist_dir, 64))
    ckpt = tmp_path / "kd.ckpt"
    trainer.save_checkpoint(ckpt)

    loaded = DistillationClassifier.load_from_checkpoint(ckpt)
    for k, v in module.teachers.state_dict().items():
        assert torch.equal(v, loaded.teachers.state_dict()[k]), k
    # The plain class reads the student alone (its extra hyperparameters are ignored).
    student = ResNetClassifier.load_from_checkpoint(ckpt)
    assert type(student) is ResNetClassifier
    for k, v in module.model.state_dict().items():
        assert torch.equal(v, student.model.state_dict()[k]), k

    _teacher_ckpt(teacher, 4)  # the same path now holds another network
    with pytest.raises(TeacherMismatchError, match="teacher file changed"):
        DistillationClassifier.load_from_checkpoint(ckpt)
    # A module built in Python (new digest) resuming the old checkpoint is refused too.
    fresh = _student(str(teacher))
    with pytest.raises(TeacherMismatchError, match="trained with teachers of sha256"):
        _trainer(tmp_path, 3).fit(fresh, datamodule=_data(fashion_mnist_dir, 64), ckpt_path=ckpt)


def _kd_args(teacher: Path) -> list[str]:
    return ["--model", "DistillationClassifier", "--model.teacher", str(teacher)]


@pytest.mark.timeout(600)
def test_sigkill_then_resume_matches_uninterrupted(tmp_path: Path) -> None:
    """The reliability suite's kill -9 at step 14 (mid-epoch), with a KD student, a feature
    hint and a KD warm-up: resuming gives bit-identical weights, projection, optimizer and
    scheduler states.
    A resume after the teacher file changed is one line, exit 2."""
    teacher = _teacher_ckpt(tmp_path / "teacher.ckpt", 5, in_chans=3, size=32, mean=(0.5,) * 3,
                            std=(0.25,) * 3)  # fmt: skip
    # The KD ramp (2 epochs = steps 0-20) is still rising at the kill: a resume that restarted
    # or skipped it would not match.
    args = [*_kd_args(teacher), *FIT_ARGS, "--model.distill.feature_weight", "0.5",
            "--model.distill.kd_warmup_epochs", "2"]  # fmt: skip
    ref = cli_main(["fit", *args, "--run_root", str(tmp_path), "--run_name", "ref"])
    assert ref.trainer.global_step == STEPS

    helper = tmp_path / "helpers"
    helper.mkdir()
    (helper / "killer.py").write_text(KILLER)
    config = tmp_path / "kill.yaml"
    config.write_text(
        "trainer:\n  callbacks:\n    - class_path: killer.KillAt\n"
        "      init_args:\n        step: 14\n"
    )
    cmd = [sys.executable, "-m", "resnet_pl.cli", "fit", "--config", str(config), *args]
    cmd += ["--run_root", str(tmp_path), "--run_name", "run"]
    killed = subprocess.run(
        cmd, cwd=REPO, env=_env(path=str(helper)), capture_output=True, text=True, timeout=600
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    ckpts = tmp_path / "run" / "version_0" / "checkpoints"
    assert torch.load(ckpts / "last_step.ckpt", weights_only=True)["global_step"] == 12

    resume = ["fit", *args, "--run_root", str(tmp_path), "--run_name", "run", "--ckpt_path", "last"]
    resumed = cli_main(resume)
    assert resumed.trainer.global_step == STEPS
    _assert_same_training_state(
        tmp_path / "ref/version_0/checkpoints/last.ckpt", ckpts / "last.ckpt"
    )
    saved = torch.load(ckpts / "last.ckpt", weights_only=True)["state_dict"]
    assert "feature_proj.0.weight" in saved

    _teacher_ckpt(teacher, 6, in_chans=3, size=32, mean=(0.5,) * 3, std=(0.25,) * 3)
    proc = subprocess.run(
        [sys.executable, "-m", "resnet_pl.cli", *resume],
        cwd=REPO, env=_env(), capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr[-2000:]
    last_line = proc.stderr.strip().splitlines()[-1]
    assert last_line.startswith("resnet-pl: error:") and "sha256" in last_line, proc.stderr
    assert "restore the original teacher" in last_line and "Traceback" not in proc.stderr


# ---- bad options ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"temperature": 0.0}, "temperature must be a positive"),
        ({"alpha": 1.5}, r"alpha must be in \[0, 1\]"),
        ({"feature_weight": -1.0}, "feature_weight must be"),
        ({"kd_warmup_epochs": -1.0}, "kd_warmup_epochs must be"),
        ({"kd_warmup_epochs": float("nan")}, "kd_warmup_epochs must be"),
        ({"teacher": "resnet20"}, "without weights"),
        ({"teacher": []}, "non-empty list"),
        ({"teacher": "missing/teacher.ckpt"}, "not found"),
        ({"num_classes": 5}, "has 10 classes but the student has num_classes=5"),
        ({"feature_weight": 1.0, "feature_stage": 4}, "feature_stage 4 is not a stage"),
        ({"teacher_sha256": ["0" * 64]}, "teacher file changed"),
        ({"teacher_sha256": ["a", "b"]}, "lists 2 digests for 1 teacher"),
    ],
)
def test_bad_options_are_one_clear_error(kwargs: dict[str, Any], message: str) -> None:
    options = {"teacher": SHIPPED, **kwargs}
    with pytest.raises(ConfigError, match=message):
        _student(**options)


def test_needs_student_statistics(tmp_path: Path) -> None:
    module = DistillationClassifier("resnet20", in_chans=1, model_kwargs=TINY, teacher=SHIPPED)
    x, y = torch.zeros(8, 1, 28, 28), torch.zeros(8, dtype=torch.long)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=4)
    with pytest.raises(ConfigError, match="needs the student's mean/std"):
        _trainer(tmp_path, 1).fit(module, loader)


# ---- the CLI on real data, publish and export ----------------------------------------------
def test_cli_kd_config_trains_on_real_data(tmp_path: Path, fashion_mnist_dir: Path) -> None:
    """``resnet-pl fit --config configs/fashion_mnist_kd.yaml`` (bf16) for 24 steps on real
    Fashion-MNIST: a DistillationClassifier student of the shipped teacher; the teacher's
    weights are unchanged, the KD and CE parts are logged, the student learns."""
    cli = cli_main(
        [
            "fit", "--config", str(KD_CONFIG),
            "--data.data_dir", str(fashion_mnist_dir),
            "--data.train_subset", "768", "--data.val_subset", "256",
            "--data.num_workers", "0",
            "--trainer.max_steps", "24",
            "--trainer.enable_progress_bar", "false",
            "--trainer.enable_model_summary", "false",
            "--trainer.log_every_n_steps", "1",
            "--run_root", str(tmp_path), "--run_name", "kd",
        ]
    )  # fmt: skip
    module = cli.model
    assert isinstance(module, DistillationClassifier)
    assert cli.trainer.global_step == 24
    assert cli.trainer.precision == "bf16-mixed"
    shipped = create_model(SHIPPED, pretrained=True).state_dict()
    for k, v in module.teachers[0].model.state_dict().items():
        assert torch.equal(v, shipped[k]), k
    logged = cli.trainer.logged_metrics
    assert {"train_kd_loss_epoch", "train_ce_loss_epoch"} <= set(logged)
    assert float(cli.trainer.callback_metrics["val_acc"]) > 0.3  # chance is 0.1
    hp = torch.load(tmp_path / "kd/version_0/checkpoints/last.ckpt", weights_only=True)[
        "hyper_parameters"
    ]
    assert hp["teacher"] == SHIPPED and hp["data_info"]["mean"] == [0.286]


@pytest.mark.slow
def test_publish_and_export_only_the_student(tmp_path: Path, fashion_mnist_dir: Path) -> None:
    """``resnet-pl hub publish`` and ``resnet-pl export`` on a KD checkpoint: the student's
    weights only (no teacher, no projection), the recipe naming the teacher and its sha256."""
    import onnx
    from onnx import numpy_helper

    module = _student(SHIPPED, distill={"feature_weight": 1.0}, data_info={"class_names": None})
    trainer = _trainer(tmp_path, 4)
    trainer.fit(module, datamodule=_data(fashion_mnist_dir, 128))
    ckpt = tmp_path / "run" / "version_0" / "checkpoints" / "kd.ckpt"
    ckpt.parent.mkdir(parents=True)
    trainer.save_checkpoint(ckpt)

    out = tmp_path / "weights"
    code = main(
        ["hub", "publish", str(ckpt), "--tag", "kdtest", "--out-dir", str(out),
         "--data-dir", str(fashion_mnist_dir), "--limit", "200"]
    )  # fmt: skip
    assert code == 0
    record = json.loads((out / "resnet20.kdtest.json").read_text())
    cfg = record["pretrained_cfg"]
    assert cfg["num_params"] == sum(p.numel() for p in module.model.parameters())
    assert cfg["recipe"]["distillation"]["teachers"] == [
        {"source": SHIPPED, "sha256": module.teachers[0].sha256}
    ]
    from safetensors.torch import load_file

    assert set(load_file(str(out / "resnet20.kdtest.safetensors"))) == set(
        module.model.state_dict()
    )

    onnx_path = tmp_path / "student.onnx"
    assert main(["export", str(ckpt), "-o", str(onnx_path), "--threads", "1"]) == 0
    graph = onnx.load(str(onnx_path)).graph
    n_weights = sum(numpy_helper.to_array(t).size for t in graph.initializer)
    n_teacher = sum(p.numel() for p in module.teachers.parameters())
    assert n_weights <= sum(p.numel() for p in module.model.parameters()) < n_teacher
    import onnxruntime as ort

    x = batch_augment(_u8(4), size=28, **FASHION)  # type: ignore[arg-type]
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    (got,) = session.run(None, {session.get_inputs()[0].name: x.numpy()})
    module.eval()
    with torch.no_grad():
        torch.testing.assert_close(torch.from_numpy(got), module(x), atol=1e-4, rtol=1e-4)
    assert F.softmax(torch.from_numpy(got), 1).shape == (4, 10)


@pytest.mark.slow
@pytest.mark.parametrize("config", [None, "configs/fashion_mnist_fast.yaml"])
def test_benchmark_script_writes_results(
    tmp_path: Path, fashion_mnist_dir: Path, config: str | None
) -> None:
    """``benchmarks/distillation.py`` end to end at a toy size (2 steps per arm), with its
    built-in recipe and with a committed config's."""
    from benchmarks.distillation import main as bench_main

    extra = [] if config is None else ["--config", str(REPO / config)]
    code = bench_main(
        ["--max-steps", "2", "--train-subset", "256", "--test-subset", "200", "--seeds", "0",
         "--data-dir", str(fashion_mnist_dir), "--out-dir", str(tmp_path), *extra]
    )  # fmt: skip
    assert code == 0
    (path,) = tmp_path.glob("distillation-smoke-*.json")
    doc = json.loads(path.read_text())
    recipe = doc["settings"]["recipe"]["model"]
    if config is None:
        assert recipe == {} and doc["settings"]["epochs"] == 15
    else:  # the fast recipe's options reach both arms; the student arch is --student's
        cfg = yaml.safe_load((REPO / config).read_text())
        evaluation = cfg["model"]["evaluation"]
        assert recipe["ema_decay"] == evaluation["ema_decay"] and recipe["tta"] == "flip"
        assert doc["settings"]["epochs"] == cfg["trainer"]["max_epochs"]
        assert doc["settings"]["batch_size"] == cfg["data"]["batch_size"]
        assert doc["settings"]["student"] == "resnet8"
    assert [r["arm"] for r in doc["runs"]] == ["baseline", "kd"]
    assert all(r["steps"] == 2 for r in doc["runs"])
    assert doc["teachers"][0]["n"] == 200 and doc["teachers"][0]["test_top1"] > 80
    assert doc["summary"]["kd"]["n"] == 1 and "wall_ratio_kd_over_baseline" in doc["summary"]
    assert path.with_suffix(".md").read_text().startswith("# Knowledge distillation")


def test_cli_subclass_mode_only_when_a_class_is_named(tmp_path: Path) -> None:
    """Plain commands keep flat ``--model.X`` options (help, errors, saved configs unchanged);
    naming a class on the command line, in a config or through a checkpoint switches."""
    from resnet_pl.cli import names_model_class

    flat = REPO / "configs" / "fashion_mnist_resnet20.yaml"
    assert not names_model_class(["fit", "--config", str(flat), "--model.arch", "resnet32"])
    assert not names_model_class(["fit", "--help"])
    assert names_model_class(["fit", "--model", "DistillationClassifier"])
    assert names_model_class(["fit", "--model=DistillationClassifier"])
    assert names_model_class(["fit", "--model.help", "DistillationClassifier"])
    assert names_model_class(["fit", "--config", str(KD_CONFIG)])
    assert names_model_class(["fit", f"--config={KD_CONFIG}"])
    ckpt = tmp_path / "x.ckpt"
    torch.save({"state_dict": {}, "hyper_parameters": {"_class_path": "a.B", "arch": "x"}}, ckpt)
    assert names_model_class(["fit", "--ckpt_path", str(ckpt)])
    torch.save({"state_dict": {}, "hyper_parameters": {"arch": "x"}}, ckpt)
    assert not names_model_class(["fit", "--ckpt_path", str(ckpt)])


@pytest.mark.parametrize("text", [None, "- a list, not a config\n", "model: [unclosed\n"])
def test_benchmark_config_errors_name_the_file(tmp_path: Path, text: str | None) -> None:
    """A missing, non-mapping or broken ``--config`` stops with one line naming the file."""
    from benchmarks.distillation import read_recipe

    path = tmp_path / "recipe.yaml"
    if text is not None:
        path.write_text(text)
    with pytest.raises(SystemExit, match=f"--config {path}"):
        read_recipe(path)
