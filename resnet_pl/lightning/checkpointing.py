"""Checkpoints that survive a crash and that are safe to load.

- :class:`AtomicCheckpointIO`: each checkpoint is written to a temporary file, fsynced and
  renamed over the target, so a kill at any moment leaves the old file or the new one, never a
  torn one; weights that are NaN/inf are never written; loading uses the restricted unpickler
  (``weights_only=True``) unless the caller explicitly passes ``weights_only=False``.
- :class:`BestAndLastCheckpoint`: best-k files plus a ``last.ckpt`` that is always the latest.
- :class:`StepCheckpoint`: a ``last_step.ckpt`` every N optimizer steps (mid-epoch).
- :class:`ExactResumeCallback`: what Lightning does not restore by itself. The random number
  generators' states travel in the checkpoint (so a resumed run draws the same augmentations and
  dropout masks as an uninterrupted one), and the training loader's saved position is applied
  even when ``configure_optimizers`` built the loader early.
"""

from __future__ import annotations

import logging
import random
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.fabric.plugins import TorchCheckpointIO
from lightning.pytorch.callbacks import ModelCheckpoint

from resnet_pl.fileio import atomic_open, make_dirs, remove_stale_temps
from resnet_pl.lightning.errors import NonFiniteWeightsError, checkpoint_load_error

log = logging.getLogger(__name__)


_CKPT_HINT = (
    "free space there or choose another folder (--checkpoint.dirpath, --run_root); the previous "
    "checkpoint files are intact, resume from them with --ckpt_path last"
)


def _first_non_finite(state: dict[str, Any]) -> str | None:
    for key, value in state.items():
        floating = isinstance(value, torch.Tensor) and value.is_floating_point()
        if floating and not bool(torch.isfinite(value).all()):
            return key
    return None


class AtomicCheckpointIO(TorchCheckpointIO):
    """Atomic, finite-only writes and restricted (``weights_only``) reads.

    Writing: a temporary file in the target's folder, ``fsync``, then ``os.replace`` over the
    target (atomic within one filesystem on POSIX and Windows) and an ``fsync`` of the folder.
    Temporary files left by a process killed mid-write are removed by the next save of the same
    target. A checkpoint whose ``state_dict`` holds NaN/inf is refused with
    :class:`NonFiniteWeightsError` before anything is written.

    Reading: ``weights_only=None`` (Lightning's default) means ``True`` here, whatever
    ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD`` says; a file the restricted unpickler refuses raises
    :class:`UntrustedCheckpointError` explaining the opt-in (``--weights_only false``).
    """

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: str | Path, storage_options: Any | None = None
    ) -> None:
        target = Path(path)
        bad = _first_non_finite(checkpoint.get("state_dict", {}))
        if bad is not None:
            raise NonFiniteWeightsError(
                f"weights are not finite ({bad} holds NaN/inf) at global step "
                f"{checkpoint.get('global_step', '?')} (epoch {checkpoint.get('epoch', '?')}); "
                f"{target.name} was not written, so the last good checkpoint in {target.parent} "
                f"is kept. Lower the learning rate or use gradient clipping "
                f"(--trainer.gradient_clip_val), then resume from it."
            )
        make_dirs(target.parent, _CKPT_HINT)
        remove_stale_temps(target)  # left by a writer killed mid-save
        # A temporary file beside the target, fsynced, renamed over it: a kill, Ctrl-C or full
        # disk at any moment leaves the previous checkpoint or the new one, never a torn one.
        # torch's zip writer answers a full disk with "RuntimeError: ... unexpected pos" while
        # handling the OSError; atomic_open finds the OSError and raises WriteError.
        with atomic_open(target, "wb", hint=_CKPT_HINT) as f:
            torch.save(checkpoint, f)

    def load_checkpoint(
        self,
        path: str | Path,
        map_location: Any | None = lambda storage, loc: storage,
        weights_only: bool | None = None,
    ) -> dict[str, Any]:
        safe = weights_only is not False
        try:
            return super().load_checkpoint(path, map_location=map_location, weights_only=safe)
        except FileNotFoundError:
            raise
        except Exception as err:  # torch.load of arbitrary bytes can raise almost anything
            if not safe:
                raise
            raise checkpoint_load_error(path, err, "--weights_only false") from None


