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
from pathlib import Path
from typing import Any, Literal

import lightning as L
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Subset, default_collate

from resnet_pl.data import datasets as _datasets
from resnet_pl.data.errors import DataNotFoundError
from resnet_pl.data.specs import DATASETS, SPECS, DatasetSpec, default_crop_pct, default_norm
from resnet_pl.data.transforms import eval_geometry, normalize
from resnet_pl.lightning.augment import batch_augment
from resnet_pl.lightning.errors import ConfigError
from resnet_pl.lightning.sampling import ResumableDataLoader

log = logging.getLogger(__name__)

__all__ = ["DataNotFoundError", "ImageDataModule", "TensorImageDataset"]


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


def _check_norm(chans: int, mean: Sequence[float] | None, std: Sequence[float] | None) -> None:
    """Normalisation overrides: one value per channel, positive standard deviations."""
    for name, values in (("norm_mean", mean), ("norm_std", std)):
        if values is None:
            continue
        if len(values) != chans:
            raise ConfigError(
                f"{name} needs {chans} value(s) ({chans}-channel images), got {list(values)}"
            )
        if not all(math.isfinite(v) for v in values):
            raise ConfigError(f"{name} values must be finite, got {list(values)}")
    if std is not None and any(v <= 0 for v in std):
        raise ConfigError(f"norm_std values must be positive, got {list(std)}")


def _collate_batch(batch: Any) -> Any:
    """Batches from ``__getitems__`` arrive already stacked; per-item lists are stacked here."""
    return batch if isinstance(batch, tuple) else default_collate(batch)


