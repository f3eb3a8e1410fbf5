"""The in-memory data path: MNIST, Fashion-MNIST, CIFAR-10/100, SVHN and ``fake`` held as
uint8 tensors and augmented a whole batch at a time on the device (random crop with padding,
flip, random erasing), so no image makes a PIL round trip."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor
from torch.utils.data import Dataset, default_collate

from resnet_pl.data import datasets as _datasets
from resnet_pl.data.download import check_mode as check_download_mode
from resnet_pl.data.download import resolve as resolve_data
from resnet_pl.data.specs import SPECS, DatasetSpec
from resnet_pl.data.transforms import eval_geometry
from resnet_pl.lightning.datamodules.base import ImageDataBase, check_norm, check_positive_ints
from resnet_pl.lightning.errors import ConfigError


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


def collate_batch(batch: Any) -> Any:
    """Batches from ``__getitems__`` arrive already stacked; per-item lists are stacked here."""
    return batch if isinstance(batch, tuple) else default_collate(batch)


class TensorDataModule(ImageDataBase):
    """A named small dataset in memory (``SPECS``: mnist, fashion_mnist, cifar10, cifar100,
    svhn, fake), augmented per batch on the device. Options beyond the shared ones
    (:class:`~resnet_pl.lightning.datamodules.base.ImageDataBase`):

    Args:
        crop_padding: padding of the random crop (pixels).
        hflip: override the dataset's flip default (digits are not flipped).
        download: ``"auto"`` (default): use a local copy (``data_dir``, the Debian package's
            folder, the cache folder) or, when there is none, download it once into
            ``data_dir`` or the cache (md5-checked; see :mod:`resnet_pl.data.download`);
            ``False``: never touch the network; ``True``: always fetch into that folder.
        fake_size: number of training images of ``fake``.
        in_chans: must be the dataset's own channel count when given.
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
        augment: Literal["standard", "none", "small", "photo"] = "standard",
        crop_padding: int = 4,
        hflip: bool | None = None,
        random_erasing: float = 0.0,
        norm_mean: Sequence[float] | None = None,
        norm_std: Sequence[float] | None = None,
        download: bool | Literal["auto"] = "auto",
        train_subset: int | None = None,
        val_subset: int | None = None,
        test_subset: int | None = None,
        fake_size: int = 1024,
        crop_pct: float | None = None,
        in_chans: int | None = None,
        train_size_schedule: Sequence[Sequence[int]] | None = None,
    ) -> None:
        super().__init__(
            dataset, data_dir, batch_size, eval_batch_size, num_workers, val_fraction, seed,
            image_size, augment, random_erasing, norm_mean, norm_std, train_subset, val_subset,
            test_subset, crop_pct, train_size_schedule,
        )  # fmt: skip
        if dataset not in SPECS:
            raise ConfigError(
                f"{dataset!r} is not an in-memory dataset; TensorDataModule takes "
                f"{', '.join(SPECS)}"
            )
        spec = SPECS[dataset]
        check_positive_ints(fake_size=fake_size)
        if crop_padding < 0:
            raise ConfigError(f"crop_padding must be >= 0, got {crop_padding}")
        if in_chans is not None and in_chans != spec.in_chans:
            raise ConfigError(f"{dataset} has {spec.in_chans}-channel images; in_chans {in_chans}")
        check_norm(spec.in_chans, norm_mean, norm_std)
        try:
            download = check_download_mode(download)
        except ValueError as err:
            raise ConfigError(str(err)) from None
        self.save_hyperparameters()
        self._resolve(spec.in_chans, spec.image_size)

    @property
    def spec(self) -> DatasetSpec:
        return SPECS[self.dataset]

    # ---- Lightning hooks ---------------------------------------------------------------------
    def prepare_data(self) -> None:
        """Find the data or download it, once per node (Lightning calls this on one process
        only), printing one line saying where it came from; ``setup`` then only reads files."""
        if self.dataset != "fake":
            resolve_data(self.dataset, self.data_dir, self.hparams["download"])

    @property
    def _root(self) -> Path | None:
        """``data_dir``, or the cache folder where ``download: true`` puts the data (other
        modes find it through the resolution order of :mod:`resnet_pl.data.download`)."""
        if self.data_dir is None and self.hparams["download"] is True:
            return _datasets.default_root()
        return self.data_dir

    def setup(self, stage: str | None = None) -> None:
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
        if self.dataset in _datasets.IDX_DATASETS:
            return _datasets.load_idx_dataset(self.dataset, split, self._root)
        if self.dataset == "fake":
            size = self.hparams["fake_size"]
            n = size if split == "train" else max(size // 4, 1)
            seed = self.hparams["seed"] + (0 if split == "train" else 1)
            return _datasets.make_fake_dataset(n, self.spec, self.image_size, seed)
        return _datasets.load_torchvision_dataset(self.dataset, split, self._root)

    # ---- the batch hooks -----------------------------------------------------------------------
    def eval_batch(self, x: Tensor) -> Tensor:
        """The eval transform's geometry when the stored images are not the model's size (or
        evaluation crops)."""
        if x.shape[-2:] != (self.image_size, self.image_size) or self.crop_pct != 1.0:
            if self._geometry is None:
                self._geometry = eval_geometry(self.data_cfg)
            x = self._geometry(x).as_subclass(Tensor)
        return x

    def augment_options(self) -> dict[str, Any]:
        augment = self.hparams["augment"] != "none"
        return {
            "crop_padding": self.hparams["crop_padding"] if augment else 0,
            "hflip": augment and self._hflip,
            "random_erasing": self.hparams["random_erasing"],
        }

    def collate_fn(self, ds: Dataset[Any]) -> Any:
        return collate_batch if isinstance(ds, TensorImageDataset) else None

    def subset(self, ds: Dataset[Any], n: int) -> Dataset[Any]:
        return ds.head(n) if isinstance(ds, TensorImageDataset) else super().subset(ds, n)
