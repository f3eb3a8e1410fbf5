"""``SegmentationTask``: semantic segmentation with DeepLabV3 or FCN on any resnet-pl backbone.

Batches are ``(image float (N, C, H, W), mask int64 (N, H, W))``
(:class:`~resnet_pl.lightning.dense_data.VOCSegmentationDataModule`). Metrics (torchmetrics,
ignoring ``ignore_index``): ``miou`` (mean IoU over the classes, background included),
``pixel_acc`` (pixel accuracy) and, for validation and test, the IoU of every class
(``{stage}_iou_class/<name>``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchmetrics import MetricCollection
from torchmetrics.classification import MulticlassAccuracy, MulticlassJaccardIndex

from resnet_pl.lightning.dense import DenseOptimizer, DenseSchedule, DenseTask
from resnet_pl.lightning.errors import ConfigError

SegmentationHead = Literal["deeplabv3", "fcn"]


class SegmentationTask(DenseTask):
    """Semantic segmentation.

    Args:
        arch: backbone architecture (``resnet_pl.list_models()``) or ``"arch.tag"`` weights.
        num_classes: classes including background (the CLI links it from the data).
        in_chans: input channels (linked from the data); a pretrained stem with other channels
            is adapted as :func:`resnet_pl.create_model` does.
        pretrained: load the hub weights named by ``arch`` into the backbone.
        head: ``deeplabv3`` (ASPP) or ``fcn``.
        output_stride: of the backbone (dilating later stages); ``None``: torchvision's rule.
        atrous_rates: ASPP rates for ``deeplabv3`` (scale to the feature map's size).
        aux_loss: add an auxiliary FCN head on the second-to-last stage, weight ``aux_weight``.
        ignore_index: mask value left out of the loss and the metrics.
        freeze_backbone: keep the backbone's weights and BatchNorm statistics fixed.
        backbone_lr_scale: backbone learning rate = ``lr * backbone_lr_scale``.
        optimizer, lr, weight_decay, scheduler, warmup_epochs: the optimisation.
        model_kwargs: further ResNet options (``drop_path_rate`` ...).
        class_names, mean, std, input_size: filled from the data module (``input_size``: the
            first training image's ``(C, H, W)``); saved for export and ``segment``.
    """

    from_data = ("class_names", "mean", "std", "input_size")

    def __init__(
        self,
        arch: str = "resnet20",
        num_classes: int = 11,
        in_chans: int = 1,
        pretrained: bool = False,
        head: SegmentationHead = "deeplabv3",
        output_stride: int | None = None,
        atrous_rates: Sequence[int] = (2, 4, 6),
        aux_loss: bool = False,
        aux_weight: float = 0.4,
        ignore_index: int = 255,
        freeze_backbone: bool = False,
        backbone_lr_scale: float = 1.0,
        optimizer: DenseOptimizer = "adamw",
        lr: float = 1e-3,
        weight_decay: float = 1e-4,
        scheduler: DenseSchedule = "cosine",
        warmup_epochs: float = 0.0,
        model_kwargs: dict[str, Any] | None = None,
        class_names: list[str] | None = None,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        input_size: Sequence[int] | None = None,
    ) -> None:
        super().__init__()
        if head not in ("deeplabv3", "fcn"):
            raise ConfigError(f"head must be 'deeplabv3' or 'fcn', got {head!r}")
        if num_classes < 2:
            raise ConfigError(f"num_classes must be at least 2 (background + 1), got {num_classes}")
        self.save_hyperparameters()
        self._build()

    def build_model(self) -> nn.Module:
        return build_segmentation_model(self.hparams)

    def configure_losses(self) -> None:
        self.criterion = nn.CrossEntropyLoss(ignore_index=self.hparams["ignore_index"])

    def configure_metrics(self) -> None:
        n, ignore = self.hparams["num_classes"], self.hparams["ignore_index"]
        collection = MetricCollection({
            "miou": MulticlassJaccardIndex(n, average="macro", ignore_index=ignore),
            "pixel_acc": MulticlassAccuracy(n, average="micro", ignore_index=ignore),
        })  # fmt: skip
        self.train_metrics = collection.clone(prefix="train_")
        self.val_metrics = collection.clone(prefix="val_")
        self.test_metrics = collection.clone(prefix="test_")
        self.val_iou_class = MulticlassJaccardIndex(n, average=None, ignore_index=ignore)
        self.test_iou_class = MulticlassJaccardIndex(n, average=None, ignore_index=ignore)

    def compute_loss(self, outputs: dict[str, Tensor], masks: Tensor) -> Tensor:
        loss = self.criterion(outputs["out"], masks)
        if "aux" in outputs:
            loss = loss + self.hparams["aux_weight"] * self.criterion(outputs["aux"], masks)
        return loss

    # ---- steps --------------------------------------------------------------------------------
    def forward(self, x: Tensor) -> Tensor:
        """Logits ``(N, num_classes, H, W)`` (the main head's)."""
        return self.model(x)["out"]

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        x, masks = batch
        outputs = self.model(x)
        loss = self.compute_loss(outputs, masks)
        self._check_loss(loss, batch_idx)
        self.log("train_loss", loss, prog_bar=True, on_step=True, on_epoch=True)
        self.train_metrics.update(outputs["out"].detach().argmax(1), masks)
        self.log_dict(self.train_metrics, on_step=False, on_epoch=True)
        return loss

    def _eval_step(self, batch: tuple[Tensor, Tensor], stage: str) -> Tensor:
        x, masks = batch
        logits = self(x)
        loss = F.cross_entropy(logits, masks, ignore_index=self.hparams["ignore_index"])
        preds = logits.argmax(1)
        metrics = self.val_metrics if stage == "val" else self.test_metrics
        per_class = self.val_iou_class if stage == "val" else self.test_iou_class
        metrics.update(preds, masks)
        per_class.update(preds, masks)
        self.log(f"{stage}_loss", loss, prog_bar=True, sync_dist=True)
        self.log_dict(metrics, prog_bar=stage == "val")
        return loss

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        return self._eval_step(batch, "val")

    def test_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        return self._eval_step(batch, "test")

    def on_validation_epoch_end(self) -> None:
        self._log_per_class(self.val_iou_class, "val")

    def on_test_epoch_end(self) -> None:
        self._log_per_class(self.test_iou_class, "test")

    def _log_per_class(self, metric: MulticlassJaccardIndex, stage: str) -> None:
        values = metric.compute()
        metric.reset()
        for name, v in zip(self.class_names, values, strict=False):
            self.log(f"{stage}_iou_class/{_slug(name)}", v)

    def predict_step(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> dict[str, Any]:
        """Class-index masks ``(N, H, W)`` and the probability of the chosen class."""
        x = batch[0] if isinstance(batch, list | tuple) else batch
        probs = self(x).softmax(1)
        conf, masks = probs.max(1)
        return {"masks": masks, "confidence": conf}

    def configure_callbacks(self) -> list[Any]:
        trainer = self._trainer
        if trainer is not None and trainer.state.fn == "predict":
            from resnet_pl.lightning.dense_data import MaskWriter

            return [MaskWriter()]
        return []


def build_segmentation_model(hp: Mapping[str, Any]) -> nn.Module:
    """The network a :class:`SegmentationTask` with hyperparameters ``hp`` trains
    (:func:`resnet_pl.backbones.segmentation_from_hparams`), bad options as one
    :class:`ConfigError`."""
    from resnet_pl import backbones

    try:
        return backbones.segmentation_from_hparams(hp)
    except (TypeError, ValueError) as err:
        if type(err) not in (TypeError, ValueError):
            raise  # our own, more specific errors (weights, data)
        raise ConfigError(f"{hp['arch']}: {err}") from None


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in name.lower()).strip("_") or "class"


def predict_masks(model: nn.Module, x: Tensor) -> Tensor:
    """Argmax masks of a segmentation model (``{"out": ...}`` dict or logits)."""
    out = model(x)
    logits = out["out"] if isinstance(out, dict) else out
    return torch.as_tensor(logits).argmax(1)
