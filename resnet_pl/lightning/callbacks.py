"""Callbacks the CLI adds: plots at the end of fit/test, and atomic checkpoint files."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.loggers import CSVLogger

from resnet_pl.fileio import write_text
from resnet_pl.lightning.plots import plot_confusion_matrix, plot_training_curves
from resnet_pl.limits import csv_cell

log = logging.getLogger(__name__)


def _csv_dir(trainer: L.Trainer) -> Path | None:
    for logger in trainer.loggers:
        if isinstance(logger, CSVLogger):
            return Path(logger.log_dir)
    return None


class PlotCallback(L.Callback):
    """Writes ``training_curves.png`` after fit and ``confusion_matrix.png`` after test, next to
    the CSV logs (``metrics.csv``)."""

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        folder = _csv_dir(trainer)
        if folder is None or not trainer.is_global_zero:
            return
        for logger in trainer.loggers:
            logger.save()
        metrics = folder / "metrics.csv"
        if metrics.is_file():
            out = plot_training_curves(metrics, folder / "training_curves.png")
            log.info("training curves: %s", out)

    def on_test_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        folder = _csv_dir(trainer)
        matrix: Any = getattr(pl_module, "last_confusion_matrix", None)
        if folder is None or matrix is None or not trainer.is_global_zero:
            return
        folder.mkdir(parents=True, exist_ok=True)
        names = getattr(pl_module, "class_names", [str(i) for i in range(len(matrix))])
        out = plot_confusion_matrix(matrix, names, folder / "confusion_matrix.png")
        log.info("confusion matrix: %s", out)


class PredictionWriter(L.Callback):
    """Writes ``predictions.csv`` (index, predicted class, its name, probability) after
    ``resnet-pl predict``, next to the logs."""

    def on_predict_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        import csv
        import io

        loop_outputs: Any = trainer.predict_loop.predictions
        batches = (
            loop_outputs[0] if loop_outputs and isinstance(loop_outputs[0], list) else loop_outputs
        )
        folder = _csv_dir(trainer) or Path(trainer.default_root_dir)
        if not batches or not trainer.is_global_zero:
            return
        if not isinstance(batches[0], dict) or "probs" not in batches[0]:
            return  # not a classifier's (segmentation/detection tasks write their own files)
        out = folder / "predictions.csv"
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(["index", "class_index", "class_name", "probability"])
        row = 0
        for batch in batches:
            probs = batch["probs"].max(dim=1).values.tolist()
            for idx, name, p in zip(batch["indices"].tolist(), batch["names"], probs, strict=True):
                # Class names come from data folders / checkpoints: escaped for spreadsheets.
                writer.writerow([row, idx, csv_cell(name), f"{p:.6f}"])
                row += 1
        # Whole or not at all: a full disk keeps any previous predictions.csv as it was.
        write_text(out, buffer.getvalue(), hint="free space there or choose another --run_root")
        log.info("predictions: %s (%d rows)", out, row)


class WallClock(L.Callback):
    """Logs ``elapsed_s``, the wall time since ``fit`` started, at every validation, so
    ``metrics.csv`` shows accuracy against seconds (``benchmarks.time_to_accuracy`` reads it).
    Add it with ``--trainer.callbacks+=resnet_pl.lightning.callbacks.WallClock``."""

    def __init__(self) -> None:
        self._start: float | None = None

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        import time

        self._start = time.perf_counter()

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        import time

        if self._start is not None and not trainer.sanity_checking:
            pl_module.log("elapsed_s", time.perf_counter() - self._start)
