"""Exponential moving average of the weights, on Lightning's own ``WeightAveraging``.

Lightning 2.6's ``EMAWeightAveraging`` already does what a training run needs: the average
is swapped in for validation, written as the checkpoint's ``state_dict`` (so ``resnet-pl
test``, ``classify``, ``hub publish`` and ONNX export all use the averaged weights with no
extra code), the raw weights are kept for resuming, and the average replaces the weights when
fit ends. It falls short in one way for short schedules: a fixed decay of 0.999 averages over
~1,000 steps, longer than a whole 10-epoch run of ~900 steps, so early random weights would
dominate. :class:`EMA` warms the decay up as ``min(decay, (1 + n) / (10 + n))`` after ``n``
updates (the rule of TensorFlow's ExponentialMovingAverage with ``num_updates``), which leaves
long runs unchanged.
"""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import WeightAveraging
from torch import Tensor


def warmup_ema_fn(decay: float) -> Any:
    """``avg_fn`` for ``torch.optim.swa_utils.AveragedModel`` with a warmed-up decay."""

    def ema_update(averaged: Tensor, current: Tensor, num_averaged: Tensor) -> Tensor:
        d = torch.clamp((1.0 + num_averaged) / (10.0 + num_averaged), max=decay)
        d = d.to(averaged.dtype) if averaged.is_floating_point() else d
        return averaged * d + current * (1 - d)

    return ema_update


class EMA(WeightAveraging):
    """EMA of all weights and BatchNorm statistics, updated every ``every_n_steps`` steps.

    ``ResNetClassifier(ema_decay=...)`` adds it for ``fit``; it can also be passed to a
    ``Trainer(callbacks=[EMA(0.99)])`` with any LightningModule.
    """

    def __init__(self, decay: float = 0.99, every_n_steps: int = 1) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"ema decay must be in (0, 1), got {decay}")
        if every_n_steps < 1:
            raise ValueError(f"every_n_steps must be >= 1, got {every_n_steps}")
        super().__init__(use_buffers=True, avg_fn=warmup_ema_fn(decay))
        self.decay = decay
        self.every_n_steps = every_n_steps

    def should_update(self, step_idx: int | None = None, epoch_idx: int | None = None) -> bool:
        return step_idx is not None and (step_idx + 1) % self.every_n_steps == 0

    def on_load_checkpoint(
        self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        # Outside fit (test, validate, predict) the checkpoint's state_dict already holds the
        # averaged weights, which is what evaluation should use: nothing to restore, no warning.
        if self._average_model is None:
            return
        super().on_load_checkpoint(trainer, pl_module, checkpoint)
