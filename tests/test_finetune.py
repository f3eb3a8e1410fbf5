"""Fine-tuning tools (issue 21): layer-wise lr decay on each group's own rate, freezing by a
zero step (parameters and BatchNorm statistics unchanged, ``train_bn`` honoured), exact resume
across an unfreeze, starting weights by name, the adaptive recipe and its bad-input lines."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from resnet_pl.cli import main as cli
from resnet_pl.cli.lightning import cli_main
from resnet_pl.data.errors import BadDataError
from resnet_pl.data.folder import scan_image_folder
from resnet_pl.data.recipe import decide, folder_stats
from resnet_pl.lightning import ImageDataModule, ResNetClassifier
from resnet_pl.lightning.errors import ConfigError
from resnet_pl.lightning.finetune import frozen_depths
from resnet_pl.lightning.recipe import explicit_keys

TINY = {"widths": [8, 16, 32]}


def trainer(tmp_path: Path, **kwargs: Any) -> L.Trainer:
    defaults: dict[str, Any] = {
        "max_epochs": 1,
        "accelerator": "cpu",
        "logger": False,
        "enable_checkpointing": False,
        "enable_progress_bar": False,
        "enable_model_summary": False,
        "default_root_dir": tmp_path,
    }
    return L.Trainer(**{**defaults, **kwargs})


def fake(n: int = 64) -> ImageDataModule:
    return ImageDataModule("fake", batch_size=16, fake_size=n, val_fraction=0.25)


class RecordRates(L.Callback):
    """Each group's lr as the optimizer steps (inside the step, after any gating)."""

    def __init__(self) -> None:
        self.rows: list[dict[str, float]] = []

    def on_before_optimizer_step(self, trainer: Any, pl_module: Any, optimizer: Any) -> None:
        self.rows.append({g["name"]: float(g["lr"]) for g in optimizer.param_groups})


# ---- layer-wise decay ---------------------------------------------------------------------------
@pytest.mark.parametrize("scheduler", ["cosine", "onecycle"])
def test_layer_decay_is_on_every_group_at_every_step(tmp_path: Path, scheduler: str) -> None:
    """Each level below the head trains at layer_decay x the rate above it, at every step of a
    torch scheduler (LambdaLR / OneCycleLR), while the schedule itself moves the rates."""
    model = ResNetClassifier(
        "resnet20",
        model_kwargs=TINY,
        optim={"lr": 0.1, "scheduler": scheduler},
        finetune={"layer_decay": 0.5},
    )
    rec = RecordRates()
    trainer(tmp_path, max_epochs=2, max_steps=4, limit_val_batches=0, callbacks=[rec]).fit(
        model, fake()
    )
    assert len(rec.rows) == 4
    for row in rec.rows:
        head = row["head.decay"]
        assert head > 0
        for depth, name in ((3, "depth3.decay"), (2, "depth2.decay"), (1, "depth1.decay")):
            assert row[name] == pytest.approx(head * 0.5 ** (4 - depth), rel=1e-6)
        assert row["stem.decay"] == pytest.approx(head * 0.5**4, rel=1e-6)
    assert len({round(r["head.decay"], 12) for r in rec.rows}) > 1  # the schedule moved


def test_groups_keep_backbone_scale_and_weight_decay_rules() -> None:
    model = ResNetClassifier(
        "resnet20",
        model_kwargs=TINY,
        optim={"weight_decay": 1e-4},
        finetune={"backbone_lr_scale": 0.1, "layer_decay": 0.5},
    )
    groups = model.parameter_groups()
    assert sum(len(g["params"]) for g in groups) == len(list(model.parameters()))
    for g in groups:
        assert (g["weight_decay"] > 0) == all(p.ndim > 1 for p in g["params"])
        expected = 0.1 * (1 if g["head"] else 0.1) * 0.5 ** (4 - g["depth"])
        assert g["lr"] == pytest.approx(expected)


