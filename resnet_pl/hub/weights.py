"""The pretrained-weights registry: ``arch.tag`` names -> :class:`WeightsEntry`.

Weights live beside the architectures (timm-style): ``create_model("resnet20.fashion_mnist",
pretrained=True)`` names an architecture and one of its weights. Three kinds of entries:

- **shipped** weights trained with this project: *data*, one JSON record per entry in
  ``resnet_pl/weights/<arch>.<tag>.json`` next to ``<arch>.<tag>.safetensors`` (written by
  ``resnet-pl hub publish``), read when this module is imported;
- **extra** records in the folders listed in the ``RESNET_PL_EXTRA_WEIGHTS`` environment variable
  (``os.pathsep``-separated), same format: a user's own published weights, or a test's;
- **torchvision** ImageNet-1k weights, registered in code below as ``<arch>.tv_in1k``
  (``IMAGENET1K_V1``) and ``<arch>.tv2_in1k`` (``IMAGENET1K_V2``): the ImageNet-family models
  here have torchvision-identical state dicts, so those files load with ``strict=True``.

Nothing here downloads or opens a weights file; see :mod:`resnet_pl.hub.files`.
"""

from __future__ import annotations

import copy
import difflib
import fnmatch
import json
import os
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from resnet_pl.data.specs import IMAGENET_MEAN, IMAGENET_STD
from resnet_pl.errors import ResNetPLError

SHIPPED_DIR = Path(__file__).resolve().parent.parent / "weights"
EXTRA_WEIGHTS_ENV = "RESNET_PL_EXTRA_WEIGHTS"
RECORD_FORMAT = 1

# Keys every pretrained_cfg carries (``None`` where not applicable, e.g. no url for a shipped
# file). Checked when a record is read so that a half-written record fails loudly.
REQUIRED_CFG_KEYS = (
    "mean",
    "std",
    "input_size",
    "interpolation",
    "crop_pct",
    "num_classes",
    "categories",
    "dataset",
    "metrics",
    "num_params",
    "gflops",
    "recipe",
    "license",
    "origin",
    "resnet_pl_version",
    "stem",
)


class UnknownWeightsError(ResNetPLError, ValueError):
    """A weights name that is not registered; the message lists what is."""


class WeightsVerificationError(ResNetPLError, RuntimeError):
    """A weights file failed verification (hash, size or format) and was not used.

    The message names the file, what was expected, what was found, and what to do.
    """


class WeightsUnavailableError(ResNetPLError, FileNotFoundError):
    """The weights are registered but no verified file can be had (offline, not cached)."""


class WeightsMismatchError(ResNetPLError, ValueError):
    """Verified weights that do not fit the model they are loaded into (a different
    architecture or options); the message names the keys and shapes that differ."""


@dataclass(frozen=True)
class WeightsEntry:
    """One set of pretrained weights for one architecture.

    Attributes:
        arch: registry architecture name (``resnet20``).
        tag: the weights' tag (``fashion_mnist``); the full name is ``arch.tag``.
        arch_kwargs: builder options needed to rebuild the exact network
            (e.g. ``{"stem": "small"}``), beyond ``num_classes``/``in_chans``.
        num_classes, in_chans: the classifier size and input channels of the weights.
        pretrained_cfg: everything else, exposed as ``model.pretrained_cfg`` on models built
            from it: preprocessing (``mean``, ``std``, ``input_size``, ``interpolation``,
            ``crop_pct``), ``categories``, ``dataset``, measured ``metrics``, ``num_params``,
            ``gflops``, ``recipe``, the file (``file`` and/or ``url``, ``hf_hub_id``) and its
            ``sha256`` (or torchvision's published ``sha256_prefix``), ``license``, ``origin``,
            ``resnet_pl_version`` and ``stem``.
        record_dir: folder of the JSON record for shipped/extra entries (where ``file`` lives);
            ``None`` for entries registered in code.
    """

    arch: str
    tag: str
    arch_kwargs: Mapping[str, Any]
    num_classes: int
    in_chans: int
    pretrained_cfg: Mapping[str, Any] = field(repr=False)
    record_dir: Path | None = None

    def __hash__(self) -> int:  # the dict fields are not hashable; the name is unique
        return hash(self.name)

    @property
    def name(self) -> str:
        return f"{self.arch}.{self.tag}"

    @property
    def file(self) -> str | None:
        """File name of the weights (in ``record_dir`` when shipped, in the cache otherwise)."""
        value = self.pretrained_cfg.get("file")
        return str(value) if value else None

    @property
    def url(self) -> str | None:
        value = self.pretrained_cfg.get("url")
        return str(value) if value else None

    @property
    def hf_hub_id(self) -> str | None:
        value = self.pretrained_cfg.get("hf_hub_id")
        return str(value) if value else None

    @property
    def sha256(self) -> str | None:
        """The full sha256 hex digest, if published (torchvision publishes only a prefix)."""
        value = self.pretrained_cfg.get("sha256")
        return str(value).lower() if value else None

    @property
    def sha256_prefix(self) -> str | None:
        value = self.pretrained_cfg.get("sha256_prefix")
        return str(value).lower() if value else None

    @property
    def file_format(self) -> str:
        """``"safetensors"`` or ``"pth"`` (a state dict read with ``weights_only=True``),
        decided by the registered file name, never by the file's content."""
        name = self.file or (self.url or "").rsplit("/", 1)[-1]
        return "safetensors" if name.endswith(".safetensors") else "pth"

    @property
    def shipped_path(self) -> Path | None:
        """Where the file is when it comes with the package (or an extra records folder)."""
        if self.record_dir is None or self.file is None:
            return None
        return self.record_dir / self.file

    def cfg(self) -> dict[str, Any]:
        """A deep copy of ``pretrained_cfg`` (callers may modify it)."""
        return copy.deepcopy(dict(self.pretrained_cfg))


