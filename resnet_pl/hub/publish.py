"""From a Lightning checkpoint to shareable weights (the checkpoint itself is read by
:mod:`resnet_pl.hub.checkpoint`, the one reader).

- :func:`export_checkpoint`: a Hugging Face Hub-style folder (``config.json``,
  ``model.safetensors``, ``README.md``), ready for ``from_pretrained`` or an upload.
- :func:`publish`: a registry entry shipped with the package: ``resnet_pl/weights/<arch>.<tag>``
  ``.safetensors`` (fp32 network weights only: no optimizer state, no EMA, no callbacks), its
  JSON record, the run's ``metrics.csv`` and a model card. The record's metrics are **measured
  here**, on the dataset's real test split with the record's own preprocessing, from the file
  as written -- never copied from training logs.
"""

from __future__ import annotations

import contextlib
import csv
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

from torch import nn

from resnet_pl.fileio import atomic_paths
from resnet_pl.hub.checkpoint import (
    CheckpointContents,
    CheckpointError,
    build_model,
    read_checkpoint,
)
from resnet_pl.hub.evaluate import IDX_DATASETS, TORCHVISION_DATASETS, measure_small
from resnet_pl.hub.files import read_state_dict, sha256_file
from resnet_pl.hub.loading import load_into
from resnet_pl.hub.weights import (
    SHIPPED_DIR,
    WeightsEntry,
    package_version,
    read_record,
    record_text,
    register_weights,
)
from resnet_pl.models.registry import count_flops, count_params, get_builder, get_default_cfg

DATASET_CREDITS = {
    "fashion_mnist": "Fashion-MNIST: Han Xiao, Kashif Rasul, Roland Vollgraf, 2017, "
    "https://github.com/zalandoresearch/fashion-mnist (MIT licence)",
    "mnist": "MNIST: Yann LeCun, Corinna Cortes, Christopher J.C. Burges",
    "cifar10": "CIFAR-10: Alex Krizhevsky, 2009",
    "cifar100": "CIFAR-100: Alex Krizhevsky, 2009",
}
SLICES = (2000,)  # recorded besides the full split, for quick exact re-checks


def _module_name(hp: dict[str, Any]) -> str:
    """The LightningModule class that trained a checkpoint (LightningCLI records it)."""
    return str(hp.get("_class_path") or "ResNetClassifier").rsplit(".", 1)[-1]


def _stem(model: nn.Module) -> str:
    conv1 = getattr(model, "conv1", None)
    if isinstance(conv1, nn.Conv2d):
        return "imagenet" if conv1.kernel_size[0] == 7 else "small"
    return "unknown"


def git_commit(repo: Path | None = None) -> str | None:
    """``HEAD`` of the repository holding this package (``-dirty`` if it has local changes), or
    None outside a git checkout."""
    root = repo or Path(__file__).resolve().parents[2]
    if not (root / ".git").exists():
        return None
    try:
        head = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return head + ("-dirty" if dirty else "")


def find_run_file(ckpt: Path, name: str) -> Path | None:
    """``name`` (``metrics.csv``, ``config.yaml``) of the run that wrote ``ckpt``: its version
    folder (``<run>/version_N/checkpoints/x.ckpt`` -> ``<run>/version_N/name``), so another
    run with the same name is never mixed in. For the older layout with one shared
    ``<run>/checkpoints/`` folder, the newest ``<run>/version_N/name``."""
    folder = ckpt.resolve().parent.parent
    if re.fullmatch(r"version_\d+", folder.name):
        found = folder / name
        return found if found.is_file() else None
    old = [p for p in folder.glob(f"version_*/{name}") if p.parent.name[8:].isdigit()]
    return max(old, key=lambda p: int(p.parent.name[8:])) if old else None


