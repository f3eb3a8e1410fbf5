"""Semantic segmentation in Pascal VOC layout: ``JPEGImages/`` + ``SegmentationClass/``.

A dataset root holds::

    JPEGImages/<name>.<ext>            the image (any format the one decoder reads)
    SegmentationClass/<name>.png       its mask: a palette ("P") or 8/16-bit index PNG
    ImageSets/Segmentation/<split>.txt one name per line (optional: else every image)

Masks are read as **indices**: a palette PNG's pixel values are the class numbers (its colours
are ignored), never converted through RGB; an RGB mask is refused rather than guessed at. Masks
are never resized or interpolated bilinearly: augmentations are torchvision ``transforms.v2``
on ``tv_tensors.Mask``, which resize and rotate masks with nearest-neighbour sampling. Images
go through :func:`resnet_pl.data.decode.load_image` and :func:`resnet_pl.data.transforms.normalize`,
as everywhere else in resnet-pl.

Bad input is checked when the dataset is built (``bad_files="error"``: the first problem is one
line naming the file; ``"skip"``: bad pairs are left out and counted in ``skipped`` and in one
warning): a missing mask (an image without annotation), a mask whose size differs from its
image, a colour (RGB) mask, and mask values outside ``0..num_classes-1`` other than the ignore
index (255 by default, VOC's object boundaries).
"""

from __future__ import annotations

import warnings
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch import Tensor
from torch.utils.data import Dataset
from torchvision import tv_tensors

from resnet_pl.data.decode import IMAGE_SUFFIXES, load_image
from resnet_pl.data.errors import BadDataError, DataNotFoundError, ImageLoadError
from resnet_pl.data.transforms import normalize

BadFiles = Literal["error", "skip"]
_INDEX_MODES = ("P", "L", "I;16", "I;16L", "I;16B", "I")


class MaskError(BadDataError):
    """A segmentation mask that cannot be used as labels; the message names the file."""


def read_mask(path: str | Path) -> np.ndarray:
    """A mask file's class indices ``(H, W)`` int64, exactly as stored (palette indices for
    ``P`` images, the values for ``L`` / 16-bit ones). Raises :class:`MaskError` for colour
    masks and unreadable files."""
    path = Path(path)
    try:
        with Image.open(path) as image:
            image.load()
            if image.mode not in _INDEX_MODES:
                raise MaskError(
                    f"{path}: a {image.mode} mask; masks must hold class indices (a palette 'P' "
                    "or 8/16-bit grayscale PNG), colours are not mapped to classes"
                )
            return np.asarray(image).astype(np.int64)
    except FileNotFoundError:
        raise MaskError(f"{path}: mask file not found") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        if isinstance(err, MaskError):
            raise
        raise MaskError(f"{path}: cannot read mask ({str(err).splitlines()[0]})") from None


def check_mask(
    mask: np.ndarray, image_size: tuple[int, int], num_classes: int, ignore_index: int | None,
    path: Path,
) -> None:  # fmt: skip
    """Raise :class:`MaskError` naming ``path`` when ``mask`` does not fit its image
    (``image_size`` is PIL's ``(width, height)``) or holds values outside the classes."""
    h, w = mask.shape[:2]
    if (w, h) != tuple(image_size):
        raise MaskError(
            f"{path}: mask is {w}x{h} but its image is {image_size[0]}x{image_size[1]}; masks "
            "must have their image's size (they are never resized)"
        )
    values = np.unique(mask)
    bad = [int(v) for v in values if not (0 <= v < num_classes or v == ignore_index)]
    if bad:
        allowed = f"0..{num_classes - 1}" + (
            f" or {ignore_index}" if ignore_index is not None else ""
        )
        raise MaskError(
            f"{path}: mask values {bad[:5]} are outside the classes ({allowed}); fix the mask or "
            "set num_classes / ignore_index"
        )