_ENTRIES: dict[str, WeightsEntry] = {}
_DEFAULT_TAGS: dict[str, str] = {}


# --------------------------------------------------------------------------------------------
# Registration and look-up
# --------------------------------------------------------------------------------------------
def register_weights(entry: WeightsEntry, *, default: bool = False, replace: bool = False) -> None:
    """Add ``entry`` to the registry. The first entry of an architecture becomes its default
    tag unless a later one is registered with ``default=True``.

    Raises:
        ValueError: the name is taken (pass ``replace=True`` to overwrite), or the entry lacks
            a hash or a source.
    """
    if entry.name in _ENTRIES and not replace:
        raise ValueError(f"weights {entry.name!r} are already registered")
    if "." in entry.arch or not entry.tag or "." in entry.tag:
        raise ValueError(f"weights name must be 'arch.tag' with one dot, got {entry.name!r}")
    if not (entry.sha256 or entry.sha256_prefix):
        raise ValueError(f"weights {entry.name!r} have no sha256: every file must be verifiable")
    if not (entry.shipped_path or entry.url or entry.hf_hub_id):
        raise ValueError(f"weights {entry.name!r} have no file, url or hf_hub_id")
    missing = [k for k in REQUIRED_CFG_KEYS if k not in entry.pretrained_cfg]
    if missing:
        raise ValueError(f"weights {entry.name!r}: pretrained_cfg lacks {', '.join(missing)}")
    _ENTRIES[entry.name] = entry
    if default or entry.arch not in _DEFAULT_TAGS:
        _DEFAULT_TAGS[entry.arch] = entry.tag


def remove_weights(name: str) -> None:
    """Unregister ``arch.tag`` (tests, or a user replacing an entry). Its architecture's default
    falls back to the first remaining tag."""
    entry = _ENTRIES.pop(name, None)
    if entry is None:
        return
    if _DEFAULT_TAGS.get(entry.arch) == entry.tag:
        del _DEFAULT_TAGS[entry.arch]
        rest = [e.tag for e in _ENTRIES.values() if e.arch == entry.arch]
        if rest:
            _DEFAULT_TAGS[entry.arch] = rest[0]


def list_pretrained(pattern: str | None = None) -> list[str]:
    """Names of all registered weights (``arch.tag``), sorted, optionally filtered by a shell
    pattern: ``list_pretrained("resnet50.*")``, ``list_pretrained("*fashion*")``."""
    names = sorted(_ENTRIES)
    return [n for n in names if pattern is None or fnmatch.fnmatch(n, pattern)]


def default_tag(arch: str) -> str | None:
    """The tag ``create_model(arch, pretrained=True)`` loads, or ``None`` if ``arch`` has no
    weights."""
    return _DEFAULT_TAGS.get(arch)


def iter_weights(arch: str | None = None) -> Iterator[WeightsEntry]:
    """Registered entries (of one architecture), default tag first, then by name."""
    for name in sorted(
        _ENTRIES, key=lambda n: (_ENTRIES[n].tag != default_tag(_ENTRIES[n].arch), n)
    ):
        entry = _ENTRIES[name]
        if arch is None or entry.arch == arch:
            yield entry


