"""Image datasets as LitData shards: optimise once, then stream from a local folder or a bucket.

:func:`optimize_dataset` turns an image folder (``train/``, ``val/``, ``test/`` class folders)
or a built-in dataset (``fashion_mnist``, ``cifar10`` ...) into one LitData dataset per split,
written by ``litdata.optimize`` in several worker processes. Each item is the image's encoded
bytes **as they are** (a folder's files byte for byte; built-in datasets, which are pixel
arrays, as lossless PNG), its label and its index in the split. Only with ``max_side`` is an
image larger than that decoded, shrunk and re-encoded (JPEG at quality 95 for JPEG sources,
PNG otherwise).

Layout of ``OUT``::

    OUT/manifest.json    what resnet-pl reads first: format, classes, counts per split, settings,
                         the sources file and its sha256, the image spec of built-in datasets
    OUT/sources.csv      one row per stored image: split, index, label, source, sha256 of the
                         source bytes (a folder's file; the PNG written for built-in data)
    OUT/train/           a LitData dataset (index.json + chunk-*.bin); val/ and test/ likewise

Bad files follow the folder loader's ``bad_files`` rules exactly
(:func:`resnet_pl.data.folder.list_split_samples`): ``"skip"`` leaves unreadable images and
empty class folders out and lists them (log and manifest), ``"error"`` stops at the first, before
anything is written. Every file is decoded once, by the one decoder
(:func:`resnet_pl.data.decode.load_image`), in parallel, before the shards are written.

:class:`ShardImageDataset` streams a split back: the bytes are decoded by the same
:func:`~resnet_pl.data.decode.load_image` and transformed by the folder path's transforms
(:func:`~resnet_pl.data.transforms.train_geometry`,
:func:`~resnet_pl.data.transforms.eval_geometry`), so shards and the folder they came from
give identical evaluation inputs. Training augmentation is seeded per sample by
``(seed, epoch, index)``: any number of loader workers, any DDP layout and a resumed run draw
the same crops and flips.

``litdata`` is an optional dependency (``pip install 'resnet-pl[stream]'``).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import multiprocessing as mp
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from resnet_pl.data.decode import load_image
from resnet_pl.data.errors import BadDataError, DataNotFoundError, ImageLoadError
from resnet_pl.errors import ResNetPLError

log = logging.getLogger(__name__)

FORMAT = "resnet-pl-litdata-shards"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
SOURCES = "sources.csv"
SPLITS = ("train", "val", "test")
LITDATA_INDEX = "index.json"
INSTALL_HINT = "pip install 'resnet-pl[stream]'"
REMOTE_SCHEMES = ("s3://", "gs://", "r2://", "hf://", "azure://")


class MissingDependencyError(ResNetPLError, ImportError):
    """An optional package is not installed; the message names the extra to install."""


class ShardsError(BadDataError):
    """A shard folder or URL that cannot be used (not a resnet-pl shard set, torn, unreachable,
    or inconsistent with the model); the message names the problem and the fix."""


def require_litdata() -> Any:
    """The ``litdata`` module, or :class:`MissingDependencyError` naming the extra."""
    try:
        import litdata
    except ImportError:
        raise MissingDependencyError(
            f"LitData shards need the litdata package: {INSTALL_HINT}"
        ) from None
    return litdata


def is_remote(url: str | os.PathLike[str]) -> bool:
    return str(url).startswith(REMOTE_SCHEMES)


def join(base: str, *parts: str) -> str:
    """``base/part/...`` for a local path or a URL."""
    return "/".join([str(base).rstrip("/"), *parts])


# ---------------------------------------------------------------------------------------------
# Optimise
# ---------------------------------------------------------------------------------------------
def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _check_file(item: tuple[str, int]) -> tuple[str, str | None]:
    """Worker: ``(sha256 of the file, None)`` for a readable image, ``("", reason)`` for a bad
    one. The image is decoded fully by the one decoder, as the folder loader does."""
    path, in_chans = item
    try:
        load_image(path, in_chans)
        return _sha256(Path(path).read_bytes()), None
    except ImageLoadError as err:
        return "", f"cannot read image {path}: {err}"


def _shrink(data: bytes, max_side: int) -> bytes:
    """``data`` re-encoded with its longer side at most ``max_side`` (EXIF orientation applied
    first, mode kept); unchanged when already small enough."""
    from PIL import Image, ImageOps

    with Image.open(io.BytesIO(data)) as opened:
        if max(opened.size) <= max_side:
            return data
        fmt = (opened.format or "PNG").upper()
        opened.load()
        image = ImageOps.exif_transpose(opened)
    image.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    out = io.BytesIO()
    if fmt in ("JPEG", "MPO") and image.mode in ("L", "RGB", "CMYK"):
        image.save(out, "JPEG", quality=95)
    else:
        image.save(out, "PNG")
    return out.getvalue()


def _encode_item(item: tuple[Any, int, int, int | None]) -> dict[str, Any]:
    """``litdata.optimize`` worker: one stored sample. ``item`` is ``(file path or encoded
    bytes, label, index, max_side)``."""
    source, label, index, max_side = item
    data = source if isinstance(source, bytes) else Path(source).read_bytes()
    if max_side:
        data = _shrink(data, max_side)
    return {"image": data, "label": int(label), "index": int(index)}


def _png(image: Any) -> bytes:
    """A uint8 ``(C, H, W)`` tensor as lossless PNG bytes."""
    import numpy as np
    from PIL import Image

    arr = np.ascontiguousarray(image.numpy())
    pil = (
        Image.fromarray(arr[0], "L")
        if arr.shape[0] == 1
        else Image.fromarray(arr.transpose(1, 2, 0), "RGB")
    )
    out = io.BytesIO()
    pil.save(out, "PNG", compress_level=1)
    return out.getvalue()


def _progress(items: Any, description: str, enabled: bool) -> Iterator[Any]:
    if not enabled:
        yield from items
        return
    from rich.progress import track

    yield from track(items, description=description, total=len(items), transient=False)


def _pool_map(
    fn: Callable[[Any], Any], items: list[Any], workers: int, description: str, progress: bool
) -> list[Any]:
    if workers <= 1 or len(items) < 64:
        return list(_progress([fn(i) for i in items], description, progress))

    # fork where the platform has it: the workers need no fresh interpreter (startup is seconds
    # with torch imported), and they only read files and decode images.
    method = "fork" if "fork" in mp.get_all_start_methods() else "spawn"
    with mp.get_context(method).Pool(workers) as pool:
        chunk = max(1, min(256, len(items) // (workers * 8)))
        it = pool.imap(fn, items, chunksize=chunk)
        return list(_progress(_Sized(it, len(items)), description, progress))


class _Sized:
    """An iterator with a length, for the progress bar."""

    def __init__(self, it: Iterator[Any], n: int) -> None:
        self.it, self.n = it, n

    def __iter__(self) -> Iterator[Any]:
        return self.it

    def __len__(self) -> int:
        return self.n


def _prepare_out(out: Path, overwrite: bool, create: bool = True) -> None:
    """Refuse an ``out`` that holds anything but shards written earlier (and those unless
    ``overwrite``); with ``create``, empty and create it."""
    if is_remote(str(out)):
        raise ShardsError(
            f"write the shards to a local folder, then copy it to the bucket (e.g. aws s3 sync "
            f"OUT {out}); got {out}"
        )
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        if not overwrite:
            raise ShardsError(
                f"{out} exists and is not an empty folder; choose a new OUT or pass "
                f"--overwrite true to replace it"
            )
        if not ((out / MANIFEST).is_file() or (out / "train" / LITDATA_INDEX).is_file()):
            raise ShardsError(
                f"{out} is not a shard folder written by resnet-pl data optimize; --overwrite "
                f"only replaces those. Choose another OUT"
            )
        if create:
            shutil.rmtree(out)
    if create:
        out.mkdir(parents=True, exist_ok=True)


def _folder_items(
    root: Path,
    *,
    bad_files: str,
    val_fraction: float,
    seed: int,
    workers: int,
    progress: bool,
) -> tuple[dict[str, list[tuple[Any, int, str, str]]], list[str], list[str]]:
    """Per split ``(path, label, source name, sha256)``; the class names; the skipped list."""
    from resnet_pl.data.folder import hold_out, list_split_samples, scan_image_folder

    info = scan_image_folder(root)
    skipped: list[str] = []
    listed = {s: list_split_samples(info, s, bad_files, skipped, "--bad_files") for s in SPLITS}
    flat = [(str(p), 3) for s in SPLITS for p, _ in listed[s]]
    checked = _pool_map(_check_file, flat, workers, "checking images", progress)
    result: dict[str, list[tuple[Any, int, str, str]]] = {}
    k = 0
    for split in SPLITS:
        good = []
        for path, label in listed[split]:
            sha, problem = checked[k]
            k += 1
            if problem is not None:
                if bad_files == "error":
                    raise ImageLoadError(
                        f"{problem}. Remove or fix it, or use --bad_files skip to leave such "
                        f"files out."
                    )
                skipped.append(problem)
                continue
            good.append((str(path), label, str(path.relative_to(root)), sha))
        result[split] = good
    if not result["train"]:
        raise DataNotFoundError(
            f"no readable training images under {root}/train ({len(skipped)} bad file(s) or "
            f"empty folder(s) skipped)"
        )
    if not result["val"] and val_fraction > 0:
        # The same draw as the folder loader: shards and folder hold out the same images.
        result["train"], result["val"] = hold_out(result["train"], val_fraction, seed)
    return result, list(info["classes"]), skipped


def _builtin_items(
    name: str, data_dir: str | None, val_fraction: float, seed: int, progress: bool
) -> tuple[dict[str, list[tuple[Any, int, str, str]]], list[str], dict[str, Any]]:
    import torch

    from resnet_pl.data import datasets as ds
    from resnet_pl.data.specs import SPECS

    spec = SPECS[name]
    root = Path(data_dir).expanduser() if data_dir else None

    def load(split: str) -> tuple[Any, Any]:
        if name == "fake":
            n = 1024 if split == "train" else 256
            return ds.make_fake_dataset(n, spec, spec.image_size, seed + (split != "train"))
        if name in ds.IDX_DATASETS:
            return ds.load_idx_dataset(name, split, root)
        return ds.load_torchvision_dataset(name, split, root)

    result: dict[str, list[tuple[Any, int, str, str]]] = {}
    x, y = load("train")
    # The same held-out validation images as ImageDataModule(name, val_fraction, seed).
    n_val = round(len(y) * val_fraction)
    perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))
    parts = {"train": (x, y, perm[n_val:]), "val": (x, y, perm[:n_val])}
    xt, yt = load("test")
    parts["test"] = (xt, yt, torch.arange(len(yt)))
    for split, (images, labels, idx) in parts.items():
        rows = []
        for i in _progress(idx.tolist(), f"encoding {split}", progress):
            png = _png(images[i])
            src = "train" if split != "test" else "test"
            rows.append((png, int(labels[i]), f"{name}:{src}[{i}]", _sha256(png)))
        result[split] = rows
    info = {
        "dataset": name,
        "in_chans": spec.in_chans,
        "image_size": spec.image_size,
        "mean": list(spec.mean),
        "std": list(spec.std),
        "hflip": spec.hflip,
    }
    return result, list(spec.class_names), info


def optimize_dataset(
    src: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    num_workers: int | None = None,
    max_side: int | None = None,
    bad_files: str = "skip",
    val_fraction: float = 0.1,
    seed: int = 0,
    chunk_bytes: str | int = "64MB",
    compression: str | None = None,
    data_dir: str | None = None,
    overwrite: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """Write ``src`` to ``out`` as LitData shards; returns the manifest (``out/manifest.json``).

    Args:
        src: an image folder (``train/<class>/<images>``, optional ``val/`` and ``test/``) or
            a built-in dataset name (``fashion_mnist``, ``mnist``, ``cifar10``, ``cifar100``,
            ``svhn``, ``fake``), read from ``data_dir`` as ``ImageDataModule`` reads it.
        out: a new or empty local folder (copy it to a bucket afterwards to stream from there).
        num_workers: processes checking images and writing shards (default ``min(8, cpus)``).
        max_side: shrink images whose longer side exceeds this (re-encoded); ``None`` keeps
            every file's bytes as they are.
        bad_files: ``"skip"`` (leave unreadable images and empty class folders out, listed in
            the log and the manifest) or ``"error"`` (stop at the first, naming it).
        val_fraction, seed: when the source has no validation split, hold out this share of
            the training images, drawn as ``ImageDataModule`` draws it with the same seed.
        chunk_bytes: target size of a chunk file (LitData's default 64 MB: large enough for
            efficient object-store reads, small enough to shuffle across).
        compression: LitData chunk compression (``"zstd"``); encoded images rarely shrink.
        data_dir: where a built-in dataset's files are (default: where ``ImageDataModule``
            looks).
        overwrite: replace ``out`` when it holds shards written earlier.
        progress: progress bars on stderr.
    """
    litdata = require_litdata()
    if bad_files not in ("skip", "error"):
        raise ShardsError(f"bad_files must be 'skip' or 'error', got {bad_files!r}")
    if max_side is not None and max_side < 8:
        raise ShardsError(f"max_side must be at least 8 pixels, got {max_side}")
    if not 0.0 <= val_fraction < 1.0:
        raise ShardsError(f"val_fraction must be in [0, 1), got {val_fraction}")
    workers = num_workers or min(8, os.cpu_count() or 1)
    out_path = Path(out).expanduser()
    src_str = str(src)
    from resnet_pl.data.specs import SPECS

    started = time.perf_counter()
    _prepare_out(out_path, overwrite, create=False)  # refused before any work
    spec_info: dict[str, Any] | None = None
    skipped: list[str] = []
    if src_str in SPECS:
        _prepare_out(out_path, overwrite)
        items, classes, spec_info = _builtin_items(src_str, data_dir, val_fraction, seed, progress)
        source_desc = src_str
    else:
        root = Path(src_str).expanduser()
        if not root.is_dir():
            raise DataNotFoundError(
                f"{src_str} is neither an image folder nor a built-in dataset; give a folder "
                f"with train/<class>/<images> or one of {', '.join(SPECS)}"
            )
        items, classes, skipped = _folder_items(
            root,
            bad_files=bad_files,
            val_fraction=val_fraction,
            seed=seed,
            workers=workers,
            progress=progress,
        )
        _prepare_out(out_path, overwrite)  # only now: a bad file stops the run before this
        source_desc = str(root.resolve())
    if skipped:
        log.warning(
            "skipped %d bad image file(s) or empty folder(s) (bad_files='skip'):\n  %s",
            len(skipped),
            "\n  ".join(skipped),
        )
    counts: dict[str, int] = {}
    splits = [s for s in SPLITS if items.get(s)]
    for split in splits:
        rows = items[split]
        inputs = [(r[0], r[1], i, max_side) for i, r in enumerate(rows)]
        split_dir = out_path.resolve() / split
        litdata.optimize(
            fn=_encode_item,
            inputs=inputs,
            output_dir=str(split_dir),
            num_workers=max(1, min(workers, len(inputs))),
            chunk_bytes=chunk_bytes,
            compression=compression,
            reorder_files=False,
            keep_data_ordered=True,  # stored order = source order: reproducible shards
            verbose=progress,
            mode="overwrite",
            start_method="fork" if "fork" in mp.get_all_start_methods() else None,
        )
        counts[split] = len(rows)
    with open(out_path / SOURCES, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["split", "index", "label", "source", "sha256"])
        for split in splits:
            for i, (_, label, name, sha) in enumerate(items[split]):
                writer.writerow([split, i, label, name, sha])
    import litdata as _ld  # version recorded below

    manifest: dict[str, Any] = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "classes": classes,
        "counts": counts,
        "source": source_desc,
        "spec": spec_info,
        "max_side": max_side,
        "chunk_bytes": chunk_bytes,
        "compression": compression,
        "val_fraction": val_fraction if "val" in counts else None,
        "seed": seed,
        "bad_files": bad_files,
        "skipped": skipped,
        "sources": {"file": SOURCES, "sha256": _sha256((out_path / SOURCES).read_bytes())},
        "litdata_version": _ld.__version__,
        "seconds": round(time.perf_counter() - started, 2),
    }
    tmp = out_path / (MANIFEST + ".tmp")
    tmp.write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")
    os.replace(tmp, out_path / MANIFEST)  # last: a folder with a manifest is complete
    return manifest


# ---------------------------------------------------------------------------------------------
# Read
# ---------------------------------------------------------------------------------------------
def _fetch_remote(url: str, timeout: float, storage_options: Mapping[str, Any] | None) -> bytes:
    """``url``'s bytes through LitData's object-store clients, within ``timeout`` seconds."""
    require_litdata()
    result: dict[str, Any] = {}

    def run() -> None:
        try:
            from litdata.streaming.fs_provider import _get_fs_provider

            with tempfile.TemporaryDirectory() as tmp:
                local = os.path.join(tmp, "file")
                provider = _get_fs_provider(url, dict(storage_options or {}))
                provider.download_file(url, local)
                result["data"] = Path(local).read_bytes()
        except BaseException as err:  # reported below, in the caller's thread
            result["error"] = err

    # A daemon thread: a hung connection cannot keep the process alive after the error.
    thread = threading.Thread(target=run, daemon=True, name="resnet-pl-fetch")
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        raise ShardsError(
            f"no answer from {url} within {timeout:g} s; check the URL, the network and the "
            f"credentials (e.g. AWS_* variables), or raise --data.timeout"
        )
    if "error" in result:
        err = result["error"]
        reason = " ".join(str(err).split())[:300] or type(err).__name__
        raise ShardsError(
            f"cannot read {url} ({type(err).__name__}: {reason}); check the URL, the network "
            f"and the credentials, or copy the shards to a local folder"
        )
    return bytes(result["data"])


def read_manifest(
    url: str | os.PathLike[str],
    *,
    timeout: float = 60.0,
    storage_options: Mapping[str, Any] | None = None,
    check_chunks: bool = True,
) -> dict[str, Any]:
    """The manifest of the shard set at ``url`` (a local folder or ``s3://``/``gs://`` URL),
    checked: written by :func:`optimize_dataset`, every split's LitData index present, and (for
    a local folder) every chunk file present at its recorded size. Raises :class:`ShardsError`
    with one line naming the problem and the fix; a URL that does not answer within
    ``timeout`` seconds is such an error too."""
    url = str(url)
    hint = "create one with: resnet-pl data optimize SRC OUT"
    if is_remote(url):
        raw = _fetch_remote(join(url, MANIFEST), timeout, storage_options)
        where = url
    else:
        if "://" in url:
            raise ShardsError(
                f"cannot stream from {url}: use a local folder or one of "
                f"{', '.join(s[:-3] for s in REMOTE_SCHEMES)} URLs"
            )
        root = Path(url).expanduser()
        where = str(root)
        if not root.is_dir():
            raise ShardsError(f"shard folder {root} does not exist; {hint}")
        path = root / MANIFEST
        if not path.is_file():
            what = (
                "a LitData dataset but not one written by resnet-pl (no manifest.json)"
                if (root / LITDATA_INDEX).is_file()
                else "not a LitData dataset written by resnet-pl (no manifest.json)"
            )
            raise ShardsError(f"{root} is {what}; {hint}")
        raw = path.read_bytes()
    try:
        manifest = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ShardsError(f"{where}/{MANIFEST} is not valid JSON ({err}); {hint}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise ShardsError(f"{where}/{MANIFEST} is not a resnet-pl shard manifest; {hint}")
    if int(manifest.get("format_version", 0)) > FORMAT_VERSION:
        raise ShardsError(
            f"{where} was written by a newer resnet-pl (shard format "
            f"{manifest['format_version']}); upgrade resnet-pl or re-run resnet-pl data optimize"
        )
    counts = manifest.get("counts")
    classes = manifest.get("classes")
    if not isinstance(counts, dict) or not counts.get("train") or not classes:
        raise ShardsError(f"{where}/{MANIFEST} lists no training split or no classes; {hint}")
    if check_chunks and not is_remote(url):
        for split in counts:
            check_split(Path(url).expanduser() / split, int(counts[split]))
    return manifest


def check_split(folder: Path, count: int) -> None:
    """A local split folder: LitData's ``index.json`` readable, every chunk file present at the
    size the index records, and the item count the manifest records."""
    fix = "re-copy the shard folder or re-run resnet-pl data optimize"
    index_path = folder / LITDATA_INDEX
    try:
        index = json.loads(index_path.read_bytes())
        chunks = index["chunks"]
    except FileNotFoundError:
        raise ShardsError(f"{index_path} is missing; {fix}") from None
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise ShardsError(f"{index_path} is unreadable ({err}); {fix}") from None
    total = 0
    for chunk in chunks:
        path = folder / str(chunk["filename"])
        want = int(chunk["chunk_bytes"])
        total += int(chunk["chunk_size"])
        try:
            have = path.stat().st_size
        except FileNotFoundError:
            raise ShardsError(f"chunk {path} is missing; {fix}") from None
        if have != want:
            raise ShardsError(
                f"chunk {path} is truncated or altered ({have} bytes, the index records "
                f"{want}); {fix}"
            )
    if total != count:
        raise ShardsError(f"{folder} holds {total} items but the manifest records {count}; {fix}")


def sample_seed(seed: int, epoch: int, index: int) -> int:
    """The seed of one sample's augmentation: a function of (seed, epoch, index) only."""
    return (seed * 0x9E37_79B9_7F4A_7C15 + epoch * 1_000_003 + index) % (1 << 63)


