"""Finding a built-in dataset on disk, or fetching it once: ``download: auto``.

The resolution order (:func:`resolve`), for MNIST and Fashion-MNIST:

1. ``data_dir`` when given (the IDX files themselves, torchvision's ``<Class>/raw`` layout, or
   ``data_dir/<dataset>``);
2. the system folders (:data:`resnet_pl.data.datasets.DEBIAN_FASHION_MNIST`, where the Debian
   package ``dataset-fashion-mnist`` installs Fashion-MNIST);
3. the cache folder (:func:`cache_dir`: ``$RESNET_PL_DATA``, else
   ``$XDG_CACHE_HOME/resnet_pl/data``, else ``~/.cache/resnet_pl/data``).

``download="auto"`` (the default) uses the first copy found and touches the network only when
there is none: it then downloads into ``data_dir`` (when given) or the cache, from the
torchvision dataset class's ``mirrors`` with the md5 of each file from its ``resources``. Each
file is written to a temporary name, checked, and renamed into place, so a corrupted or
truncated download leaves nothing behind. A file lock on the target folder makes two runs that
start together on an empty cache download once; the second finds the first one's files.
``download=False`` never touches the network (a missing copy is an error naming the three ways
to get the data); ``download=True`` always fetches into the target folder (files already there
and intact are kept). ``RESNET_PL_OFFLINE=1`` (or ``HF_HUB_OFFLINE=1``) makes ``auto`` act as
``False``.

Every call that resolves a dataset for a run prints one line to stderr saying where the data
came from or went.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

from resnet_pl.data import datasets as _ds
from resnet_pl.data.errors import BadDataError, DataNotFoundError

DownloadMode = bool | Literal["auto"]
_TIMEOUT_S = 60.0
_CHUNK = 1 << 20


cache_dir = _ds.default_root  # one definition of the cache folder


def offline() -> bool:
    """True when network downloads are disabled (``RESNET_PL_OFFLINE`` / ``HF_HUB_OFFLINE``)."""
    return any(
        os.environ.get(v, "").lower() in ("1", "true", "yes")
        for v in ("RESNET_PL_OFFLINE", "HF_HUB_OFFLINE")
    )


def check_mode(download: object) -> DownloadMode:
    """``True``, ``False`` or ``"auto"`` (also the strings ``"true"``/``"false"``)."""
    if isinstance(download, bool) or download == "auto":
        return download  # type: ignore[return-value]
    if isinstance(download, str) and download.lower() in ("true", "false"):
        return download.lower() == "true"
    raise ValueError(f"download must be auto, true or false, got {download!r}")


def how_to_get(dataset: str) -> str:
    """The three ways to get a built-in dataset, as one sentence."""
    package = (
        "install the Debian package (apt-get install dataset-fashion-mnist), "
        if dataset == "fashion_mnist"
        else ""
    )
    return (
        f"To get it: run again with network access (--data.download auto, the default, fetches "
        f"it once into {cache_dir()}; set RESNET_PL_DATA to choose the folder), {package}or "
        f"point --data.data_dir at a folder holding its files."
    )


def _say(message: str) -> None:
    print(f"resnet-pl: {message}", file=sys.stderr, flush=True)


def resolve(dataset: str, data_dir: Path | None, download: DownloadMode) -> Path | None:
    """Make ``dataset`` available and return the ``data_dir`` its loader should be given (see
    the module docstring for the order and the modes); prints one line saying where the data
    came from or went. ``fake`` and ``imagefolder`` need nothing and return ``data_dir``.

    Raises:
        DataNotFoundError: no copy and no download allowed or possible (names the three ways).
        BadDataError: a downloaded file failed its checksum (it was discarded).
    """
    download = check_mode(download)
    if dataset in _ds.IDX_DATASETS:
        return _resolve_idx(dataset, data_dir, download)
    if dataset in _ds.TORCHVISION_DATASETS:
        return _resolve_torchvision(dataset, data_dir, download)
    return data_dir


def _resolve_idx(dataset: str, data_dir: Path | None, download: DownloadMode) -> Path | None:
    if download is not True:
        found = _ds.find_idx_folder(dataset, data_dir)
        if found is not None:
            _say(f"{dataset}: using the local copy in {found}")
            return data_dir
        if download is False or offline():
            why = "download: false" if download is False else "offline (RESNET_PL_OFFLINE)"
            tried = ", ".join(str(p) for p in _ds.idx_candidates(dataset, data_dir))
            raise DataNotFoundError(
                f"{dataset} not found (looked in {tried}) and not downloaded ({why}). "
                f"{how_to_get(dataset)}"
            )
    target = data_dir if data_dir is not None else cache_dir()
    fetch_idx(dataset, target)
    return target


def fetch_idx(dataset: str, target: Path) -> Path:
    """Download the IDX files of MNIST/Fashion-MNIST into ``target/<Class>/raw`` (torchvision's
    layout) unless they are there and intact; returns that folder. One process downloads while
    others wait on the folder's lock and then find its files."""
    from torchvision import datasets as tv

    cls = tv.MNIST if dataset == "mnist" else tv.FashionMNIST
    raw = target / _ds.TV_FOLDERS[dataset] / "raw"
    try:
        raw.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise DataNotFoundError(
            f"cannot create the download folder {raw} ({err.strerror}); set RESNET_PL_DATA or "
            f"--data.data_dir to a writable folder."
        ) from None
    with _locked(raw / f".{dataset}.lock"):
        todo = [(n, md5) for n, md5 in cls.resources if not _intact(raw / n, md5)]
        if not todo:
            _say(f"{dataset}: using the local copy in {raw} (checked by md5)")
            return raw
        sources = set()
        for name, md5 in todo:
            sources.add(_fetch_one(dataset, list(cls.mirrors), name, md5, raw / name))
        _say(
            f"{dataset}: downloaded {len(todo)} file(s) from {', '.join(sorted(sources))} into "
            f"{raw} (md5 verified)"
        )
    return raw


