"""The small base every resnet-pl data module shares: batch sizes, workers, the validation
split's seed, subsets, normalisation, the evaluation crop, and the step from a loaded batch to
the model's input on its device (:meth:`ImageDataBase.on_after_batch_transfer`).

A data path (in-memory tensors, image folders, a stream) subclasses it and supplies what
differs: :attr:`~ImageDataBase.spec` (what the data is), ``setup`` (the datasets), and the two
hooks :meth:`~ImageDataBase.eval_batch` / :meth:`~ImageDataBase.augment_options` (what still
happens to a batch on the device). It is registered by name in
:data:`resnet_pl.lightning.data.DATA_MODULES`.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import lightning as L
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Subset

from resnet_pl.data.errors import DataNotFoundError
from resnet_pl.data.specs import DatasetSpec, default_crop_pct
from resnet_pl.data.transforms import normalize
from resnet_pl.lightning.augment import batch_augment
from resnet_pl.lightning.errors import ConfigError
from resnet_pl.lightning.sampling import ResumableDataLoader


def check_norm(chans: int, mean: Sequence[float] | None, std: Sequence[float] | None) -> None:
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


def check_size_schedule(schedule: Sequence[Sequence[int]] | None) -> None:
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


def check_positive_ints(**values: Any) -> None:
    for name, value in values.items():
        if value is not None and (not isinstance(value, int) or value < 1):
            raise ConfigError(f"{name} must be a positive integer, got {value!r}")


class ImageDataBase(L.LightningDataModule):
    """Shared options and machinery of resnet-pl's data modules (see the module docstring).

    Args:
        dataset: the dataset's name (recorded by the model).
        data_dir: where the data lies.
        batch_size: per device (with DDP the global batch is ``batch_size * world_size``).
        eval_batch_size: for validation/test/predict; defaults to ``2 * batch_size``.
        num_workers: loader processes; ``None``: the path's default.
        val_fraction: share of the training set held out for validation when the data has no
            validation split, drawn with ``seed``.
        seed: seed of the validation split (and of the training order, with the run's seed).
        image_size: side the model sees; ``None``: the data's own.
        augment: ``"standard"`` or ``"none"``.
        random_erasing: probability of erasing one random rectangle per training image.
        norm_mean, norm_std: override the data's normalisation statistics.
        train_subset, val_subset, test_subset: use only the first N items.
        crop_pct: evaluation resize-then-centre-crop ratio; default 1.0 up to 64 px, else 0.875.
        train_size_schedule: progressive resizing, ``[[epoch, size], ...]``.
    """

    #: Loader processes when ``num_workers`` is None.
    default_workers: int = 0

    def __init__(
        self,
        dataset: str,
        data_dir: str | None = None,
        batch_size: int = 128,
        eval_batch_size: int | None = None,
        num_workers: int | None = None,
        val_fraction: float = 0.1,
        seed: int = 0,
        image_size: int | None = None,
        augment: Literal["standard", "none", "small", "photo"] = "standard",
        random_erasing: float = 0.0,
        norm_mean: Sequence[float] | None = None,
        norm_std: Sequence[float] | None = None,
        train_subset: int | None = None,
        val_subset: int | None = None,
        test_subset: int | None = None,
        crop_pct: float | None = None,
        train_size_schedule: Sequence[Sequence[int]] | None = None,
    ) -> None:
        super().__init__()
        if not 0.0 <= val_fraction < 1.0:
            raise ConfigError(f"val_fraction must be in [0, 1), got {val_fraction}")
        if augment not in ("standard", "none", "small", "photo"):
            raise ConfigError(
                f"augment must be 'standard', 'none', 'small' or 'photo', got {augment!r}"
            )
        if not 0.0 <= random_erasing <= 1.0:
            raise ConfigError(f"random_erasing must be a probability, got {random_erasing}")
        check_positive_ints(
            batch_size=batch_size,
            eval_batch_size=eval_batch_size,
            image_size=image_size,
            train_subset=train_subset,
            val_subset=val_subset,
            test_subset=test_subset,
        )
        if num_workers is not None and (not isinstance(num_workers, int) or num_workers < 0):
            raise ConfigError(f"num_workers must be an integer >= 0, got {num_workers!r}")
        if crop_pct is not None and not 0.0 < crop_pct <= 1.0:
            raise ConfigError(f"crop_pct must be in (0, 1], got {crop_pct}")
        check_size_schedule(train_size_schedule)
        self.dataset = dataset
        self.data_dir = Path(data_dir).expanduser() if data_dir else None
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size or 2 * batch_size
        self.train_set: Dataset[Any] | None = None
        self.val_set: Dataset[Any] | None = None
        self.test_set: Dataset[Any] | None = None
        self._geometry: Any = None

    def _resolve(self, in_chans: int, native_size: int) -> None:
        """Record the resolved channels and crop in the hyperparameters (called by subclasses
        after ``save_hyperparameters``): the model records the same keys, and Lightning
        requires shared keys to agree."""
        size = self.hparams["image_size"] or native_size
        resolved = {
            "in_chans": in_chans,
            "crop_pct": self.hparams["crop_pct"] or default_crop_pct(size),
        }
        self.hparams.update(resolved)
        # save_hyperparameters() sets _hparams_initial; Lightning does not declare it.
        self._hparams_initial.update(resolved)  # type: ignore[attr-defined]

    # ---- what the model needs to know (linked to the model by the CLI) ----------------------
    @property
    def spec(self) -> DatasetSpec:
        """Classes, channels, native size, statistics of the data (each path supplies it)."""
        raise NotImplementedError

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
        """The evaluation crop; recorded by the model."""
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

    @property
    def _hflip(self) -> bool:
        """Whether flipping keeps the label (the model's flip TTA checks it)."""
        flip = self.hparams.get("hflip")
        return self.spec.hflip if flip is None else bool(flip)

    # ---- hooks of a data path ------------------------------------------------------------------
    def eval_batch(self, x: Tensor) -> Tensor:
        """Geometry still to apply to a uint8 evaluation batch on its device (default: none,
        the loader delivered images at the model's size)."""
        return x

    def augment_options(self) -> dict[str, Any]:
        """Options of :func:`~resnet_pl.lightning.augment.batch_augment` for a training batch
        on its device (default: random erasing only)."""
        return {"random_erasing": self.hparams["random_erasing"]}

    def collate_fn(self, ds: Dataset[Any]) -> Any:
        """The loaders' ``collate_fn`` for ``ds`` (default: PyTorch's)."""
        return None

    def subset(self, ds: Dataset[Any], n: int) -> Dataset[Any]:
        """The first ``n`` items of ``ds``."""
        return Subset(ds, range(min(n, len(ds))))  # type: ignore[arg-type]

    def missing_split(self, split: str) -> Exception:
        """The one-line error for a split the data does not have (``resnet-pl test`` on data
        without a test split, ``fit --data.val_fraction 0`` without a validation split)."""
        if self.train_set is None and self.val_set is None and self.test_set is None:
            return ConfigError(f"no {split} data: call setup() before asking for its loader")
        if split == "validation":
            return ConfigError(
                f"no validation data: --data.val_fraction is {self.hparams['val_fraction']}; set "
                f"it to e.g. 0.1, or train without validation (--trainer.limit_val_batches 0)"
            )
        return DataNotFoundError(
            f"dataset {self.hparams.get('dataset')!r} has no {split} split here"
        )

    # ---- loaders -------------------------------------------------------------------------------
    def _loader(self, ds: Dataset[Any] | None, split: str, subset: int | None) -> DataLoader[Any]:
        if ds is None:
            raise self.missing_split(split)
        if subset is not None:
            ds = self.subset(ds, subset)
        workers = self.hparams["num_workers"]
        if workers is None:
            workers = self.default_workers
        train = split == "train"
        common: dict[str, Any] = {
            "num_workers": workers,
            "pin_memory": torch.cuda.is_available(),
            "persistent_workers": workers > 0,
            "collate_fn": self.collate_fn(ds),
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

    # ---- from a loaded batch to the model's input ------------------------------------------------
    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """uint8 images to the model's float input, on their device: augmented and normalised
        in training; in evaluation the second half of the one eval transform
        (:func:`resnet_pl.data.transforms.normalize`, after :meth:`eval_batch`), so validation,
        test and predict see exactly the tensors ``classify`` and exported models are fed. A
        bare tensor or a 1-tuple (no labels, as in Lightning's ``to_onnx(path, sample)``) keeps
        its form; float input is taken as already preprocessed."""
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
            return normalize(self.eval_batch(x), self.mean, self.std)
        return batch_augment(
            x,
            size=self.train_size(trainer.current_epoch),
            mean=self.mean,
            std=self.std,
            **self.augment_options(),
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
