"""``DetectionTask``: object detection with torchvision's Faster R-CNN, RetinaNet or FCOS on any
resnet-pl backbone (an FPN over its stages, :mod:`resnet_pl.backbones`).

Batches are ``(list of images float [0, 1] (C, H, W), list of targets)`` with ``boxes`` (XYXY
pixels) and ``labels`` in ``1..num_classes``
(:class:`~resnet_pl.lightning.dense_data.CocoDetectionDataModule`); crowd boxes
(``iscrowd``) are left out of training and passed to evaluation. Metrics: torchmetrics'
``MeanAveragePrecision`` (COCO rules, ``faster_coco_eval`` backend): ``map`` (AP at IoU
0.50:0.95), ``map_50``, ``map_75``, ``mar_100``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

from torch import Tensor, nn

from resnet_pl.lightning.dense import DenseOptimizer, DenseSchedule, DenseTask
from resnet_pl.lightning.errors import ConfigError

Detector = Literal["fasterrcnn", "retinanet", "fcos"]
_LOGGED = ("map", "map_50", "map_75", "map_small", "map_medium", "mar_100")


class DetectionTask(DenseTask):
    """Object detection.

    Args:
        arch: backbone architecture or ``"arch.tag"`` weights.
        num_classes: object categories, **without** background (the CLI links it from the
            data); the detector gets one more output for the background.
        in_chans: input channels (linked from the data).
        pretrained: load the hub weights named by ``arch`` into the backbone (its BatchNorms
            then frozen, as torchvision does).
        detector: ``fasterrcnn``, ``retinanet`` or ``fcos``.
        trainable_layers: of (last stage, ..., stem) that train; ``None``: torchvision's rule
            (3 with pretrained weights, all without).
        returned_layers: 1-based stages feeding the FPN (default: all; RetinaNet/FCOS: the
            last three).
        fpn_channels: FPN width (torchvision: 256; small images need far less).
        image_size: the detector's internal resize (``min_size = max_size``); set it to the
            images' size to keep them as they are. ``None``: torchvision's 800/1333.
        box_score_thresh, box_detections_per_img: post-processing.
        model_kwargs: further ResNet options.
        detector_kwargs: further options of torchvision's detector class (e.g.
            ``box_batch_size_per_image``, ``rpn_post_nms_top_n_train``).
        freeze_backbone, backbone_lr_scale, optimizer, lr, weight_decay, scheduler: as
            :class:`~resnet_pl.lightning.segmentation.SegmentationTask` (also ``warmup_epochs``).
        class_names, mean, std: filled from the data; ``mean``/``std`` also normalise inside
            the detector (default: the pretrained weights', else 0.5).
    """

    def __init__(
        self,
        arch: str = "resnet20",
        num_classes: int = 10,
        in_chans: int = 1,
        pretrained: bool = False,
        detector: Detector = "fasterrcnn",
        trainable_layers: int | None = None,
        returned_layers: list[int] | None = None,
        fpn_channels: int = 64,
        image_size: int | None = 64,
        box_score_thresh: float = 0.05,
        box_detections_per_img: int = 100,
        freeze_backbone: bool = False,
        backbone_lr_scale: float = 1.0,
        optimizer: DenseOptimizer = "sgd",
        lr: float = 0.02,
        weight_decay: float = 1e-4,
        scheduler: DenseSchedule = "cosine",
        warmup_epochs: float = 0.5,
        model_kwargs: dict[str, Any] | None = None,
        detector_kwargs: dict[str, Any] | None = None,
        class_names: list[str] | None = None,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
    ) -> None:
        super().__init__()
        if detector not in ("fasterrcnn", "retinanet", "fcos"):
            raise ConfigError(
                f"detector must be 'fasterrcnn', 'retinanet' or 'fcos', got {detector!r}"
            )
        if num_classes < 1:
            raise ConfigError(f"num_classes must be at least 1, got {num_classes}")
        self.save_hyperparameters()
        self._build()
        # The normalisation the detector really applies (its transform's), so a reload and
        # ``resnet-pl detect`` use the same.
        transform: Any = self.model.transform
        for key, value in (("mean", transform.image_mean), ("std", transform.image_std)):
            self.hparams[key] = [float(v) for v in value]

    from_data = ("class_names",)

    def build_model(self) -> nn.Module:
        return build_detection_model(self.hparams)

    def backbone(self) -> nn.Module:
        return self.model.backbone.body  # type: ignore[union-attr,return-value]

    def configure_metrics(self) -> None:
        from torchmetrics.detection import MeanAveragePrecision

        def make() -> MeanAveragePrecision:
            return MeanAveragePrecision(
                box_format="xyxy", iou_type="bbox", backend="faster_coco_eval"
            )

        self.val_map = make()
        self.test_map = make()

    # ---- steps --------------------------------------------------------------------------------
    def forward(self, images: list[Tensor]) -> list[dict[str, Tensor]]:
        """Detections (eval mode): one ``{"boxes", "labels", "scores"}`` per image."""
        return self.model(images)  # type: ignore[no-any-return]

    def training_step(self, batch: Any, batch_idx: int) -> Tensor:
        images, targets = batch
        train_targets = []
        for t in targets:
            keep = t["iscrowd"] == 0 if "iscrowd" in t else slice(None)
            train_targets.append({"boxes": t["boxes"][keep], "labels": t["labels"][keep]})
        losses = self.model(images, train_targets)
        loss = sum(losses.values())
        assert isinstance(loss, Tensor)
        self._check_loss(loss, batch_idx)
        self.log("train_loss", loss, prog_bar=True, on_step=True, on_epoch=True,
                 batch_size=len(images))  # fmt: skip
        for name, value in losses.items():
            self.log(f"train_{name}", value, on_step=False, on_epoch=True, batch_size=len(images))
        return loss

    def _eval_step(self, batch: Any, stage: str) -> None:
        images, targets = batch
        preds = self(images)
        metric = self.val_map if stage == "val" else self.test_map
        metric.update(
            [{k: p[k] for k in ("boxes", "scores", "labels")} for p in preds],
            [
                {"boxes": t["boxes"], "labels": t["labels"], "iscrowd": t["iscrowd"]}
                for t in targets
            ],
        )

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        self._eval_step(batch, "val")

    def test_step(self, batch: Any, batch_idx: int) -> None:
        self._eval_step(batch, "test")

    def on_validation_epoch_end(self) -> None:
        self._log_map(self.val_map, "val")

    def on_test_epoch_end(self) -> None:
        self._log_map(self.test_map, "test")

    def _log_map(self, metric: Any, stage: str) -> None:
        values = metric.compute()
        metric.reset()
        for key in _LOGGED:
            self.log(f"{stage}_{key}", values[key].float(), prog_bar=key in ("map", "map_50"))

    def predict_step(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> list[dict]:
        images = (
            batch[0] if isinstance(batch, list | tuple) and isinstance(batch[0], list) else batch
        )
        names = self.class_names
        out = []
        for det in self(images):
            labels = det["labels"].tolist()
            out.append({
                "boxes": [[round(float(v), 2) for v in b] for b in det["boxes"].tolist()],
                "scores": [round(float(s), 4) for s in det["scores"].tolist()],
                "labels": labels,
                "names": [names[i - 1] if 0 < i <= len(names) else str(i) for i in labels],
            })  # fmt: skip
        return out

    def configure_callbacks(self) -> list[Any]:
        trainer = self._trainer
        if trainer is not None and trainer.state.fn == "predict":
            from resnet_pl.lightning.dense_data import BoxWriter

            return [BoxWriter()]
        return []


def build_detection_model(hp: Mapping[str, Any]) -> nn.Module:
    """The detector a :class:`DetectionTask` with hyperparameters ``hp`` trains
    (:func:`resnet_pl.backbones.detection_from_hparams`), bad options as one
    :class:`ConfigError`."""
    from resnet_pl import backbones

    try:
        return backbones.detection_from_hparams(hp)
    except (TypeError, ValueError) as err:
        if type(err) not in (TypeError, ValueError):
            raise
        raise ConfigError(f"{hp['arch']}: {err}") from None