def get_weights(arch: str, tag: str | None = None) -> WeightsEntry:
    """The entry for ``arch.tag``; ``tag=None`` means the architecture's default tag. ``arch``
    may also be a full ``"arch.tag"`` name.

    Raises:
        UnknownWeightsError: no such weights; the message lists the architecture's tags (or
            close names) and how to see them all.
    """
    if tag is None and "." in arch:
        arch, tag = arch.split(".", 1)
    if tag is None:
        tag = default_tag(arch)
        if tag is None:
            with_weights = sorted({e.arch for e in _ENTRIES.values()})
            raise UnknownWeightsError(
                f"no pretrained weights are registered for {arch!r}; architectures with "
                f"weights: {', '.join(with_weights) or '(none)'}. Build it without "
                f"pretrained=True to train it from scratch."
            )
    name = f"{arch}.{tag}"
    if name in _ENTRIES:
        return _ENTRIES[name]
    same_arch = [n for n in sorted(_ENTRIES) if n.startswith(arch + ".")]
    close = same_arch or difflib.get_close_matches(name, list(_ENTRIES), n=5, cutoff=0.6)
    hint = f" Available: {', '.join(close)}." if close else ""
    raise UnknownWeightsError(
        f"unknown weights {name!r}.{hint} See resnet_pl.list_pretrained() or "
        f"`resnet-pl hub list` for all {len(_ENTRIES)}."
    )


# --------------------------------------------------------------------------------------------
# JSON records (shipped and extra weights)
# --------------------------------------------------------------------------------------------
def entry_to_record(entry: WeightsEntry, *, default: bool = False) -> dict[str, Any]:
    """The JSON-serialisable record of ``entry`` (the format ``read_record`` reads)."""
    return {
        "format": RECORD_FORMAT,
        "arch": entry.arch,
        "tag": entry.tag,
        "default": default,
        "arch_kwargs": jsonable(dict(entry.arch_kwargs)),
        "num_classes": entry.num_classes,
        "in_chans": entry.in_chans,
        "pretrained_cfg": jsonable(dict(entry.pretrained_cfg)),
    }


def record_text(entry: WeightsEntry, *, default: bool = False) -> str:
    """The JSON text of ``entry``'s record."""
    return json.dumps(entry_to_record(entry, default=default), indent=2, sort_keys=False) + "\n"


def write_record(entry: WeightsEntry, path: Path, *, default: bool = False) -> None:
    """Write ``entry``'s record to ``path`` atomically (a half-written record is never read)."""
    from resnet_pl.fileio import write_text

    write_text(path, record_text(entry, default=default))


def read_record(path: Path) -> tuple[WeightsEntry, bool]:
    """Parse one ``<arch>.<tag>.json`` record into an entry and its ``default`` flag.

    Raises:
        ValueError: malformed record (message names the file and the problem).
    """
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise ValueError(f"weights record {path} is not readable JSON: {err}") from None
    if not isinstance(data, dict) or data.get("format") != RECORD_FORMAT:
        raise ValueError(f"weights record {path} is not a format-{RECORD_FORMAT} record")
    try:
        arch, tag = str(data["arch"]), str(data["tag"])
        cfg = dict(data["pretrained_cfg"])
        entry = WeightsEntry(
            arch=arch,
            tag=tag,
            arch_kwargs=dict(data.get("arch_kwargs") or {}),
            num_classes=int(data["num_classes"]),
            in_chans=int(data["in_chans"]),
            pretrained_cfg=_tuples(cfg),
            record_dir=path.parent,
        )
    except (KeyError, TypeError, ValueError) as err:
        raise ValueError(f"weights record {path} is malformed: {err!r}") from None
    if path.name != f"{entry.name}.json":
        raise ValueError(f"weights record {path} describes {entry.name!r}; rename it or fix it")
    return entry, bool(data.get("default", False))


def load_records(folder: Path) -> list[str]:
    """Register every record in ``folder``; malformed ones are skipped with a warning (one bad
    file must not make ``import resnet_pl`` fail). Returns the names registered."""
    names: list[str] = []
    if not folder.is_dir():
        return names
    for path in sorted(folder.glob("*.json")):
        try:
            entry, default = read_record(path)
            register_weights(entry, default=default, replace=True)
        except ValueError as err:
            warnings.warn(f"skipping weights record: {err}", stacklevel=2)
            continue
        names.append(entry.name)
    return names


def extra_dirs() -> list[Path]:
    """Folders named by ``RESNET_PL_EXTRA_WEIGHTS``, in order."""
    value = os.environ.get(EXTRA_WEIGHTS_ENV, "")
    return [Path(p).expanduser() for p in value.split(os.pathsep) if p.strip()]


