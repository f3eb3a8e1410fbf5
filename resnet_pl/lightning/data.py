"""``ImageDataModule``: the datasets resnet-pl trains on, found offline where possible.

Small datasets (MNIST, Fashion-MNIST, CIFAR, SVHN, fake) are held in memory as uint8 tensors and
augmented a whole batch at a time after the batch reaches its device (random crop with padding,
flip, random erasing), so no image makes a PIL round trip. ``imagefolder`` reads a user's own
class folders from disk with per-image transforms in worker processes.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import lightning as L
import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Subset, default_collate

from resnet_pl import idx
from resnet_pl.lightning.augment import batch_augment
from resnet_pl.lightning.errors import BadDataError, ConfigError, DataNotFoundError
from resnet_pl.lightning.sampling import ResumableDataLoader

log = logging.getLogger(__name__)

DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class DatasetSpec:
    """What the module needs to know about a named dataset before reading it."""

    num_classes: int
    in_chans: int
    image_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    hflip: bool  # flipping keeps the label (not for digits)
    class_names: tuple[str, ...]


_DIGITS = tuple(str(i) for i in range(10))
FASHION_CLASSES = idx.FASHION_MNIST_CLASSES
CIFAR10_CLASSES = (
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
)  # fmt: skip

SPECS: dict[str, DatasetSpec] = {
    "mnist": DatasetSpec(10, 1, 28, (0.1307,), (0.3081,), False, _DIGITS),
    "fashion_mnist": DatasetSpec(10, 1, 28, (0.2860,), (0.3530,), True, FASHION_CLASSES),
    "cifar10": DatasetSpec(
        10, 3, 32, (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616), True, CIFAR10_CLASSES
    ),
    "cifar100": DatasetSpec(
        100,
        3,
        32,
        (0.5071, 0.4865, 0.4409),
        (0.2673, 0.2564, 0.2762),
        True,
        tuple(f"class_{i}" for i in range(100)),
    ),
    "svhn": DatasetSpec(
        10, 3, 32, (0.4377, 0.4438, 0.4728), (0.1980, 0.2010, 0.1970), False, _DIGITS
    ),
    "fake": DatasetSpec(10, 3, 32, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25), True, _DIGITS),
}
DATASETS = (*SPECS, "imagefolder")


# --------------------------------------------------------------------------------------------
# Reading the small datasets into uint8 tensors
# --------------------------------------------------------------------------------------------
def read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (MNIST's format), gzipped or not, into a numpy array."""
    try:
        return idx.read_idx(path)
    except idx.IdxFormatError as err:
        raise BadDataError(str(err)) from None


_IDX_STEMS = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
_TV_FOLDERS = {"mnist": "MNIST", "fashion_mnist": "FashionMNIST"}


def idx_candidates(dataset: str, data_dir: Path | None) -> list[Path]:
    """Folders that may hold the raw IDX files, in the order they are tried."""
    dirs: list[Path] = []
    if data_dir is not None:
        dirs += [data_dir, data_dir / _TV_FOLDERS[dataset] / "raw", data_dir / dataset]
    if dataset == "fashion_mnist":
        dirs.append(DEBIAN_FASHION_MNIST)
    return dirs


def load_idx_dataset(dataset: str, split: str, data_dir: Path | None) -> tuple[Tensor, Tensor]:
    """Images ``(N, 1, 28, 28)`` uint8 and labels ``(N,)`` int64 of MNIST/Fashion-MNIST."""
    images_stem, labels_stem = _IDX_STEMS[split]
    tried = idx_candidates(dataset, data_dir)
    for folder in tried:
        for suffix in (".gz", ""):
            images, labels = folder / (images_stem + suffix), folder / (labels_stem + suffix)
            if images.is_file() and labels.is_file():
                x = torch.from_numpy(read_idx(images).copy()).unsqueeze(1)
                y = torch.from_numpy(read_idx(labels).astype(np.int64))
                if len(x) != len(y):
                    raise BadDataError(f"{images} and {labels} hold different numbers of items")
                return x, y
    hint = (
        "install the Debian package (apt-get install dataset-fashion-mnist), "
        if dataset == "fashion_mnist"
        else ""
    )
    raise DataNotFoundError(
        f"{dataset} ({split}) not found: looked for {images_stem}[.gz] in "
        f"{', '.join(str(p) for p in tried) or '(no data_dir given)'}. To get it, {hint}"
        f"pass --data.download true (needs internet), or point --data.data_dir at a folder "
        f"with the IDX files."
    )


