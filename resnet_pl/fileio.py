"""Writing files so that a full disk, a permission problem or Ctrl-C never leaves a partial file.

Everything resnet-pl writes (checkpoints, logs, plots, configs, weights, ONNX files, CSV
predictions) goes through a temporary file in the target's folder that is fsynced and then
renamed over the target (atomic within one filesystem on POSIX and Windows). A failure at any
moment therefore leaves the previous file, byte for byte, or no file; the temporary file is
removed. An ``OSError`` on the way becomes :class:`WriteError`, which names the target and the
cause (``No space left on device``, ``Permission denied``, ``Read-only file system``).

This module imports nothing from the rest of resnet-pl except :mod:`resnet_pl.errors`, so every
layer can use it.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from resnet_pl.errors import ResNetPLError

# Causes that are about the place being written, not about the data: a full filesystem or
# quota, a file too large for the filesystem, no permission, a read-only mount.
_SPACE = {errno.ENOSPC, errno.EFBIG} | ({errno.EDQUOT} if hasattr(errno, "EDQUOT") else set())
_ACCESS = {errno.EACCES, errno.EPERM, errno.EROFS}
WRITE_ERRNOS = frozenset(_SPACE | _ACCESS)


class WriteError(ResNetPLError, OSError):
    """A file could not be written (disk full, quota, permission, read-only filesystem).

    An ``OSError`` with the usual ``errno``, ``strerror`` and ``filename`` (the target); its
    message names the target, the cause and what to do. Whatever was at the target before is
    unchanged and no partial file is left.
    """

    def __init__(self, path: str | Path, cause: OSError, hint: str = "") -> None:
        reason = cause.strerror or str(cause) or type(cause).__name__
        super().__init__(cause.errno, reason, str(path))
        self.path = Path(path)
        self.hint = hint or _default_hint(cause.errno)

    def __str__(self) -> str:
        code = f" (errno {self.errno})" if self.errno is not None else ""
        hint = f"; {self.hint}" if self.hint else ""
        return f"cannot write {self.filename}: {self.strerror}{code}{hint}"

    def __reduce__(self) -> Any:  # picklable (multiprocessing, DDP) with its message intact
        cause = OSError(self.errno, self.strerror)
        return (type(self), (self.path, cause, self.hint))


def _default_hint(code: int | None) -> str:
    if code in _SPACE:
        return "free space on that filesystem or write elsewhere; files already there are intact"
    if code in _ACCESS:
        return "choose a folder you can write to; files already there are intact"
    return "files already there are intact"


def find_os_error(err: BaseException | None) -> OSError | None:
    """The first ``OSError`` in ``err``'s chain (itself, its ``__cause__``, its ``__context__``).

    Writers that fail inside a library often raise something else last: torch's zip writer
    raises ``RuntimeError: ... unexpected pos`` while it handles the ``OSError`` of a full
    disk, safetensors raises ``SafetensorError ... os error 28``."""
    seen: set[int] = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        if isinstance(err, OSError):
            return err
        err = err.__cause__ or err.__context__
    return None


def as_write_error(path: str | Path, err: BaseException, hint: str = "") -> WriteError | None:
    """The :class:`WriteError` for a failed write of ``path``, or ``None`` if ``err`` is not
    about the disk (a bug, a bad value, an interrupt: re-raise those as they are)."""
    if isinstance(err, WriteError):
        return err
    cause = find_os_error(err)
    if cause is None:
        code = _errno_in_text(str(err))
        if code is None:
            return None
        cause = OSError(code, os.strerror(code))
    if cause.errno not in WRITE_ERRNOS:
        return None
    return WriteError(path, cause, hint)


def _errno_in_text(text: str) -> int | None:
    """Rust and C++ writers (safetensors, onnx) report the OS error only in their message,
    as ``os error 28`` or ``No space left on device``."""
    for code in sorted(WRITE_ERRNOS):
        if f"os error {code}" in text or os.strerror(code) in text:
            return code
    return None


def fsync_dir(folder: Path) -> None:
    """Make a rename in ``folder`` durable (POSIX); a no-op where directories cannot be
    opened (Windows)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_BINARY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _discard(path: Path) -> None:
    # A read-only filesystem answers even the unlink of a missing file with EROFS.
    with contextlib.suppress(OSError):
        path.unlink(missing_ok=True)