# ---- freezing ----------------------------------------------------------------------------------
def _snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("train_bn", [False, True])
def test_frozen_backbone_is_unchanged(tmp_path: Path, train_bn: bool) -> None:
    """One frozen epoch: the frozen groups step at lr 0 (params bit-identical, also under
    weight decay and momentum); BatchNorm statistics and affine parameters unchanged unless
    train_bn; the head trains."""
    model = ResNetClassifier(
        "resnet20",
        model_kwargs=TINY,
        optim={"lr": 0.1},
        finetune={"freeze_backbone_epochs": 1, "train_bn": train_bn},
    )
    before = _snapshot(model.model)
    rec = RecordRates()
    trainer(tmp_path, limit_val_batches=1, callbacks=[rec]).fit(model, fake())
    after = model.model.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert {"fc.weight", "fc.bias"} <= changed
    bn = {k for k in before if ".bn" in k or k.startswith("bn1")}
    convs = {k for k in before if "conv" in k}
    assert not (changed & convs)
    if train_bn:
        assert any("running_mean" in k for k in changed & bn)
        assert any(k.endswith("bn1.weight") for k in changed & bn)
    else:
        assert changed == {"fc.weight", "fc.bias"}
    for row in rec.rows:
        assert row["head.decay"] > 0
        assert row["stem.decay"] == 0.0 and row["depth3.decay"] == 0.0
        assert (row["depth2.no_decay.norm"] > 0) == train_bn
    # Between steps the scheduler's rates are restored: the gate is not left behind.
    opt = model.trainer.optimizers[0]
    assert all(g["lr"] > 0 for g in opt.param_groups)


def test_gradual_unfreeze_schedule() -> None:
    # head depth 4 (resnet20: stem 0, layer1-3 -> 1-3): freeze 1 epoch, then one level per 2.
    assert frozen_depths(0, 4, 1, 2) == {0, 1, 2, 3}
    assert frozen_depths(1, 4, 1, 2) == {0, 1, 2}
    assert frozen_depths(3, 4, 1, 2) == {0, 1}
    assert frozen_depths(7, 4, 1, 2) == set()
    assert frozen_depths(0, 4, 0, 2) == set()
    assert frozen_depths(1, 4, 1, 0) == set()


# ---- exact resume across an unfreeze -------------------------------------------------------------
FIT = [
    "--data.dataset", "fake", "--data.fake_size", "112", "--data.batch_size", "16",
    "--model.model_kwargs", str(TINY).replace("'", '"'), "--model.optim.lr", "0.05",
    "--model.finetune.freeze_backbone_epochs", "1", "--model.finetune.unfreeze_interval", "1",
    "--model.finetune.layer_decay", "0.7", "--model.optim.scheduler", "onecycle",
    "--model.finetune.train_bn", "true",
    "--trainer.max_epochs", "3", "--trainer.deterministic", "true",
    "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
    "--checkpoint_every_n_steps", "4", "--seed_everything", "3",
]  # fmt: skip


STOPPER = """
import lightning as L


class StopAt(L.Callback):
    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(self, trainer, *args) -> None:
        if trainer.global_step >= self.step:
            trainer.should_stop = True
"""


