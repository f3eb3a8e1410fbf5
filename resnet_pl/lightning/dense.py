"""``DenseTask``: what :class:`~resnet_pl.lightning.segmentation.SegmentationTask` and
:class:`~resnet_pl.lightning.detection.DetectionTask` share.

The hooks, in the order they run (the same style as
:class:`~resnet_pl.lightning.module.ResNetClassifier`):

- :meth:`build_model` -> ``self.model`` (a torchvision segmentation model or detector on a
  resnet-pl backbone, :mod:`resnet_pl.backbones`)
- :meth:`configure_losses`, :meth:`configure_metrics`
- :meth:`backbone` -> the module whose learning rate ``backbone_lr_scale`` scales and which
  ``freeze_backbone`` freezes
- :meth:`parameter_groups` -> optimizer groups; :meth:`configure_optimizers`

Hyperparameters are plain values (arch name, options), so checkpoints load with
``weights_only=True`` and ``load_from_checkpoint(path)`` needs no arguments (a pretrained
backbone's hub weights are read again, verified, then replaced by the checkpoint's).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Literal

import lightning as L
import torch
from torch import Tensor, nn

from resnet_pl.lightning.errors import ConfigError, NonFiniteLossError

DenseOptimizer = Literal["sgd", "adamw"]
DenseSchedule = Literal["cosine", "none"]


class DenseTask(L.LightningModule):
    """Base class of the dense-prediction tasks (not used directly). Subclasses call
    ``self.save_hyperparameters()`` and then :meth:`_build`."""

    # Hyperparameters filled from the data module when not given.
    from_data: tuple[str, ...] = ("class_names", "mean", "std")

    def _build(self) -> None:
        hp = self.hparams
        if hp["optimizer"] not in ("sgd", "adamw"):
            raise ConfigError(f"optimizer must be 'sgd' or 'adamw', got {hp['optimizer']!r}")
        if hp["scheduler"] not in ("cosine", "none"):
            raise ConfigError(f"scheduler must be 'cosine' or 'none', got {hp['scheduler']!r}")
        if not hp["lr"] > 0:
            raise ConfigError(f"lr must be positive, got {hp['lr']}")
        self.model = self.build_model()
        if hp["freeze_backbone"]:
            backbone = self.backbone()
            for p in backbone.parameters():
                p.requires_grad_(False)
        self.configure_losses()
        self.configure_metrics()

    # ---- hooks -----------------------------------------------------------------------------
    def build_model(self) -> nn.Module:
        raise NotImplementedError

    def configure_losses(self) -> None:
        """Set the loss modules (default: none; detectors compute their own)."""

    def configure_metrics(self) -> None:
        raise NotImplementedError

    def backbone(self) -> nn.Module:
        """The pretrained part (default: ``self.model.backbone``)."""
        return self.model.backbone  # type: ignore[return-value]

    def parameter_groups(self) -> list[dict[str, Any]]:
        """No weight decay on 1-D parameters (norms, biases); the backbone at
        ``lr * backbone_lr_scale``; frozen parameters left out."""
        hp = self.hparams
        in_backbone = {id(p) for p in self.backbone().parameters()}
        groups: dict[tuple[bool, bool], list[nn.Parameter]] = {}
        for p in self.model.parameters():
            if p.requires_grad:
                groups.setdefault((id(p) in in_backbone, p.ndim > 1), []).append(p)
        return [
            {
                "params": params,
                "weight_decay": hp["weight_decay"] if decay else 0.0,
                "lr": hp["lr"] * (hp["backbone_lr_scale"] if is_backbone else 1.0),
            }
            for (is_backbone, decay), params in sorted(groups.items())
        ]

    def configure_optimizers(self) -> Any:
        hp = self.hparams
        groups = self.parameter_groups()
        if hp["optimizer"] == "sgd":
            opt: torch.optim.Optimizer = torch.optim.SGD(
                groups, lr=hp["lr"], momentum=0.9, nesterov=True
            )
        else:
            opt = torch.optim.AdamW(groups, lr=hp["lr"])
        if hp["scheduler"] == "none":
            return opt
        total = max(int(self.trainer.estimated_stepping_batches), 1)
        epochs = max(self.trainer.max_epochs or 1, 1)
        warmup = int(total * hp["warmup_epochs"] / epochs)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, _WarmupCosine(warmup, total))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    # ---- shared behaviour --------------------------------------------------------------------
    def _check_loss(self, loss: Tensor, batch_idx: int) -> None:
        if not torch.isfinite(loss):
            raise NonFiniteLossError(
                f"loss is {loss.item()} at global step {self.global_step} (epoch "
                f"{self.current_epoch}, batch {batch_idx}); training stopped so the last good "
                "checkpoint is kept. Lower the learning rate or check the data."
            )

    def on_train_epoch_start(self) -> None:
        if self.hparams["freeze_backbone"]:
            self.backbone().eval()  # frozen BatchNorm statistics stay as loaded

    @property
    def class_names(self) -> list[str]:
        names = self.hparams.get("class_names")
        return list(names) if names else [str(i) for i in range(self.hparams["num_classes"])]

    def setup(self, stage: str) -> None:
        """Check the data agrees with the model and record its class names and normalisation
        in the hyperparameters (so checkpoints, export and ``segment``/``detect`` carry them)."""
        dm = getattr(self.trainer, "datamodule", None) if self._trainer else None
        if dm is None:
            return
        for key in ("num_classes", "in_chans"):
            value = getattr(dm, key, None)
            if value is not None and value != self.hparams[key]:
                raise ConfigError(
                    f"the model has {key}={self.hparams[key]} but the data has {value}; set "
                    f"the model's {key} to {value} (the resnet-pl CLI links it automatically)"
                )
        for key in self.from_data:
            value = getattr(dm, key, None)
            if self.hparams.get(key) is None and value is not None:
                self.hparams[key] = list(value)
                self._hparams_initial[key] = list(value)  # type: ignore[index,operator,assignment]


class _WarmupCosine:
    """Linear warm-up over ``warmup`` steps, then cosine to 0 at ``total`` (picklable)."""

    def __init__(self, warmup: int, total: int) -> None:
        self.warmup, self.total = warmup, total

    def __call__(self, step: int) -> float:
        if step < self.warmup:
            return (step + 1) / self.warmup
        progress = min(1.0, (step - self.warmup) / max(1, self.total - self.warmup))
        return 0.5 * (1.0 + math.cos(math.pi * progress))


def _plain(values: Sequence[float] | None) -> list[float] | None:
    return None if values is None else [float(v) for v in values]
