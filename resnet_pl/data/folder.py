"""A user's own images: ``root/{train,val,test}/<class>/<image>``, checked before training.

Bad-file policy (``bad_files``):
- ``"skip"``: unreadable or truncated images, decompression bombs (more pixels than Pillow's
  ``Image.MAX_IMAGE_PIXELS``) and empty class folders are left out; the count and the file list
  go to the log as one warning (and to ``info["skipped_files"]``). An empty *training* class
  folder is not a class at all (it would be an output the model can never learn).
- ``"error"``: the first such file or folder stops setup with an error naming it.
Files whose extension is not an image's are ignored (and counted in the log). Every image is
decoded once during setup, so a bad file is found before training starts, not hours into it.
Images are decoded by :func:`resnet_pl.data.decode.load_image` (EXIF orientation, alpha on
black, 16-bit scaled, CMYK via ICC) and evaluation images get
:func:`resnet_pl.data.transforms.eval_geometry`: the same pixels ``classify`` feeds the model.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import Dataset

from resnet_pl.data.decode import IMAGE_SUFFIXES, load_image
from resnet_pl.data.errors import BadDataError, DataNotFoundError, ImageLoadError
from resnet_pl.data.transforms import eval_geometry
from resnet_pl.limits import fs_text

log = logging.getLogger(__name__)


def _list_split(folder: Path) -> tuple[dict[str, list[Path]], int]:
    classes: dict[str, list[Path]] = {}
    ignored = 0
    for class_dir in sorted(p for p in folder.iterdir() if p.is_dir()):
        files = []
        for f in sorted(class_dir.rglob("*")):
            if not f.is_file():
                continue
            if f.suffix.lower() in IMAGE_SUFFIXES:
                files.append(f)
            else:
                ignored += 1
        # A folder name that is not UTF-8 becomes a class name with \xNN escapes: it can then
        # be saved in checkpoints, ONNX metadata, model cards and CSV files.
        classes[fs_text(class_dir.name)] = files
    return classes, ignored


def scan_image_folder(root: Path) -> dict[str, Any]:
    """List the splits and classes of ``root``; raise a clear error when it is not usable."""
    if not root.is_dir():
        raise DataNotFoundError(
            f"image folder {root} does not exist; expected {root}/train/<class>/<images>"
        )
    train_dir = root / "train"
    if not train_dir.is_dir():
        raise DataNotFoundError(
            f"{root} has no train/ folder; expected {root}/train/<class>/<images> "
            f"(and optionally val/ and test/ beside it)"
        )
    splits: dict[str, dict[str, list[Path]]] = {}
    ignored = 0
    for split in ("train", "val", "test"):
        if (root / split).is_dir():
            splits[split], n = _list_split(root / split)
            ignored += n
    # An empty training folder is not a class: the model could never learn to predict it.
    classes = sorted(c for c, files in splits["train"].items() if files)
    empty = sorted(c for c, files in splits["train"].items() if not files)
    if not classes:
        raise DataNotFoundError(
            f"{train_dir} holds no class folders with images; expected "
            f"{train_dir}/<class>/<images> with extensions {sorted(IMAGE_SUFFIXES)}"
        )
    if len(classes) < 2:
        raise BadDataError(
            f"{train_dir} has only one class folder with images ({classes[0]}); a classifier "
            f"needs at least two: add one folder of images per class under {train_dir}"
        )
    for split in ("val", "test"):
        if split in splits and not any(splits[split].values()):
            raise BadDataError(
                f"{root / split} holds no images; put images in {root / split}/<class>/ or "
                f"remove the folder"
                + (" (10% of train/ is then held out for validation)" if split == "val" else "")
            )
        extra = sorted(c for c, f in splits.get(split, {}).items() if f and c not in classes)
        if extra and not set(extra) <= set(empty):
            raise BadDataError(
                f"{root / split} has classes that train/ lacks ({', '.join(extra)}); the model "
                f"can only predict training classes: add {train_dir}/<class>/ images for them "
                f"or remove those folders from {split}/"
            )
    if ignored:
        log.info("ignored %d non-image files under %s", ignored, root)
    return {
        "root": root,
        "classes": classes,
        "empty_classes": empty,
        "splits": splits,
        "ignored": ignored,
    }


def read_image(path: Path, in_chans: int) -> Any:
    """:func:`load_image` with the file named in the error (a loader has no other way to say
    which of thousands of files failed)."""
    try:
        return load_image(path, in_chans)
    except ImageLoadError as err:
        raise ImageLoadError(f"cannot read image {path}: {err}") from None


class ImageFileDataset(Dataset[tuple[Tensor, int]]):
    """Decoded on access (in loader workers); yields uint8 ``(C, H, W)`` tensors."""

    def __init__(
        self, samples: list[tuple[Path, int]], transform: Callable[[Any], Tensor], in_chans: int
    ) -> None:
        self.samples = samples
        self.transform = transform
        self.in_chans = in_chans

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> tuple[Tensor, int]:
        path, label = self.samples[i]
        x = self.transform(read_image(path, self.in_chans))
        return x.as_subclass(Tensor), label


def _check_files(
    files: list[tuple[Path, int]],
    bad_files: str,
    skipped: list[str],
    in_chans: int,
    option: str = "--data.bad_files",
) -> list[tuple[Path, int]]:
    good = []
    for path, label in files:
        try:
            read_image(path, in_chans)
        except ImageLoadError as err:
            if bad_files == "error":
                raise ImageLoadError(
                    f"{err}. Remove or fix it, or use {option} skip to leave such files out."
                ) from None
            skipped.append(str(err))
            continue
        good.append((path, label))
    return good


def list_split_samples(
    info: dict[str, Any],
    split: str,
    bad_files: str,
    skipped: list[str],
    option: str = "--data.bad_files",
) -> list[tuple[Path, int]]:
    """``(file, class index)`` of ``split`` by the folder rules (empty training class folders
    are not classes; every split uses the training classes), before any file is decoded.
    Skipped folders are appended to ``skipped``; with ``bad_files="error"`` the first one
    raises, naming ``option`` as the way to skip instead."""
    classes: list[str] = info["classes"]
    empty_train: list[str] = info.get("empty_classes", [])
    index = {c: i for i, c in enumerate(classes)}
    per_class = info["splits"].get(split)
    if per_class is None:
        return []
    out = []
    for cls, files in per_class.items():
        if split == "train" and cls in empty_train:
            message = f"class folder {info['root']}/train/{cls} is empty"
            if bad_files == "error":
                raise BadDataError(
                    f"{message}; add images or remove the folder (or use "
                    f"{option} skip to leave it out)"
                )
            skipped.append(message + " (not used as a class)")
            continue
        if cls not in index:
            if cls in empty_train and bad_files == "skip":
                skipped.append(
                    f"{len(files)} file(s) of {info['root']}/{split}/{cls} (no training "
                    f"images for that class)"
                )
                continue
            raise BadDataError(
                f"class folder {split}/{cls} has no counterpart with images in train/; "
                f"every split must use the training classes {classes}"
            )
        if not files:
            message = f"class folder {info['root']}/{split}/{cls} is empty"
            if bad_files == "error":
                raise BadDataError(message)
            skipped.append(message)
        out += [(f, index[cls]) for f in files]
    return out


def hold_out(train: list[Any], val_fraction: float, seed: int) -> tuple[list[Any], list[Any]]:
    """``(train, val)``: ``round(len * val_fraction)`` items (at least 1) drawn with ``seed``
    for validation, when a folder has no ``val/`` split."""
    g = torch.Generator().manual_seed(seed)
    perm = torch.randperm(len(train), generator=g).tolist()
    n_val = max(1, round(len(train) * val_fraction))
    return [train[i] for i in perm[n_val:]], [train[i] for i in perm[:n_val]]


def build_folder_datasets(
    info: dict[str, Any],
    *,
    cfg: Mapping[str, Any],
    augment: bool,
    val_fraction: float,
    seed: int,
    bad_files: str,
    policy: str = "photo",
    hflip: bool = True,
) -> tuple[Dataset[Any], Dataset[Any] | None, Dataset[Any] | None]:
    """Train/val/test datasets of uint8 images for the preprocessing config ``cfg``
    (``input_size``, ``crop_pct``, ``interpolation``: see :mod:`resnet_pl.data.transforms`).
    Every file is decoded once here so bad ones are found before training starts. ``policy``
    and ``hflip`` choose the training augmentation (:func:`resnet_pl.data.recipe.
    train_transform`) when ``augment`` is true."""
    from resnet_pl.data.recipe import train_transform

    skipped: list[str] = []
    in_chans, image_size, _ = (int(v) for v in cfg["input_size"])

    def samples(split: str) -> list[tuple[Path, int]]:
        out = list_split_samples(info, split, bad_files, skipped)
        return _check_files(out, bad_files, skipped, in_chans)

    train = samples("train")
    val = samples("val")
    test = samples("test")
    if not train:
        raise DataNotFoundError(
            f"no readable training images under {info['root']}/train "
            f"({len(skipped)} bad file(s) or empty folder(s) skipped)"
        )
    if not val and val_fraction > 0:
        train, val = hold_out(train, val_fraction, seed)
    if skipped:
        log.warning(
            "skipped %d bad image file(s) or empty folder(s) (bad_files='skip'):\n  %s",
            len(skipped),
            "\n  ".join(skipped),
        )
    info["skipped_files"] = skipped

    eval_tf = eval_geometry(cfg)
    train_tf = train_transform(policy, image_size, cfg, hflip) if augment else eval_tf
    return (
        ImageFileDataset(train, train_tf, in_chans),
        ImageFileDataset(val, eval_tf, in_chans) if val else None,
        ImageFileDataset(test, eval_tf, in_chans) if test else None,
    )