def _md5(path: Path) -> str:
    h = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def _intact(path: Path, md5: str) -> bool:
    return path.is_file() and _md5(path) == md5


def _fetch_one(dataset: str, mirrors: list[str], name: str, md5: str, dest: Path) -> str:
    """Fetch ``name`` from the first mirror that serves it intact; returns that mirror."""
    failures: list[str] = []
    bad: str | None = None
    for mirror in mirrors:
        url = mirror.rstrip("/") + "/" + name
        part = dest.with_name(f".{name}.part-{os.getpid()}")
        try:
            h = hashlib.md5(usedforsecurity=False)
            with urllib.request.urlopen(url, timeout=_TIMEOUT_S) as r, open(part, "wb") as f:
                for chunk in iter(lambda: r.read(_CHUNK), b""):
                    h.update(chunk)
                    f.write(chunk)
                f.flush()
                os.fsync(f.fileno())
            if h.hexdigest() != md5:
                bad = (
                    f"{url} served a corrupted or truncated {name} (md5 {h.hexdigest()}, "
                    f"expected {md5}); it was discarded"
                )
                failures.append(f"{url}: bad md5")
                continue
            os.replace(part, dest)
            return mirror
        except (urllib.error.URLError, OSError, ValueError) as err:
            reason = getattr(err, "reason", None) or err
            failures.append(f"{url}: {reason}")
        finally:
            with contextlib.suppress(FileNotFoundError):
                part.unlink()
    if bad is not None:
        raise BadDataError(f"{dataset}: {bad}. Run again to retry. {how_to_get(dataset)}")
    tried = "; ".join(failures) or "no mirrors"
    raise DataNotFoundError(
        f"{dataset} not found locally and the download failed ({tried}). {how_to_get(dataset)}"
    )


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive advisory lock on ``path`` (POSIX ``flock``; a no-op where unavailable)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows: no lock, downloads still land atomically
        yield
        return
    with open(path, "a+b") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


def _resolve_torchvision(dataset: str, data_dir: Path | None, download: DownloadMode) -> Path:
    """CIFAR/SVHN: torchvision checks its files before any network access, so ``auto`` and
    ``true`` both call its downloader into ``data_dir`` or the cache."""
    root = data_dir if data_dir is not None else cache_dir()
    if download is False or (download == "auto" and offline()):
        return root
    try:
        _ds.download(dataset, root)
    except (urllib.error.URLError, OSError, RuntimeError) as err:
        raise DataNotFoundError(
            f"{dataset} not found under {root} and the download failed ({err}). "
            f"{how_to_get(dataset)}"
        ) from None
    _say(f"{dataset}: data in {root}")
    return root