@pytest.mark.timeout(900)
def test_resume_across_an_unfreeze_is_bit_identical(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Stopped at step 5 (6 steps per epoch), resumed from the step-4 checkpoint (epoch 0, all
    frozen): across two unfreezes (epochs 1 and 2), the final weights and optimizer states equal
    the uninterrupted run's bit for bit (the groups never change, only their gate)."""
    (tmp_path / "stopper.py").write_text(STOPPER)
    monkeypatch.syspath_prepend(str(tmp_path))
    stop = tmp_path / "stop.yaml"
    stop.write_text(
        "trainer:\n  callbacks:\n    - class_path: stopper.StopAt\n      init_args:\n"
        "        step: 5\n"
    )
    ref = cli_main(["fit", *FIT, "--run_root", str(tmp_path), "--run_name", "ref"])
    steps = ref.trainer.global_step
    cli_main(["fit", "--config", str(stop), *FIT, "--run_root", str(tmp_path), "--run_name", "b"])
    mid = tmp_path / "b" / "version_0" / "checkpoints" / "last_step.ckpt"
    assert torch.load(mid, weights_only=True)["global_step"] == 4  # epoch 0, all frozen
    resumed = cli_main(
        ["fit", *FIT, "--run_root", str(tmp_path), "--run_name", "b", "--ckpt_path", str(mid)]
    )
    assert resumed.trainer.global_step == steps
    a = torch.load(tmp_path / "ref/version_0/checkpoints/last.ckpt", weights_only=True)
    # The stopped run wrote last.ckpt at step 5; the resumed one writes beside it (last-v1).
    last = Path(resumed.trainer.checkpoint_callback.last_model_path)
    b = torch.load(last, weights_only=True)
    assert b["global_step"] == steps
    for k, v in a["state_dict"].items():
        assert torch.equal(v, b["state_dict"][k]), k
    for oa, ob in zip(a["optimizer_states"], b["optimizer_states"], strict=True):
        for pid, bufs in oa["state"].items():
            for name, value in bufs.items():
                assert torch.equal(value, ob["state"][pid][name]), (pid, name)


DDP_FREEZE = """
import sys, torch, lightning as L
from resnet_pl.lightning import ImageDataModule, ResNetClassifier
out = sys.argv[1]
L.seed_everything(0)
model = ResNetClassifier("resnet20", num_classes=10, model_kwargs={"widths": [8, 16, 32]},
                         optim={"lr": 0.1},
                         finetune={"freeze_backbone_epochs": 1, "unfreeze_interval": 1,
                                   "train_bn": False})


def params(m):
    return {k: v.detach().clone() for k, v in m.named_parameters()}


class Snap(L.Callback):
    def on_train_start(self, trainer, pl_module):
        torch.save({"params": params(pl_module.model),
                    "buffers": {k: v.clone() for k, v in pl_module.model.named_buffers()}},
                   f"{out}/start-{trainer.global_rank}.pt")

    def on_train_epoch_end(self, trainer, pl_module):
        torch.save({"params": params(pl_module.model),
                    "buffers": {k: v.clone() for k, v in pl_module.model.named_buffers()}},
                   f"{out}/epoch{trainer.current_epoch}-{trainer.global_rank}.pt")


dm = ImageDataModule("fake", batch_size=16, fake_size=96, seed=3)
trainer = L.Trainer(accelerator="cpu", devices=2, strategy="ddp", max_epochs=2,
                    limit_val_batches=1, logger=False, enable_checkpointing=False,
                    enable_progress_bar=False, enable_model_summary=False,
                    default_root_dir=out, callbacks=[Snap()])
trainer.fit(model, dm)
"""


@pytest.mark.timeout(300)
def test_freeze_and_unfreeze_under_two_process_ddp(tmp_path: Path) -> None:
    """Two gloo ranks, one frozen epoch then one level thawed per epoch, train_bn false: in
    epoch 0 every backbone parameter and BatchNorm statistic stays bit-identical on both ranks
    and only the head trains; in epoch 1 the top stage trains while the lower ones stay frozen;
    both ranks hold the same parameters after each epoch (they gate the same groups)."""
    import subprocess
    import sys

    script = tmp_path / "ddp_freeze.py"
    script.write_text(DDP_FREEZE)
    out = subprocess.run(
        [sys.executable, str(script), str(tmp_path)], capture_output=True, text=True, timeout=280
    )
    assert out.returncode == 0, out.stderr[-3000:]

    def load(name: str) -> dict[str, dict[str, torch.Tensor]]:
        return torch.load(tmp_path / f"{name}.pt", weights_only=True)

    for rank in (0, 1):
        start, e0, e1 = load(f"start-{rank}"), load(f"epoch0-{rank}"), load(f"epoch1-{rank}")
        changed0 = {k for k, v in start["params"].items() if not torch.equal(v, e0["params"][k])}
        assert changed0 == {"fc.weight", "fc.bias"}, changed0
        stats = [k for k in start["buffers"] if "running" in k]
        assert stats and all(torch.equal(start["buffers"][k], e0["buffers"][k]) for k in stats)
        changed1 = {k for k, v in start["params"].items() if not torch.equal(v, e1["params"][k])}
        assert any(k.startswith("layer3.") for k in changed1)
        assert not any(k.startswith(("conv1", "bn1", "layer1.", "layer2.")) for k in changed1)
    for epoch in (0, 1):
        a, b = load(f"epoch{epoch}-0")["params"], load(f"epoch{epoch}-1")["params"]
        assert all(torch.equal(v, b[k]) for k, v in a.items())


# ---- starting weights -----------------------------------------------------------------------
def test_weights_by_registry_name_record_sha256_and_reload(tmp_path: Path) -> None:
    from resnet_pl.hub.weights import get_weights

    with pytest.warns(UserWarning, match="classifier|head"):
        model = ResNetClassifier(weights="resnet20.fashion_mnist", num_classes=3, in_chans=1)
    entry = get_weights("resnet20", "fashion_mnist")
    assert model.hparams["weights"] == "resnet20.fashion_mnist"
    assert model.hparams["weights_sha256"] == entry.pretrained_cfg["sha256"]
    assert model.hparams["arch"] == "resnet20" and model.hparams["pretrained"] is False
    path = tmp_path / "m.ckpt"
    state = {"state_dict": model.state_dict(), "hyper_parameters": dict(model.hparams)}
    torch.save({**state, "pytorch-lightning_version": L.__version__}, path)
    again = ResNetClassifier.load_from_checkpoint(path)  # no weights read, no head warning
    for k, v in model.state_dict().items():
        assert torch.equal(v, again.state_dict()[k])
    # A checkpoint as starting weights: its sha256 is the file's.
    from resnet_pl.hub.pretrained import sha256_file

    with pytest.warns(UserWarning):
        child = ResNetClassifier(weights=str(path), num_classes=5, in_chans=1)
    assert child.hparams["weights_sha256"] == sha256_file(path)
    assert torch.equal(child.model.conv1.weight, model.model.conv1.weight)


def test_unknown_weights_name_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    rc = cli(["fit", "--model.weights", "resnet20.fashon_mnist", "--data.dataset", "fake"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1
    assert "resnet20.fashon_mnist" in err and "resnet20.fashion_mnist" in err


# ---- the recipe -----------------------------------------------------------------------------
def _folder(root: Path, classes: int, per_class: int, side: int, mode: str = "L") -> Path:
    rng = np.random.default_rng(0)
    for c in range(classes):
        d = root / "train" / f"c{c}"
        d.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            shape = (side, side) if mode == "L" else (side, side, 3)
            Image.fromarray(rng.integers(0, 255, shape, dtype=np.uint8), mode).save(d / f"{i}.png")
    return root


def test_recipe_adapts_to_small_grayscale_and_to_photos(tmp_path: Path) -> None:
    small = folder_stats(scan_image_folder(_folder(tmp_path / "s", 3, 40, 28)))
    d = {x.key: x.value for x in decide(small, weights="w", weights_cfg=None, given={})}
    assert d["data.augment"] == "small" and d["data.hflip"] is False
    assert d["data.in_chans"] == 1 and d["data.image_size"] == 28
    assert (
        d["model.finetune.freeze_backbone_epochs"] == 0 and d["model.optim.scheduler"] == "onecycle"
    )
    assert d["model.finetune.layer_decay"] < 1
    scratch = {x.key: x.value for x in decide(small, weights=None, weights_cfg=None, given={})}
    assert scratch["trainer.max_epochs"] >= d["trainer.max_epochs"]
    assert scratch["model.finetune.layer_decay"] == 1
    photo = folder_stats(scan_image_folder(_folder(tmp_path / "p", 2, 3, 160, "RGB")))
    p = {x.key: x.value for x in decide(photo, weights=None, weights_cfg=None, given={})}
    assert p["data.augment"] == "photo" and p["data.hflip"] is True
    assert p["data.image_size"] == 224 and p["data.in_chans"] == 3
    kept = decide(small, weights="w", weights_cfg=None, given={"trainer.max_epochs": 3})
    assert next(x for x in kept if x.key == "trainer.max_epochs").given


def test_real_photos_keep_the_imagenet_policy(tmp_path: Path) -> None:
    """A folder of real photo tiles (scikit-learn's two shipped sample photos, 160-px crops as
    JPEG): the recipe keeps RandomResizedCrop + flips at 224 px, colour, ImageNet weights, and
    the training transform it builds is that policy."""
    from sklearn.datasets import load_sample_images
    from torchvision.transforms import v2

    from resnet_pl.data.recipe import train_transform

    photos = load_sample_images()
    for name, img in zip(("china", "flower"), photos.images, strict=True):
        d = tmp_path / "train" / name
        d.mkdir(parents=True)
        for i, (top, left) in enumerate([(0, 0), (100, 200), (200, 400), (260, 100)]):
            Image.fromarray(img[top : top + 160, left : left + 160]).save(d / f"{i}.jpg")
    stats = folder_stats(scan_image_folder(tmp_path))
    assert stats.median_side == 160 and not stats.grayscale
    d = {x.key: x.value for x in decide(stats, weights="__default__", weights_cfg=None, given={})}
    assert d["model.weights"] == "resnet50.tv_in1k"
    assert d["data.augment"] == "photo" and d["data.hflip"] is True
    assert d["data.image_size"] == 224 and d["data.in_chans"] == 3
    t = train_transform("photo", 224, {}, hflip=True)
    kinds = [type(x) for x in t.transforms]
    assert v2.RandomResizedCrop in kinds and v2.RandomHorizontalFlip in kinds
    assert next(x for x in t.transforms if isinstance(x, v2.RandomResizedCrop)).scale == (0.08, 1)


def test_explicit_keys_reads_argv_and_configs(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("trainer:\n  max_epochs: 4\nmodel:\n  optim:\n    lr: 0.1\n")
    args = ["fit", "--config", str(cfg), "--data.hflip=true", "--model.optim.lr", "1"]
    given = explicit_keys(args)
    assert given == {"trainer.max_epochs": 4, "model.optim.lr": "1", "data.hflip": "true"}


def test_recipe_fit_on_real_images_prints_decisions_and_tests(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The documented command on 60 real Fashion-MNIST PNGs (2 short epochs): the decision
    block is printed and saved, and the checkpoint works with test, classify and export."""
    from benchmarks.transfer import build_fmnist_folder

    folder = build_fmnist_folder(tmp_path / "imgs", (0, 1, 7), 20, 10, 0)
    args = ["--data.data_dir", str(folder), "--run_root", str(tmp_path / "runs")]
    args += ["--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"]
    rc = cli(["fit", "--config", "configs/finetune.yaml", *args, "--trainer.max_epochs", "2"])
    err = capsys.readouterr().err
    assert rc == 0, err[-2000:]
    assert "resnet-pl recipe:" in err and "data.augment" in err and "set by you" in err
    run = tmp_path / "runs" / "finetune" / "version_0"
    assert (run / "recipe.json").is_file()
    ckpt = next((run / "checkpoints").glob("best-*.ckpt"))
    hp = torch.load(ckpt, weights_only=True)["hyper_parameters"]
    assert hp["weights"] == "wrn_16_2.fashion_mnist" and len(hp["weights_sha256"]) == 64
    assert hp["in_chans"] == 1 and list(hp["data_info"]["input_size"]) == [1, 28, 28]
    assert cli(["test", "--config", "configs/finetune.yaml", *args, "--ckpt_path", str(ckpt)]) == 0
    assert "test_acc" in capsys.readouterr().out
    image = next((folder / "test" / "sneaker").glob("*.png"))
    assert cli(["classify", "--model", str(ckpt), str(image), "--top_k", "1"]) == 0
    assert image.name in capsys.readouterr().out
    onnx = tmp_path / "m.onnx"
    assert cli(["export", str(ckpt), "--output", str(onnx)]) == 0
    assert onnx.is_file()
    # hub publish: measured on the folder's test/ split; the card names the start weights.
    out = tmp_path / "published"
    rc = cli(["hub", "publish", str(ckpt), "--tag", "mine", "--out_dir", str(out),
              "--data_dir", str(folder)])  # fmt: skip
    assert rc == 0, capsys.readouterr().err[-2000:]
    card = next(out.glob("*.md")).read_text()
    assert "start_weights" in card and hp["weights_sha256"] in card
    record = json.loads(next(out.glob("*.json")).read_text())
    assert record["pretrained_cfg"]["metrics"]["n"] == 30
    assert record["pretrained_cfg"]["recipe"]["start_weights"]["name"] == hp["weights"]


# ---- bad input -----------------------------------------------------------------------------------
def test_one_class_folder_is_refused(tmp_path: Path) -> None:
    with pytest.raises(BadDataError, match=r"only one class folder.*at least two"):
        scan_image_folder(_folder(tmp_path, 1, 2, 8))


def test_empty_split_and_extra_val_classes_are_refused(tmp_path: Path) -> None:
    root = _folder(tmp_path, 2, 2, 8)
    (root / "val").mkdir()
    (root / "val" / "c0").mkdir()
    with pytest.raises(BadDataError, match=r"val holds no images.*remove the folder"):
        scan_image_folder(root)
    _folder(root / "val_src", 3, 1, 8)
    (root / "val" / "c0").rmdir()
    (root / "val").rmdir()
    (root / "val_src" / "train").rename(root / "val")
    with pytest.raises(BadDataError, match="classes that train/ lacks \\(c2\\)"):
        scan_image_folder(root)


def test_recipe_needs_an_image_folder(capsys: pytest.CaptureFixture[str]) -> None:
    rc = cli(["fit", "--config", "configs/finetune.yaml", "--data.dataset", "fake"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "data_dir" in err.splitlines()[-1]


def test_lr_auto_without_finder_is_one_line() -> None:
    model = ResNetClassifier("resnet20", model_kwargs=TINY, optim={"lr": "auto"})
    with pytest.raises(ConfigError, match="finder has not run"):
        model.parameter_groups()


def test_lr_auto_runs_the_finder_and_records_the_value(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """--model.lr auto: Lightning's Tuner picks the rate before fit (its 24 steps span several
    epochs of this small set); the rate is printed, saved as the model's lr in the checkpoint,
    and its curve is written to the run folder."""
    from resnet_pl.lightning import finetune

    monkeypatch.setattr(finetune, "LR_FIND_STEPS", 24)
    rc = cli(
        [
            "fit", "--data.dataset", "fake", "--data.fake_size", "96", "--data.batch_size", "8",
            "--model.model_kwargs", '{"widths": [8, 16, 32]}', "--model.optim.lr", "auto",
            "--trainer.max_epochs", "1", "--trainer.limit_val_batches", "1",
            "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
            "--run_root", str(tmp_path), "--checkpoint_every_n_steps", "0",
        ]
    )  # fmt: skip
    out = capsys.readouterr()
    assert rc == 0, out.err[-2000:]
    ckpt = next(tmp_path.glob("**/last.ckpt"))
    lr = torch.load(ckpt, weights_only=True)["hyper_parameters"]["optim"]["lr"]
    assert isinstance(lr, float) and 1e-5 <= lr <= 1.0
    assert f"lr = {lr:.3g}" in out.out
    assert (ckpt.parents[1] / "lr_find.png").is_file()
