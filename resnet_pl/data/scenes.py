"""Fashion-MNIST scenes: a deterministic, CPU-sized benchmark for segmentation and detection.

Real Fashion-MNIST items are composed onto black canvases (several per image, each at its own
scale and position, later items occluding earlier ones) and written in the two standard
formats at once:

- **VOC layout** (segmentation): ``JPEGImages/<name>.png`` (8-bit grayscale; PNG, so the
  pixels are exactly the composed ones), ``SegmentationClass/<name>.png`` (palette PNG whose
  *indices* are the classes: 0 background, ``c + 1`` for Fashion-MNIST class ``c``) and
  ``ImageSets/Segmentation/{train,val,test}.txt``;
- **COCO JSON** (detection): ``annotations/instances_{split}.json`` with one box per visible
  item (``bbox`` = the tight box of its visible silhouette, ``[x, y, w, h]`` in pixel-edge
  coordinates; ``area`` = its visible pixel count; ``iscrowd`` 0), categories 1..10.

An item's silhouette is its real shape: the pixels above :data:`SILHOUETTE_THRESHOLD` with
interior holes filled, resized with nearest-neighbour sampling along with the (bilinearly
resized) item. A placement that would leave any item less than ``min_visible`` of its own
silhouette visible is retried elsewhere, so every labelled item is mostly visible.

Sources do not overlap between splits: ``train`` scenes use Fashion-MNIST train items
0-49,999, ``val`` items 50,000-59,999 and ``test`` the official test split. Each image is drawn
from its own generator, seeded by ``(seed, split, index)``, so a scene does not depend on how
many others are generated.

Command::

    python -m resnet_pl.data.scenes data/scenes --n_train 400 --n_val 100 --n_test 100 --seed 0
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from resnet_pl.data.datasets import load_fashion_mnist
from resnet_pl.data.specs import FASHION_MNIST_CLASSES

SILHOUETTE_THRESHOLD = 8  # item pixels above this (of 255) belong to its silhouette
SPLITS = ("train", "val", "test")
_SPLIT_ID = {"train": 0, "val": 1, "test": 2}
# (Fashion-MNIST split, first item, end) each scene split draws from.
_SOURCES = {
    "train": ("train", 0, 50_000),
    "val": ("train", 50_000, 60_000),
    "test": ("test", 0, 10_000),
}
SEGMENTATION_CLASSES = ("background", *FASHION_MNIST_CLASSES)
IGNORE_INDEX = 255


@dataclass(frozen=True)
class SceneConfig:
    """How scenes are drawn (recorded in ``scenes.json``)."""

    size: int = 64
    min_items: int = 1
    max_items: int = 4
    min_scale: int = 20  # item side in pixels (the 28 px item is resized to this)
    max_scale: int = 40
    min_visible: float = 0.5
    seed: int = 0


def voc_palette() -> list[int]:
    """Pascal VOC's 256-colour palette (class 255, the ignore index, is near white)."""
    palette = []
    for i in range(256):
        r = g = b = 0
        c = i
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        palette += [r, g, b]
    return palette


def silhouette(item: np.ndarray) -> np.ndarray:
    """The item's shape: pixels above :data:`SILHOUETTE_THRESHOLD`, interior holes filled."""
    from scipy.ndimage import binary_fill_holes

    return np.asarray(binary_fill_holes(item > SILHOUETTE_THRESHOLD), dtype=bool)


@dataclass
class Scene:
    image: np.ndarray  # (H, W) uint8
    mask: np.ndarray  # (H, W) uint8 class indices
    boxes: list[list[int]]  # [x0, y0, x1, y1] per visible item (pixel edges)
    labels: list[int]  # Fashion-MNIST class per box (0..9)
    areas: list[int]


def compose(
    items: np.ndarray, labels: np.ndarray, cfg: SceneConfig, rng: np.random.Generator
) -> Scene:
    """One scene from a pool of items (``(N, 28, 28)`` uint8) and their labels."""
    size = cfg.size
    count = int(rng.integers(cfg.min_items, cfg.max_items + 1))
    placed: list[tuple[np.ndarray, np.ndarray, int, int, int]] = []  # pixels, shape, y, x, label
    for _ in range(count):
        k = int(rng.integers(len(items)))
        side = int(rng.integers(cfg.min_scale, cfg.max_scale + 1))
        pil = Image.fromarray(items[k])
        pixels = np.asarray(pil.resize((side, side), Image.Resampling.BILINEAR))
        shape = np.asarray(
            Image.fromarray(silhouette(items[k])).resize((side, side), Image.Resampling.NEAREST)
        )
        if not shape.any():
            continue
        for _attempt in range(10):
            y, x = (int(v) for v in rng.integers(0, size - side + 1, size=2))
            trial = [*placed, (pixels, shape, y, x, int(labels[k]))]
            if _visible_enough(trial, size, cfg.min_visible):
                placed = trial
                break
    image = np.zeros((size, size), np.uint8)
    owner = np.full((size, size), -1, np.int64)
    for i, (pixels, shape, y, x, _label) in enumerate(placed):
        h, w = shape.shape
        region = image[y : y + h, x : x + w]
        region[shape] = pixels[shape]
        owner[y : y + h, x : x + w][shape] = i
    mask = np.zeros((size, size), np.uint8)
    boxes, out_labels, areas = [], [], []
    for i, (*_rest, label) in enumerate(placed):
        visible = owner == i
        mask[visible] = label + 1
        ys, xs = np.nonzero(visible)
        boxes.append([int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1])
        out_labels.append(label)
        areas.append(int(visible.sum()))
    return Scene(image, mask, boxes, out_labels, areas)