def load_torchvision_dataset(
    dataset: str, split: str, data_dir: Path | None, download: bool
) -> tuple[Tensor, Tensor]:
    """CIFAR-10/100 and SVHN through torchvision (which downloads only if ``download``)."""
    from torchvision import datasets

    root = data_dir or Path(os.environ.get("RESNET_PL_DATA", "data"))
    train = split == "train"
    try:
        if dataset == "svhn":
            ds = datasets.SVHN(str(root), split="train" if train else "test", download=download)
            x, y = torch.from_numpy(ds.data), torch.as_tensor(ds.labels, dtype=torch.int64)
        else:
            cls = datasets.CIFAR10 if dataset == "cifar10" else datasets.CIFAR100
            ds = cls(str(root), train=train, download=download)
            x = torch.from_numpy(ds.data).permute(0, 3, 1, 2).contiguous()
            y = torch.as_tensor(ds.targets, dtype=torch.int64)
    except RuntimeError as err:  # torchvision's "Dataset not found or corrupted"
        raise DataNotFoundError(
            f"{dataset} ({split}) not found under {root}: {err} Pass --data.download true "
            f"(needs internet) or --data.data_dir pointing at torchvision's layout."
        ) from None
    return x, y


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


class TensorImageDataset(Dataset[tuple[Tensor, Tensor]]):
    """uint8 images in memory; augmentation happens later, per batch."""

    def __init__(self, images: Tensor, labels: Tensor) -> None:
        self.images, self.labels = images, labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[Tensor, Tensor]:
        return self.images[i], self.labels[i]

    def __getitems__(self, indices: list[int]) -> tuple[Tensor, Tensor]:
        # The DataLoader fetches a whole batch with one indexing op instead of N item reads
        # and a stack: this keeps the loader a small share of a CPU training step.
        idx = torch.as_tensor(indices)
        return self.images[idx], self.labels[idx]

    def head(self, n: int) -> TensorImageDataset:
        """The first ``n`` items (quick runs and tests)."""
        return TensorImageDataset(self.images[:n], self.labels[:n])


def _check_norm(dataset: str, mean: Sequence[float] | None, std: Sequence[float] | None) -> None:
    """Normalisation overrides: one value per channel, positive standard deviations."""
    chans = SPECS[dataset].in_chans if dataset in SPECS else None
    for name, values in (("norm_mean", mean), ("norm_std", std)):
        if values is None:
            continue
        if chans is not None and len(values) != chans:
            raise ConfigError(
                f"{name} needs {chans} value(s) for {dataset} ({chans}-channel images), "
                f"got {list(values)}"
            )
        if not all(math.isfinite(v) for v in values):
            raise ConfigError(f"{name} values must be finite, got {list(values)}")
    if std is not None and any(v <= 0 for v in std):
        raise ConfigError(f"norm_std values must be positive, got {list(std)}")


def _collate_batch(batch: Any) -> Any:
    """Batches from ``__getitems__`` arrive already stacked; per-item lists are stacked here."""
    return batch if isinstance(batch, tuple) else default_collate(batch)


