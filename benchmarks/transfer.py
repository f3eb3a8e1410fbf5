"""Transfer benchmark: pretrained vs scratch, and ``configs/finetune.yaml`` (the recipe) vs the
old ``configs/imagefolder_resnet50.yaml``, on real image folders built here.

Tasks (all real images, written as PNG folders, test split used for the reported numbers
only; every choice is made on validation):

- ``fmnist_b``: Fashion-MNIST classes 5-9 (sandal, shirt, sneaker, bag, ankle boot), from
  weights pretrained on classes 0-4 only (``pretrain``: a ResNet-8, 2 epochs, a committed
  command), so the pretrained network never saw a target class.
- ``digits``: scikit-learn's handwritten digits (1,797 8x8 images, 10 classes, shipped with the
  package, no download), from the same clothes-only weights, and (arms ``*-shipped`` /
  ``*-scratch_wrn``) from the shipped ``wrn_16_2.fashion_mnist`` the documented command picks.

An arm is ``<recipe>-<start>``: the recipe ``recipe`` (``configs/finetune.yaml``), a variant of
it (``VARIANTS``) or ``old`` (``configs/imagefolder_resnet50.yaml``); the start one of
``STARTS``.

Commands::

    python -m benchmarks.transfer pretrain          # ~2 min on one core
    python -m benchmarks.transfer run --seeds 0 1 2  # the grid; JSON + plot in results/
    python -m benchmarks.transfer run --fmnist-sizes --digits-sizes 10 50 140 \
        --arms recipe-shipped recipe-scratch_wrn --out benchmarks/results/part.json
    python -m benchmarks.transfer combine a.json b.json  # one table and plot from parts
    python -m benchmarks.transfer folder            # the issue's "done when" check

Runs go through the real CLI (``cli_main``), so what is measured is the documented command.
Keep ``OMP_NUM_THREADS=1 nice -n 10`` on a shared machine; the load average is recorded.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

RESULTS = Path(__file__).resolve().parent / "results"
PRETRAIN_CKPT = RESULTS / "transfer_pretrain" / "resnet8_fmnist_a.ckpt"
SOURCE_CLASSES = (0, 1, 2, 3, 4)
TARGET_CLASSES = (5, 6, 7, 8, 9)
FASHION = (
    "tshirt", "trouser", "pullover", "dress", "coat",
    "sandal", "shirt", "sneaker", "bag", "ankle_boot",
)  # fmt: skip


# ---- folders ---------------------------------------------------------------------------------
def _write(root: Path, split: str, images: np.ndarray, labels: np.ndarray, names: Any) -> None:
    for i, (img, y) in enumerate(zip(images, labels, strict=True)):
        folder = root / split / str(names[int(y)])
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(folder / f"{i:05d}.png")


def _pick(labels: np.ndarray, classes: Any, per_class: int, rng: np.random.Generator) -> np.ndarray:
    out = []
    for c in classes:
        idx = np.flatnonzero(labels == c)
        out.append(rng.choice(idx, size=min(per_class, len(idx)), replace=False))
    return np.concatenate(out)


def fmnist_arrays(split: str) -> tuple[np.ndarray, np.ndarray]:
    from resnet_pl.data.datasets import load_idx_dataset

    x, y = load_idx_dataset("fashion_mnist", split, None)
    return x[:, 0].numpy(), y.numpy()


def build_fmnist_folder(
    root: Path, classes: Any, per_class: int, test_per_class: int, seed: int
) -> Path:
    """``per_class`` training images per class from Fashion-MNIST's train split and
    ``test_per_class`` test images from its test split."""
    if (root / "train").is_dir():
        return root
    rng = np.random.default_rng(seed)
    x, y = fmnist_arrays("train")
    idx = _pick(y, classes, per_class, rng)
    _write(root, "train", x[idx], y[idx], FASHION)
    xt, yt = fmnist_arrays("test")
    idx = _pick(yt, classes, test_per_class, np.random.default_rng(1234))
    _write(root, "test", xt[idx], yt[idx], FASHION)
    return root


def digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    d = load_digits()
    images = np.round(d.images * (255.0 / 16.0)).astype(np.uint8)
    return images, d.target.astype(np.int64)


def build_digits_folder(root: Path, per_class: int, seed: int) -> Path:
    """scikit-learn's digits: a fixed 40 images per class for test (400), training images drawn
    from the rest (about 140 per class)."""
    if (root / "train").is_dir():
        return root
    x, y = digits_arrays()
    rng = np.random.default_rng(1234)
    test_idx = _pick(y, range(10), 40, rng)
    rest = np.setdiff1d(np.arange(len(y)), test_idx)
    idx = rest[_pick(y[rest], range(10), per_class, np.random.default_rng(seed))]
    names = [str(i) for i in range(10)]
    _write(root, "train", x[idx], y[idx], names)
    _write(root, "test", x[test_idx], y[test_idx], names)
    return root


# ---- pretraining on the source classes -------------------------------------------------------
def pretrain(epochs: int = 2, seed: int = 0) -> Path:
    """ResNet-8 on Fashion-MNIST classes 0-4 (30,000 training images), ``epochs`` epochs:
    the starting weights of both tasks (they never saw a target class)."""
    import lightning as L

    from resnet_pl.lightning import ImageDataModule, ResNetClassifier

    class SourceClasses(ImageDataModule):
        @property
        def num_classes(self) -> int:
            return len(SOURCE_CLASSES)

        @property
        def class_names(self) -> list[str]:
            return [FASHION[c] for c in SOURCE_CLASSES]

        def setup(self, stage: str | None = None) -> None:
            super().setup(stage)
            for name in ("train_set", "val_set", "test_set"):
                ds = getattr(self, name)
                if ds is None:
                    continue
                keep = ds.labels < len(SOURCE_CLASSES)
                ds.images, ds.labels = ds.images[keep], ds.labels[keep]

    L.seed_everything(seed)
    dm = SourceClasses("fashion_mnist", batch_size=128, crop_padding=2, val_fraction=0.05)
    model = ResNetClassifier(
        "resnet8",
        num_classes=len(SOURCE_CLASSES),
        in_chans=1,
        lr=0.2,
        scheduler="linear",
        warmup_epochs=0.2,
        label_smoothing=0.1,
        class_names=[FASHION[c] for c in SOURCE_CLASSES],
        mean=list(dm.mean),
        std=list(dm.std),
        input_size=[1, 28, 28],
        dataset="fashion_mnist_classes_0_4",
        crop_pct=1.0,
    )
    trainer = L.Trainer(
        max_epochs=epochs,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    t0 = time.time()
    trainer.fit(model, dm)
    PRETRAIN_CKPT.parent.mkdir(parents=True, exist_ok=True)
    trainer.save_checkpoint(PRETRAIN_CKPT, weights_only=True)
    info = {
        "command": "python -m benchmarks.transfer pretrain",
        "epochs": epochs,
        "val_acc_classes_0_4": float(trainer.callback_metrics["val_acc"]),
        "fit_seconds": round(time.time() - t0, 1),
        "loadavg": os.getloadavg(),
    }
    (PRETRAIN_CKPT.parent / "pretrain.json").write_text(json.dumps(info, indent=2))
    print(json.dumps(info))
    return PRETRAIN_CKPT


# Where an arm starts (the part of its name after "-"): the weights and, from scratch, the
# network. "pretrained" is the clothes-only ResNet-8 made by ``pretrain``; "shipped" is what
# the documented command picks for small images when no weights are named.
STARTS: dict[str, tuple[str | None, str]] = {
    "pretrained": (str(PRETRAIN_CKPT), "resnet8"),
    "scratch": (None, "resnet8"),
    "shipped": ("wrn_16_2.fashion_mnist", "wrn_16_2"),
    "scratch_wrn": (None, "wrn_16_2"),
}

# Recipe variants compared on validation (defaults are chosen from their val_acc).
VARIANTS: dict[str, list[str]] = {
    "recipe": [],
    "recipe_freeze1": ["--model.finetune.freeze_backbone_epochs", "1"],
    "recipe_nodecay": ["--model.finetune.layer_decay", "1.0"],
}


# ---- one fine-tuning run through the CLI -----------------------------------------------------
class TestCurve:
    """Test accuracy after every epoch, for the report only (nothing is chosen on it), with the
    training wall time so far (the test passes themselves excluded)."""

    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []
        self.t0 = 0.0
        self.excluded = 0.0

    def callback(self) -> Any:
        import lightning as L

        curve = self

        class _CB(L.Callback):
            def on_train_start(self, trainer: Any, pl_module: Any) -> None:
                curve.t0 = time.perf_counter()

            def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
                t = time.perf_counter()
                acc = _test_accuracy(pl_module, trainer.datamodule)
                val = trainer.callback_metrics.get("val_acc")
                curve.rows.append(
                    {
                        "epoch": trainer.current_epoch + 1,
                        "seconds": round(t - curve.t0 - curve.excluded, 2),
                        "val_acc": None if val is None else round(float(val), 4),
                        "test_acc": round(acc, 4),
                    }
                )
                curve.excluded += time.perf_counter() - t

        return _CB()


_TEST_CACHE: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}


@torch.no_grad()
def _test_accuracy(model: Any, dm: Any) -> float:
    """Accuracy on the folder's test/ images, decoded once per run (the same eval geometry and
    normalisation as ``resnet-pl test``)."""
    from resnet_pl.data.transforms import normalize

    key = id(dm.test_set)
    if key not in _TEST_CACHE:
        _TEST_CACHE.clear()
        items = [dm.test_set[i] for i in range(len(dm.test_set))]
        _TEST_CACHE[key] = (
            torch.stack([x for x, _ in items]),
            torch.tensor([int(y) for _, y in items]),
        )
    images, labels = _TEST_CACHE[key]
    was = model.training
    model.eval()
    correct = 0
    for i in range(0, len(labels), 500):
        x = normalize(images[i : i + 500], dm.mean, dm.std)
        correct += int((model.eval_logits(x).argmax(1) == labels[i : i + 500]).sum())
    model.train(was)
    return correct / max(len(labels), 1)


def fine_tune(
    folder: Path,
    arm: str,
    weights: str | None,
    seed: int,
    run_root: Path,
    scratch_arch: str = "resnet8",
) -> dict[str, Any]:
    """One run: ``arm`` is ``recipe`` (configs/finetune.yaml) or ``old`` (the ImageNet-style
    imagefolder config, as the issue's user ran it, at the recipe's epoch count)."""
    from resnet_pl.cli.lightning import cli_main

    common = [
        "--data.data_dir", str(folder),
        "--seed_everything", str(seed),
        "--run_root", str(run_root),
        "--run_name", f"{folder.name}-{arm}-{weights is not None}-{seed}",
        "--trainer.enable_progress_bar", "false",
        "--trainer.enable_model_summary", "false",
        "--trainer.precision", "32",
        "--checkpoint_every_n_steps", "0",
        "--checkpoint.save_top_k", "0",
        "--checkpoint.save_last", "false",
    ]  # fmt: skip
    w = ["--model.weights", weights or "null"]
    if arm in VARIANTS:
        args = ["--config", "configs/finetune.yaml", *common, *w, *VARIANTS[arm]]
    else:
        epochs = _recipe_epochs(folder, weights)
        args = [
            "--config", "configs/imagefolder_resnet50.yaml", *common, *w,
            "--model.pretrained", "false",
            "--data.image_size", "28",
            "--data.num_workers", "0",
            "--trainer.max_epochs", str(epochs),
        ]  # fmt: skip
    if weights is None:  # scratch: the pretrained network's architecture (one arch per start)
        args += ["--model.arch", scratch_arch]
    curve = TestCurve()
    cli = cli_main(args, run=False)  # no subcommand word with run=False
    cli.trainer.callbacks.append(curve.callback())
    t0 = time.perf_counter()
    cli.trainer.fit(cli.model, cli.datamodule)
    hp = cli.model.hparams
    return {
        "folder": folder.name,
        "arm": arm,
        "pretrained": weights is not None,
        "seed": seed,
        "epochs": cli.trainer.current_epoch,
        "fit_seconds": round(time.perf_counter() - t0 - curve.excluded, 2),
        "final_test_acc": curve.rows[-1]["test_acc"] if curve.rows else None,
        "final_val_acc": curve.rows[-1]["val_acc"] if curve.rows else None,
        "curve": curve.rows,
        "lr": hp["optim"]["lr"],
        "arch": hp["arch"],
        "image_size": int(hp["data_info"]["input_size"][-1]),
    }


def _recipe_epochs(folder: Path, weights: str | None) -> int:
    from resnet_pl.data.folder import scan_image_folder
    from resnet_pl.data.recipe import decide, folder_stats

    stats = folder_stats(scan_image_folder(folder))
    d = decide(stats, weights=weights, weights_cfg=None, given={"model.weights": weights})
    return int(next(x.value for x in d if x.key == "trainer.max_epochs"))


# ---- the grid --------------------------------------------------------------------------------
def run_grid(
    seeds: list[int], sizes: dict[str, list[int]], arms: list[str], work: Path, out: Path
) -> dict[str, Any]:
    torch.set_num_threads(1)
    if not PRETRAIN_CKPT.is_file():
        raise SystemExit(f"{PRETRAIN_CKPT} missing: run `python -m benchmarks.transfer pretrain`")
    doc: dict[str, Any] = _header()
    doc["runs"] = []
    for seed in seeds:
        for task, task_sizes in sizes.items():
            for n in task_sizes:
                folder = work / f"{task}-{n}-s{seed}"
                if task == "fmnist_b":
                    build_fmnist_folder(folder, TARGET_CLASSES, n, 200, seed)
                else:
                    build_digits_folder(folder, n, seed)
                for arm in arms:
                    kind, _, start = arm.partition("-")
                    start_weights, arch = STARTS[start]
                    r = fine_tune(folder, kind, start_weights, seed, work / "runs", arch)
                    r.update({"task": task, "per_class": n, "name": arm, "start": start,
                              "loadavg": os.getloadavg()})  # fmt: skip
                    doc["runs"].append(r)
                    print(json.dumps({k: v for k, v in r.items() if k != "curve"}), flush=True)
                    _save(doc, out)
    doc["finished"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    _save(doc, out)
    return doc


def _header() -> dict[str, Any]:
    from benchmarks.report import cpu_flags

    return {
        "benchmark": "transfer",
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "loadavg_start": os.getloadavg(),
        "cpu_count": os.cpu_count(),
        "cpu_flags": cpu_flags(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "note": "one training thread per run (torch.set_num_threads(1)); the load average is "
        "recorded with each run: compare wall times within one file",
    }


def _save(doc: dict[str, Any], out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(doc, indent=1))
    tmp.replace(out)
    summarize(doc, out.with_suffix(".md"))
    try:
        plot(doc, out.with_suffix(".png"))
    except Exception as err:  # the JSON is the result; a plot failure must not lose it
        print(f"plot failed: {err}", file=sys.stderr)


def _table(doc: dict[str, Any]) -> dict[tuple[str, int, str], list[dict[str, Any]]]:
    groups: dict[tuple[str, int, str], list[dict[str, Any]]] = {}
    for r in doc["runs"]:
        groups.setdefault((r["task"], r["per_class"], r["name"]), []).append(r)
    return groups


def summarize(doc: dict[str, Any], path: Path) -> str:
    lines = [
        "| task | images/class | arm | seeds | epochs | test acc (mean ± sd) | val acc | fit s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for (task, n, name), rs in sorted(_table(doc).items()):
        acc = np.array([r["final_test_acc"] for r in rs], dtype=float) * 100
        val = np.array([r["final_val_acc"] or np.nan for r in rs], dtype=float) * 100
        sec = np.array([r["fit_seconds"] for r in rs], dtype=float)
        lines.append(
            f"| {task} | {n} | {name} | {len(rs)} | {rs[0]['epochs']} | "
            f"{acc.mean():.2f} ± {acc.std():.2f} | {np.nanmean(val):.2f} | {sec.mean():.0f} |"
        )
    text = "\n".join(lines) + "\n"
    path.write_text(text)
    return text


def plot(doc: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = _table(doc)
    panels = sorted({(t, n) for t, n, _ in groups})
    names = sorted({k[2] for k in groups})
    colour = {name: plt.get_cmap("tab10")(i % 10) for i, name in enumerate(names)}
    fig, axes = plt.subplots(2, len(panels), figsize=(3.2 * len(panels), 6.2), squeeze=False)
    for col, (task, n) in enumerate(panels):
        for name in sorted({k[2] for k in groups if k[:2] == (task, n)}):
            rs = groups[(task, n, name)]
            length = min(len(r["curve"]) for r in rs)
            if not length:
                continue
            acc = np.mean([[p["test_acc"] for p in r["curve"][:length]] for r in rs], 0) * 100
            sec = np.mean([[p["seconds"] for p in r["curve"][:length]] for r in rs], 0)
            axes[0, col].plot(range(1, length + 1), acc, label=name, color=colour[name])
            axes[1, col].plot(sec, acc, label=name, color=colour[name])
        axes[0, col].set_title(f"{task}, {n}/class", fontsize=9)
        axes[0, col].set_xlabel("epoch")
        axes[1, col].set_xlabel("fit seconds (one thread)")
        axes[0, col].set_ylabel("test acc %")
        axes[1, col].set_ylabel("test acc %")
    handles = [plt.Line2D([], [], color=colour[name], label=name) for name in names]
    fig.legend(handles=handles, loc="lower center", ncol=len(names), fontsize=8, frameon=False)
    fig.suptitle("test accuracy (mean of seeds) vs epochs and vs fit seconds", fontsize=10)
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    fig.savefig(path, dpi=80)
    plt.close(fig)


# ---- the "done when" folder check --------------------------------------------------------------
def build_digits_check_folder(root: Path, per_class: int = 100, seed: int = 0) -> Path:
    """The issue's folder: ``per_class`` of scikit-learn's real 8x8 digit scans per class in
    ``train/`` (1,000 images), every other image (797) in ``test/``; no ``val/``."""
    if (root / "train").is_dir():
        return root
    x, y = digits_arrays()
    idx = _pick(y, range(10), per_class, np.random.default_rng(seed))
    rest = np.setdiff1d(np.arange(len(y)), idx)
    names = [str(i) for i in range(10)]
    _write(root, "train", x[idx], y[idx], names)
    _write(root, "test", x[rest], y[rest], names)
    return root


def folder_check(work: Path, out: Path, per_class: int = 100) -> dict[str, Any]:
    """The issue's scenario: a folder of 10 classes of small grayscale images (1,000 real 8x8
    digit scans, 100 per class, in ``train/``; the other 797 in ``test/``), the documented
    command as written (``fit --config configs/finetune.yaml --data.data_dir DIR``: the recipe
    picks the shipped ``wrn_16_2.fashion_mnist`` weights, which never saw a digit), then
    ``resnet-pl test`` on its best checkpoint; and the same network from scratch at the same
    epochs and image size. Both at the machine's default threads; the load is recorded."""
    folder = build_digits_check_folder(work / "digits_folder", per_class)
    doc = _header()
    doc["note"] = "run on an idle machine; fit wall time includes start-up"
    doc["folder"] = {
        "source": "sklearn.datasets.load_digits (real 8x8 scans)",
        "train_per_class": per_class,
        "train_images": per_class * 10,
        "test_images": len(list((folder / "test").rglob("*.png"))),
    }
    doc["runs"] = []
    for name in ("pretrained", "scratch"):
        run_root = work / "folder_runs"
        extra: list[str] = []
        if name == "scratch":
            first = doc["runs"][0]
            extra = ["--model.weights", "null", "--model.arch", first["arch"],
                     "--data.image_size", str(first["image_size"]),
                     "--trainer.max_epochs", str(first["epochs"])]  # fmt: skip
        cmd = [sys.executable, "-m", "resnet_pl.cli", "fit", "--config", "configs/finetune.yaml",
               "--data.data_dir", str(folder), "--run_root", str(run_root), "--run_name", name,
               "--trainer.enable_progress_bar", "false", *extra]  # fmt: skip
        load_before = os.getloadavg()
        t0 = time.perf_counter()
        fit = subprocess.run(cmd, capture_output=True, text=True)
        fit_s = time.perf_counter() - t0
        if fit.returncode:
            raise SystemExit(f"fit failed:\n{fit.stderr[-3000:]}")
        block = "\n".join(
            line for line in fit.stderr.splitlines() if line.startswith(("resnet-pl recipe", "  "))
        )
        version = sorted((run_root / name).glob("version_*"))[-1]
        ckpt = sorted(version.glob("checkpoints/best-*.ckpt"))[-1]
        test = subprocess.run(
            [sys.executable, "-m", "resnet_pl.cli", "test", "--config", "configs/finetune.yaml",
             "--data.data_dir", str(folder), "--ckpt_path", str(ckpt), "--run_root",
             str(run_root), "--run_name", f"{name}-test", "--trainer.enable_progress_bar",
             "false", *extra],
            capture_output=True,
            text=True,
        )  # fmt: skip
        acc = _parse_test_acc(test.stdout + test.stderr)
        recipe = json.loads((version / "recipe.json").read_text())
        value = {d["key"]: d["value"] for d in recipe["decisions"]}
        hp = torch.load(ckpt, map_location="cpu", weights_only=True)["hyper_parameters"]
        doc["runs"].append({"name": name, "command": "resnet-pl " + " ".join(cmd[4:]),
                            "fit_wall_seconds": round(fit_s, 1), "test_acc": acc,
                            "epochs": value["trainer.max_epochs"],
                            "image_size": value["data.image_size"], "arch": hp["arch"],
                            "weights": hp.get("weights"), "checkpoint": ckpt.name,
                            "threads": torch.get_num_threads(), "decisions": block,
                            "loadavg_before": load_before, "loadavg_after": os.getloadavg(),
                            "test_rc": test.returncode})  # fmt: skip
        print(json.dumps(doc["runs"][-1], indent=1), flush=True)
        out.write_text(json.dumps(doc, indent=1))
    return doc