def _visible_enough(placed: list, size: int, min_visible: float) -> bool:
    owner = np.full((size, size), -1, np.int64)
    for i, (_pixels, shape, y, x, _label) in enumerate(placed):
        h, w = shape.shape
        owner[y : y + h, x : x + w][shape] = i
    return all(
        (owner == i).sum() >= min_visible * shape.sum() for i, (_p, shape, *_r) in enumerate(placed)
    )


def generate(
    out: str | Path,
    n_train: int = 400,
    n_val: int = 100,
    n_test: int = 100,
    cfg: SceneConfig | None = None,
    data_dir: Path | None = None,
) -> dict:
    """Write ``n_*`` scenes per split under ``out`` in VOC layout and COCO JSON; returns the
    summary also written to ``out/scenes.json``."""
    cfg = cfg or SceneConfig()
    if not cfg.min_scale <= cfg.max_scale <= cfg.size or cfg.min_scale < 4:
        raise ValueError(
            f"need 4 <= min_scale <= max_scale <= size, got {cfg.min_scale}, {cfg.max_scale}, "
            f"{cfg.size}"
        )
    if not 1 <= cfg.min_items <= cfg.max_items:
        raise ValueError(f"need 1 <= min_items <= max_items, got {cfg.min_items}, {cfg.max_items}")
    root = Path(out)
    for sub in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation", "annotations"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    palette = voc_palette()
    counts = {"train": n_train, "val": n_val, "test": n_test}
    summary: dict = {"config": asdict(cfg), "splits": {}, "classes": list(SEGMENTATION_CLASSES)}
    categories = [{"id": c + 1, "name": name} for c, name in enumerate(FASHION_MNIST_CLASSES)]
    for split in SPLITS:
        n = counts[split]
        if n <= 0:
            continue
        source, start, end = _SOURCES[split]
        items, labels = load_fashion_mnist(source, n=end - start, start=start, data_dir=data_dir)
        names: list[str] = []
        images: list[dict] = []
        annotations: list[dict] = []
        for i in range(n):
            rng = np.random.default_rng([cfg.seed, _SPLIT_ID[split], i])
            scene = compose(items, labels, cfg, rng)
            name = f"{split}_{i:05d}"
            names.append(name)
            Image.fromarray(scene.image, "L").save(root / "JPEGImages" / f"{name}.png")
            mask = Image.fromarray(scene.mask, "P")
            mask.putpalette(palette)
            mask.save(root / "SegmentationClass" / f"{name}.png")
            images.append({"id": i + 1, "file_name": f"{name}.png", "width": cfg.size,
                           "height": cfg.size})  # fmt: skip
            for box, label, area in zip(scene.boxes, scene.labels, scene.areas, strict=True):
                x0, y0, x1, y1 = box
                annotations.append({
                    "id": len(annotations) + 1, "image_id": i + 1, "category_id": label + 1,
                    "bbox": [x0, y0, x1 - x0, y1 - y0], "area": area, "iscrowd": 0,
                })  # fmt: skip
        (root / "ImageSets/Segmentation" / f"{split}.txt").write_text("\n".join(names) + "\n")
        coco = {"images": images, "annotations": annotations, "categories": categories,
                "info": {"description": f"resnet-pl Fashion-MNIST scenes, {split}",
                         "config": asdict(cfg)}}  # fmt: skip
        (root / "annotations" / f"instances_{split}.json").write_text(json.dumps(coco))
        summary["splits"][split] = {"images": n, "items": len(annotations),
                                    "source": f"fashion_mnist {source}[{start}:{end}]"}  # fmt: skip
    (root / "scenes.json").write_text(json.dumps(summary, indent=1) + "\n")
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m resnet_pl.data.scenes",
        description="Write Fashion-MNIST scenes in VOC layout (segmentation) and COCO JSON "
        "(detection).",
    )
    parser.add_argument("out", help="output folder")
    parser.add_argument("--n_train", type=int, default=400)
    parser.add_argument("--n_val", type=int, default=100)
    parser.add_argument("--n_test", type=int, default=100)
    parser.add_argument("--size", type=int, default=64, help="canvas side in pixels")
    parser.add_argument("--min_items", type=int, default=1)
    parser.add_argument("--max_items", type=int, default=4)
    parser.add_argument("--min_scale", type=int, default=20, help="smallest item side, pixels")
    parser.add_argument("--max_scale", type=int, default=40, help="largest item side, pixels")
    parser.add_argument("--min_visible", type=float, default=0.5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data_dir", default=None, help="folder with Fashion-MNIST IDX files")
    args = parser.parse_args(argv)
    cfg = SceneConfig(args.size, args.min_items, args.max_items, args.min_scale, args.max_scale,
                      args.min_visible, args.seed)  # fmt: skip
    from resnet_pl.errors import ResNetPLError

    try:
        summary = generate(args.out, args.n_train, args.n_val, args.n_test, cfg,
                           Path(args.data_dir) if args.data_dir else None)  # fmt: skip
    except (ResNetPLError, ValueError) as err:
        print(f"resnet-pl: error: {' '.join(str(err).split())}", file=sys.stderr)
        return 2
    for split, info in summary["splits"].items():
        print(f"{split}: {info['images']} images, {info['items']} items ({info['source']})")
    print(f"wrote {args.out} (VOC layout + annotations/instances_*.json)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