def _temp_name(target: Path) -> Path:
    return target.parent / f".{target.name}.{secrets.token_hex(6)}.tmp"


def remove_stale_temps(target: Path) -> None:
    """Remove temporary files of ``target`` left by a writer that was killed mid-save."""
    for stale in target.parent.glob(f".{target.name}.*.tmp"):
        stale.unlink(missing_ok=True)


def make_dirs(folder: Path, hint: str = "") -> None:
    """``mkdir -p folder``, failing with :class:`WriteError`."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise (as_write_error(folder, err, hint) or err) from None


@contextmanager
def atomic_paths(targets: Sequence[str | Path], *, hint: str = "") -> Iterator[list[Path]]:
    """Temporary paths for ``targets``, renamed over them when the block ends without error.

    Use it for writers that take a file name (``safetensors.save_file``, ``onnx.save``,
    ``shutil.copyfile``). All temporary files are written (and fsynced) before the first
    rename, so a full disk part-way through a group (weights + config + card) changes none of
    the targets. On any error, including ``KeyboardInterrupt``, every temporary file is removed;
    an ``OSError`` about the disk is raised as :class:`WriteError` naming the target."""
    paths = [Path(t) for t in targets]
    for folder in dict.fromkeys(p.parent for p in paths):
        make_dirs(folder, hint)
    temps = [_temp_name(p) for p in paths]
    current = paths[0]
    try:
        yield temps
        for target, tmp in zip(paths, temps, strict=True):
            current = target
            if not tmp.exists():
                raise FileNotFoundError(f"the writer did not create {tmp} for {target}")
            _fsync_file(tmp)
        for target, tmp in zip(paths, temps, strict=True):
            current = target
            os.replace(tmp, target)
    except BaseException as err:
        for tmp in temps:
            _discard(tmp)
        error = as_write_error(current, err, hint) if isinstance(err, Exception) else None
        if error is None:
            raise
        raise error from err
    for folder in dict.fromkeys(p.parent for p in paths):
        fsync_dir(folder)


@contextmanager
def atomic_open(
    target: str | Path, mode: str = "wb", *, hint: str = "", **kwargs: Any
) -> Iterator[IO[Any]]:
    """``open(target, mode)`` that writes a temporary file and renames it over ``target`` when
    the block ends without error (see :func:`atomic_paths`). The file gets the usual
    permissions (``0666 & ~umask``), not ``mkstemp``'s 0600."""
    if "w" not in mode:
        raise ValueError(f"atomic_open writes whole files; mode must contain 'w', got {mode!r}")
    path = Path(target)
    with atomic_paths([path], hint=hint) as (tmp,):
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
        fd = os.open(tmp, flags, 0o666)
        with os.fdopen(fd, mode, **kwargs) as f:
            yield f
            f.flush()


def write_bytes(target: str | Path, data: bytes, *, hint: str = "") -> None:
    """Write ``data`` to ``target`` atomically (see :func:`atomic_open`)."""
    with atomic_open(target, "wb", hint=hint) as f:
        f.write(data)


def write_text(target: str | Path, text: str, *, hint: str = "", encoding: str = "utf-8") -> None:
    """Write ``text`` to ``target`` atomically (see :func:`atomic_open`)."""
    with atomic_open(target, "w", hint=hint, encoding=encoding, newline="") as f:
        f.write(text)


def write_with(target: str | Path, writer: Callable[[Path], object], *, hint: str = "") -> None:
    """Let ``writer(tmp_path)`` write the file, then rename it over ``target``."""
    with atomic_paths([target], hint=hint) as (tmp,):
        writer(tmp)


__all__ = [
    "WRITE_ERRNOS",
    "WriteError",
    "as_write_error",
    "atomic_open",
    "atomic_paths",
    "find_os_error",
    "fsync_dir",
    "make_dirs",
    "remove_stale_temps",
    "write_bytes",
    "write_text",
    "write_with",
]
