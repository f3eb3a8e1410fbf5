"""Checkpoints that survive a crash: atomic writes and a frequent mid-epoch ``last`` file."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from lightning.fabric.plugins import TorchCheckpointIO
from lightning.pytorch.callbacks import ModelCheckpoint


class AtomicCheckpointIO(TorchCheckpointIO):
    """Write each checkpoint to a temporary file in the same folder, fsync it, then rename it
    over the target. A kill at any moment leaves either the old file or the new one, never a
    truncated one (a rename within one filesystem is atomic on POSIX and Windows)."""

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: str | Path, storage_options: Any | None = None
    ) -> None:
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
        try:
            with os.fdopen(fd, "wb") as f:
                torch.save(checkpoint, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


class StepCheckpoint(ModelCheckpoint):
    """Saves ``last_step.ckpt`` every ``every_n_train_steps`` optimizer steps, so a killed run
    loses at most that many steps. ``--ckpt_path last`` picks the newest of ``last.ckpt``
    (end of each validation) and this file."""

    CHECKPOINT_NAME_LAST = "last_step"

    def __init__(self, dirpath: str | Path | None = None, every_n_train_steps: int = 200) -> None:
        super().__init__(
            dirpath=dirpath,
            save_last=True,
            save_top_k=0,
            every_n_train_steps=every_n_train_steps,
            save_on_train_epoch_end=False,
        )