def package_version() -> str:
    """The resnet-pl version records carry: :data:`resnet_pl.version.__version__`, the one
    version source (``pyproject.toml`` reads it too)."""
    from resnet_pl.version import __version__

    return __version__


def jsonable(value: Any) -> Any:
    """``value`` with tuples as lists and paths as strings, ready for ``json.dumps``."""
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


def _tuples(cfg: dict[str, Any]) -> dict[str, Any]:
    """JSON turns tuples into lists; restore the tuple-valued preprocessing keys."""
    for key in ("input_size", "mean", "std"):
        if isinstance(cfg.get(key), list):
            cfg[key] = tuple(cfg[key])
    return cfg


# --------------------------------------------------------------------------------------------
# torchvision's ImageNet-1k weights
# --------------------------------------------------------------------------------------------
TORCHVISION_ARCHS = (
    "resnet18",
    "resnet34",
    "resnet50",
    "resnet101",
    "resnet152",
    "resnext50_32x4d",
    "resnext101_32x8d",
    "resnext101_64x4d",
    "wide_resnet50_2",
    "wide_resnet101_2",
)
_TV_TAGS = {"IMAGENET1K_V1": "tv_in1k", "IMAGENET1K_V2": "tv2_in1k"}


def _register_torchvision() -> None:
    """Register torchvision's ImageNet-1k weights for our ImageNet-family models, with the
    numbers torchvision publishes in each weights enum's ``meta`` (accuracy, parameters,
    operations, categories) and the sha256 prefix in its file name."""
    from torchvision.models import get_model_weights

    for arch in TORCHVISION_ARCHS:
        enum = get_model_weights(arch)
        default = getattr(enum, "DEFAULT", None)
        for member in enum:
            tag = _TV_TAGS.get(member.name)
            if tag is None:
                continue
            url = member.url
            stem = url.rsplit("/", 1)[-1].rsplit(".", 1)[0]
            prefix = stem.rsplit("-", 1)[-1]
            meta = member.meta
            resize = int(member.transforms().resize_size[0])
            acc = meta["_metrics"]["ImageNet-1K"]
            cfg: dict[str, Any] = {
                "mean": IMAGENET_MEAN,
                "std": IMAGENET_STD,
                "input_size": (3, 224, 224),
                "interpolation": "bilinear",
                # timm's convention: 224/256 = 0.875 (V1), 224/232 -> 0.965 (V2), both giving
                # torchvision's exact resize (floor(224 / crop_pct) = 256 / 232).
                "crop_pct": 0.875 if resize == 256 else 0.965,
                "num_classes": 1000,
                "categories": list(meta["categories"]),
                "dataset": "imagenet-1k",
                "metrics": {
                    "top1": acc["acc@1"],
                    "top5": acc["acc@5"],
                    "split": "val",
                    "n": 50000,
                    "source": "published by torchvision",
                },
                "num_params": int(meta["num_params"]),
                # torchvision's "GFLOPS" (``_ops``) are multiply-accumulates; this project
                # counts 2 FLOPs per MAC (see model_info), hence the factor 2.
                "gflops": round(2 * float(meta["_ops"]), 3),
                "gmacs": float(meta["_ops"]),
                "recipe": meta.get("recipe"),
                "file": None,
                "url": url,
                "hf_hub_id": None,
                "sha256": None,
                "sha256_prefix": prefix,
                "file_size_mb": meta.get("_file_size"),
                "license": "BSD-3-Clause (torchvision)",
                "origin": f"torchvision {arch} weights {member.name} "
                f"(torchvision.models.{enum.__name__}.{member.name})",
                "credit": "TorchVision maintainers and contributors, https://github.com/pytorch/vision",
                "resnet_pl_version": package_version(),
                "stem": "imagenet",
                "torchvision_weights": f"{enum.__name__}.{member.name}",
            }
            entry = WeightsEntry(arch, tag, {}, 1000, 3, cfg)
            register_weights(entry, default=member is default)


def reload_registry() -> None:
    """(Re)build the registry: torchvision entries, then shipped records, then the extra
    folders named by ``RESNET_PL_EXTRA_WEIGHTS`` (later ones override a same-named entry)."""
    _ENTRIES.clear()
    _DEFAULT_TAGS.clear()
    _register_torchvision()
    load_records(SHIPPED_DIR)
    for folder in extra_dirs():
        load_records(folder)


reload_registry()
