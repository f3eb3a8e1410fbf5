"""Ctrl-C during ``fit``: stop after the current optimizer step with a resumable checkpoint.

Lightning's own answer to ``KeyboardInterrupt`` is to tear down and ``sys.exit(1)`` wherever
the interrupt landed -- possibly between a forward pass and its optimizer step -- without a
checkpoint. :class:`GracefulInterrupt` instead turns the first SIGINT of the training loop into
a request that is honoured at the end of the step in progress (after validation, if that is
running): it writes ``last_step.ckpt`` in the checkpoint folder there -- the same state, at the
same point of the loop, as the periodic mid-epoch checkpoints, so resuming from it with
``--ckpt_path last`` is exact -- and raises :class:`TrainingInterrupted`. A second Ctrl-C stops
at once, without a new checkpoint (the newest periodic one is kept intact).
"""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from types import FrameType
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import ModelCheckpoint


class TrainingInterrupted(BaseException):
    """Ctrl-C (SIGINT) stopped a run; ``checkpoint`` is the resumable file written for it, or
    ``None`` when it stopped before one could be written.

    Like ``KeyboardInterrupt`` it is not an ``Exception``, so no ``except Exception`` swallows
    it; unlike ``KeyboardInterrupt``, Lightning lets it propagate (after its ``on_exception``
    hooks and teardown) instead of calling ``sys.exit(1)``. ``resnet-pl`` prints its message
    as one line and exits with status 130, the shell's code for SIGINT."""

    def __init__(self, message: str, checkpoint: Path | None = None) -> None:
        super().__init__(message)
        self.checkpoint = checkpoint


class GracefulInterrupt(L.Callback):
    """First Ctrl-C while training: finish the current step, save ``last_step.ckpt``, raise
    :class:`TrainingInterrupted`. Second Ctrl-C: raise it at once.

    Only active in the main thread (where Python delivers signals) between ``on_train_start``
    and the end of training; the previous SIGINT handler is restored afterwards. Under DDP the
    ranks agree on stopping at the same step (one boolean all-reduce per step), so they save
    together and none waits for the others forever.
    """

    FILENAME = "last_step.ckpt"

    def __init__(self) -> None:
        self._requested = False
        self._previous: Any = None
        self._installed = False

    # ---- the handler -------------------------------------------------------------------------
    def _on_sigint(self, signum: int, frame: FrameType | None) -> None:
        if self._requested:
            raise TrainingInterrupted(
                "interrupted (second Ctrl-C) before the current step could be checkpointed; the "
                "newest periodic checkpoint is intact: resume with --ckpt_path last"
            )
        self._requested = True

    def _install(self) -> None:
        if self._installed or threading.current_thread() is not threading.main_thread():
            return
        self._previous = signal.signal(signal.SIGINT, self._on_sigint)
        self._installed = True

    def _restore(self) -> None:
        if self._installed:
            signal.signal(signal.SIGINT, self._previous)
            self._installed = False

    # ---- Lightning hooks ---------------------------------------------------------------------
    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._requested = False
        self._install()

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, idx: int
    ) -> None:
        stop = self._requested
        if trainer.world_size > 1:
            stop = trainer.strategy.reduce_boolean_decision(stop, all=False)
        if not stop:
            return
        # The step is complete (optimizer stepped, loader and RNG states past this batch):
        # exactly the point where the periodic mid-epoch checkpoints are taken.
        path = self._checkpoint_path(trainer)
        trainer.save_checkpoint(path)
        raise TrainingInterrupted(
            f"interrupted (Ctrl-C) after global step {trainer.global_step} (epoch "
            f"{trainer.current_epoch}); saved {path}: run the same command with "
            f"--ckpt_path last to continue exactly from there",
            checkpoint=path,
        )

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._restore()

    def on_exception(
        self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException
    ) -> None:
        self._restore()

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self._restore()

    def _checkpoint_path(self, trainer: L.Trainer) -> Path:
        """``last_step.ckpt`` in the folder of the run's checkpoints (so ``--ckpt_path last``
        finds it: Lightning resumes from the newest ``*last*`` file of those folders)."""
        callbacks = [cb for cb in trainer.checkpoint_callbacks if isinstance(cb, ModelCheckpoint)]
        folders = [cb.dirpath for cb in callbacks if cb.dirpath]
        folder = Path(folders[0]) if folders else Path(trainer.default_root_dir) / "checkpoints"
        return folder / self.FILENAME


__all__ = ["GracefulInterrupt", "TrainingInterrupted"]