def training_summary(metrics_csv: Path) -> dict[str, Any]:
    """Epochs logged and the best validation accuracy (%) from a CSVLogger ``metrics.csv``."""
    best: float | None = None
    epochs: set[int] = set()
    with open(metrics_csv, newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            if row.get("epoch"):
                epochs.add(int(float(row["epoch"])))
            if row.get("val_acc"):
                value = float(row["val_acc"]) * 100.0
                best = value if best is None else max(best, value)
    return {
        "epochs_logged": len(epochs),
        "best_val_top1": None if best is None else round(best, 4),
    }


def make_recipe(
    ck: CheckpointContents,
    *,
    command: str | None = None,
    config_yaml: Path | None = None,
    commit: str | None = None,
) -> dict[str, Any]:
    """How the weights were produced: command, full training config (LightningCLI's saved
    ``config.yaml``), commit, checkpoint file, epoch and step."""
    import yaml

    config_yaml = config_yaml or find_run_file(ck.path, "config.yaml")
    config: Any = None
    if config_yaml is not None and config_yaml.is_file():
        config = yaml.safe_load(config_yaml.read_text(encoding="utf-8"))
    recipe: dict[str, Any] = {
        "command": command
        or (f"resnet-pl fit --config {config_yaml}" if config_yaml else "not recorded"),
        "commit": commit or git_commit() or "unknown",
        "commit_note": "repository HEAD when the weights were exported (pass --commit to name "
        "the training commit)"
        if commit is None
        else "given at export",
        "checkpoint": ck.path.name,
        "epoch": ck.epoch,
        "global_step": ck.global_step,
        "config": config,
    }
    if ck.hparams.get("weights"):
        # Fine-tuned: where the run started (ResNetClassifier(weights=...) records both).
        recipe["start_weights"] = {
            "name": str(ck.hparams["weights"]),
            "sha256": ck.hparams.get("weights_sha256"),
        }
    teacher = _distillation(ck.hparams)
    if teacher is not None:
        recipe["distillation"] = teacher
    return recipe


def _distillation(hp: dict[str, Any]) -> dict[str, Any] | None:
    """The teachers (source and sha256) and loss settings of a DistillationClassifier
    checkpoint, for the recipe; None for a plain classifier. Only the student is published."""
    if "teacher" not in hp:
        return None
    sources = [hp["teacher"]] if isinstance(hp["teacher"], str) else list(hp["teacher"])
    digests = list(hp.get("teacher_sha256") or [None] * len(sources))
    return {
        "teachers": [{"source": s, "sha256": d} for s, d in zip(sources, digests, strict=False)],
        **{k: hp.get(k) for k in ("temperature", "alpha", "feature_weight", "feature_stage")},
    }


def checkpoint_cfg(
    ck: CheckpointContents,
    model: nn.Module,
    recipe: dict[str, Any],
    *,
    license: str = "BSD-3-Clause",
    credit: str | None = None,
) -> dict[str, Any]:
    """The ``pretrained_cfg`` of a checkpoint's network (metrics and file filled in later)."""
    from resnet_pl.data.specs import SPECS, default_crop_pct, recorded_preprocessing

    hp = ck.hparams
    dataset = hp.get("dataset")
    spec = SPECS.get(str(dataset)) if dataset else None
    default = get_default_cfg(ck.arch)
    # Without a record or a known dataset, the architecture's own default side.
    mean, std, input_size = recorded_preprocessing(
        hp, ck.in_chans, default_side=int(default["input_size"][1])
    )
    if mean is None or std is None:
        raise CheckpointError(
            f"{ck.path}: the checkpoint records no mean/std and its dataset {dataset!r} is not "
            f"a known one; weights without their normalisation cannot be used correctly"
        )
    categories = hp.get("class_names") or (list(spec.class_names) if spec else None)
    return {
        **default,
        "architecture": ck.arch,
        "mean": mean,
        "std": std,
        "input_size": input_size,
        "interpolation": "bilinear",
        # The crop evaluation used (recorded by training since resnet-pl records it), else the
        # default rule that evaluation applied to older checkpoints.
        "crop_pct": float(hp.get("crop_pct") or default_crop_pct(*input_size[1:])),
        "num_classes": ck.num_classes,
        "categories": list(categories) if categories else None,
        "dataset": dataset,
        # The TTA views the checkpoint was evaluated with; hub verify evaluates the same way.
        "tta": str(hp.get("tta") or "none"),
        "metrics": {},
        "num_params": count_params(model),
        "gflops": round(count_flops(model, input_size) / 1e9, 6),
        "recipe": recipe,
        "sha256": None,
        "file": None,
        "url": None,
        "hf_hub_id": None,
        "license": license,
        "origin": f"trained with resnet-pl {package_version()} "
        f"({_module_name(hp)}, {ck.path.name})",
        "credit": credit or DATASET_CREDITS.get(str(dataset)),
        "resnet_pl_version": package_version(),
        "stem": _stem(model),
        "arch_kwargs": dict(ck.arch_kwargs),
    }


def measure(
    model: nn.Module,
    cfg: dict[str, Any],
    *,
    limit: int | None = None,
    data_dir: Path | None = None,
) -> dict[str, Any]:
    """Test-split metrics for a small dataset the cfg names ({} when it has no local loader).
    With test-time augmentation in ``cfg``, the headline is measured with it and the plain
    forward (what ``create_model`` / ``torch.hub.load`` give) is recorded too, as
    ``plain_forward``."""
    dataset = str(cfg.get("dataset"))
    if dataset == "imagefolder" and data_dir is not None:
        # A fine-tuned model of a user's folder: its test/ split (or the folder given).
        from resnet_pl.hub.evaluate import measure_folder

        folder = Path(data_dir) / "test" if (Path(data_dir) / "test").is_dir() else Path(data_dir)

        def run(eval_cfg: dict[str, Any]) -> dict[str, Any]:
            got = measure_folder(model, eval_cfg, folder, limit=limit)
            return {**got, "dataset": f"imagefolder:{folder}", "split": folder.name}

    elif dataset in (*IDX_DATASETS, *TORCHVISION_DATASETS):

        def run(eval_cfg: dict[str, Any]) -> dict[str, Any]:
            return measure_small(
                model, eval_cfg, dataset, split="test", limit=limit, data_dir=data_dir,
                slices=SLICES,
            )  # fmt: skip

    else:
        return {}
    got = run(cfg)
    tta = cfg.get("tta")
    if tta and tta != "none":
        plain = run({**cfg, "tta": None})
        keep = ("top1", "top5", "n", *(f"first_{n}" for n in SLICES))
        got["tta"] = str(tta)
        got["plain_forward"] = {k: plain[k] for k in keep if k in plain}
    return got


def export_checkpoint(
    ckpt: str | Path,
    out_dir: str | Path,
    *,
    measure_metrics: bool = True,
    command: str | None = None,
    commit: str | None = None,
    data_dir: Path | None = None,
    limit: int | None = None,
) -> Path:
    """Write a Hugging Face Hub-style folder (``config.json``, ``model.safetensors``,
    ``README.md``) for a checkpoint's network; metrics measured on the test split unless
    ``measure_metrics=False``."""
    from resnet_pl.hub.hf import from_pretrained, save_pretrained

    ck = read_checkpoint(ckpt)
    model = build_model(ck)
    cfg = checkpoint_cfg(ck, model, make_recipe(ck, command=command, commit=commit))
    if not measure_metrics:  # one atomic save: config, weights and card together
        return save_pretrained(model, out_dir, arch_kwargs=ck.arch_kwargs, pretrained_cfg=cfg)
    out = Path(out_dir)
    created = not out.exists()
    folder = save_pretrained(
        model, out_dir, arch_kwargs=ck.arch_kwargs, pretrained_cfg=cfg, model_card=False
    )
    try:
        # Measured on the folder as written, so the numbers describe exactly what is shipped.
        cfg["metrics"] = measure(from_pretrained(folder), cfg, limit=limit, data_dir=data_dir)
        folder = save_pretrained(model, out_dir, arch_kwargs=ck.arch_kwargs, pretrained_cfg=cfg)
    except BaseException:
        if created:  # no partial folder: what this call wrote goes, nothing else
            from resnet_pl.hub.hf import CARD_NAME, CONFIG_NAME, WEIGHTS_NAME

            for name in (CONFIG_NAME, WEIGHTS_NAME, CARD_NAME):
                (out / name).unlink(missing_ok=True)
            with contextlib.suppress(OSError):
                out.rmdir()
        raise
    return folder


def publish(
    ckpt: str | Path,
    tag: str,
    *,
    out_dir: Path = SHIPPED_DIR,
    metrics_csv: Path | None = None,
    command: str | None = None,
    commit: str | None = None,
    config_yaml: Path | None = None,
    default: bool = True,
    license: str = "BSD-3-Clause",
    credit: str | None = None,
    force: bool = False,
    data_dir: Path | None = None,
    limit: int | None = None,
) -> WeightsEntry:
    """Turn a checkpoint into a registry entry ``<arch>.<tag>`` in ``out_dir`` (default: the
    package's ``resnet_pl/weights``): safetensors file, JSON record, model card (``.md``) and the
    run's ``metrics.csv`` (``.metrics.csv``). Metrics are measured from the written file.

    Raises:
        FileExistsError: the entry exists (pass ``force=True`` to replace it).
    """
    from resnet_pl.hub.hf import render_model_card, save_safetensors_to

    if not tag or "." in tag or "/" in tag or tag != tag.strip():
        raise ValueError(f"tag must be a plain word like 'fashion_mnist', got {tag!r}")
    ck = read_checkpoint(ckpt)
    name = f"{ck.arch}.{tag}"
    out_dir = Path(out_dir)
    record_path = out_dir / f"{name}.json"
    if record_path.exists() and not force:
        raise FileExistsError(f"{record_path} exists; pass --force to replace {name}")
    model = build_model(ck)
    cfg = checkpoint_cfg(
        ck,
        model,
        make_recipe(ck, command=command, config_yaml=config_yaml, commit=commit),
        license=license,
        credit=credit,
    )

    metrics_csv = metrics_csv or find_run_file(ck.path, "metrics.csv")
    has_log = metrics_csv is not None and metrics_csv.is_file()
    weights = out_dir / f"{name}.safetensors"
    log_copy = out_dir / f"{name}.metrics.csv"
    targets = [weights, out_dir / f"{name}.md", record_path] + ([log_copy] if has_log else [])
    # Every file of the entry is staged (written, fsynced) before any replaces its target: a full
    # disk or Ctrl-C part-way leaves an earlier entry of this name exactly as it was.
    with atomic_paths(targets, hint="free space there or choose another --out_dir") as temps:
        staged = temps[0]
        meta = {"format": "pt", "architecture": ck.arch, "weights": name}
        save_safetensors_to(model, staged, meta)
        cfg.update(
            {
                "file": weights.name,
                "sha256": sha256_file(staged),
                "file_size": staged.stat().st_size,
            }
        )

        # Measure what was written: rebuild from the file, exactly as create_model will.
        check = get_builder(ck.arch)(
            num_classes=ck.num_classes, in_chans=ck.in_chans, **ck.arch_kwargs
        )
        load_into(check, read_state_dict(staged, "safetensors"), name=name)
        cfg["metrics"] = measure(check, cfg, limit=limit, data_dir=data_dir)

        if has_log:
            assert metrics_csv is not None
            shutil.copyfile(metrics_csv, temps[3])
            cfg["training_log"] = log_copy.name
            cfg["training"] = training_summary(metrics_csv)

        entry = WeightsEntry(
            ck.arch, tag, dict(ck.arch_kwargs), ck.num_classes, ck.in_chans, cfg, record_dir=out_dir
        )
        config = {"architecture": ck.arch, "pretrained_cfg": cfg}
        temps[1].write_text(render_model_card(config, weights_name=name), encoding="utf-8")
        temps[2].write_text(record_text(entry, default=default), encoding="utf-8")
    entry, is_default = read_record(record_path)  # what import will read, checked now
    register_weights(entry, default=is_default, replace=True)
    return entry
