"""ResNetClassifier, ImageDataModule and the training CLI, on real Fashion-MNIST where accuracy
matters. Tiny widths and data slices keep each run to seconds on two cores."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import pytest
import torch
from PIL import Image

from resnet_pl.cli import cli_main
from resnet_pl.lightning import DataNotFoundError, ImageDataModule, ResNetClassifier
from resnet_pl.lightning.augment import random_crop, random_erase, random_hflip

TINY = {"widths": [8, 16, 32]}
FASHION = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
]  # ResNet-20 layout at a quarter of the width


def tiny_trainer(tmp_path: Path, **kwargs: Any) -> L.Trainer:
    defaults: dict[str, Any] = {
        "max_epochs": 1,
        "accelerator": "cpu",
        "devices": 1,
        "logger": False,
        "enable_checkpointing": False,
        "enable_progress_bar": False,
        "enable_model_summary": False,
        "default_root_dir": tmp_path,
    }
    return L.Trainer(**{**defaults, **kwargs})


def fmnist(dir_: Path, **kwargs: Any) -> ImageDataModule:
    defaults: dict[str, Any] = {"data_dir": str(dir_), "batch_size": 64, "val_subset": 1000}
    return ImageDataModule("fashion_mnist", **{**defaults, **kwargs})


# ---- real-data learning ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def trained_run(tmp_path_factory: pytest.TempPathFactory, fashion_mnist_dir: Path) -> Path:
    """Train a tiny ResNet-20 on 19,200 real Fashion-MNIST images (300 steps) through the CLI;
    returns the run folder."""
    root = tmp_path_factory.mktemp("runs")
    cli_main(
        [
            "fit",
            "--config", "configs/fashion_mnist_resnet20.yaml",
            "--run_root", str(root),
            "--run_name", "tiny",
            "--trainer.max_epochs", "1",
            "--trainer.precision", "32",
            "--trainer.enable_progress_bar", "false",
            "--trainer.log_every_n_steps", "20",
            "--model.model_kwargs", '{"widths": [8, 16, 32]}',
            "--model.optim.lr", "0.05",
            "--model.optim.warmup_epochs", "0.1",
            "--data.data_dir", str(fashion_mnist_dir),
            "--data.batch_size", "64",
            "--data.train_subset", "19200",
            "--data.val_subset", "2000",
            "--data.random_erasing", "0",
            "--checkpoint_every_n_steps", "100",
        ]
    )  # fmt: skip
    return root / "tiny"


def test_short_real_run_learns(trained_run: Path) -> None:
    import csv

    with open(next(trained_run.glob("version_*/metrics.csv"))) as f:
        rows = list(csv.DictReader(f))
    val_acc = [float(r["val_acc"]) for r in rows if r.get("val_acc")]
    # Chance is 10%; 300 steps of a quarter-width ResNet-20 reach about 80% on real data.
    assert val_acc and val_acc[-1] > 0.70, val_acc
    ckpts = {p.name for p in (trained_run / "version_0" / "checkpoints").iterdir()}
    assert "last.ckpt" in ckpts and "last_step.ckpt" in ckpts
    assert any(n.startswith("best-") for n in ckpts)
    assert (next(trained_run.glob("version_*")) / "training_curves.png").stat().st_size > 10_000


def test_validate_and_test_on_checkpoint(trained_run: Path, fashion_mnist_dir: Path) -> None:
    ckpt = trained_run / "version_0" / "checkpoints" / "last.ckpt"
    common = [
        "--config", "configs/fashion_mnist_resnet20.yaml",
        "--run_root", str(trained_run.parent),
        "--run_name", "tiny",
        "--trainer.precision", "32",
        "--trainer.enable_progress_bar", "false",
        "--model.model_kwargs", '{"widths": [8, 16, 32]}',
        "--data.data_dir", str(fashion_mnist_dir),
        "--data.val_subset", "1000",
        "--data.test_subset", "2000",
        "--ckpt_path", str(ckpt),
    ]  # fmt: skip
    val = cli_main(["validate", *common])
    assert val.trainer.callback_metrics["val_acc"] > 0.70
    test = cli_main(["test", *common])
    assert test.trainer.callback_metrics["test_acc"] > 0.70
    assert "test_acc_class/trouser" in test.trainer.callback_metrics
    pngs = list(trained_run.glob("version_*/confusion_matrix.png"))
    assert pngs and pngs[0].stat().st_size > 10_000


def test_predict_writes_csv(trained_run: Path, fashion_mnist_dir: Path, tmp_path: Path) -> None:
    ckpt = trained_run / "version_0" / "checkpoints" / "last.ckpt"
    cli_main(
        [
            "predict",
            "--config", "configs/fashion_mnist_resnet20.yaml",
            "--run_root", str(tmp_path),
            "--trainer.precision", "32",
            "--trainer.enable_progress_bar", "false",
            "--model.model_kwargs", '{"widths": [8, 16, 32]}',
            "--data.data_dir", str(fashion_mnist_dir),
            "--data.test_subset", "300",
            "--ckpt_path", str(ckpt),
        ]
    )  # fmt: skip
    import csv

    with open(next(tmp_path.glob("*/version_*/predictions.csv"))) as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 300
    assert {r["class_name"] for r in rows} <= set(FASHION)
    assert all(0.0 < float(r["probability"]) <= 1.0 for r in rows)


def test_checkpoint_round_trip_weights_only(trained_run: Path) -> None:
    ckpt = trained_run / "version_0" / "checkpoints" / "last.ckpt"
    raw = torch.load(ckpt, map_location="cpu", weights_only=True)  # plain values only
    hp = raw["hyper_parameters"]
    assert hp["arch"] == "resnet20" and hp["num_classes"] == 10 and hp["in_chans"] == 1
    info = hp["data_info"]
    assert info["class_names"][0] == "T-shirt/top" and info["dataset"] == "fashion_mnist"
    model = ResNetClassifier.load_from_checkpoint(ckpt, weights_only=True)
    x = torch.randn(3, 1, 28, 28)
    model.eval()
    again = ResNetClassifier.load_from_checkpoint(ckpt, weights_only=True).eval()
    torch.testing.assert_close(model(x), again(x))
    assert all(torch.equal(v, raw["state_dict"][k]) for k, v in model.state_dict().items())


def test_load_from_checkpoint_new_head_warns(trained_run: Path) -> None:
    ckpt = trained_run / "version_0" / "checkpoints" / "last.ckpt"
    with pytest.warns(UserWarning, match="re-initialised"):
        model = ResNetClassifier.load_from_checkpoint(ckpt, num_classes=5, weights_only=True)
    assert model.model.fc.out_features == 5
    raw = torch.load(ckpt, map_location="cpu", weights_only=True)["state_dict"]
    torch.testing.assert_close(model.model.conv1.weight, raw["model.conv1.weight"])


def test_resume_from_mid_epoch_checkpoint(trained_run: Path) -> None:
    ckpt = trained_run / "version_0" / "checkpoints" / "last_step.ckpt"
    raw = torch.load(ckpt, weights_only=True)
    assert raw["global_step"] % 100 == 0 and raw["global_step"] > 0
    assert raw["optimizer_states"] and raw["lr_schedulers"]


# ---- the module's options and hooks ------------------------------------------------------------
def fake_data(**kwargs: Any) -> ImageDataModule:
    return ImageDataModule("fake", batch_size=16, fake_size=96, **kwargs)


@pytest.mark.parametrize(
    "options",
    [
        {"optimizer": "sgd", "scheduler": "cosine"},
        {"optimizer": "adam", "scheduler": "onecycle", "lr": 1e-3},
        {"optimizer": "adamw", "scheduler": "step", "lr": 1e-3, "step_milestones": [1]},
        {"mixup_alpha": 0.2, "cutmix_alpha": 1.0, "label_smoothing": 0.1},
        {"channels_last": True},
        {"freeze_backbone_epochs": 1, "backbone_lr_scale": 0.1},
    ],
    ids=["sgd-cosine", "adam-onecycle", "adamw-step", "mix", "channels_last", "freeze"],
)
def test_options_train_on_fake_data(tmp_path: Path, options: dict[str, Any]) -> None:
    model = ResNetClassifier("resnet20", num_classes=10, in_chans=3, model_kwargs=TINY, **options)
    before = {k: v.clone() for k, v in model.model.state_dict().items()}
    tiny_trainer(tmp_path, max_steps=3, limit_val_batches=1).fit(model, fake_data())
    after = model.model.state_dict()
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    if options.get("freeze_backbone_epochs"):
        assert {k.split(".")[0] for k in changed if "running" not in k} <= {"fc"}
    else:
        assert any(k.startswith("conv1") for k in changed)


@pytest.mark.parametrize("precision", ["bf16-mixed", "32"])
def test_precisions(tmp_path: Path, precision: str) -> None:
    model = ResNetClassifier("resnet20", num_classes=10, model_kwargs=TINY)
    trainer = tiny_trainer(tmp_path, max_steps=2, limit_val_batches=1, precision=precision)
    trainer.fit(model, fake_data())
    assert torch.isfinite(trainer.callback_metrics["train_loss_step"])


def test_no_weight_decay_on_norms_and_biases() -> None:
    model = ResNetClassifier(
        "resnet20",
        model_kwargs=TINY,
        optim={"weight_decay": 1e-4},
        finetune={"backbone_lr_scale": 0.5},
    )
    groups = model.parameter_groups()
    for g in groups:
        if g["weight_decay"] > 0:
            assert all(p.ndim > 1 for p in g["params"])
        else:
            assert all(p.ndim == 1 for p in g["params"])
    head = {id(p) for p in model.model.fc.parameters()}
    for g in groups:
        in_head = {id(p) in head for p in g["params"]}
        assert len(in_head) == 1
        assert g["lr"] == pytest.approx(0.1 if in_head.pop() else 0.05)


def test_predict_step_returns_indices_probs_names(tmp_path: Path) -> None:
    names = [f"c{i}" for i in range(10)]
    model = ResNetClassifier("resnet20", model_kwargs=TINY, data_info={"class_names": names}).eval()
    out = model.predict_step(torch.randn(4, 3, 32, 32), 0)
    assert out["indices"].shape == (4,)
    torch.testing.assert_close(out["probs"].sum(1), torch.ones(4))
    assert out["names"] == [names[i] for i in out["indices"].tolist()]


class WeightedLossClassifier(ResNetClassifier):
    """A user subclass overriding the documented hooks."""

    def build_model(self) -> torch.nn.Module:
        self.built_by_subclass = True
        return super().build_model()

    def compute_loss(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        self.loss_calls = getattr(self, "loss_calls", 0) + 1
        return 2.0 * super().compute_loss(logits, targets)


def test_user_subclass_hooks(tmp_path: Path) -> None:
    model = WeightedLossClassifier("resnet20", num_classes=10, model_kwargs=TINY)
    tiny_trainer(tmp_path, max_steps=2, limit_val_batches=1).fit(model, fake_data())
    assert model.built_by_subclass and model.loss_calls == 2


def test_custom_module_instead_of_arch() -> None:
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 32 * 32, 10))
    model = ResNetClassifier(model=net, num_classes=10)
    assert model.hparams["arch"] == "custom" and "model" not in model.hparams
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)


# ---- data --------------------------------------------------------------------------------------
def test_fashion_mnist_found_offline_in_every_layout(
    tmp_path: Path, fashion_mnist_dir: Path
) -> None:
    import shutil

    raw = tmp_path / "FashionMNIST" / "raw"  # torchvision's layout
    raw.mkdir(parents=True)
    for f in fashion_mnist_dir.glob("t10k-*.gz"):
        shutil.copy(f, raw / f.name)
    for data_dir in (None, tmp_path, raw):
        dm = ImageDataModule("fashion_mnist", data_dir=str(data_dir) if data_dir else None)
        dm.setup("test")
        assert len(dm.test_set) == 10_000  # type: ignore[arg-type]
    assert dm.class_names[9] == "Ankle boot" and dm.input_size == (1, 28, 28)


def test_val_split_is_fixed_and_disjoint(fashion_mnist_dir: Path) -> None:
    a, b = fmnist(fashion_mnist_dir), fmnist(fashion_mnist_dir)
    a.setup("fit")
    b.setup("fit")
    assert len(a.train_set) == 54_000 and len(a.val_set) == 6_000  # type: ignore[arg-type]
    assert torch.equal(a.val_set.images, b.val_set.images)  # type: ignore[union-attr]


def test_batch_augmentations_are_per_sample() -> None:
    x = torch.arange(2 * 16, dtype=torch.uint8).view(2, 1, 4, 4).repeat(64, 1, 1, 1)
    cropped = random_crop(x, 2)
    assert cropped.shape == x.shape
    assert len({tuple(c.flatten().tolist()) for c in cropped}) > 5  # offsets differ per image
    flipped = random_hflip(x)
    assert all(
        torch.equal(f, i) or torch.equal(f, i.flip(-1)) for f, i in zip(flipped, x, strict=True)
    )
    erased = random_erase(torch.ones(64, 1, 16, 16), p=1.0)
    frac = (erased == 0).float().mean(dim=(1, 2, 3))
    assert (frac > 0).all() and (frac < 0.6).all()


def test_fake_data_has_signal(tmp_path: Path) -> None:
    dm = fake_data()
    dm.setup("fit")
    x, y = next(iter(dm.train_dataloader()))
    assert x.dtype == torch.uint8 and x.shape == (16, 3, 32, 32) and y.max() < 10


def write_png_folder(root: Path, images: torch.Tensor, labels: torch.Tensor, split: str) -> None:
    names = ["tshirt", "trouser", "pullover"]
    for i, (img, label) in enumerate(zip(images, labels, strict=True)):
        if label >= 3:
            continue
        folder = root / split / names[int(label)]
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img[0].numpy()).convert("RGB").save(folder / f"{i}.png")


def test_imagefolder_with_real_pngs(
    tmp_path: Path, fashion_mnist_test: tuple[torch.Tensor, torch.Tensor]
) -> None:
    x, y = fashion_mnist_test
    write_png_folder(tmp_path, x[:120], y[:120], "train")
    write_png_folder(tmp_path, x[120:180], y[120:180], "test")
    (tmp_path / "train" / "tshirt" / "notes.txt").write_text("not an image")
    dm = ImageDataModule(
        "imagefolder", data_dir=str(tmp_path), image_size=32, batch_size=8, num_workers=0
    )
    assert dm.num_classes == 3 and dm.class_names == ["pullover", "trouser", "tshirt"]
    model = ResNetClassifier("resnet20", num_classes=3, model_kwargs=TINY)
    trainer = tiny_trainer(tmp_path, max_steps=3)
    trainer.fit(model, dm)
    assert model.hparams["data_info"]["class_names"] == ["pullover", "trouser", "tshirt"]
    assert len(dm.val_set) > 0  # type: ignore[arg-type]  # carved from train: no val/ folder
    result = trainer.test(model, dm, verbose=False)
    assert 0.0 <= result[0]["test_acc"] <= 1.0


# ---- errors ------------------------------------------------------------------------------------
def test_missing_data_names_paths_and_fix(tmp_path: Path) -> None:
    dm = ImageDataModule("mnist", data_dir=str(tmp_path))
    with pytest.raises(DataNotFoundError, match=r"mnist \(train\) not found.*download"):
        dm.setup("fit")


def test_unknown_dataset_suggests() -> None:
    with pytest.raises(ValueError, match="Did you mean fashion_mnist"):
        ImageDataModule("fashion-mnist")


def test_wrong_num_classes_is_caught_before_training(tmp_path: Path) -> None:
    model = ResNetClassifier("resnet20", num_classes=7, model_kwargs=TINY)
    with pytest.raises(ValueError, match="num_classes=7 but the dataset 'fake' has 10"):
        tiny_trainer(tmp_path, max_steps=1).fit(model, fake_data())


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"optimizer": "lamb"}, "unknown optimizer 'lamb'"),
        ({"lr": 0.0}, "lr must be a positive number"),
        ({"lr": -1.0}, "lr must be a positive number"),
        ({"scheduler": "poly"}, "unknown scheduler"),
        ({"num_classes": 0}, "num_classes must be a positive integer"),
    ],
)
def test_bad_module_options(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        ResNetClassifier("resnet20", **kwargs)


def test_bad_batch_size() -> None:
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        ImageDataModule("fake", batch_size=0)


def test_cli_help_and_unknown_arch(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "resnet_pl.cli", "fit", "--help"], capture_output=True, text=True
    )
    assert out.returncode == 0 and "--model.arch" in out.stdout and "--data.dataset" in out.stdout
    bad = subprocess.run(
        [sys.executable, "-m", "resnet_pl.cli", "fit", "--model.arch", "resnet21",
         "--data.dataset", "fake", "--run_root", str(tmp_path)],
        capture_output=True, text=True,
    )  # fmt: skip
    assert bad.returncode != 0 and "resnet20" in bad.stderr and "unknown model" in bad.stderr


# ---- DDP ---------------------------------------------------------------------------------------
@pytest.mark.timeout(300)
def test_two_process_ddp_on_cpu(tmp_path: Path) -> None:
    """Two gloo processes train a few steps; the logged val metrics are the synced ones (the
    test compares them with a single-process evaluation of the same final weights)."""
    script = tmp_path / "ddp.py"
    script.write_text(DDP_SCRIPT)
    out = subprocess.run(
        [sys.executable, str(script), str(tmp_path)], capture_output=True, text=True, timeout=280
    )
    assert out.returncode == 0, out.stderr[-3000:]
    logged = torch.load(tmp_path / "logged.pt", weights_only=True)
    model = ResNetClassifier.load_from_checkpoint(tmp_path / "final.ckpt", weights_only=True)
    dm = fake_data(seed=3)
    trainer = tiny_trainer(tmp_path)
    ref = trainer.validate(model, dm, verbose=False)[0]
    assert logged["world_size"] == 2
    assert logged["val_acc"] == pytest.approx(ref["val_acc"], abs=1e-6)


DDP_SCRIPT = """
import sys, torch, lightning as L
from resnet_pl.lightning import ImageDataModule, ResNetClassifier
out = sys.argv[1]
model = ResNetClassifier("resnet20", num_classes=10, model_kwargs={"widths": [8, 16, 32]})
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


def test_metrics_csv_has_no_nan_columns(trained_run: Path) -> None:
    import csv

    with open(next(trained_run.glob("version_*/metrics.csv"))) as f:
        rows = list(csv.DictReader(f))
    losses = [float(r["train_loss_step"]) for r in rows if r.get("train_loss_step")]
    assert losses and np.isfinite(losses).all() and losses[-1] < losses[0]
