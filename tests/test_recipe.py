"""The fast-training options (issue #10): each does what it says.

Speed is measured by ``benchmarks.time_to_accuracy``, never here.
"""

from __future__ import annotations

import itertools
import subprocess
import sys
from pathlib import Path
from typing import Any

import lightning as L
import pytest
import torch
from test_lightning import fake_data, tiny_trainer
from torch import nn

from resnet_pl import create_model
from resnet_pl.lightning import ConfigError, ImageDataModule, ResNetClassifier
from resnet_pl.lightning.ema import EMA, warmup_ema_fn
from resnet_pl.models.init import dirac_init_, whiten_conv_
from resnet_pl.models.tta import TestTimeAugmentation, num_views, translate, tta_logits

TINY = {"widths": [8, 16, 32]}


# The same tiny trainer and fake data as the Lightning tests use.
_trainer, _fake = tiny_trainer, fake_data


# ---- EMA --------------------------------------------------------------------------------------
def test_ema_update_rule_warms_up_then_caps() -> None:
    fn = warmup_ema_fn(0.99)
    avg, cur = torch.tensor([1.0]), torch.tensor([0.0])
    # After 0 updates the decay is 1/10: the average moves 90% of the way.
    assert fn(avg, cur, torch.tensor(0.0)).item() == pytest.approx(0.1)
    # Late on, the cap applies.
    assert fn(avg, cur, torch.tensor(10_000.0)).item() == pytest.approx(0.99)


def test_ema_weights_are_what_checkpoints_and_evaluation_use(tmp_path: Path) -> None:
    from lightning.pytorch.callbacks import ModelCheckpoint

    model = ResNetClassifier(
        "resnet20", num_classes=10, model_kwargs=TINY, evaluation={"ema_decay": 0.9}
    )
    saver = ModelCheckpoint(dirpath=tmp_path, filename="m", save_top_k=-1)
    trainer = _trainer(tmp_path, limit_val_batches=1, enable_checkpointing=True,
                       callbacks=[saver])  # fmt: skip
    trainer.fit(model, _fake())  # a checkpoint written during fit, at the epoch's end
    assert any(isinstance(cb, EMA) for cb in trainer.callbacks)
    ckpt = torch.load(tmp_path / "m.ckpt", weights_only=True)
    ema, raw = ckpt["state_dict"], ckpt["current_model_state"]
    key = "model.conv1.weight"
    assert not torch.equal(ema[key], raw[key])  # the average differs from the raw weights
    # After fit the module holds the average (Lightning copies it in at train end) ...
    assert torch.equal(model.state_dict()[key], ema[key])
    # ... and a module loaded for evaluation gets it too, with no EMA machinery.
    loaded = ResNetClassifier.load_from_checkpoint(tmp_path / "m.ckpt")
    assert torch.equal(loaded.state_dict()[key], ema[key])
    test_trainer = _trainer(tmp_path)
    test_trainer.validate(loaded, _fake(), verbose=False)
    assert not any(isinstance(cb, EMA) for cb in test_trainer.callbacks)


# ---- TTA ---------------------------------------------------------------------------------------
def test_translate_shifts_with_replicated_border() -> None:
    x = torch.arange(16.0).view(1, 1, 4, 4)
    y = translate(x, 1, 1)
    assert torch.equal(y[0, 0, 1:, 1:], x[0, 0, :3, :3])  # content moved down-right
    assert torch.equal(y[0, 0, 0, 1:], x[0, 0, 0, :3])  # top row replicated


@pytest.mark.parametrize("mode", ["none", "flip", "shift", "flip_shift"])
def test_tta_averages_the_named_views(mode: str) -> None:
    model = create_model("resnet20", in_chans=1, **TINY).eval()
    x = torch.randn(3, 1, 28, 28)
    with torch.no_grad():
        got = tta_logits(model, x, mode)
        flips = [x, x.flip(-1)] if "flip" in mode else [x]
        centre = torch.stack([model(v) for v in flips]).mean(0)
        if "shift" in mode:
            side = torch.stack([model(translate(v, d, d)) for v in flips for d in (-1, 1)])
            expected = 0.5 * centre + 0.5 * side.mean(0)
        else:
            expected = centre
        wrapped = TestTimeAugmentation(model, mode)(x)
    torch.testing.assert_close(got, expected)
    torch.testing.assert_close(wrapped, expected)
    assert num_views(mode) == {"none": 1, "flip": 2, "shift": 3, "flip_shift": 6}[mode]


