"""Object detection from COCO JSON (``instances_*.json``): boxes, categories, crowd and empty
images.

The JSON is checked when the dataset is built. With ``bad_files="error"`` (the default) the
first problem stops with one line naming the JSON file, the image and the problem; with
``"skip"`` the offending annotation (or image) is left out, counted in ``skipped`` and reported
in one warning:

- an image the file names that is not in ``image_dir`` (skip: the image is left out);
- a box outside its image or with zero/negative width or height (skip: the box is left out);
- an annotation for an image id or category id the file does not define.

Images without annotations are **kept** as background-only examples (COCO has ~1% of them;
detectors learn from them that nothing is there); ``empty_images="skip"`` leaves them out and
counts them. Crowd annotations (``iscrowd: 1``) are kept in the target with ``iscrowd`` set:
training leaves them out (torchvision's detectors do not model crowds) and COCO evaluation
ignores detections that match them, as pycocotools does.

Category ids are mapped to contiguous labels ``1..K`` in the file's order of ``categories``
(0 is the background of torchvision's two-stage detectors). Images go through the one decoder
(:func:`resnet_pl.data.decode.load_image`); augmentations are ``transforms.v2`` on
``tv_tensors.BoundingBoxes``, so boxes move with their image.
"""

from __future__ import annotations

import json
import warnings
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset
from torchvision import tv_tensors

from resnet_pl.data.decode import load_image
from resnet_pl.data.errors import BadDataError, DataNotFoundError

BadFiles = Literal["error", "skip"]
EmptyImages = Literal["keep", "skip"]


class AnnotationError(BadDataError):
    """A COCO annotation file that cannot be used as it is; the message names the file."""


