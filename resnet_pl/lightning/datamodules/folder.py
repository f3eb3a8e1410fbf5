"""The folder data path: a user's own images in class folders (``train/<class>/*.jpg``, and
optionally ``val/``, ``test/``), decoded by :mod:`resnet_pl.data.decode` with per-image
transforms in loader worker processes."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any, Literal

from resnet_pl.data.errors import DataNotFoundError
from resnet_pl.data.specs import DatasetSpec, default_norm
from resnet_pl.lightning.datamodules.base import ImageDataBase, check_norm
from resnet_pl.lightning.errors import ConfigError


class FolderDataModule(ImageDataBase):
    """Class folders on disk, resized/cropped/flipped per image in the loader workers (the
    device only normalises, erases and applies ``train_size_schedule``). Options beyond the
    shared ones (:class:`~resnet_pl.lightning.datamodules.base.ImageDataBase`):

    Args:
        data_dir: a folder with ``train/`` (and optionally ``val/``, ``test/``) holding one
            sub-folder per class (required).
        in_chans: 3 (RGB, default) or 1 (grayscale).
        bad_files: unreadable images: ``"skip"`` (logged with a count and the file list) or
            ``"error"`` (stop, naming the file).
        image_size: default 224.
    """

    default_workers = min(8, os.cpu_count() or 1)

    def __init__(
        self,
        dataset: str = "imagefolder",
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
        bad_files: Literal["skip", "error"] = "skip",
        crop_pct: float | None = None,
        in_chans: int | None = None,
        train_size_schedule: Sequence[Sequence[int]] | None = None,
        hflip: bool | None = None,
    ) -> None:
        super().__init__(
            dataset, data_dir, batch_size, eval_batch_size, num_workers, val_fraction, seed,
            image_size, augment, random_erasing, norm_mean, norm_std, train_subset, val_subset,
            test_subset, crop_pct, train_size_schedule,
        )  # fmt: skip
        if bad_files not in ("skip", "error"):
            raise ConfigError(f"bad_files must be 'skip' or 'error', got {bad_files!r}")
        if in_chans is not None and in_chans not in (1, 3):
            raise ConfigError(f"in_chans must be 1 or 3 for imagefolder, got {in_chans}")
        check_norm(in_chans or 3, norm_mean, norm_std)
        if data_dir is None:
            raise ConfigError(f"dataset {dataset!r} needs data_dir (a folder with train/ inside)")
        self.save_hyperparameters()
        self._resolve(in_chans or 3, 224)
        self._folder_info: dict[str, Any] | None = None

    @property
    def spec(self) -> DatasetSpec:
        info = self._scan_folder()
        chans = self.hparams["in_chans"]
        mean, std = default_norm(chans)
        return DatasetSpec(
            len(info["classes"]), chans, 224, mean, std, True, tuple(info["classes"])
        )

    def _scan_folder(self) -> dict[str, Any]:
        if self._folder_info is None:
            from resnet_pl.data.folder import scan_image_folder

            assert self.data_dir is not None
            self._folder_info = scan_image_folder(self.data_dir)
        return self._folder_info

    def missing_split(self, split: str) -> Exception:
        """Names the folder that is missing (``test/``, or ``val/`` with ``val_fraction`` 0)."""
        if self.train_set is None or self.data_dir is None or split == "train":
            return super().missing_split(split)
        folder = self.data_dir / ("val" if split == "validation" else split)
        if split == "test":
            return DataNotFoundError(
                f"{folder} does not exist: testing and predicting on an image folder need a "
                f"test/ folder with one subfolder per class (or run validate, which uses val/ "
                f"or the share of train/ held out by --data.val_fraction)"
            )
        return ConfigError(
            f"no validation data: {folder} does not exist and --data.val_fraction is "
            f"{self.hparams['val_fraction']}; add a val/ folder, set --data.val_fraction to e.g. "
            f"0.1, or train without validation (--trainer.limit_val_batches 0)"
        )

    def setup(self, stage: str | None = None) -> None:
        from resnet_pl.data.folder import build_folder_datasets

        if self.train_set is None:
            sets = build_folder_datasets(
                self._scan_folder(),
                cfg=self.data_cfg,
                augment=self.hparams["augment"] != "none",
                # "standard" for a folder is the ImageNet policy; the recipe picks "small"
                # for small images (resnet_pl.data.recipe.train_transform).
                policy="photo"
                if self.hparams["augment"] == "standard"
                else self.hparams["augment"],
                hflip=self._hflip,
                val_fraction=self.hparams["val_fraction"],
                seed=self.hparams["seed"],
                bad_files=self.hparams["bad_files"],
            )
            self.train_set, self.val_set, self.test_set = sets