class _CountingNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(3 * 32 * 32, 10)
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return self.fc(x.flatten(1))


def test_tta_is_used_in_validation_and_recorded(tmp_path: Path) -> None:
    net = _CountingNet()
    model = ResNetClassifier(model=net, num_classes=10, evaluation={"tta": "flip_shift"})
    dm = _fake(eval_batch_size=4)
    trainer = _trainer(tmp_path, limit_val_batches=2)
    trainer.validate(model, dm, verbose=False)
    assert net.calls == 2 * 6  # two batches, six views each
    assert model.hparams["evaluation"]["tta"] == "flip_shift"


def test_flip_tta_refused_on_digits(tmp_path: Path) -> None:
    model = ResNetClassifier(
        "resnet20", num_classes=10, model_kwargs=TINY, evaluation={"tta": "flip"}
    )
    dm = _fake(hflip=False)
    with pytest.raises(ConfigError, match="do not survive a flip"):
        _trainer(tmp_path, limit_val_batches=1).validate(model, dm, verbose=False)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"tta": "mirror"}, "unknown tta mode"),
        ({"ema_decay": 1.0}, "ema_decay"),
        ({"ema_every_n_steps": 0}, "ema_every_n_steps"),
        ({"norm_bias_lr_scale": 0}, "norm_bias_lr_scale"),
    ],
)
def test_bad_recipe_options(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        ResNetClassifier("resnet20", **kwargs)


# ---- initialisation ---------------------------------------------------------------------------
def test_whitening_init_whitens_first_layer_on_real_data(
    fashion_mnist_train: tuple[torch.Tensor, torch.Tensor],
) -> None:
    from resnet_pl.lightning.augment import batch_augment

    images = batch_augment(fashion_mnist_train[0][:3000], size=28, mean=(0.2860,), std=(0.3530,))
    conv = create_model("resnet20", in_chans=1).conv1
    whiten_conv_(conv, images, eps=1e-6)
    with torch.no_grad():
        out = conv(images[:1000])  # N, 16, 28, 28
    half = out[:, :8].permute(1, 0, 2, 3).reshape(8, -1).double()
    cov = torch.cov(half)
    # Unit variance, uncorrelated (border patches are zero-padded, hence the tolerance).
    torch.testing.assert_close(cov, torch.eye(8, dtype=torch.float64), atol=0.06, rtol=0)
    torch.testing.assert_close(out[:, 8:], -out[:, :8])  # the sign-flipped pairs


def test_whiten_stem_option_sets_conv1_from_training_data(tmp_path: Path) -> None:
    model = ResNetClassifier(
        "resnet20", num_classes=10, model_kwargs=TINY, recipe={"whiten_stem": True}
    )
    before = model.model.conv1.weight.clone()
    dm = _fake()
    trainer = _trainer(tmp_path, max_steps=0, limit_val_batches=0)
    trainer.fit(model, dm)
    expected = model.model.conv1.weight.clone()
    whiten_conv_(model.model.conv1, _norm(dm))
    assert not torch.equal(before, expected)
    torch.testing.assert_close(model.model.conv1.weight, expected)


def _norm(dm: ImageDataModule) -> torch.Tensor:
    from resnet_pl.lightning.augment import batch_augment

    ds: Any = dm.train_set
    return batch_augment(ds.images[:4096], size=dm.image_size, mean=dm.mean, std=dm.std)


def test_dirac_init_makes_same_shape_convs_identity() -> None:
    model = create_model("resnet20", in_chans=1, conv_init="dirac", **TINY)
    conv = model.layer1[0].conv1
    x = torch.randn(2, conv.in_channels, 9, 9)
    with torch.no_grad():
        torch.testing.assert_close(conv(x), x)
    assert dirac_init_(create_model("resnet20", **TINY)) > 0
    with pytest.raises(ValueError, match="conv_init"):
        create_model("resnet20", conv_init="orthogonal")


# ---- optimisation ------------------------------------------------------------------------------
def test_norm_bias_lr_scale_only_touches_norm_biases() -> None:
    model = ResNetClassifier(
        "resnet20", model_kwargs=TINY, optim={"lr": 0.1, "norm_bias_lr_scale": 16}
    )
    bn_biases = {id(m.bias) for m in model.model.modules() if isinstance(m, nn.BatchNorm2d)}
    for group in model.parameter_groups():
        fast = {id(p) in bn_biases for p in group["params"]}
        assert len(fast) == 1  # never mixed within a group
        assert group["lr"] == pytest.approx(1.6 if fast.pop() else 0.1)
        if group["lr"] > 0.1:
            assert group["weight_decay"] == 0.0


def test_linear_schedule_is_triangular(tmp_path: Path) -> None:
    model = ResNetClassifier(
        "resnet20", model_kwargs=TINY, optim={"scheduler": "linear", "warmup_epochs": 1, "lr": 1.0}
    )
    trainer = _trainer(tmp_path, max_epochs=2, limit_val_batches=0)
    lrs: list[float] = []

    class Watch(L.Callback):
        def on_train_batch_start(self, trainer: L.Trainer, *args: Any) -> None:
            lrs.append(trainer.optimizers[0].param_groups[0]["lr"])

    trainer.callbacks.append(Watch())
    trainer.fit(model, _fake())  # 96 * 0.9 / 16 -> 5 steps per epoch, 10 in all
    peak = lrs.index(max(lrs))
    assert peak == 4 and max(lrs) == pytest.approx(1.0)
    assert all(a < b for a, b in itertools.pairwise(lrs[: peak + 1]))
    assert all(a > b for a, b in itertools.pairwise(lrs[peak:]))


# ---- progressive resizing --------------------------------------------------------------------
def test_train_size_schedule_resizes_training_batches_only(tmp_path: Path) -> None:
    """Training batches follow the schedule epoch by epoch; validation stays at full size."""
    seen: dict[str, set[tuple[int, int, int]]] = {"train": set(), "val": set()}

    class Watch(L.Callback):
        def on_train_batch_start(self, trainer: L.Trainer, pl_module: Any, batch: Any,
                                 batch_idx: int) -> None:  # fmt: skip
            seen["train"].add((trainer.current_epoch, *batch[0].shape[-2:]))

        def on_validation_batch_start(self, trainer: L.Trainer, pl_module: Any, batch: Any,
                                      batch_idx: int, dataloader_idx: int = 0) -> None:  # fmt: skip
            seen["val"].add((trainer.current_epoch, *batch[0].shape[-2:]))

    model = ResNetClassifier("resnet20", num_classes=10, model_kwargs=TINY)
    dm = _fake(train_size_schedule=[[0, 20], [2, 24], [3, 32]])
    trainer = _trainer(tmp_path, max_epochs=4, limit_val_batches=1, callbacks=[Watch()])
    trainer.fit(model, dm)
    sides = {epoch: (h, w) for epoch, h, w in seen["train"]}
    assert sides == {0: (20, 20), 1: (20, 20), 2: (24, 24), 3: (32, 32)}
    assert {(h, w) for _, h, w in seen["val"]} == {(32, 32)}  # fake data is 32 px
    assert [dm.train_size(e) for e in range(5)] == [20, 20, 24, 32, 32]


@pytest.mark.parametrize(
    "schedule", [[[0, 4]], [[0, 20, 1]], [[-1, 20]], [[0, 20], [0, 28]], [[0, 20.5]]]
)
def test_bad_train_size_schedule(schedule: Any) -> None:
    with pytest.raises(ConfigError, match="train_size_schedule"):
        ImageDataModule("fake", train_size_schedule=schedule)


# ---- the recipe under DDP ---------------------------------------------------------------------
DDP_SCRIPT = """
import sys, torch, lightning as L
from resnet_pl.lightning import ImageDataModule, ResNetClassifier
out = sys.argv[1]
model = ResNetClassifier("resnet20", num_classes=10, model_kwargs={"widths": [8, 16, 32]},
                         ema_decay=0.9, tta="flip_shift", whiten_stem=True,
                         norm_bias_lr_scale=8.0, scheduler="linear", channels_last=True)
dm = ImageDataModule("fake", batch_size=16, fake_size=96, seed=3)
trainer = L.Trainer(accelerator="cpu", devices=2, strategy="ddp", max_steps=3,
                    logger=False, enable_checkpointing=False, enable_progress_bar=False,
                    enable_model_summary=False, default_root_dir=out)
trainer.fit(model, dm)
trainer.save_checkpoint(out + "/final.ckpt")
metrics = trainer.validate(model, dm, verbose=False)[0]
if trainer.is_global_zero:
    torch.save({"val_acc": metrics["val_acc"], "world_size": trainer.world_size},
               out + "/logged.pt")
"""


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_recipe_under_two_process_ddp(tmp_path: Path) -> None:
    """EMA, TTA, whitening, the fast-bias groups and the linear schedule under 2-process DDP:
    the run completes and its synced validation equals a single-process evaluation of the
    saved (averaged) weights."""
    script = tmp_path / "ddp.py"
    script.write_text(DDP_SCRIPT)
    out = subprocess.run(
        [sys.executable, str(script), str(tmp_path)], capture_output=True, text=True, timeout=280
    )
    assert out.returncode == 0, out.stderr[-3000:]
    logged = torch.load(tmp_path / "logged.pt", weights_only=True)
    model = ResNetClassifier.load_from_checkpoint(tmp_path / "final.ckpt")
    ref = _trainer(tmp_path).validate(model, ImageDataModule("fake", batch_size=16,
                                                               fake_size=96, seed=3),
                                      verbose=False)[0]  # fmt: skip
    assert logged["world_size"] == 2
    assert logged["val_acc"] == pytest.approx(ref["val_acc"], abs=1e-6)


# ---- TTA through deployment -------------------------------------------------------------------
@pytest.mark.timeout(600)
def test_tta_recorded_in_checkpoint_reaches_export_and_classify(tmp_path: Path) -> None:
    """A checkpoint trained with tta='flip': classify averages the same views, the ONNX file
    carries them in its graph (and says so), and tta='none' exports the single-view net."""
    import onnxruntime as ort

    from resnet_pl.deploy import export_onnx
    from resnet_pl.deploy.runtime import TorchClassifier
    from resnet_pl.deploy.source import load_model

    model = ResNetClassifier(
        "resnet20", num_classes=10, model_kwargs=TINY, evaluation={"tta": "flip"}
    )
    trainer = _trainer(tmp_path, max_steps=2, limit_val_batches=1)
    trainer.fit(model, _fake())
    ckpt = tmp_path / "tta.ckpt"
    trainer.save_checkpoint(ckpt)
    net = load_model(ckpt).model
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        expected, plain = tta_logits(net, x, "flip").numpy(), net(x).numpy()

    got = TorchClassifier(ckpt).logits(x)
    np_close = torch.testing.assert_close
    np_close(torch.from_numpy(got), torch.from_numpy(expected), atol=1e-5, rtol=1e-4)

    report = export_onnx(ckpt, tmp_path / "tta.onnx", verify=True)
    assert any("'flip' (2 views) is inside the graph" in n for n in report.notes)
    sess = ort.InferenceSession(str(tmp_path / "tta.onnx"), providers=["CPUExecutionProvider"])
    meta = sess.get_modelmeta().custom_metadata_map
    assert meta.get("tta") == "flip"
    out = sess.run(None, {sess.get_inputs()[0].name: x.numpy()})[0]
    np_close(torch.from_numpy(out), torch.from_numpy(expected), atol=1e-4, rtol=1e-3)

    export_onnx(ckpt, tmp_path / "plain.onnx", verify=True, tta="none")
    sess = ort.InferenceSession(str(tmp_path / "plain.onnx"), providers=["CPUExecutionProvider"])
    out = sess.run(None, {sess.get_inputs()[0].name: x.numpy()})[0]
    np_close(torch.from_numpy(out), torch.from_numpy(plain), atol=1e-4, rtol=1e-3)
