"""Data modules for the dense tasks: VOC-layout segmentation and COCO-JSON detection.

Both train with :class:`~resnet_pl.lightning.sampling.ResumableDataLoader` (order a function of
seed and epoch, position saved in checkpoints: ``--ckpt_path last`` resumes mid-epoch exactly)
and expose ``num_classes`` / ``in_chans`` / ``class_names`` / ``mean`` / ``std``, which the CLI
links to the task and the task records in its checkpoints.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset

from resnet_pl.data.coco import CocoDetection, coco_categories, detection_transform
from resnet_pl.data.voc import VOCSegmentation, segmentation_transform
from resnet_pl.lightning.errors import ConfigError
from resnet_pl.lightning.sampling import ResumableDataLoader

log = logging.getLogger(__name__)


def _seed(seed: int) -> int:
    return seed * 1_000_003 + int(os.environ.get("PL_GLOBAL_SEED", "0"))


def _ranks(trainer: Any) -> tuple[int, int]:
    kwargs = getattr(trainer, "distributed_sampler_kwargs", None) if trainer else None
    if not kwargs:
        return 1, 0
    return int(kwargs.get("num_replicas", 1)), int(kwargs.get("rank", 0))


class _DenseDataModule(L.LightningDataModule):
    batch_size: int
    eval_batch_size: int
    num_workers: int
    seed: int
    collate_fn: Any = None

    # Each subclass's setup() fills the splits it has; the loaders below are shared.
    train_set: Any = None
    val_set: Any = None
    test_set: Any = None

    def train_dataloader(self) -> DataLoader[Any]:
        if self.train_set is None:
            raise ConfigError("no train split configured for this data module")
        return self._train_loader(self.train_set)

    def val_dataloader(self) -> DataLoader[Any]:
        return self._eval_loader(self.val_set, "val")

    def test_dataloader(self) -> DataLoader[Any]:
        return self._eval_loader(self.test_set, "test")

    def predict_dataloader(self) -> DataLoader[Any]:
        return self._eval_loader(self.test_set, "test")

    def _train_loader(self, ds: Dataset[Any]) -> DataLoader[Any]:
        ranks, rank = _ranks(self.trainer)
        return ResumableDataLoader(
            ds,
            self.batch_size,
            seed=_seed(self.seed),
            drop_last=len(ds) // ranks > self.batch_size,  # type: ignore[arg-type]
            num_replicas=ranks,
            rank=rank,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            collate_fn=self.collate_fn,
        )

    def _eval_loader(self, ds: Dataset[Any] | None, split: str) -> DataLoader[Any]:
        if ds is None:
            raise ConfigError(f"no {split} split configured for this data module")
        return DataLoader(
            ds,
            batch_size=self.eval_batch_size,
            shuffle=False,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            collate_fn=self.collate_fn,
        )


class VOCSegmentationDataModule(_DenseDataModule):
    """Segmentation data in VOC layout (:class:`~resnet_pl.data.voc.VOCSegmentation`).

    Args:
        root: folder with ``JPEGImages/``, ``SegmentationClass/`` and
            ``ImageSets/Segmentation/{train,val,test}.txt``.
        num_classes: classes including background; ``None`` reads ``root/scenes.json`` (what
            the scene generator writes).
        class_names: names of the classes (default: from ``scenes.json`` or numbers).
        in_chans: 1 (grayscale) or 3 (RGB): what the one decoder converts images to.
        ignore_index: mask value left out of loss and metrics.
        batch_size, eval_batch_size, num_workers, seed: loaders (seed: training order).
        crop_padding, hflip, image_size: training augmentation (random crop after padding,
            horizontal flip; masks move with the image); ``image_size`` crops to a square.
        norm_mean, norm_std: normalisation (default: the shipped Fashion-MNIST weights').
        bad_files: ``error`` (one line naming the first bad file) or ``skip`` (counted).
        train_split, val_split, test_split: the split names; ``predict`` uses the test split.
    """

    def __init__(
        self,
        root: str = "data/scenes",
        num_classes: int | None = None,
        class_names: list[str] | None = None,
        in_chans: int = 1,
        ignore_index: int = 255,
        batch_size: int = 16,
        eval_batch_size: int | None = None,
        num_workers: int = 0,
        seed: int = 0,
        crop_padding: int = 4,
        hflip: bool = True,
        image_size: int | None = None,
        norm_mean: Sequence[float] = (0.286,),
        norm_std: Sequence[float] = (0.353,),
        bad_files: str = "error",
        train_split: str = "train",
        val_split: str | None = "val",
        test_split: str | None = "test",
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.root = Path(root)
        self.num_classes, self.class_names = _classes_from_root(self.root, num_classes, class_names)
        for key, value in (("num_classes", self.num_classes), ("class_names", self.class_names)):
            # Resolved values, so the logged hparams agree with the task's.
            self.hparams[key] = value
            self._hparams_initial[key] = value  # type: ignore[attr-defined]
        self.in_chans, self.ignore_index = in_chans, ignore_index
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size or batch_size
        self.num_workers, self.seed = num_workers, seed
        self.mean, self.std = [float(v) for v in norm_mean], [float(v) for v in norm_std]
        if len(self.mean) != in_chans or len(self.std) != in_chans:
            raise ConfigError(
                f"norm_mean/norm_std need {in_chans} values (one per channel), got "
                f"{self.mean} / {self.std}"
            )
        self.train_set: VOCSegmentation | None = None
        self.val_set: VOCSegmentation | None = None
        self.test_set: VOCSegmentation | None = None

    def _dataset(self, split: str | None, train: bool) -> VOCSegmentation | None:
        if split is None:
            return None
        hp = self.hparams
        transform = segmentation_transform(
            train, hp["image_size"], hp["crop_padding"], hp["hflip"], self.ignore_index
        )
        return VOCSegmentation(
            self.root, split, num_classes=self.num_classes, in_chans=self.in_chans,
            ignore_index=self.ignore_index, transform=transform, mean=self.mean, std=self.std,
            bad_files=hp["bad_files"],
        )  # fmt: skip

    def setup(self, stage: str) -> None:
        hp = self.hparams
        if stage == "fit" and self.train_set is None:
            self.train_set = self._dataset(hp["train_split"], True)
        if stage in ("fit", "validate") and self.val_set is None:
            self.val_set = self._dataset(hp["val_split"], False)
        if stage in ("test", "predict") and self.test_set is None:
            self.test_set = self._dataset(hp["test_split"], False)

    @property
    def input_size(self) -> list[int] | None:
        """``(C, H, W)`` of the first image of the first split set up (what export uses as
        its default input shape)."""
        for ds in (self.train_set, self.val_set, self.test_set):
            if ds is not None and len(ds):
                from PIL import Image

                with Image.open(ds.samples[0][0]) as image:
                    return [self.in_chans, image.height, image.width]
        return None


def _classes_from_root(
    root: Path, num_classes: int | None, class_names: list[str] | None
) -> tuple[int, list[str] | None]:
    info = root / "scenes.json"
    if class_names is None and info.is_file():
        try:
            class_names = list(json.loads(info.read_text())["classes"])
        except (OSError, ValueError, KeyError, TypeError):
            class_names = None
    if num_classes is None:
        if class_names is None:
            raise ConfigError(
                f"set data num_classes (classes including background): {root} has no "
                "scenes.json to read them from"
            )
        num_classes = len(class_names)
    if class_names is not None and len(class_names) != num_classes:
        raise ConfigError(f"{len(class_names)} class_names for num_classes={num_classes}")
    return num_classes, class_names


def collate_detection(batch: list[Any]) -> tuple[list[Any], list[Any]]:
    """Images and targets as two lists (images may differ in size)."""
    images, targets = zip(*batch, strict=True)
    return list(images), list(targets)


class CocoDetectionDataModule(_DenseDataModule):
    """Detection data as COCO JSON (:class:`~resnet_pl.data.coco.CocoDetection`).

    Args:
        root: the dataset folder; ``image_dir`` and the annotation files are relative to it.
        image_dir: images folder (``file_name`` is relative to it).
        train_ann, val_ann, test_ann: ``instances_*.json`` files (``None``: no such split).
        in_chans: 1 or 3.
        batch_size, eval_batch_size, num_workers, seed: loaders.
        hflip, crop_padding: training augmentation (boxes move with the image).
        bad_files: ``error`` or ``skip``; empty_images: ``keep`` (background-only examples)
            or ``skip`` (counted).

    ``num_classes`` is the number of categories of ``train_ann`` (or of the first file given).
    Images reach the detector as floats in [0, 1]; it normalises them itself (``mean``/``std``).
    """

    def __init__(
        self,
        root: str = "data/scenes",
        image_dir: str = "JPEGImages",
        train_ann: str | None = "annotations/instances_train.json",
        val_ann: str | None = "annotations/instances_val.json",
        test_ann: str | None = "annotations/instances_test.json",
        in_chans: int = 1,
        batch_size: int = 8,
        eval_batch_size: int | None = None,
        num_workers: int = 0,
        seed: int = 0,
        hflip: bool = True,
        crop_padding: int = 0,
        norm_mean: Sequence[float] = (0.286,),
        norm_std: Sequence[float] = (0.353,),
        bad_files: str = "error",
        empty_images: str = "keep",
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.root = Path(root)
        first = next((a for a in (train_ann, val_ann, test_ann) if a), None)
        if first is None:
            raise ConfigError("give at least one of train_ann, val_ann, test_ann")
        self.class_names = coco_categories(self.root / first)
        self.num_classes = len(self.class_names)
        self.in_chans = in_chans
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size or batch_size
        self.num_workers, self.seed = num_workers, seed
        self.mean, self.std = [float(v) for v in norm_mean], [float(v) for v in norm_std]
        self.collate_fn = collate_detection
        self.train_set: CocoDetection | None = None
        self.val_set: CocoDetection | None = None
        self.test_set: CocoDetection | None = None

    def _dataset(self, ann: str | None, train: bool) -> CocoDetection | None:
        if ann is None:
            return None
        hp = self.hparams
        ds = CocoDetection(
            self.root / hp["image_dir"], self.root / ann, in_chans=self.in_chans,
            transform=detection_transform(train, hp["hflip"], hp["crop_padding"]),
            bad_files=hp["bad_files"], empty_images=hp["empty_images"],
        )  # fmt: skip
        if ds.class_names != self.class_names:
            raise ConfigError(f"{self.root / ann}: categories differ from the other splits'")
        return ds

    def setup(self, stage: str) -> None:
        hp = self.hparams
        if stage == "fit" and self.train_set is None:
            self.train_set = self._dataset(hp["train_ann"], True)
        if stage in ("fit", "validate") and self.val_set is None:
            self.val_set = self._dataset(hp["val_ann"], False)
        if stage in ("test", "predict") and self.test_set is None:
            self.test_set = self._dataset(hp["test_ann"], False)


# ---- prediction writers (added by the tasks for ``resnet-pl predict``) -------------------------
def _out_dir(trainer: L.Trainer) -> Path:
    for logger in trainer.loggers:
        if getattr(logger, "log_dir", None):
            return Path(str(logger.log_dir))
    return Path(trainer.default_root_dir)


def _names(trainer: L.Trainer, count: int) -> list[str]:
    dm = getattr(trainer, "datamodule", None)
    ds = getattr(dm, "test_set", None)
    samples = getattr(ds, "samples", None)
    if samples is not None and len(samples) == count:
        return [Path(s[1] if isinstance(s[1], Path) else s[0]).stem for s in samples]
    return [f"{i:05d}" for i in range(count)]


class MaskWriter(L.Callback):
    """After ``resnet-pl predict`` of a segmentation task: one index PNG per image in
    ``masks/`` next to the logs."""

    def on_predict_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        import numpy as np
        from PIL import Image

        batches: Any = trainer.predict_loop.predictions
        if not batches or not trainer.is_global_zero:
            return
        masks = torch.cat([b["masks"] for b in batches]).to(torch.uint8).cpu().numpy()
        out = _out_dir(trainer) / "masks"
        out.mkdir(parents=True, exist_ok=True)
        for name, mask in zip(_names(trainer, len(masks)), masks, strict=True):
            Image.fromarray(np.ascontiguousarray(mask), "L").save(out / f"{name}.png")
        log.info("masks: %s (%d files)", out, len(masks))


class BoxWriter(L.Callback):
    """After ``resnet-pl predict`` of a detection task: ``detections.json`` next to the logs."""

    def on_predict_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        batches: Any = trainer.predict_loop.predictions
        if not batches or not trainer.is_global_zero:
            return
        rows = [d for b in batches for d in b]
        names = _names(trainer, len(rows))
        out = _out_dir(trainer) / "detections.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(dict(zip(names, rows, strict=True)), indent=1))
        log.info("detections: %s (%d images)", out, len(rows))