def read_coco(path: str | Path) -> dict[str, Any]:
    """The parsed JSON, or :class:`AnnotationError` / :class:`DataNotFoundError` in one line."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataNotFoundError(f"{path}: COCO annotation file not found") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise AnnotationError(f"{path}: not a readable JSON file ({err})") from None
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        raise AnnotationError(f"{path}: not a COCO file (no 'images' list)")
    if not isinstance(data.get("categories"), list) or not data["categories"]:
        raise AnnotationError(f"{path}: no 'categories' list")
    return data


def coco_categories(path: str | Path) -> list[str]:
    """The category names of a COCO file, in label order (label ``i + 1`` is ``names[i]``)."""
    return [str(c.get("name", c["id"])) for c in read_coco(path)["categories"]]


class CocoDetection(Dataset[tuple[Tensor, dict[str, Tensor]]]):
    """Images and box targets of a COCO JSON file.

    Args:
        image_dir: the folder ``file_name`` is relative to.
        ann_file: the ``instances_*.json``.
        in_chans: channels the model takes.
        transform: a ``transforms.v2`` callable on ``(tv_tensors.Image, target)`` with
            ``target["boxes"]`` a ``tv_tensors.BoundingBoxes`` (e.g. :func:`detection_transform`).
        bad_files, empty_images: see the module docstring.

    Items are ``(image float32 (C, H, W) in [0, 1], target)`` with ``boxes`` (K, 4) XYXY float32,
    ``labels`` (K,) int64 in ``1..num_classes``, ``iscrowd`` (K,) int64, ``area`` (K,) float32
    and ``image_id`` int64.
    """

    def __init__(
        self,
        image_dir: str | Path,
        ann_file: str | Path,
        *,
        in_chans: int = 1,
        transform: Callable[..., Any] | None = None,
        bad_files: BadFiles = "error",
        empty_images: EmptyImages = "keep",
    ) -> None:
        if bad_files not in ("error", "skip"):
            raise ValueError(f"bad_files must be 'error' or 'skip', got {bad_files!r}")
        if empty_images not in ("keep", "skip"):
            raise ValueError(f"empty_images must be 'keep' or 'skip', got {empty_images!r}")
        self.image_dir, self.ann_file = Path(image_dir), Path(ann_file)
        self.in_chans, self.transform = in_chans, transform
        data = read_coco(self.ann_file)
        self.category_ids = [int(c["id"]) for c in data["categories"]]
        self.class_names = [str(c.get("name", c["id"])) for c in data["categories"]]
        label_of = {cid: i + 1 for i, cid in enumerate(self.category_ids)}
        self.skipped: Counter[str] = Counter()
        examples: list[str] = []

        def bad(kind: str, message: str) -> None:
            if bad_files == "error":
                raise AnnotationError(f"{self.ann_file}: {message}")
            self.skipped[kind] += 1
            examples.append(message)

        images: dict[int, dict[str, Any]] = {}
        for info in data["images"]:
            image_id, name = int(info["id"]), str(info["file_name"])
            path = self.image_dir / name
            if not path.is_file():
                bad("missing image", f"image {name} (id {image_id}) is not in {self.image_dir}")
                continue
            images[image_id] = {"path": path, "width": info.get("width"),
                                "height": info.get("height"), "anns": []}  # fmt: skip
        known = {int(i["id"]) for i in data["images"]}
        for ann in data.get("annotations", []):
            image_id = int(ann["image_id"])
            if image_id not in known:
                bad("unknown image id", f"annotation {ann.get('id')} names image id {image_id}, "
                    "which 'images' does not define")  # fmt: skip
                continue
            if image_id not in images:
                continue  # its image is missing (counted above)
            entry = images[image_id]
            if int(ann["category_id"]) not in label_of:
                bad("unknown category", f"annotation {ann.get('id')} has category_id "
                    f"{ann['category_id']}, not in 'categories'")  # fmt: skip
                continue
            x, y, w, h = (float(v) for v in ann["bbox"])
            if entry["width"] is None or entry["height"] is None:
                entry["width"], entry["height"] = _image_size(entry["path"])
            W, H = float(entry["width"]), float(entry["height"])
            if w <= 0 or h <= 0:
                bad("zero-area box", f"annotation {ann.get('id')} of {entry['path'].name} has a "
                    f"box of zero area {ann['bbox']}")  # fmt: skip
                continue
            if x < 0 or y < 0 or x + w > W or y + h > H:
                bad("box outside image", f"annotation {ann.get('id')} of {entry['path'].name}: box "
                    f"{ann['bbox']} lies outside the {W:g}x{H:g} image")  # fmt: skip
                continue
            label = label_of[int(ann["category_id"])]
            crowd, area = int(ann.get("iscrowd", 0)), float(ann.get("area", w * h))
            entry["anns"].append((x, y, x + w, y + h, label, crowd, area))
        self.samples = []
        for image_id, entry in images.items():
            if not entry["anns"] and empty_images == "skip":
                self.skipped["image without annotations"] += 1
                continue
            self.samples.append((image_id, entry["path"], entry["anns"]))
        self.empty_images = sum(1 for *_r, anns in self.samples if not anns)
        if self.skipped:
            counts = ", ".join(f"{n} {kind}" for kind, n in self.skipped.items())
            hint = f"; e.g. {examples[0]}" if examples else ""
            warnings.warn(f"{self.ann_file}: skipped {counts}{hint}", stacklevel=2)
        if not self.samples:
            raise DataNotFoundError(f"{self.ann_file}: no usable images")

    @property
    def num_classes(self) -> int:
        return len(self.category_ids)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[Tensor, dict[str, Tensor]]:
        image_id, path, anns = self.samples[index]
        pixels = torch.from_numpy(np.array(load_image(path, self.in_chans)))
        image = tv_tensors.Image(pixels.permute(2, 0, 1) if pixels.ndim == 3 else pixels[None])
        rows = torch.tensor([a[:4] for a in anns], dtype=torch.float32).reshape(-1, 4)
        target: dict[str, Any] = {
            "boxes": tv_tensors.BoundingBoxes(
                rows, format="XYXY", canvas_size=tuple(image.shape[-2:])
            ),
            "labels": torch.tensor([a[4] for a in anns], dtype=torch.int64),
            "iscrowd": torch.tensor([a[5] for a in anns], dtype=torch.int64),
            "area": torch.tensor([a[6] for a in anns], dtype=torch.float32),
            "image_id": torch.tensor(image_id),
        }
        if self.transform is not None:
            image, target = self.transform(image, target)
        target["boxes"] = target["boxes"].as_subclass(Tensor)
        return image.as_subclass(Tensor).float().div_(255.0), target


def _image_size(path: Path) -> tuple[int, int]:
    from PIL import Image

    with Image.open(path) as image:
        return image.size


def detection_transform(
    train: bool, hflip: bool = True, crop_padding: int = 0
) -> Callable[..., Any]:
    """``transforms.v2`` for ``(Image, target)``: training flips horizontally (and, with
    ``crop_padding``, shifts by up to that many pixels); boxes move with the image, boxes left
    with no area are dropped with their labels (``SanitizeBoundingBoxes``)."""
    from torchvision.transforms import v2

    if not train:
        return v2.Identity()
    steps: list[Any] = []
    if hflip:
        steps.append(v2.RandomHorizontalFlip())
    if crop_padding:
        steps.append(_ShiftCrop(crop_padding))
    steps.append(v2.SanitizeBoundingBoxes(labels_getter=_labels_getter))
    return v2.Compose(steps)


def _labels_getter(inputs: Any) -> tuple[Tensor, ...]:
    target = inputs[1]
    return target["labels"], target["iscrowd"], target["area"]


class _ShiftCrop:
    def __init__(self, padding: int) -> None:
        self.padding = padding

    def __call__(self, *inputs: Any) -> Any:
        from torchvision.transforms import v2

        h, w = inputs[0].shape[-2:]
        return v2.RandomCrop((h, w), padding=self.padding, fill=0)(*inputs)