def _parse_test_acc(text: str) -> float | None:
    import re

    m = re.search(r"test_acc\s*[│|]\s*([0-9.]+)", text)
    return float(m.group(1)) if m else None


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.transfer", description=__doc__)
    sub = p.add_subparsers(dest="cmd", required=True)
    pre = sub.add_parser("pretrain")
    pre.add_argument("--epochs", type=int, default=2)
    run = sub.add_parser("run")
    run.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    run.add_argument("--fmnist-sizes", type=int, nargs="*", default=[10, 50, 250])
    run.add_argument("--digits-sizes", type=int, nargs="*", default=[10, 50, 140])
    run.add_argument(
        "--arms", nargs="+", default=["recipe-pretrained", "recipe-scratch", "old-pretrained"]
    )
    run.add_argument("--work", type=Path, default=Path("/tmp/resnet_pl_transfer"))
    run.add_argument("--out", type=Path, default=RESULTS / "transfer.json")
    comb = sub.add_parser("combine", help="merge results files of partial runs into one")
    comb.add_argument("files", type=Path, nargs="+")
    comb.add_argument("--out", type=Path, default=RESULTS / "transfer.json")
    comb.add_argument(
        "--rename",
        nargs="*",
        default=[],
        help="FILE:OLD=NEW arm renames (a file written before an arm's name changed)",
    )
    fold = sub.add_parser("folder")
    fold.add_argument("--work", type=Path, default=Path("/tmp/resnet_pl_transfer"))
    fold.add_argument("--out", type=Path, default=RESULTS / "transfer_folder_check.json")
    a = p.parse_args(argv)
    if a.cmd == "pretrain":
        pretrain(a.epochs)
    elif a.cmd == "run":
        sizes = {"fmnist_b": a.fmnist_sizes, "digits": a.digits_sizes}
        run_grid(a.seeds, sizes, a.arms, a.work, a.out)
    elif a.cmd == "combine":
        combine(a.files, a.out, a.rename)
    else:
        folder_check(a.work, a.out)
    return 0


def combine(files: list[Path], out: Path, renames: list[str]) -> dict[str, Any]:
    """One results file (JSON + table + plot) from several partial ones."""
    table: dict[str, dict[str, str]] = {}
    for spec in renames:
        file, _, pair = spec.partition(":")
        old, _, new = pair.partition("=")
        table.setdefault(Path(file).name, {})[old] = new
    doc = _header()
    doc["parts"] = []
    doc["runs"] = []
    for f in files:
        part = json.loads(f.read_text())
        doc["parts"].append({k: v for k, v in part.items() if k != "runs"} | {"file": f.name})
        for r in part["runs"]:
            r = dict(r)
            r["name"] = table.get(f.name, {}).get(r["name"], r["name"])
            r["part"] = f.name
            doc["runs"].append(r)
    doc["renames"] = table
    _save(doc, out)
    return doc


if __name__ == "__main__":
    raise SystemExit(main())
