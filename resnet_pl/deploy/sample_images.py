"""Write a few real dataset images as PNG files, to try ``resnet-pl classify`` on.

``python -m resnet_pl.deploy.sample_images --dataset fashion_mnist --out samples/ -n 8``
writes ``samples/00000_ankle_boot.png`` ... (test split, in file order, true label in the name)
and prints one line per file.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from PIL import Image

from resnet_pl.data import FASHION_MNIST_CLASSES, DataNotFoundError, load_fashion_mnist


def slug(name: str) -> str:
    """A file-name-safe lower-case form of a class name (``"T-shirt/top"`` -> ``t_shirt_top``)."""
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")


def write_samples(
    out: Path, n: int = 8, split: str = "test", start: int = 0, data_dir: Path | None = None
) -> list[tuple[Path, str]]:
    """Save ``n`` Fashion-MNIST images as 8-bit grayscale PNGs; returns (file, true label)."""
    images, labels = load_fashion_mnist(split, n, start=start, data_dir=data_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for i, (image, label) in enumerate(zip(images, labels, strict=True)):
        name = FASHION_MNIST_CLASSES[int(label)]
        path = out / f"{start + i:05d}_{slug(name)}.png"
        Image.fromarray(image, mode="L").save(path)
        written.append((path, name))
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m resnet_pl.deploy.sample_images", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--dataset", default="fashion_mnist", choices=["fashion_mnist"])
    parser.add_argument("--out", type=Path, default=Path("samples"))
    parser.add_argument("-n", type=int, default=8, help="number of images")
    parser.add_argument("--split", default="test", choices=["train", "test"])
    parser.add_argument("--start", type=int, default=0, help="index of the first image")
    parser.add_argument("--data-dir", type=Path, help="folder with the IDX files")
    args = parser.parse_args(argv)
    if args.n < 1 or args.start < 0:
        print("error: -n must be >= 1 and --start >= 0", file=sys.stderr)
        return 2
    try:
        written = write_samples(args.out, args.n, args.split, args.start, args.data_dir)
    except DataNotFoundError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for path, label in written:
        print(f"{path}\t{label}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