try:  # The streaming dataset subclasses LitData's; without litdata it refuses to build.
    from litdata import StreamingDataset as _StreamingBase
except ImportError:  # pragma: no cover - exercised only without the extra

    class _StreamingBase:  # type: ignore[no-redef]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            require_litdata()


class ShardImageDataset(_StreamingBase):  # type: ignore[misc,valid-type]
    """One split of a shard set, streamed: ``(uint8 image (C, H, W), label)`` items, decoded by
    :func:`~resnet_pl.data.decode.load_image` and transformed by ``transform`` (the folder
    path's :func:`~resnet_pl.data.transforms.train_geometry` or
    :func:`~resnet_pl.data.transforms.eval_geometry`).

    ``augment_seed``: when set (training), the transform's random draws come from a generator
    seeded by :func:`sample_seed` ``(augment_seed, epoch, index)``, so they do not depend on the
    worker, the rank or where a resumed run restarted. ``with_index`` appends each sample's
    index in its split (tests and audits). Defined at module level: loader workers that spawn
    import it by name."""

    def __init__(
        self,
        input_dir: str,
        *,
        in_chans: int,
        transform: Callable[[Any], Any],
        augment_seed: int | None = None,
        with_index: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(input_dir, **kwargs)
        self.in_chans = in_chans
        self.image_transform = transform
        self.augment_seed = augment_seed
        self.with_index = with_index

    def __getitem__(self, index: Any) -> Any:
        import torch
        from torch import Tensor

        item = super().__getitem__(index)
        try:
            image = load_image(item["image"], self.in_chans)
        except ImageLoadError as err:
            raise ImageLoadError(
                f"cannot decode sample {item['index']} of {self.input_dir.path or ''}"
                f"{self.input_dir.url or ''}: {err}; re-run resnet-pl data optimize"
            ) from None
        if self.augment_seed is None:
            x = self.image_transform(image)
        else:
            # The CPU generator only (torch.manual_seed would also visit every accelerator
            # backend: 400x slower), restored afterwards so the caller's stream is untouched.
            saved = torch.get_rng_state()
            torch.default_generator.manual_seed(
                sample_seed(self.augment_seed, int(self.current_epoch), int(item["index"]))
            )
            try:
                x = self.image_transform(image)
            finally:
                torch.set_rng_state(saved)
        x = x.as_subclass(Tensor)
        if self.with_index:
            return x, int(item["label"]), int(item["index"])
        return x, int(item["label"])


class ShardSplitView:
    """A split of shards as a map-style dataset (``view[i]`` is sample ``i``, in stored
    order), for evaluation: a sampler then decides which rank reads what, exactly once each.
    LitData reads the chunk holding ``i`` (downloading it from a bucket when needed)."""

    def __init__(self, dataset: ShardImageDataset, count: int) -> None:
        self.dataset, self.count = dataset, count

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, i: int) -> Any:
        return self.dataset[i]
