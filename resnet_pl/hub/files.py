"""Weights files: where they come from, the cache, and their verification -- before any of
them is read as weights (:mod:`resnet_pl.hub.loading` then puts them into models).

Guarantees, for every file and every use (not only the first download):

- the file's **full sha256** is checked before it is opened as weights. Where only a prefix is
  published (torchvision names files ``resnet50-11ad3fa6.pth``), the prefix is checked and the
  full digest is recorded in a sidecar ``<file>.sha256.json`` beside the cached file, so later
  uses check the full hash;
- a file that fails (wrong hash, truncated, a pickle where safetensors is expected) raises
  :class:`WeightsVerificationError`; a bad file in the cache is moved to ``<cache>/quarantine/``
  so it is never used again (the next call downloads afresh);
- safetensors files are read with ``safetensors.torch.load_file`` (no code can run); the only
  pickled files accepted are torchvision's ``.pth`` state dicts, read with
  ``torch.load(..., weights_only=True)``, which refuses anything but tensors and containers.

Where files come from, in order: the package (``resnet_pl/weights/``, or a folder named by
``RESNET_PL_EXTRA_WEIGHTS``), the user cache (``$RESNET_PL_CACHE``, default
``torch.hub.get_dir()/resnet_pl``), then the entry's URL (``torch.hub.download_url_to_file``;
``file://`` URLs work offline). Weights hosted on the Hugging Face Hub are used in place in the
Hugging Face cache (``huggingface_hub.hf_hub_download``; no second copy), verified on every use
like any other file. Network downloads are skipped when ``HF_HUB_OFFLINE`` or
``RESNET_PL_OFFLINE`` is set.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import struct
import time
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import Tensor

from resnet_pl.fileio import WriteError, as_write_error, make_dirs, write_text
from resnet_pl.hub.weights import (
    WeightsEntry,
    WeightsUnavailableError,
    WeightsVerificationError,
)

CACHE_ENV = "RESNET_PL_CACHE"
CACHE_HINT = (
    "free space there, or point RESNET_PL_CACHE at a writable folder with space; cached "
    "files already there are intact"
)
OFFLINE_ENVS = ("RESNET_PL_OFFLINE", "HF_HUB_OFFLINE")
_MAX_SAFETENSORS_HEADER = 100 * 1024 * 1024  # the format's own limit


def cache_dir() -> Path:
    """The user cache: ``$RESNET_PL_CACHE`` or ``torch.hub.get_dir()/resnet_pl``."""
    env = os.environ.get(CACHE_ENV)
    return Path(env).expanduser() if env else Path(torch.hub.get_dir()) / "resnet_pl"


def cache_path(entry: WeightsEntry) -> Path:
    """Where ``entry``'s file is (or would be) cached."""
    name = entry.file or (entry.url or "").rsplit("/", 1)[-1] or f"{entry.name}.safetensors"
    return cache_dir() / name


def sidecar_path(path: Path) -> Path:
    """The file recording a cached file's full sha256 (for entries published with a prefix)."""
    return path.with_name(path.name + ".sha256.json")


def offline() -> bool:
    """True when network downloads are disabled (``HF_HUB_OFFLINE`` / ``RESNET_PL_OFFLINE``)."""
    return any(
        os.environ.get(k, "").strip().lower() in ("1", "true", "yes", "on") for k in OFFLINE_ENVS
    )


def local_path(entry: WeightsEntry) -> Path | None:
    """The shipped or cached file of ``entry`` if one exists (not yet verified), else None."""
    shipped = entry.shipped_path
    if shipped is not None and shipped.is_file():
        return shipped
    cached = cache_path(entry)
    return cached if cached.is_file() else None