class BestAndLastCheckpoint(ModelCheckpoint):
    """``ModelCheckpoint`` whose ``last.ckpt`` really is the last state.

    Since Lightning 2.6 a monitoring ``ModelCheckpoint`` rewrites ``last.ckpt`` at the end of an
    epoch only when that epoch also produced a new top-k file; after an epoch that did not
    improve ``val_acc``, ``last.ckpt`` silently kept older weights (and ``--ckpt_path last``
    resumed from there). This subclass also writes ``last.ckpt`` whenever its regular save
    point passes without a save."""

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_train_epoch_end(trainer, pl_module)
        if self._should_save_on_train_epoch_end(trainer):
            self._save_last_if_missed(trainer)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_validation_end(trainer, pl_module)
        if not self._should_save_on_train_epoch_end(trainer):
            self._save_last_if_missed(trainer)

    def _save_last_if_missed(self, trainer: L.Trainer) -> None:
        # Skipped while not fitting, during sanity checks and when this step is already saved.
        if self.save_last and not self._should_skip_saving_checkpoint(trainer):
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))


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


class ExactResumeCallback(L.Callback):
    """Makes a resumed run continue exactly where the checkpointed one stopped.

    - Random states: torch's (CPU and CUDA), numpy's and Python's global generators are saved in
      each checkpoint (as tensors and plain values, so checkpoints still load with
      ``weights_only=True``) and restored at ``on_train_start``: after everything a resumed run
      does before its first step (sanity validation, building loaders), before the first batch
      is augmented.
    - Loader position: Lightning stores a stateful training loader's ``state_dict`` in the
      checkpoint but drops it on resume when ``trainer.estimated_stepping_batches`` was read in
      ``configure_optimizers`` (our cosine and one-cycle schedules do; Lightning issue #20550):
      the loader is then built before the loops are restored and never receives its state.
      Here the pending state is applied at ``on_train_start``, before the first batch is drawn
      (:class:`~resnet_pl.lightning.sampling.ResumableDataLoader` iterates lazily, so this is in
      time); when Lightning did apply it, nothing is pending and nothing happens.
    """

    def __init__(self) -> None:
        self._pending: dict[str, Any] | None = None

    def state_dict(self) -> dict[str, Any]:
        np_state: Any = np.random.get_state(legacy=True)
        state: dict[str, Any] = {
            "torch": torch.get_rng_state(),
            "numpy": {
                "name": str(np_state[0]),
                "keys": torch.from_numpy(np.asarray(np_state[1], dtype=np.int64)),
                "pos": int(np_state[2]),
                "has_gauss": int(np_state[3]),
                "cached_gaussian": float(np_state[4]),
            },
            "python": _python_state_to_plain(random.getstate()),
        }
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            state["cuda"] = torch.cuda.get_rng_state_all()
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._pending = state_dict

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        load_loader_states = getattr(trainer.fit_loop, "_load_combined_loader_states", None)
        if callable(load_loader_states):
            load_loader_states()  # a no-op unless restarting with states still pending
        state, self._pending = self._pending, None
        if not state:
            return
        torch.set_rng_state(state["torch"])
        np_state = state["numpy"]
        np.random.set_state(
            (
                np_state["name"],
                np_state["keys"].numpy().astype(np.uint32),
                np_state["pos"],
                np_state["has_gauss"],
                np_state["cached_gaussian"],
            )
        )
        random.setstate(_python_state_from_plain(state["python"]))
        cuda = state.get("cuda")
        if cuda is not None and torch.cuda.is_available():
            if len(cuda) == torch.cuda.device_count():
                torch.cuda.set_rng_state_all(cuda)
            else:
                log.warning(
                    "checkpoint has CUDA generator states for %d devices, this machine has %d: "
                    "CUDA random draws will differ from the interrupted run",
                    len(cuda),
                    torch.cuda.device_count(),
                )


def _python_state_to_plain(state: tuple[Any, ...]) -> list[Any]:
    version, internal, gauss = state
    return [int(version), list(internal), gauss]


def _python_state_from_plain(state: list[Any]) -> tuple[Any, ...]:
    version, internal, gauss = state
    return (int(version), tuple(int(v) for v in internal), gauss)
