"""Make the legacy checkpoints in this folder (run once, with the code of main at 0eb64dd, before
the hyperparameters were grouped; kept for the record, not run by the tests).

    OMP_NUM_THREADS=1 python tests/data/legacy_ckpt/make_legacy.py

Each checkpoint comes from 2 training steps of a tiny network; ``predictions.pt`` records, for a
fixed input per checkpoint, the eval-mode logits of ``model(x)`` and the probabilities of
``predict_step`` (with the checkpoint's TTA), as the code of that time computed them.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]
sys.path.insert(0, str(ROOT))

from resnet_pl.cli import cli_main  # noqa: E402
from resnet_pl.lightning import DistillationClassifier, ResNetClassifier  # noqa: E402

FASHION = "/usr/share/datasets/fashion-mnist"
COMMON = [
    "--trainer.max_epochs",
    "1",
    "--trainer.max_steps",
    "2",
    "--trainer.precision",
    "32",
    "--trainer.enable_progress_bar",
    "false",
    "--trainer.limit_val_batches",
    "1",
    "--checkpoint_every_n_steps",
    "0",
]


def fit(config: str, name: str, root: Path, extra: list[str]) -> Path:
    cli_main(
        ["fit", "--config", config, "--run_root", str(root), "--run_name", name, *COMMON, *extra]
    )
    found = sorted((root / name).glob("version_*/checkpoints/last.ckpt"))
    assert found, f"no last.ckpt for {name}"
    out = HERE / f"{name}.ckpt"
    shutil.copyfile(found[-1], out)
    return out


def python_fit(root: Path) -> Path:
    """A checkpoint written without LightningCLI (no ``_instantiator`` in its hparams)."""
    import lightning as L

    from resnet_pl.lightning import ImageDataModule

    model = ResNetClassifier(
        "resnet8",
        model_kwargs={"widths": [4, 8, 16]},
        optimizer="adamw",
        lr=0.01,
        scheduler="step",
        step_milestones=[1],
        cutmix_alpha=0.5,
        norm_bias_lr_scale=4.0,
        tta="shift",
    )
    dm = ImageDataModule("fake", fake_size=64, batch_size=16, image_size=16, num_workers=0)
    trainer = L.Trainer(
        max_steps=2,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        default_root_dir=root,
        limit_val_batches=1,
    )
    trainer.fit(model, dm)
    out = HERE / "python.ckpt"
    trainer.save_checkpoint(out)
    return out


def image_folder(root: Path) -> Path:
    rng = np.random.default_rng(0)
    for split, n in (("train", 8), ("val", 4), ("test", 4)):
        for label in ("cat", "dog"):
            d = root / "imgs" / split / label
            d.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                pixels = rng.integers(0, 256, (40, 36, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(d / f"{i}.png")
    return root / "imgs"


def main() -> None:
    tmp = Path(tempfile.mkdtemp())
    fm = [
        "--data.data_dir",
        FASHION,
        "--data.train_subset",
        "128",
        "--data.val_subset",
        "64",
        "--data.batch_size",
        "32",
    ]
    tiny = ["--model.model_kwargs", '{"widths": [4, 8, 16]}']
    made = {
        "fast": fit("configs/fashion_mnist_fast.yaml", "fast", tmp, [*fm, *tiny]),
        "resnet20": fit(
            "configs/fashion_mnist_resnet20.yaml",
            "resnet20",
            tmp,
            [
                *fm,
                *tiny,
                "--model.mixup_alpha",
                "0.2",
                "--model.freeze_backbone_epochs",
                "0",
                "--model.backbone_lr_scale",
                "0.5",
            ],
        ),
        "kd": fit(
            "configs/fashion_mnist_kd.yaml",
            "kd",
            tmp,
            [*fm, *tiny, "--model.init_args.feature_weight", "0.5"],
        ),
        "imagefolder": fit(
            "configs/imagefolder_resnet50.yaml",
            "imagefolder",
            tmp,
            [
                "--data.data_dir",
                str(image_folder(tmp)),
                "--data.image_size",
                "32",
                "--data.batch_size",
                "4",
                "--data.num_workers",
                "0",
                "--model.arch",
                "resnet8",
                "--model.pretrained",
                "false",
                *tiny,
            ],
        ),
    }
    made["python"] = python_fit(tmp)
    records = {}
    for name, path in made.items():
        cls = DistillationClassifier if name == "kd" else ResNetClassifier
        model = cls.load_from_checkpoint(path, map_location="cpu").eval()
        c, h, w = model.hparams["input_size"]
        x = torch.randn(3, c, h, w, generator=torch.Generator().manual_seed(0))
        with torch.no_grad():
            logits = model(x)
            probs = model.predict_step(x, 0)["probs"]
        records[name] = {"x": x, "logits": logits, "probs": probs}
        print(name, path.stat().st_size, dict(model.hparams))
    torch.save(records, HERE / "predictions.pt")
    shutil.rmtree(tmp)


if __name__ == "__main__":
    main()
