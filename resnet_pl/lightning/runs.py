"""One run, one folder: ``<root>/<run_name>/version_N/`` holds a run's logs (CSV, TensorBoard),
``config.yaml``, plots and ``checkpoints/``, as Lightning lays out a logger's version folder.

- A new run reserves its version folder with an atomic ``mkdir``, so runs started side by side
  with the same name never share one (nor its checkpoints).
- ``--ckpt_path last`` resumes the newest ``last*.ckpt`` of the highest-numbered version folder
  that has one (:func:`latest_last_checkpoint`), and the resumed run keeps logging into that
  folder: it is the same run. Rows and events that the interrupted run logged after the
  checkpoint's step are dropped, since the resumed run logs those steps again.
- Under DDP, Lightning starts the other ranks by running the same command again; they take the
  folder rank 0 chose from the environment instead of reserving their own.
"""

from __future__ import annotations

import csv
import os
import re
from pathlib import Path
from typing import Any

from lightning.fabric.loggers.logger import rank_zero_experiment
from lightning.pytorch.loggers import CSVLogger

from resnet_pl.lightning.loggers import AtomicExperimentWriter, AtomicTensorBoardLogger

VERSION_ENV = "RESNET_PL_VERSION_DIR"
CKPT_ENV = "RESNET_PL_RESUME_CKPT"
_VERSION = re.compile(r"version_(\d+)")


def versions(run_dir: Path) -> list[tuple[int, Path]]:
    """The ``version_N`` folders of ``run_dir``, by increasing N."""
    if not run_dir.is_dir():
        return []
    found = []
    for p in run_dir.iterdir():
        m = _VERSION.fullmatch(p.name)
        if m and p.is_dir():
            found.append((int(m.group(1)), p))
    return sorted(found)


def version_of(ckpt: Path) -> Path | None:
    """The version folder a checkpoint belongs to (``.../version_N/checkpoints/x.ckpt``)."""
    folder = ckpt.resolve().parent
    if folder.name == "checkpoints" and _VERSION.fullmatch(folder.parent.name):
        return folder.parent
    return None


def latest_last_checkpoint(run_dir: Path) -> Path | None:
    """What ``--ckpt_path last`` resumes: in the highest-numbered version folder that holds a
    ``last*.ckpt`` (``last.ckpt`` at validation, ``last_step.ckpt`` mid-epoch), the newest of
    them (by modification time, as Lightning chooses between them). A run folder of the
    layout before version folders (``<run>/checkpoints/last.ckpt``) is searched last."""
    for _, folder in reversed(versions(run_dir)):
        found = list((folder / "checkpoints").glob("last*.ckpt"))
        if found:
            return max(found, key=lambda p: p.stat().st_mtime_ns)
    old = list((run_dir / "checkpoints").glob("last*.ckpt"))
    return max(old, key=lambda p: p.stat().st_mtime_ns) if old else None


def _is_child_rank() -> bool:
    """A process Lightning launched for another DDP rank (it sets these for them)."""
    return int(os.environ.get("LOCAL_RANK", "0") or 0) > 0 or (
        int(os.environ.get("NODE_RANK", "0") or 0) > 0
    )


def reserve_version(run_dir: Path) -> Path:
    """A new ``version_N`` folder of ``run_dir``, created atomically (one past the highest
    existing N; ``mkdir`` fails for every process but one, and the others try the next N).
    Other DDP ranks get rank 0's folder. The choice is exported in ``RESNET_PL_VERSION_DIR``
    for the ranks Lightning starts later."""
    inherited = os.environ.get(VERSION_ENV)
    if inherited and _is_child_rank():
        return Path(inherited)
    run_dir.mkdir(parents=True, exist_ok=True)
    n = (versions(run_dir) or [(-1, run_dir)])[-1][0] + 1
    while True:
        folder = run_dir / f"version_{n}"
        try:
            folder.mkdir()
        except FileExistsError:
            n += 1
            continue
        os.environ[VERSION_ENV] = str(folder)
        return folder


def use_version(folder: Path) -> Path:
    """Continue in an existing version folder (a resumed run); exported like
    :func:`reserve_version`'s choice."""
    folder.mkdir(parents=True, exist_ok=True)
    os.environ[VERSION_ENV] = str(folder)
    return folder


class _ContinuingWriter(AtomicExperimentWriter):
    """resnet-pl's atomic CSV writer, except that an existing ``metrics.csv`` is continued
    (rows up to ``keep_until_step`` kept, its columns kept) instead of deleted. The file is not
    touched here: the kept rows are written back, with the new ones, by the next (atomic) save,
    so a crash or a full disk at any point leaves the previous file as it was."""

    def __init__(self, log_dir: str, keep_until_step: int | None) -> None:
        self._keep_until_step = keep_until_step
        super().__init__(log_dir=log_dir)

    def _check_log_dir_exists(self) -> None:
        path = Path(self.metrics_file_path)
        if not path.is_file():
            return
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            keys = list(reader.fieldnames or [])
            limit = self._keep_until_step
            self._rows = [r for r in reader if limit is None or _step(r) <= limit]
        self.metrics_keys = sorted(keys)


def _step(row: dict[str, Any]) -> float:
    try:
        return float(row.get("step") or 0)
    except ValueError:
        return 0.0


class RunCSVLogger(CSVLogger):
    """``CSVLogger`` writing ``metrics.csv`` straight into a run's version folder, continuing
    the file of a resumed run (see :class:`_ContinuingWriter`)."""

    def __init__(self, version_dir: Path, resume_step: int | None = None) -> None:
        super().__init__(
            save_dir=str(version_dir.parent.parent),
            name=version_dir.parent.name,
            version=version_dir.name,
        )
        self._resume_step = resume_step

    @property
    @rank_zero_experiment
    def experiment(self) -> Any:
        if self._experiment is None:
            self._experiment = _ContinuingWriter(self.log_dir, self._resume_step)
        return self._experiment


def run_loggers(version_dir: Path, resume_step: int | None = None) -> list[Any]:
    """CSV + TensorBoard logs in ``version_dir``; a resumed run (``resume_step`` given) drops
    what the interrupted one logged after that step (TensorBoard's ``purge_step``)."""
    purge: dict[str, Any] = {} if resume_step is None else {"purge_step": resume_step + 1}
    return [
        RunCSVLogger(version_dir, resume_step),
        AtomicTensorBoardLogger(
            save_dir=str(version_dir.parent.parent),
            name=version_dir.parent.name,
            version=version_dir.name,
            default_hp_metric=False,
            **purge,
        ),
    ]