# --------------------------------------------------------------------------------------------
# Verification
# --------------------------------------------------------------------------------------------
def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    """Full sha256 hex digest of a file, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def sniff_format(path: Path) -> str:
    """What a file looks like from its first bytes: ``"safetensors"``, ``"zip"`` (torch.save),
    ``"pickle"`` (legacy torch.save / raw pickle), ``"empty"`` or ``"unknown"``. Only used to
    check and to explain; the expected format comes from the registry, never from the file."""
    with open(path, "rb") as f:
        head = f.read(16)
    if not head:
        return "empty"
    if head.startswith(b"PK\x03\x04"):
        return "zip"
    if head[0] == 0x80 and len(head) > 1 and head[1] <= 5:
        return "pickle"
    if len(head) >= 9:
        (n,) = struct.unpack("<Q", head[:8])
        if 0 < n <= _MAX_SAFETENSORS_HEADER and head[8:9] == b"{":
            return "safetensors"
    return "unknown"


def check_safetensors(path: Path) -> None:
    """Check the safetensors layout without reading tensors: a JSON header whose tensors'
    byte ranges exactly cover the rest of the file (catches truncation and other formats).

    Raises:
        WeightsVerificationError: naming what is wrong.
    """
    size = path.stat().st_size
    kind = sniff_format(path)
    if kind in ("zip", "pickle"):
        raise WeightsVerificationError(
            f"{path} is a pickle ({'torch.save zip archive' if kind == 'zip' else 'raw pickle'})"
            f", not a safetensors file; it was NOT unpickled (unpickling can run arbitrary code)."
            f" Use safetensors weights from a trusted source."
        )
    if kind != "safetensors":
        raise WeightsVerificationError(f"{path} is not a safetensors file ({kind} content)")
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        if 8 + n > size:
            raise WeightsVerificationError(
                f"{path} is truncated: its safetensors header needs {8 + n} bytes, the file "
                f"has {size}"
            )
        try:
            header = json.loads(f.read(n))
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            raise WeightsVerificationError(
                f"{path}: safetensors header is not JSON: {err}"
            ) from None
    end = 0
    for key, info in header.items():
        if key == "__metadata__":
            continue
        try:
            end = max(end, int(info["data_offsets"][1]))
        except (KeyError, TypeError, ValueError, IndexError):
            raise WeightsVerificationError(f"{path}: malformed safetensors entry {key!r}") from None
    if 8 + n + end != size:
        problem = "truncated" if 8 + n + end > size else "has trailing bytes"
        raise WeightsVerificationError(
            f"{path} {problem}: the header describes {8 + n + end} bytes, the file has {size}"
        )


def _describe_mismatch(path: Path, entry: WeightsEntry) -> str:
    """Why a file's hash may differ, for the error message: its size and apparent format."""
    size = path.stat().st_size
    parts = [f"{size} bytes"]
    expected_size = entry.pretrained_cfg.get("file_size")
    if isinstance(expected_size, int):
        if size < expected_size:
            parts.append(f"expected {expected_size}: the file is truncated")
        elif size != expected_size:
            parts.append(f"expected {expected_size}")
    kind = sniff_format(path)
    if entry.file_format == "safetensors" and kind in ("zip", "pickle"):
        parts.append("it is a pickle where safetensors is expected (it was NOT unpickled)")
    elif kind == "empty":
        parts.append("the file is empty")
    return "; ".join(parts)


def verify_file(path: Path, entry: WeightsEntry, *, expected_full: str | None = None) -> str:
    """Check ``path`` against ``entry`` (full sha256 if known -- from the entry or
    ``expected_full`` -- else torchvision's published prefix) and its format. Returns the full
    digest. No side effects.

    Raises:
        WeightsVerificationError: what was expected and what was found.
    """
    full = entry.sha256 or expected_full
    if path.stat().st_size == 0:
        raise WeightsVerificationError(f"{path} is empty (an interrupted download?)")
    digest = sha256_file(path)
    if full is not None and digest != full:
        raise WeightsVerificationError(
            f"sha256 mismatch for {entry.name} weights {path}: expected {full}, got {digest} "
            f"({_describe_mismatch(path, entry)})"
        )
    if full is None:
        prefix = entry.sha256_prefix or ""
        if not prefix or not digest.startswith(prefix):
            raise WeightsVerificationError(
                f"sha256 mismatch for {entry.name} weights {path}: expected a digest starting "
                f"{prefix!r} (published by the source), got {digest} "
                f"({_describe_mismatch(path, entry)})"
            )
    if entry.file_format == "safetensors":
        check_safetensors(path)
    else:
        kind = sniff_format(path)
        if kind not in ("zip", "pickle"):
            raise WeightsVerificationError(f"{path} is not a torch.save file ({kind} content)")
    return digest


