"""The fine-tuning recipe for a user's own image folder: what it decides from the data it is
given, and why (``resnet-pl fit --config configs/finetune.yaml``, docs/finetune.md).

:func:`folder_stats` looks at the folder (class counts, image sides, colour);
:func:`decide` turns that and the starting weights' record into :class:`Decision` s, each a
value and a reason; :func:`decision_block` is the short block printed at the start of ``fit``.
Nothing here reads a test split. The defaults were chosen on the validation splits of the
transfer benchmark's tasks (``python -m benchmarks.transfer``).

:func:`train_transform` is the per-image training augmentation of image folders for each
``augment`` policy:

- ``small`` (images up to 64 px: icons, digits, thumbnails, sensor tiles): the evaluation
  geometry, then a random shift of up to 10% of the side (crop with zero padding) and a mild
  scale jitter (0.9-1.1x); flips only when asked for.
- ``photo`` (the ImageNet policy, also what ``standard`` means for folders):
  ``RandomResizedCrop(0.08-1)`` and horizontal flips.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from resnet_pl.data.specs import SMALL_IMAGE_MAX

FOLDER_POLICIES = ("small", "photo")
# What the recipe aims for (chosen on validation, see docs/finetune.md): optimizer steps in
# the whole run from pretrained weights / from scratch, and the bounds on the epoch count.
TARGET_STEPS_PRETRAINED = 300
TARGET_STEPS_SCRATCH = 600
MIN_EPOCHS, MAX_EPOCHS = 5, 30
# Starting weights when none are named: the best shipped weights for small images; ImageNet
# weights (downloaded once, verified) for photos.
DEFAULT_WEIGHTS = {"small": "wrn_16_2.fashion_mnist", "photo": "resnet50.tv_in1k"}


@dataclass(frozen=True)
class FolderStats:
    """What :func:`decide` needs to know about an image folder."""

    root: str
    classes: int
    train_images: int
    min_per_class: int
    max_per_class: int
    median_side: int
    grayscale: bool
    has_val: bool
    has_test: bool


@dataclass(frozen=True)
class Decision:
    key: str  # dotted config key, e.g. "trainer.max_epochs"
    value: Any
    reason: str
    given: bool = False  # set by the user (kept), not decided


def folder_stats(info: Mapping[str, Any], sample: int = 64) -> FolderStats:
    """Counts from :func:`resnet_pl.data.folder.scan_image_folder`'s ``info`` and the sides and
    modes of up to ``sample`` training images (opened lazily: only their headers are read)."""
    from PIL import Image, UnidentifiedImageError

    train: dict[str, list[Path]] = info["splits"]["train"]
    counts = [len(train[c]) for c in info["classes"]]
    files = [f for c in info["classes"] for f in train[c]]
    step = max(1, len(files) // sample)
    sides, gray = [], []
    for f in files[::step][:sample]:
        try:
            with Image.open(f) as im:
                sides.append(min(im.size))
                gray.append(im.mode in ("1", "L", "LA", "I", "I;16", "F"))
        except (OSError, UnidentifiedImageError):
            continue  # the folder checks report bad files later, naming them
    return FolderStats(
        root=str(info["root"]),
        classes=len(counts),
        train_images=sum(counts),
        min_per_class=min(counts),
        max_per_class=max(counts),
        median_side=int(statistics.median(sides)) if sides else 224,
        grayscale=bool(gray) and all(gray),
        has_val="val" in info["splits"],
        has_test="test" in info["splits"],
    )


def _pow2_batch(n_train: int) -> int:
    """About 1/8 of the training set per batch, a power of two in [16, 64]: several steps per
    epoch on tiny sets, the usual 64 otherwise."""
    target = max(16, min(64, n_train // 8))
    return 2 ** int(math.log2(target))


def decide(
    stats: FolderStats,
    *,
    weights: str | None,
    weights_cfg: Mapping[str, Any] | None,
    given: Mapping[str, Any],
    val_fraction: float = 0.1,
) -> list[Decision]:
    """The recipe's choices for ``stats``. ``weights`` is the starting weights' name (``None``:
    from scratch) and ``weights_cfg`` their record (``input_size``...), ``given`` the options
    the user set (dotted keys), which are kept and reported as such."""
    out: list[Decision] = []

    def choose(key: str, value: Any, reason: str) -> Any:
        if key in given:
            out.append(Decision(key, given[key], "set by you", given=True))
            return given[key]
        out.append(Decision(key, value, reason))
        return value

    small = stats.median_side <= SMALL_IMAGE_MAX
    policy = "small" if small else "photo"
    kind = f"images ~{stats.median_side} px"
    if weights == "__default__":
        weights = choose(
            "model.weights",
            DEFAULT_WEIGHTS[policy],
            f"{kind}: the shipped weights for {'small images' if small else 'photos'}",
        )
    chans = choose(
        "data.in_chans",
        1 if stats.grayscale else 3,
        "all sampled images are grayscale" if stats.grayscale else "colour images",
    )
    del chans
    w_side = None
    if weights and weights_cfg and weights_cfg.get("input_size"):
        w_side = int(weights_cfg["input_size"][-1])
    if w_side:
        size, why = w_side, f"the input size the weights {weights} were trained at"
    elif small:
        size, why = max(stats.median_side, 16), "the images' own median side"
    else:
        size, why = 224, "photos: the ImageNet input size"
    size = choose("data.image_size", size, why)
    augment = choose(
        "data.augment",
        policy,
        "small images: shift by up to 10% + 0.9-1.1x scale, no RandomResizedCrop(0.08)"
        if small
        else "photos: the ImageNet policy (RandomResizedCrop + flips)",
    )
    choose(
        "data.hflip",
        augment == "photo",
        "photos are mirror-safe"
        if augment == "photo"
        else "off unless asked (--data.hflip true): text, digits and many icons are not "
        "mirror-safe",
    )
    n_train = stats.train_images
    if not stats.has_val:
        n_train = int(n_train * (1 - val_fraction))
    batch = choose(
        "data.batch_size", _pow2_batch(n_train), f"{n_train} training images: ~1/8 per batch"
    )
    choose(
        "data.num_workers",
        0 if small else 4,
        "small images decode in microseconds: no worker processes"
        if small
        else "photo decoding runs in 4 loader processes",
    )
    steps = max(1, n_train // int(batch))
    target = TARGET_STEPS_PRETRAINED if weights else TARGET_STEPS_SCRATCH
    epochs = min(MAX_EPOCHS, max(MIN_EPOCHS, math.ceil(target / steps)))
    choose(
        "trainer.max_epochs",
        epochs,
        f"{steps} steps per epoch; ~{target} steps in all "
        f"({'pretrained' if weights else 'from scratch'}), within [{MIN_EPOCHS}, {MAX_EPOCHS}]",
    )
    choose(
        "model.optim.scheduler",
        "onecycle",
        "short runs on small data: one-cycle (warm-up + anneal)",
    )
    choose(
        "model.finetune.freeze_backbone_epochs",
        0,
        "one-cycle's warm-up already starts the backbone gently; a frozen first epoch (at "
        "warm-up rates) left the new head at 38% val on a 1,000-image folder"
        if weights
        else "from scratch: nothing to freeze",
    )
    choose(
        "model.finetune.layer_decay",
        0.8 if weights else 1.0,
        "each level below the head at 0.8x the rate above it" if weights else "from scratch",
    )
    if stats.min_per_class * 3 < stats.max_per_class:
        out.append(
            Decision(
                "note",
                None,
                f"classes are imbalanced ({stats.min_per_class} to {stats.max_per_class} "
                f"training images): per-class accuracy is logged as val_acc_class/*",
            )
        )
    return out


def decision_block(stats: FolderStats, decisions: list[Decision]) -> str:
    """The block printed at the start of ``fit``."""
    lines = [
        f"resnet-pl recipe: {stats.root}: {stats.classes} classes, {stats.train_images} "
        f"training images ({stats.min_per_class}-{stats.max_per_class} per class), "
        f"median side {stats.median_side} px, {'grayscale' if stats.grayscale else 'colour'}"
        f"{'' if stats.has_val else ', no val/ (10% of train held out)'}"
    ]
    width = max((len(d.key) for d in decisions), default=0)
    for d in decisions:
        if d.key == "note":
            lines.append(f"  note: {d.reason}")
            continue
        lines.append(f"  {d.key:<{width}} = {d.value!s:<24} {d.reason}")
    lines.append("  (override any of them on the command line, e.g. --trainer.max_epochs 20)")
    return "\n".join(lines)


def train_transform(policy: str, image_size: int, cfg: Mapping[str, Any], hflip: bool) -> Any:
    """Per-image training transform (uint8 in, uint8 out) of an image folder for ``policy``
    (``small``/``photo``; see the module docstring). ``cfg`` is the evaluation config."""
    from torchvision.transforms import v2

    from resnet_pl.data.transforms import eval_geometry

    flip = [v2.RandomHorizontalFlip()] if hflip else []
    if policy == "small":
        return v2.Compose(
            [
                *eval_geometry(cfg).transforms,
                v2.RandomAffine(degrees=0.0, translate=(0.1, 0.1), scale=(0.9, 1.1)),
                *flip,
            ]
        )
    if policy != "photo":
        raise ValueError(f"augmentation policy must be one of {FOLDER_POLICIES}, got {policy!r}")
    return v2.Compose([v2.ToImage(), v2.RandomResizedCrop(image_size, antialias=True), *flip])