def _check_size_schedule(schedule: Sequence[Sequence[int]] | None) -> None:
    if schedule is None:
        return
    for entry in schedule:
        ok = (
            isinstance(entry, Sequence)
            and len(entry) == 2
            and all(isinstance(v, int) and not isinstance(v, bool) for v in entry)
            and entry[0] >= 0
            and entry[1] >= 8
        )
        if not ok:
            raise ConfigError(
                f"train_size_schedule entries must be [epoch >= 0, size >= 8] pairs of "
                f"integers, got {entry!r} (example: [[0, 20], [8, 28]])"
            )
    starts = [e[0] for e in schedule]
    if len(set(starts)) != len(starts):
        raise ConfigError(f"train_size_schedule names an epoch twice: {list(schedule)!r}")


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
        crop_pct: evaluation images are resized (shorter side) to ``floor(image_size /
            crop_pct)`` and centre-cropped to ``image_size``, as ``classify`` and exported
            models do; default 1.0 up to 64 px, 0.875 above. The model records it in its
            checkpoint.
        in_chans: ``imagefolder`` only: 3 (RGB, default) or 1 (grayscale); other datasets
            have their own.
        augment: ``"standard"`` (random crop with padding + flip where labels allow; for
            ``imagefolder`` the ImageNet policy), ``"none"``, or for ``imagefolder`` a policy
            of :func:`resnet_pl.data.recipe.train_transform`: ``"small"`` (shift + mild scale
            jitter, for images up to 64 px) or ``"photo"`` (the ImageNet policy).
        crop_padding: padding of the random crop for in-memory data (pixels).
        hflip: override the dataset's flip default (digits are not flipped).
        random_erasing: probability of erasing one random rectangle per training image.
        norm_mean, norm_std: override the per-dataset normalisation statistics.
        download: let torchvision download missing data (needs internet).
        train_subset, val_subset, test_subset: use only the first N items (quick runs, tests).
        bad_files: ``imagefolder`` policy for unreadable images: ``"skip"`` (logged with a count
            and the file list) or ``"error"`` (stop, naming the file).
        fake_size: number of training images of the ``fake`` dataset.
        train_size_schedule: progressive resizing: ``[[epoch, size], ...]`` trains from
            ``epoch`` on at ``size`` pixels (the batch is resized on its device, antialiased,
            before the crop), e.g. ``[[0, 20], [8, 28]]``. Epochs before the first entry and
            every evaluation use ``image_size``; end at ``image_size`` so the last epochs
            calibrate BatchNorm to the size the model is evaluated and deployed at.
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
        download: bool = False,
        train_subset: int | None = None,
        val_subset: int | None = None,
        test_subset: int | None = None,
        bad_files: Literal["skip", "error"] = "skip",
        fake_size: int = 1024,
        crop_pct: float | None = None,
        in_chans: int | None = None,
        train_size_schedule: Sequence[Sequence[int]] | None = None,
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
        if augment not in ("standard", "none", "small", "photo"):
            raise ConfigError(
                f"augment must be 'standard', 'none', 'small' or 'photo', got {augment!r}"
            )
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
        if crop_pct is not None and not 0.0 < crop_pct <= 1.0:
            raise ConfigError(f"crop_pct must be in (0, 1], got {crop_pct}")
        if in_chans is not None:
            native = SPECS[dataset].in_chans if dataset in SPECS else None
            if native is not None and in_chans != native:
                raise ConfigError(f"{dataset} has {native}-channel images; in_chans {in_chans}")
            if in_chans not in (1, 3):
                raise ConfigError(f"in_chans must be 1 or 3 for imagefolder, got {in_chans}")
        _check_norm(
            SPECS[dataset].in_chans if dataset in SPECS else in_chans or 3, norm_mean, norm_std
        )
        _check_size_schedule(train_size_schedule)
        if dataset == "imagefolder" and data_dir is None:
            raise ConfigError("dataset 'imagefolder' needs data_dir (a folder with train/ inside)")
        self.save_hyperparameters()
        # Resolved now: the model records the same keys (linked or copied from here), and
        # Lightning requires shared keys to agree.
        size = image_size or (SPECS[dataset].image_size if dataset in SPECS else 224)
        resolved = {
            "in_chans": SPECS[dataset].in_chans if dataset in SPECS else in_chans or 3,
            "crop_pct": crop_pct or default_crop_pct(size),
        }
        self.hparams.update(resolved)
        # save_hyperparameters() sets _hparams_initial; Lightning does not declare it.
        self._hparams_initial.update(resolved)  # type: ignore[attr-defined]
        self.dataset = dataset
        self.data_dir = Path(data_dir).expanduser() if data_dir else None
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size or 2 * batch_size
        self._folder_info: dict[str, Any] | None = None
        self._geometry: Any = None
        self.train_set: Dataset[Any] | None = None
        self.val_set: Dataset[Any] | None = None
        self.test_set: Dataset[Any] | None = None

    # ---- what the model needs to know (linked to the model by the CLI) -------------------------
    @property
    def spec(self) -> DatasetSpec:
        if self.dataset != "imagefolder":
            return SPECS[self.dataset]
        info = self._scan_folder()
        chans = self.hparams["in_chans"]
        mean, std = default_norm(chans)
        return DatasetSpec(
            len(info["classes"]), chans, 224, mean, std, True, tuple(info["classes"])
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

    @property
    def crop_pct(self) -> float:
        """The evaluation crop (see the class docstring); recorded by the model."""
        return float(self.hparams["crop_pct"])

    @property
    def data_cfg(self) -> dict[str, Any]:
        """The preprocessing config of evaluation, in the form ``classify``, exports and the
        weights hub read (:func:`resnet_pl.data.transforms.resolve_data_cfg`)."""
        return {
            "input_size": self.input_size,
            "mean": self.mean,
            "std": self.std,
            "interpolation": "bilinear",
            "crop_pct": self.crop_pct,
        }

    def _scan_folder(self) -> dict[str, Any]:
        if self._folder_info is None:
            from resnet_pl.data.folder import scan_image_folder

            assert self.data_dir is not None
            self._folder_info = scan_image_folder(self.data_dir)
        return self._folder_info

    # ---- Lightning hooks ------------------------------------------------------------------------
    def prepare_data(self) -> None:
        """Download once per node (Lightning calls this on one process only), when asked;
        ``setup`` then only reads files."""
        if self.hparams["download"] and self.dataset not in ("fake", "imagefolder"):
            _datasets.download(self.dataset, self._root)

    @property
    def _root(self) -> Path | None:
        """``data_dir``, or where :meth:`prepare_data` downloads when none is given."""
        if self.data_dir is None and self.hparams["download"]:
            return _datasets.default_root()
        return self.data_dir

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
        if self.dataset in _datasets.IDX_DATASETS:
            return _datasets.load_idx_dataset(self.dataset, split, self._root)
        if self.dataset == "fake":
            n = (
                self.hparams["fake_size"]
                if split == "train"
                else max(self.hparams["fake_size"] // 4, 1)
            )
            seed = self.hparams["seed"] + (0 if split == "train" else 1)
            return _datasets.make_fake_dataset(n, self.spec, self.image_size, seed)
        return _datasets.load_torchvision_dataset(self.dataset, split, self._root)

    def _setup_folder(self) -> None:
        from resnet_pl.data.folder import build_folder_datasets

        if self.train_set is None:
            sets = build_folder_datasets(
                self._scan_folder(),
                cfg=self.data_cfg,
                augment=self.hparams["augment"] != "none",
                policy="photo"
                if self.hparams["augment"] == "standard"
                else self.hparams["augment"],
                hflip=self._hflip,
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
        """uint8 images to the model's float input, on their device: augmented and normalised
        in training; in evaluation the second half of the one eval transform
        (:func:`resnet_pl.data.transforms.normalize`, after its geometry where the images are
        not the model's size yet), so validation, test and predict see exactly the tensors
        ``classify`` and exported models are fed. A bare tensor or a 1-tuple (no labels, as in
        Lightning's ``to_onnx(path, sample)``) keeps its form; float input is taken as
        already preprocessed."""
        if isinstance(batch, Tensor):
            return self._to_model_input(batch)
        if isinstance(batch, list | tuple) and batch and isinstance(batch[0], Tensor):
            return type(batch)([self._to_model_input(batch[0]), *batch[1:]])
        return batch

    def _to_model_input(self, x: Tensor) -> Tensor:
        if x.is_floating_point():
            return x
        trainer = self.trainer
        if trainer is None or not trainer.training:
            # imagefolder images got the geometry in the loader workers already.
            if self.dataset != "imagefolder" and (
                x.shape[-2:] != (self.image_size, self.image_size) or self.crop_pct != 1.0
            ):
                x = self._eval_geometry(x).as_subclass(Tensor)
            return normalize(x, self.mean, self.std)
        # imagefolder images are cropped and flipped per image in the workers already.
        augment = self.hparams["augment"] != "none" and self.dataset != "imagefolder"
        return batch_augment(
            x,
            size=self.train_size(trainer.current_epoch),
            mean=self.mean,
            std=self.std,
            crop_padding=self.hparams["crop_padding"] if augment else 0,
            hflip=augment and self._hflip,
            random_erasing=self.hparams["random_erasing"],
        )

    def train_size(self, epoch: int) -> int:
        """Side of the training images in ``epoch`` (``train_size_schedule``, else
        ``image_size``). A function of the epoch only, so a resumed run, every DDP rank and a
        rerun with the same seed see the same sizes."""
        size = self.image_size
        for start, side in sorted(
            self.hparams.get("train_size_schedule") or (), key=lambda e: e[0]
        ):
            if epoch >= start:
                size = int(side)
        return size

    @property
    def _eval_geometry(self) -> Any:
        if self._geometry is None:
            self._geometry = eval_geometry(self.data_cfg)
        return self._geometry

    @property
    def _hflip(self) -> bool:
        flip = self.hparams["hflip"]
        return self.spec.hflip if flip is None else bool(flip)