def _read_sidecar(path: Path, entry: WeightsEntry) -> str | None:
    """The full digest recorded for a cached prefix-only file, if a valid sidecar exists."""
    side = sidecar_path(path)
    if not side.is_file():
        return None
    try:
        data = json.loads(side.read_text(encoding="utf-8"))
        digest = str(data["sha256"]).lower()
    except (OSError, ValueError, KeyError, TypeError):
        return "corrupt-sidecar"  # never matches a digest: the file is re-downloaded
    if entry.sha256_prefix and not digest.startswith(entry.sha256_prefix):
        return "corrupt-sidecar"
    return digest


def _write_sidecar(path: Path, entry: WeightsEntry, digest: str) -> None:
    side = sidecar_path(path)
    record = {
        "name": entry.name,
        "url": entry.url,
        "sha256_prefix": entry.sha256_prefix,
        "sha256": digest,
        "size": path.stat().st_size,
        "recorded": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    write_text(side, json.dumps(record, indent=2) + "\n", hint=CACHE_HINT)


def quarantine(path: Path) -> Path:
    """Move a bad cached file (and its sidecar) to ``<cache>/quarantine/`` so it is never used
    again but stays inspectable. Returns the new location."""
    qdir = path.parent / "quarantine"
    qdir.mkdir(parents=True, exist_ok=True)
    target = qdir / f"{path.name}.{time.strftime('%Y%m%dT%H%M%S')}.{os.getpid()}"
    os.replace(path, target)
    side = sidecar_path(path)
    if side.exists():
        os.replace(side, target.with_name(target.name + ".sha256.json"))
    return target


def _verify_cached(path: Path, entry: WeightsEntry) -> None:
    """Verify a cached file (full hash from the entry or its sidecar); on failure quarantine it
    and raise. Records the sidecar on the first successful prefix-only check."""
    recorded = None if entry.sha256 else _read_sidecar(path, entry)
    try:
        digest = verify_file(path, entry, expected_full=recorded)
    except WeightsVerificationError as err:
        moved = quarantine(path)
        raise WeightsVerificationError(
            f"{err}. The cached file was moved to {moved} and will not be used again; "
            f"the next load downloads a fresh copy."
        ) from None
    if entry.sha256 is None and recorded is None:
        _write_sidecar(path, entry, digest)


# --------------------------------------------------------------------------------------------
# Finding the file
# --------------------------------------------------------------------------------------------
def resolve_file(entry: WeightsEntry, *, download: bool = True, progress: bool = False) -> Path:
    """A verified local file holding ``entry``'s weights: shipped, else cached, else
    downloaded into the cache (when ``download`` and allowed).

    Raises:
        WeightsVerificationError: the file found (or downloaded) failed verification.
        WeightsUnavailableError: no file and no way to get one; the message says where to put it.
    """
    shipped = entry.shipped_path
    if shipped is not None and shipped.is_file():
        try:
            verify_file(shipped, entry)
        except WeightsVerificationError as err:
            raise WeightsVerificationError(
                f"{err}. This file came with the package: reinstall resnet-pl (it was left in "
                f"place, unused)."
            ) from None
        return shipped
    if entry.url is None and entry.hf_hub_id is not None:
        return _from_hf_cache(entry, download=download)
    cached = cache_path(entry)
    if cached.is_file():
        _verify_cached(cached, entry)
        return cached
    if not download:
        raise WeightsUnavailableError(
            f"weights {entry.name} are not available locally (looked for "
            f"{shipped or '(not shipped)'} and {cached})"
        )
    return _download(entry, cached, progress=progress)


def _from_hf_cache(entry: WeightsEntry, *, download: bool) -> Path:
    """``entry``'s file in the Hugging Face cache (fetched there first if needed and allowed),
    verified in place. A file that fails is deleted from that cache (link and blob), so the
    next load fetches it afresh."""
    from huggingface_hub import hf_hub_download

    cfg = entry.pretrained_cfg
    filename = str(cfg.get("hf_filename") or entry.file or "model.safetensors")
    local_only = not download or offline()
    try:
        path = Path(
            hf_hub_download(
                str(entry.hf_hub_id),
                filename=filename,
                revision=cfg.get("hf_revision"),
                local_files_only=local_only,
                library_name="resnet-pl",
            )
        )
    except Exception as err:  # not cached while offline, not found, no access ...
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        why = (
            "it is not in the Hugging Face cache and downloads are disabled "
            "(HF_HUB_OFFLINE / RESNET_PL_OFFLINE)"
            if local_only
            else f"fetching it failed: {first}"
        )
        raise WeightsUnavailableError(
            f"weights {entry.name} ({entry.hf_hub_id}/{filename}): {why}"
        ) from None
    try:
        verify_file(path, entry)
    except WeightsVerificationError as err:
        blob = path.resolve()
        path.unlink(missing_ok=True)
        blob.unlink(missing_ok=True)
        raise WeightsVerificationError(
            f"{err}. The file was deleted from the Hugging Face cache; the next load fetches "
            f"a fresh copy."
        ) from None
    return path


def _download(entry: WeightsEntry, dest: Path, *, progress: bool) -> Path:
    """Fetch into a temporary file beside ``dest``, verify it, then rename it into place, so an
    interrupted or bad download never appears as the cached file."""
    url = entry.url
    networked = url is None or not url.startswith("file://")
    if networked and offline():
        raise WeightsUnavailableError(
            f"weights {entry.name} are not cached ({dest}) and downloads are disabled "
            f"(HF_HUB_OFFLINE / RESNET_PL_OFFLINE). Unset it, or place the file at {dest} "
            f"(it is verified against sha256 {entry.sha256 or f'{entry.sha256_prefix}...'})."
        )
    if url is None:
        raise WeightsUnavailableError(
            f"weights {entry.name} have no file at {entry.shipped_path} and no url or "
            f"hf_hub_id to fetch them from"
        )
    make_dirs(dest.parent, CACHE_HINT)
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.partial")
    try:
        torch.hub.download_url_to_file(url, str(tmp), progress=progress)
        digest = verify_file(tmp, entry)
        os.replace(tmp, dest)
    except WeightsVerificationError as err:
        raise WeightsVerificationError(f"{err}. The download from {url} was discarded.") from None
    except Exception as err:  # urllib / huggingface_hub errors: report one clear line
        write_error = _cache_write_error(dest, err)
        if write_error is not None:
            raise write_error from err
        raise WeightsUnavailableError(
            f"could not download weights {entry.name} from {url}: {err}"
        ) from err
    finally:
        tmp.unlink(missing_ok=True)
    if entry.sha256 is None:
        _write_sidecar(dest, entry, digest)
    return dest


def _cache_write_error(dest: Path, err: BaseException) -> WriteError | None:
    """The download failed because the cache cannot be written (full, no permission), not
    because of the network or the source: a full disk always counts; a permission error only
    when the cache folder is not writable (a file:// source can be unreadable too)."""
    error = as_write_error(dest, err, CACHE_HINT)
    if error is None or error.errno in (errno.ENOSPC, errno.EFBIG, getattr(errno, "EDQUOT", -1)):
        return error
    return None if os.access(dest.parent, os.W_OK) else error


# --------------------------------------------------------------------------------------------
# Reading and loading
# --------------------------------------------------------------------------------------------
def read_state_dict(path: Path, file_format: str) -> dict[str, Tensor]:
    """Tensors of a verified file: safetensors via ``safetensors.torch.load_file``, ``pth`` via
    ``torch.load(weights_only=True)``. Never a full unpickle.

    Raises:
        WeightsVerificationError: the content is not a flat ``{name: tensor}`` state dict.
    """
    if file_format == "safetensors":
        check_safetensors(path)
        from safetensors.torch import load_file

        try:
            return load_file(str(path), device="cpu")
        except Exception as err:  # safetensors raises its own SafetensorError
            raise WeightsVerificationError(f"{path}: unreadable safetensors file: {err}") from None
    try:
        state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as err:  # UnpicklingError, RuntimeError ... from the restricted unpickler
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise WeightsVerificationError(
            f"{path} was refused by torch.load(weights_only=True) (it holds objects other than "
            f"tensors, which could run code): {first}"
        ) from None
    if not isinstance(state, Mapping) or not all(
        isinstance(k, str) and isinstance(v, Tensor) for k, v in state.items()
    ):
        raise WeightsVerificationError(f"{path} is not a flat state dict of tensors")
    return dict(state)
