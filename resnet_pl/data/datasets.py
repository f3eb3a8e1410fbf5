"""Reading the small datasets into uint8 tensors: MNIST's IDX files (numpy alone), CIFAR and
SVHN through torchvision, and synthetic ``fake`` data.

Downloads happen only in :func:`download`, which a data module calls from ``prepare_data``
(once per node); every loader here reads files that are already on disk.
"""

from __future__ import annotations

import gzip
import os
import struct
import zlib
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from resnet_pl.data.errors import BadDataError, DataNotFoundError, IdxFormatError
from resnet_pl.data.specs import DatasetSpec

DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
IDX_DATASETS = ("mnist", "fashion_mnist")
TORCHVISION_DATASETS = ("cifar10", "cifar100", "svhn")
_IDX_STEMS = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
TV_FOLDERS = {"mnist": "MNIST", "fashion_mnist": "FashionMNIST"}


def default_root() -> Path:
    """The cache folder: where downloads go when no ``data_dir`` is given, and the last place
    a copy is looked for: ``$RESNET_PL_DATA``, else ``$XDG_CACHE_HOME/resnet_pl/data``, else
    ``~/.cache/resnet_pl/data``."""
    if os.environ.get("RESNET_PL_DATA"):
        return Path(os.environ["RESNET_PL_DATA"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base).expanduser() / "resnet_pl" / "data"


def system_folders(dataset: str) -> list[Path]:
    """Folders where an operating-system package installs ``dataset`` (Fashion-MNIST: the
    Debian package ``dataset-fashion-mnist``)."""
    return [DEBIAN_FASHION_MNIST] if dataset == "fashion_mnist" else []


# ---- IDX (MNIST, Fashion-MNIST) --------------------------------------------------------------
def read_idx(path: Path) -> np.ndarray:
    """An unsigned-byte IDX file (gzipped or not) as a numpy array of its declared shape.

    Raises:
        IdxFormatError: the file is not a complete unsigned-byte IDX file.
    """
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:  # type: ignore[operator]
            data: bytes = f.read()
    except (EOFError, zlib.error, gzip.BadGzipFile) as err:
        raise IdxFormatError(f"{path} is a corrupt or truncated gzip file ({err})") from None
    if len(data) < 4 or data[:3] != b"\x00\x00\x08":
        raise IdxFormatError(f"{path} is not an unsigned-byte IDX file (corrupt or wrong file)")
    ndim = data[3]
    if len(data) < 4 + 4 * ndim:
        raise IdxFormatError(f"{path} is truncated inside its IDX header")
    dims = struct.unpack(f">{ndim}I", data[4 : 4 + 4 * ndim])
    array = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if array.size != int(np.prod(dims)):
        raise IdxFormatError(f"{path} is truncated: expected {int(np.prod(dims))} values")
    return array.reshape(dims)


def idx_candidates(dataset: str, data_dir: Path | None) -> list[Path]:
    """Folders that may hold the raw IDX files, in the order they are tried: ``data_dir``
    itself, torchvision's layout under it, ``data_dir/<dataset>``; then the system folders
    (:func:`system_folders`); then the same three under the cache folder (:func:`default_root`),
    where ``download: auto`` puts what it fetches."""

    def layouts(root: Path) -> list[Path]:
        return [root, root / TV_FOLDERS[dataset] / "raw", root / dataset]

    dirs = layouts(data_dir) if data_dir is not None else []
    dirs += system_folders(dataset) + layouts(default_root())
    return list(dict.fromkeys(dirs))  # without repeats, in order


def _folder_holds(folder: Path, split: str) -> tuple[Path, Path] | None:
    images_stem, labels_stem = _IDX_STEMS[split]
    for suffix in (".gz", ""):
        images, labels = folder / (images_stem + suffix), folder / (labels_stem + suffix)
        if images.is_file() and labels.is_file():
            return images, labels
    return None


def find_idx_folder(dataset: str, data_dir: Path | None) -> Path | None:
    """The first candidate folder (:func:`idx_candidates`) holding both splits, or None."""
    for folder in idx_candidates(dataset, data_dir):
        if all(_folder_holds(folder, split) for split in _IDX_STEMS):
            return folder
    return None


def _find_idx(dataset: str, split: str, data_dir: Path | None) -> tuple[Path, Path]:
    images_stem = _IDX_STEMS[split][0]
    tried = idx_candidates(dataset, data_dir)
    for folder in tried:
        found = _folder_holds(folder, split)
        if found is not None:
            return found
    hint = (
        "install the Debian package (apt-get install dataset-fashion-mnist), "
        if dataset == "fashion_mnist"
        else ""
    )
    raise DataNotFoundError(
        f"{dataset} ({split}) not found: looked for {images_stem}[.gz] in "
        f"{', '.join(str(p) for p in tried)}. To get it: run with network access and "
        f"--data.download auto (the default; fetches it once into {default_root()}), {hint}"
        f"or point --data.data_dir at a folder with the IDX files."
    )


def idx_available(dataset: str, data_dir: Path | None = None) -> bool:
    """Whether both splits of an IDX dataset can be found (see :func:`idx_candidates`)."""
    try:
        for split in _IDX_STEMS:
            _find_idx(dataset, split, data_dir)
    except DataNotFoundError:
        return False
    return True


def load_idx_dataset(dataset: str, split: str, data_dir: Path | None) -> tuple[Tensor, Tensor]:
    """Images ``(N, 1, 28, 28)`` uint8 and labels ``(N,)`` int64 of MNIST/Fashion-MNIST."""
    if split not in _IDX_STEMS:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    images, labels = _find_idx(dataset, split, data_dir)
    x = torch.from_numpy(read_idx(images).copy()).unsqueeze(1)
    y = torch.from_numpy(read_idx(labels).astype(np.int64))
    if len(x) != len(y):
        raise BadDataError(f"{images} and {labels} hold different numbers of items")
    return x, y


def load_fashion_mnist(
    split: str = "test", n: int | None = None, start: int = 0, data_dir: Path | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Images ``(n, 28, 28)`` uint8 and labels ``(n,)`` int64 of a Fashion-MNIST split, starting
    at index ``start`` (the files are in a fixed order, so a slice is reproducible)."""
    x, y = load_idx_dataset("fashion_mnist", split, data_dir)
    end = len(x) if n is None else min(len(x), start + n)
    return x[start:end, 0].numpy(), y[start:end].numpy()


# ---- torchvision (CIFAR, SVHN) and downloads --------------------------------------------------
def load_torchvision_dataset(
    dataset: str, split: str, data_dir: Path | None
) -> tuple[Tensor, Tensor]:
    """CIFAR-10/100 and SVHN from torchvision's folders under ``data_dir`` (default
    :func:`default_root`); never downloads (see :func:`download`)."""
    from torchvision import datasets

    root = data_dir or default_root()
    train = split == "train"
    try:
        if dataset == "svhn":
            ds = datasets.SVHN(str(root), split="train" if train else "test", download=False)
            x, y = torch.from_numpy(ds.data), torch.as_tensor(ds.labels, dtype=torch.int64)
        else:
            cls = datasets.CIFAR10 if dataset == "cifar10" else datasets.CIFAR100
            ds = cls(str(root), train=train, download=False)
            x = torch.from_numpy(ds.data).permute(0, 3, 1, 2).contiguous()
            y = torch.as_tensor(ds.targets, dtype=torch.int64)
    except RuntimeError as err:  # torchvision's "Dataset not found or corrupted"
        raise DataNotFoundError(
            f"{dataset} ({split}) not found under {root}: {err} Pass --data.download true "
            f"(needs internet) or --data.data_dir pointing at torchvision's layout."
        ) from None
    return x, y


def download(dataset: str, data_dir: Path | None) -> Path:
    """Download both splits of ``dataset`` into ``data_dir`` (default :func:`default_root`),
    keeping files already there and intact; returns the folder. Needs internet. MNIST and
    Fashion-MNIST are fetched by :func:`resnet_pl.data.download.fetch_idx` (md5-checked, atomic,
    locked); CIFAR/SVHN by torchvision (which checks its files first). Meant for
    ``prepare_data`` (one process per node), never ``setup``; ``download: auto`` goes through
    :func:`resnet_pl.data.download.resolve`, which tries local copies first."""
    from torchvision import datasets

    root = data_dir or default_root()
    if dataset in IDX_DATASETS:
        from resnet_pl.data.download import fetch_idx

        fetch_idx(dataset, root)
    elif dataset == "svhn":
        for split in ("train", "test"):
            datasets.SVHN(str(root), split=split, download=True)
    elif dataset in TORCHVISION_DATASETS:
        cls = datasets.CIFAR10 if dataset == "cifar10" else datasets.CIFAR100
        for train in (True, False):
            cls(str(root), train=train, download=True)
    return root


def make_fake_dataset(
    n: int, spec: DatasetSpec, image_size: int, seed: int
) -> tuple[Tensor, Tensor]:
    """Synthetic uint8 images with a learnable signal: each class has its own mean brightness
    pattern, so a model can beat chance and tests can check learning, not just running."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, spec.num_classes, (n,), generator=g)
    base = torch.rand(spec.num_classes, spec.in_chans, image_size, image_size, generator=g)
    noise = torch.rand(n, spec.in_chans, image_size, image_size, generator=g)
    x = (0.6 * base[y] + 0.4 * noise) * 255
    return x.to(torch.uint8), y
