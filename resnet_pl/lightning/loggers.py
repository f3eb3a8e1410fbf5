"""Run logs and the saved ``config.yaml``, written so that a full disk never tears a file.

Lightning's ``CSVLogger`` appends to ``metrics.csv`` and rewrites it in place when a new metric
appears, and writes ``hparams.yaml`` and LightningCLI's ``config.yaml`` in place too: a disk
that fills during one of those writes leaves a truncated file behind, and the ``OSError`` comes
out of Lightning as a traceback. Here each of these files is rewritten whole through a
temporary file and a rename (:mod:`resnet_pl.fileio`), so it holds either its previous content
or its new content, and a failure is a :class:`~resnet_pl.fileio.WriteError` naming the file.

TensorBoard event files are append-only record streams written by a background thread; they
are not rewritten (that would cost a full copy per flush). A disk that fills while one is
written can leave its last record incomplete; TensorBoard's reader stops at such a record and
keeps every earlier one.
"""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path
from typing import Any

from lightning.pytorch.cli import SaveConfigCallback
from lightning.pytorch.core.saving import save_hparams_to_yaml
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter
from lightning.pytorch.utilities.rank_zero import rank_zero_only

from resnet_pl.fileio import make_dirs, write_text, write_with

_LOG_HINT = "free space there or choose another folder with --run_root"


class AtomicExperimentWriter(ExperimentWriter):
    """``metrics.csv`` and ``hparams.yaml`` rewritten whole at each save, atomically.

    All rows stay in memory (a few thousand numbers for a long run), so a save never has to
    read back a file that a previous, failed save might have cut short."""

    def __init__(self, log_dir: str) -> None:
        make_dirs(Path(log_dir), _LOG_HINT)
        # Before the base __init__, which calls _check_log_dir_exists (a subclass continuing an
        # earlier file puts its rows here).
        self._rows: list[dict[str, Any]] = []
        super().__init__(log_dir)

    def save(self) -> None:
        if not self.metrics:
            return
        self._record_new_keys()
        rows = self._rows + self.metrics
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=self.metrics_keys)
        writer.writeheader()
        writer.writerows(rows)
        write_text(self.metrics_file_path, buffer.getvalue(), hint=_LOG_HINT)
        # Only once the file holds them: a failed save keeps the rows for the next attempt.
        self._rows, self.metrics = rows, []

    def log_hparams(self, params: dict[str, Any]) -> None:
        self.hparams.update(params)
        path = os.path.join(self.log_dir, self.NAME_HPARAMS_FILE)
        write_with(path, lambda tmp: save_hparams_to_yaml(tmp, self.hparams), hint=_LOG_HINT)


class AtomicCSVLogger(CSVLogger):
    """``CSVLogger`` whose files are written by :class:`AtomicExperimentWriter`."""

    @property
    def experiment(self) -> AtomicExperimentWriter:  # type: ignore[override]
        if self._experiment is None:
            self._fs.makedirs(self.root_dir, exist_ok=True)
            self._experiment = AtomicExperimentWriter(log_dir=self.log_dir)
        return self._experiment  # type: ignore[return-value]


class AtomicTensorBoardLogger(TensorBoardLogger):
    """``TensorBoardLogger`` whose ``hparams.yaml`` is written atomically (event files are
    append-only streams; see the module docstring)."""

    @rank_zero_only
    def save(self) -> None:
        # The event writer's flush (what Logger.save does for TensorBoard), then hparams.yaml.
        self.experiment.flush()
        path = os.path.join(self.log_dir, self.NAME_HPARAMS_FILE)
        if os.path.isdir(self.log_dir) and not os.path.isfile(path):
            write_with(path, lambda tmp: save_hparams_to_yaml(tmp, self.hparams), hint=_LOG_HINT)


class AtomicSaveConfigCallback(SaveConfigCallback):
    """LightningCLI's ``config.yaml``, written atomically on rank 0 (always overwriting: a
    resumed run writes its own, complete configuration)."""

    def setup(self, trainer: Any, pl_module: Any, stage: str) -> None:
        if self.already_saved:
            return
        if self.save_to_log_dir:
            log_dir = trainer.log_dir  # broadcast from rank 0
            assert log_dir is not None
            if trainer.is_global_zero:
                text = self.parser.dump(self.config, skip_none=False)
                write_text(os.path.join(log_dir, self.config_filename), text, hint=_LOG_HINT)
        if trainer.is_global_zero:
            self.save_config(trainer, pl_module, stage)
            self.already_saved = True
        self.already_saved = trainer.strategy.broadcast(self.already_saved)


__all__ = [
    "AtomicCSVLogger",
    "AtomicExperimentWriter",
    "AtomicSaveConfigCallback",
    "AtomicTensorBoardLogger",
]