# --------------------------------------------------------------------------------------------
# The data module
# --------------------------------------------------------------------------------------------
class ImageDataModule(L.LightningDataModule):
    """Image classification data for resnet-pl.

    Args:
        dataset: one of ``mnist, fashion_mnist, cifar10, cifar100, svhn, imagefolder, fake``.
        data_dir: where the data lies. MNIST/Fashion-MNIST: a folder of raw IDX files (``.gz`` or
            not) or torchvision's layout; Fashion-MNIST is also found where the Debian package
            ``dataset-fashion-mnist`` installs it. ``imagefolder``: a folder with ``train/``
            (and optionally ``val/``, ``test/``) holding one sub-folder per class.
        batch_size: per device (with DDP the global batch is ``batch_size * world_size``).
        eval_batch_size: for validation/test/predict; defaults to ``2 * batch_size``.
        num_workers: loader processes; ``None`` chooses (0 for in-memory data, which needs no
            decoding, else ``min(8, cpu_count)``).
        val_fraction: share of the training set held out for validation when the dataset has
            no validation split, drawn with ``seed`` (the test set is never used to choose).
        seed: seed of the validation split and of ``fake`` data.
        image_size: side the model sees; defaults to the dataset's own (28 for MNIST-likes,
            32 for CIFAR/SVHN, 224 for ``imagefolder``).
        augment: ``"standard"`` (random crop with padding + flip where labels allow) or
            ``"none"``.
        crop_padding: padding of the random crop for in-memory data (pixels).
        hflip: override the dataset's flip default (digits are not flipped).
        random_erasing: probability of erasing one random rectangle per training image.
        norm_mean, norm_std: override the per-dataset normalisation statistics.
        download: let torchvision download missing data (needs internet).
        train_subset, val_subset, test_subset: use only the first N items (quick runs, tests).
        bad_files: ``imagefolder`` policy for unreadable images: ``"skip"`` (logged with a count
            and the file list) or ``"error"`` (stop, naming the file).
        fake_size: number of training images of the ``fake`` dataset.
    """

    def __init__(
        self,
        dataset: str = "fashion_mnist",
        data_dir: str | None = None,
        batch_size: int = 128,
        eval_batch_size: int | None = None,
        num_workers: int | None = None,
        val_fraction: float = 0.1,
        seed: int = 0,
        image_size: int | None = None,
        augment: Literal["standard", "none"] = "standard",
        crop_padding: int = 4,
        hflip: bool | None = None,
        random_erasing: float = 0.0,
        norm_mean: Sequence[float] | None = None,
        norm_std: Sequence[float] | None = None,
        download: bool = False,
        train_subset: int | None = None,
        val_subset: int | None = None,
        test_subset: int | None = None,
        bad_files: Literal["skip", "error"] = "skip",
        fake_size: int = 1024,
    ) -> None:
        super().__init__()
        if dataset not in DATASETS:
            import difflib

            close = difflib.get_close_matches(dataset, DATASETS, n=3)
            hint = f" Did you mean {', '.join(close)}?" if close else ""
            raise ConfigError(
                f"unknown dataset {dataset!r}.{hint} Choose one of {', '.join(DATASETS)}."
            )
        if not 0.0 <= val_fraction < 1.0:
            raise ConfigError(f"val_fraction must be in [0, 1), got {val_fraction}")
        if augment not in ("standard", "none"):
            raise ConfigError(f"augment must be 'standard' or 'none', got {augment!r}")
        if bad_files not in ("skip", "error"):
            raise ConfigError(f"bad_files must be 'skip' or 'error', got {bad_files!r}")
        if not 0.0 <= random_erasing <= 1.0:
            raise ConfigError(f"random_erasing must be a probability, got {random_erasing}")
        for name, value in (
            ("batch_size", batch_size),
            ("eval_batch_size", eval_batch_size),
            ("image_size", image_size),
            ("train_subset", train_subset),
            ("val_subset", val_subset),
            ("test_subset", test_subset),
            ("fake_size", fake_size),
        ):
            if value is not None and (not isinstance(value, int) or value < 1):
                raise ConfigError(f"{name} must be a positive integer, got {value!r}")
        if num_workers is not None and (not isinstance(num_workers, int) or num_workers < 0):
            raise ConfigError(f"num_workers must be an integer >= 0, got {num_workers!r}")
        if crop_padding < 0:
            raise ConfigError(f"crop_padding must be >= 0, got {crop_padding}")
        _check_norm(dataset, norm_mean, norm_std)
        if dataset == "imagefolder" and data_dir is None:
            raise ConfigError("dataset 'imagefolder' needs data_dir (a folder with train/ inside)")
        self.save_hyperparameters()
        self.dataset = dataset
        self.data_dir = Path(data_dir).expanduser() if data_dir else None
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size or 2 * batch_size
        self._folder_info: dict[str, Any] | None = None
        self.train_set: Dataset[Any] | None = None
        self.val_set: Dataset[Any] | None = None
        self.test_set: Dataset[Any] | None = None

    # ---- what the model needs to know (linked to the model by the CLI) -------------------------
    @property
    def spec(self) -> DatasetSpec:
        if self.dataset != "imagefolder":
            return SPECS[self.dataset]
        info = self._scan_folder()
        return DatasetSpec(
            len(info["classes"]), 3, 224, IMAGENET_MEAN, IMAGENET_STD, True, tuple(info["classes"])
        )

    @property
    def num_classes(self) -> int:
        return self.spec.num_classes

    @property
    def in_chans(self) -> int:
        return self.spec.in_chans

    @property
    def class_names(self) -> list[str]:
        return list(self.spec.class_names)

    @property
    def image_size(self) -> int:
        return self.hparams["image_size"] or self.spec.image_size

    @property
    def mean(self) -> tuple[float, ...]:
        return tuple(self.hparams["norm_mean"] or self.spec.mean)

    @property
    def std(self) -> tuple[float, ...]:
        return tuple(self.hparams["norm_std"] or self.spec.std)

    @property
    def input_size(self) -> tuple[int, int, int]:
        return (self.in_chans, self.image_size, self.image_size)

    def _scan_folder(self) -> dict[str, Any]:
        if self._folder_info is None:
            from resnet_pl.lightning.imagefolder import scan_image_folder

            assert self.data_dir is not None
            self._folder_info = scan_image_folder(self.data_dir)
        return self._folder_info

    # ---- Lightning hooks ------------------------------------------------------------------------
    def prepare_data(self) -> None:
        """Download once per node when asked; otherwise only check the files are there."""
        if self.dataset in ("cifar10", "cifar100", "svhn"):
            for split in ("train", "test"):
                load_torchvision_dataset(
                    self.dataset, split, self.data_dir, self.hparams["download"]
                )

    def setup(self, stage: str | None = None) -> None:
        if self.dataset == "imagefolder":
            self._setup_folder()
            return
        if self.train_set is None and stage in (None, "fit", "validate"):
            x, y = self._load("train")
            n_val = round(len(y) * self.hparams["val_fraction"])
            perm = torch.randperm(
                len(y), generator=torch.Generator().manual_seed(self.hparams["seed"])
            )
            train_idx, val_idx = perm[n_val:], perm[:n_val]
            self.train_set = TensorImageDataset(x[train_idx], y[train_idx])
            self.val_set = TensorImageDataset(x[val_idx], y[val_idx]) if n_val else None
        if self.test_set is None and stage in (None, "test", "predict"):
            self.test_set = TensorImageDataset(*self._load("test"))

    def _load(self, split: str) -> tuple[Tensor, Tensor]:
        if self.dataset in ("mnist", "fashion_mnist"):
            if self.hparams["download"]:
                self._download_idx()
            return load_idx_dataset(self.dataset, split, self.data_dir)
        if self.dataset == "fake":
            n = (
                self.hparams["fake_size"]
                if split == "train"
                else max(self.hparams["fake_size"] // 4, 1)
            )
            seed = self.hparams["seed"] + (0 if split == "train" else 1)
            return make_fake_dataset(n, self.spec, self.image_size, seed)
        return load_torchvision_dataset(self.dataset, split, self.data_dir, False)

    def _download_idx(self) -> None:
        from torchvision import datasets

        root = str(self.data_dir or Path("data"))
        cls = datasets.MNIST if self.dataset == "mnist" else datasets.FashionMNIST
        for train in (True, False):
            cls(root, train=train, download=True)
        if self.data_dir is None:
            self.data_dir = Path(root)

    def _setup_folder(self) -> None:
        from resnet_pl.lightning.imagefolder import build_folder_datasets

        if self.train_set is None:
            sets = build_folder_datasets(
                self._scan_folder(),
                image_size=self.image_size,
                augment=self.hparams["augment"] == "standard",
                val_fraction=self.hparams["val_fraction"],
                seed=self.hparams["seed"],
                bad_files=self.hparams["bad_files"],
            )
            self.train_set, self.val_set, self.test_set = sets

    # ---- loaders -------------
    def _loader(self, ds: Dataset[Any] | None, split: str, subset: int | None) -> DataLoader[Any]:
        if ds is None:
            raise RuntimeError(
                f"no {split} data: call setup() first, or give the dataset a {split} split"
            )
        if subset is not None:
            if isinstance(ds, TensorImageDataset):
                ds = ds.head(subset)
            else:
                ds = Subset(ds, range(min(subset, len(ds))))  # type: ignore[arg-type]
        workers = self.hparams["num_workers"]
        if workers is None:
            workers = 0 if self.dataset != "imagefolder" else min(8, os.cpu_count() or 1)
        train = split == "train"
        common: dict[str, Any] = {
            "num_workers": workers,
            "pin_memory": torch.cuda.is_available(),
            "persistent_workers": workers > 0,
            "collate_fn": _collate_batch if isinstance(ds, TensorImageDataset) else None,
        }
        # The data seed and the run's seed (seed_everything sets PL_GLOBAL_SEED) both vary the
        # order, as with a plain shuffling loader; nothing else does.
        seed = self.hparams["seed"] * 1_000_003 + int(os.environ.get("PL_GLOBAL_SEED", "0"))
        if train and self._resumable_training():
            # Shuffled by (seed, epoch), each DDP rank its share, position saved in checkpoints:
            # exact mid-epoch resume. Lightning keeps this sampler (a DistributedSampler).
            ranks, rank = self._ranks()
            return ResumableDataLoader(
                ds,
                self.batch_size,
                seed=seed,
                drop_last=math.ceil(len(ds) / ranks) > self.batch_size,  # type: ignore[arg-type]
                num_replicas=ranks,
                rank=rank,
                **common,
            )
        return DataLoader(
            ds,
            batch_size=self.batch_size if train else self.eval_batch_size,
            shuffle=train,
            drop_last=train and len(ds) > self.batch_size,  # type: ignore[arg-type]
            # Own generator: iterating a loader never draws from (or shifts) the global RNG.
            generator=torch.Generator().manual_seed(seed),
            **common,
        )

    def _resumable_training(self) -> bool:
        """Training uses :class:`ResumableDataLoader`, on one process and under DDP, except
        with ``overfit_batches`` (Lightning swaps in a sequential sampler there)."""
        trainer = self.trainer
        if trainer is None:
            return True
        return not getattr(trainer, "overfit_batches", 0)

    def _ranks(self) -> tuple[int, int]:
        """(number of ranks, this rank) among which the training set is shared: what
        Lightning would give its ``DistributedSampler``; (1, 0) without a distributed
        strategy."""
        trainer = self.trainer
        kwargs = getattr(trainer, "distributed_sampler_kwargs", None) if trainer else None
        if not kwargs:
            return 1, 0
        return int(kwargs.get("num_replicas", 1)), int(kwargs.get("rank", 0))

    def train_dataloader(self) -> DataLoader[Any]:
        return self._loader(self.train_set, "train", self.hparams["train_subset"])

    def val_dataloader(self) -> DataLoader[Any]:
        return self._loader(self.val_set, "validation", self.hparams["val_subset"])

    def test_dataloader(self) -> DataLoader[Any]:
        return self._loader(self.test_set, "test", self.hparams["test_subset"])

    def predict_dataloader(self) -> DataLoader[Any]:
        return self.test_dataloader()

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """Augment (training only) and normalise a uint8 batch on its device."""
        x, y = batch
        training = self.trainer is not None and self.trainer.training
        # imagefolder images are cropped and flipped per image in the workers already.
        augment = (
            training and self.hparams["augment"] == "standard" and self.dataset != "imagefolder"
        )
        x = batch_augment(
            x,
            size=self.image_size,
            mean=self.mean,
            std=self.std,
            crop_padding=self.hparams["crop_padding"] if augment else 0,
            hflip=augment and self._hflip,
            random_erasing=self.hparams["random_erasing"] if training else 0.0,
        )
        return x, y

    @property
    def _hflip(self) -> bool:
        flip = self.hparams["hflip"]
        return self.spec.hflip if flip is None else bool(flip)