class VOCSegmentation(Dataset[tuple[Tensor, Tensor]]):
    """Image + index-mask pairs of a VOC-layout folder.

    Args:
        root: the folder holding ``JPEGImages/`` and ``SegmentationClass/``.
        split: read ``ImageSets/Segmentation/<split>.txt``; ``None`` takes every image.
        num_classes: classes including the background (class 0).
        in_chans: channels the model takes (1 -> grayscale, 3 -> RGB).
        ignore_index: mask value left out of loss and metrics (``None``: none).
        transform: a ``transforms.v2`` callable applied to ``(tv_tensors.Image,
            tv_tensors.Mask)`` (uint8 image), e.g. :func:`segmentation_transform`.
        mean, std: normalisation applied after ``transform``.
        bad_files: ``"error"`` or ``"skip"`` (see the module docstring).

    Items are ``(image float32 (C, H, W), mask int64 (H, W))``.
    """

    def __init__(
        self,
        root: str | Path,
        split: str | None = "train",
        *,
        num_classes: int,
        in_chans: int = 1,
        ignore_index: int | None = 255,
        transform: Callable[..., Any] | None = None,
        mean: Sequence[float] = (0.0,),
        std: Sequence[float] = (1.0,),
        bad_files: BadFiles = "error",
    ) -> None:
        self.root = Path(root)
        self.num_classes, self.in_chans, self.ignore_index = num_classes, in_chans, ignore_index
        self.transform, self.mean, self.std = transform, tuple(mean), tuple(std)
        if bad_files not in ("error", "skip"):
            raise ValueError(f"bad_files must be 'error' or 'skip', got {bad_files!r}")
        image_dir, mask_dir = self.root / "JPEGImages", self.root / "SegmentationClass"
        if not image_dir.is_dir():
            raise DataNotFoundError(
                f"{image_dir} is not a folder; a VOC-layout root holds JPEGImages/ and "
                "SegmentationClass/ (python -m resnet_pl.data.scenes writes one)"
            )
        by_stem = {
            p.stem: p for p in sorted(image_dir.iterdir()) if p.suffix.lower() in IMAGE_SUFFIXES
        }
        if split is None:
            names = sorted(by_stem)
        else:
            listing = self.root / "ImageSets" / "Segmentation" / f"{split}.txt"
            if not listing.is_file():
                raise DataNotFoundError(f"{listing} not found: no {split!r} split in {self.root}")
            names = [line.strip() for line in listing.read_text().splitlines() if line.strip()]
        self.samples: list[tuple[Path, Path]] = []
        self.skipped: Counter[str] = Counter()
        for name in names:
            try:
                image_path = by_stem.get(name)
                if image_path is None:
                    raise BadDataError(f"{image_dir}/{name}.*: image named in the split is missing")
                mask_path = mask_dir / f"{name}.png"
                if not mask_path.is_file():
                    raise MaskError(
                        f"{image_path}: image has no annotation ({mask_path} is missing)"
                    )
                check_mask(read_mask(mask_path), _image_size(image_path), num_classes, ignore_index,
                           mask_path)  # fmt: skip
                self.samples.append((image_path, mask_path))
            except BadDataError as err:
                if bad_files == "error":
                    raise
                self.skipped[type(err).__name__] += 1
                self._last_skip = str(err)
        if self.skipped:
            warnings.warn(
                f"{self.root} ({split}): skipped {sum(self.skipped.values())} bad image/mask "
                f"pairs, e.g. {self._last_skip}",
                stacklevel=2,
            )
        if not self.samples:
            raise DataNotFoundError(f"{self.root}: no usable image/mask pairs in split {split!r}")

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        image_path, mask_path = self.samples[index]
        pixels = torch.from_numpy(np.array(load_image(image_path, self.in_chans)))
        image = tv_tensors.Image(pixels.permute(2, 0, 1) if pixels.ndim == 3 else pixels[None])
        mask = tv_tensors.Mask(torch.from_numpy(read_mask(mask_path)))
        if self.transform is not None:
            image, mask = self.transform(image, mask)
        return normalize(image, self.mean, self.std), mask.as_subclass(Tensor).long()


def _image_size(path: Path) -> tuple[int, int]:
    """``(width, height)`` from the header (EXIF orientation applied, as the decoder does)."""
    try:
        with Image.open(path) as image:
            w, h = image.size
            orientation = image.getexif().get(0x0112, 1)
    except (UnidentifiedImageError, OSError) as err:
        raise ImageLoadError(f"{path}: not a readable image ({err})") from None
    return (h, w) if orientation in (5, 6, 7, 8) else (w, h)


def segmentation_transform(
    train: bool, size: int | None = None, crop_padding: int = 4, hflip: bool = True,
    ignore_index: int | None = 255,
) -> Callable[..., Any]:  # fmt: skip
    """torchvision ``transforms.v2`` for ``(Image, Mask)`` pairs: training adds a random
    horizontal flip and a random crop of ``size`` after ``crop_padding`` pixels of padding (the
    image padded with 0, the mask with class 0, background); evaluation is the identity (or a
    centre crop/pad to ``size``). Masks move with their image and are never interpolated."""
    from torchvision.transforms import v2

    steps: list[Any] = []
    if train:
        if hflip:
            steps.append(v2.RandomHorizontalFlip())
        if size is not None or crop_padding:
            steps.append(_PaddedRandomCrop(size, crop_padding))
    elif size is not None:
        steps.append(v2.CenterCrop(size))
    return v2.Compose(steps) if steps else v2.Identity()


class _PaddedRandomCrop:
    """``v2.RandomCrop(size, padding)`` where ``size`` defaults to the input's own size."""

    def __init__(self, size: int | None, padding: int) -> None:
        self.size, self.padding = size, padding

    def __call__(self, *inputs: Any) -> Any:
        from torchvision.transforms import v2

        h, w = inputs[0].shape[-2:]
        size = (self.size, self.size) if self.size is not None else (h, w)
        crop = v2.RandomCrop(size, padding=self.padding, fill=0, pad_if_needed=True)
        return crop(*inputs)
