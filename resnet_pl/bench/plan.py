"""Suites and the plan of cases they expand to.

A suite is a list of sweeps; a sweep is a cartesian product of settings. The suites are data:
``suites.json`` beside this module (shipped in the wheel), read into :class:`Suite` /
:class:`Sweep` records by :func:`load_suites`; a new suite is a new entry there.

Planning expands the sweeps, drops duplicates, marks cases that cannot run here with a reason
(fp16 on a CPU, ONNX Runtime training ...), and adds each case's baseline (the same arch, mode,
batch and input size in eager fp32 with contiguous memory) right before the first case that
needs it. Planning does no measurement, so ``--dry-run`` can show the GPU suite's plan on a
machine without CUDA.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from resnet_pl.bench import dense
from resnet_pl.errors import ResNetPLError
from resnet_pl.factory import model_info
from resnet_pl.models.registry import get_default_cfg, split_name

AUTOCAST_PRECISIONS = ("fp32", "tf32", "bf16", "fp16")
PRECISIONS = (*AUTOCAST_PRECISIONS, "int8")
# Precisions of autocast (PyTorch rows); the export rows read fp32/fp16/int8 as the dtype of the
# ONNX file that `resnet-pl export --dtype` writes.
EXPORT_DTYPES = ("fp32", "fp16", "int8")
EXPORT_RUNTIMES = ("onnxruntime", "openvino")
MEMORY_FORMATS = ("contiguous", "channels_last")
MODES = ("infer", "train")
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
DEVICES = ("cpu", "cuda")
IMAGENET_DEPTHS = ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152")
CIFAR_DEPTHS = ("resnet20", "resnet32", "resnet44", "resnet56", "resnet110")
# Architectures torchvision builds with the same structure and state-dict keys as ours.
TORCHVISION_TWINS = frozenset(
    {
        *IMAGENET_DEPTHS,
        "resnext50_32x4d",
        "resnext101_32x8d",
        "resnext101_64x4d",
        "wide_resnet50_2",
        "wide_resnet101_2",
    }
)
# Dense-prediction rows (see resnet_pl/bench/dense.py): backbones at output stride 16/8 and
# DeepLabV3 heads; resnet18 and resnet20 have no torchvision twin (it cannot dilate them).
DENSE_ARCHS = (
    "resnet50-os16",
    "resnet50-os8",
    "deeplabv3_resnet50",
    "resnet18-os8",
    "resnet20-os1",
    "deeplabv3_resnet20",
)


def arch_cfg(name: str) -> dict[str, Any]:
    """The default cfg of a registry name; for ``arch.tag`` (pretrained weights) with the
    weights' own input size and dataset, so a tagged model is timed on the input it takes."""
    if dense.parse(name) is not None:  # a dense-prediction spec on a registered arch
        dense.check(name)
        return get_default_cfg(dense.base_arch(name))
    arch, tag = split_name(name)
    cfg = get_default_cfg(arch)  # raises UnknownModelError (a ValueError) on unknown names
    if tag is not None:
        from resnet_pl.hub.weights import get_weights

        entry = get_weights(arch, tag)
        record = dict(entry.pretrained_cfg)
        size = record.get("input_size") or cfg["input_size"]
        cfg.update(input_size=(entry.in_chans, *tuple(size)[1:]), dataset=record.get("dataset"))
        keys = ("mean", "std", "interpolation", "crop_pct")
        cfg.update({k: record[k] for k in keys if k in record})
        cfg["pretrained"] = True
    return cfg


def openvino_version() -> str | None:
    """OpenVINO's version if it is installed (without importing it: that takes seconds)."""
    import importlib.util
    from importlib import metadata

    if importlib.util.find_spec("openvino") is None:
        return None
    try:
        return metadata.version("openvino")
    except metadata.PackageNotFoundError:
        return "unknown"


@dataclass(frozen=True)
class Sweep:
    """A cartesian product of settings; ``input_size=None`` takes the suite's size for the
    arch's family (ImageNet or CIFAR-style small stem)."""

    name: str
    archs: tuple[str, ...]
    modes: tuple[str, ...]
    batch_sizes: tuple[int, ...]
    precisions: tuple[str, ...] = ("fp32",)
    memory_formats: tuple[str, ...] = ("contiguous",)
    backends: tuple[str, ...] = ("eager",)
    input_size: int | None = None
    loader: bool = False
    twin: bool = True  # also time torchvision's twin (where one exists)
    steps: int | None = None  # per-sweep timing (None: the suite's); the command line wins
    warmup: int | None = None
    repeats: int | None = None
    eval_samples: int | None = None  # real images for the accuracy columns (None: the suite's)


@dataclass(frozen=True)
class Suite:
    name: str
    device: str
    description: str
    sweeps: tuple[Sweep, ...]
    sizes: dict[str, int]  # family -> input side in pixels
    steps: int
    warmup: int
    repeats: int
    time_budget_s: float  # no new case starts after this many seconds (0 = no limit)
    # "case": ours and the twin interleave within each case. "group": every case of the same
    # arch, mode, batch and input size is set up first, then their repeats interleave, so that
    # the eager fp32 reference and each deployment path see the same machine (the deploy suite).
    interleave: str = "case"
    eval_samples: int = 0  # real images per arch for top-1 (0: no accuracy columns)
    calibration_samples: int = 256  # images for the int8 export's calibration


@dataclass(frozen=True)
class Overrides:
    """Command-line choices that replace a suite's axes (``None`` keeps the suite's)."""

    archs: tuple[str, ...] | None = None
    modes: tuple[str, ...] | None = None
    batch_sizes: tuple[int, ...] | None = None
    precisions: tuple[str, ...] | None = None
    memory_formats: tuple[str, ...] | None = None
    backends: tuple[str, ...] | None = None
    input_size: int | None = None
    with_loader: bool = False

    def any(self) -> bool:
        return any(v not in (None, False) for v in dataclasses.asdict(self).values())


@dataclass(frozen=True)
class Capabilities:
    """What this process can run; planning marks the rest as skipped, with the reason."""

    cuda: bool
    cpu_bf16: bool
    ort_providers: tuple[str, ...] | None  # None: onnxruntime is not installed
    openvino: str | None = None  # its version; None: not installed

    @classmethod
    def detect(cls) -> Capabilities:
        import torch

        try:
            cpu_bf16 = bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
        except (AttributeError, RuntimeError):
            cpu_bf16 = False
        try:
            import onnxruntime

            providers: tuple[str, ...] | None = tuple(onnxruntime.get_available_providers())
        except ImportError:
            providers = None
        return cls(
            cuda=torch.cuda.is_available(),
            cpu_bf16=cpu_bf16,
            ort_providers=providers,
            openvino=openvino_version(),
        )


@dataclass(frozen=True)
class Case:
    """One planned measurement: our model, and torchvision's twin where one exists."""

    arch: str
    family: str
    mode: str
    batch_size: int
    input_size: int
    precision: str
    memory_format: str
    backend: str
    device: str
    loader: bool
    groups: tuple[str, ...] = ()
    skip: str | None = None
    twin: bool = True
    steps: int | None = None
    warmup: int | None = None
    repeats: int | None = None
    eval_samples: int | None = None

    @property
    def has_twin(self) -> bool:
        if dense.parse(self.arch) is not None:
            return self.twin and dense.has_twin(self.arch, TORCHVISION_TWINS)
        return (
            self.twin
            and not self.backend.startswith("export:")
            and self.family == "imagenet"
            and split_name(self.arch)[0] in TORCHVISION_TWINS
        )

    def group_key(self) -> tuple[Any, ...]:
        """Cases with equal keys are measured together in a suite with group interleave."""
        return (self.arch, self.mode, self.batch_size, self.input_size, self.device, self.loader)

    def path_key(self) -> tuple[Any, ...]:
        """The deployment path (the same at every batch size)."""
        return (self.arch, self.mode, self.input_size, self.precision, self.memory_format,
                self.backend, self.device, self.loader)  # fmt: skip

    def key(self) -> tuple[Any, ...]:
        return (
            self.arch,
            self.mode,
            self.batch_size,
            self.input_size,
            self.precision,
            self.memory_format,
            self.backend,
            self.device,
            self.loader,
        )

    def baseline(self) -> Case:
        return dataclasses.replace(
            self,
            precision="fp32",
            memory_format="contiguous",
            backend="eager",
            groups=("baseline",),
            skip=None,
        )

    def as_dict(self) -> dict[str, Any]:
        """Planned settings as stored in each result row (``requested_batch_size`` is the
        planned batch; the row's ``batch_size`` may be smaller after an OOM retry)."""
        return {
            "arch": self.arch,
            "family": self.family,
            "mode": self.mode,
            "requested_batch_size": self.batch_size,
            "input_size": self.input_size,
            "precision": self.precision,
            "memory_format": self.memory_format,
            "backend": self.backend,
            "device": self.device,
            "loader": self.loader,
            "groups": list(self.groups),
        }

    def label(self) -> str:
        loader = " +loader" if self.loader else ""
        return (
            f"{self.arch} {self.mode} bs{self.batch_size} {self.input_size}px {self.precision} "
            f"{self.memory_format} {self.backend}{loader}"
        )


# ---- the suites: data (suites.json), not code ----------------------------------------------
SUITES_FILE = Path(__file__).with_name("suites.json")
_SWEEP_TUPLES = ("archs", "modes", "batch_sizes", "precisions", "memory_formats", "backends")


class SuiteFileError(ResNetPLError, ValueError):
    """A suites file that cannot be read; the message names the file and the entry."""


def _expand_list(value: Any, lists: dict[str, list[Any]], where: str) -> tuple[Any, ...]:
    """A list, or ``"@name"`` for one of the file's named ``lists``."""
    if isinstance(value, str) and value.startswith("@"):
        if value[1:] not in lists:
            raise SuiteFileError(f"{where}: unknown list {value!r}; known: {sorted(lists)}")
        value = lists[value[1:]]
    if not isinstance(value, list) or not value:
        raise SuiteFileError(f"{where}: expected a non-empty list or '@name', got {value!r}")
    return tuple(value)


def parse_suites(doc: Any, source: str = "suites") -> dict[str, Suite]:
    """:class:`Suite` records from the parsed JSON of a suites file: ``{"lists": {name: [...]},
    "suites": {name: {device, description, sizes, steps, warmup, repeats, time_budget_s,
    [interleave, eval_samples, calibration_samples], sweeps: [{name, archs, modes,
    batch_sizes, ...Sweep fields}]}}}``; a list may be written ``"@name"`` for a named list."""
    if not isinstance(doc, dict) or not isinstance(doc.get("suites"), dict):
        raise SuiteFileError(f"{source}: expected an object with a 'suites' mapping")
    lists = doc.get("lists") or {}
    sweep_fields = {f.name for f in dataclasses.fields(Sweep)}
    suite_fields = {f.name for f in dataclasses.fields(Suite)} - {"name", "sweeps"}
    suites: dict[str, Suite] = {}
    for name, spec in doc["suites"].items():
        where = f"{source}: suite {name!r}"
        if not isinstance(spec, dict) or not isinstance(spec.get("sweeps"), list):
            raise SuiteFileError(f"{where}: expected an object with a 'sweeps' list")
        unknown = set(spec) - suite_fields - {"sweeps"}
        if unknown:
            raise SuiteFileError(f"{where}: unknown fields {sorted(unknown)}")
        sweeps = []
        for i, raw in enumerate(spec["sweeps"]):
            at = f"{where} sweep {i}"
            if not isinstance(raw, dict) or set(raw) - sweep_fields:
                extra = sorted(set(raw) - sweep_fields) if isinstance(raw, dict) else raw
                raise SuiteFileError(f"{at}: unknown fields {extra}")
            values: dict[str, Any] = {
                k: _expand_list(v, lists, f"{at} {k}") if k in _SWEEP_TUPLES else v
                for k, v in raw.items()
            }
            try:
                sweeps.append(Sweep(**values))
            except TypeError as e:
                raise SuiteFileError(f"{at}: {e}") from None
        try:
            suites[name] = Suite(name=name, sweeps=tuple(sweeps), **_without(spec, "sweeps"))
        except TypeError as e:
            raise SuiteFileError(f"{where}: {e}") from None
    return suites


def _without(spec: dict[str, Any], *keys: str) -> dict[str, Any]:
    return {k: v for k, v in spec.items() if k not in keys}


def load_suites(path: str | Path = SUITES_FILE) -> dict[str, Suite]:
    """The suites of a JSON file (default: the ones shipped with resnet-pl)."""
    path = Path(path)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise SuiteFileError(f"cannot read suites file {path}: {e}") from None
    return parse_suites(doc, str(path))


SUITES: dict[str, Suite] = load_suites()


def normalize_backend(backend: str, device: str) -> str:
    """``compile`` -> ``compile:default``; ``onnxruntime``/``ort`` -> ``onnxruntime:<provider>``
    for the device. Raises ``ValueError`` naming the accepted spellings."""
    name, _, option = backend.strip().partition(":")
    if name == "eager" and not option:
        return "eager"
    if name == "cudagraphs" and not option:
        return "cudagraphs"
    if name == "compile":
        mode = option or "default"
        if mode not in COMPILE_MODES:
            raise ValueError(
                f"unknown torch.compile mode {mode!r} in backend {backend!r}; use one of "
                + ", ".join(f"compile:{m}" for m in COMPILE_MODES)
            )
        return f"compile:{mode}"
    if name == "export" or (name == "openvino" and not option):
        runtime = "openvino" if name == "openvino" else (option or "onnxruntime")
        if runtime not in EXPORT_RUNTIMES:
            raise ValueError(
                f"unknown runtime {runtime!r} in backend {backend!r}; use "
                + " or ".join(f"export:{r}" for r in EXPORT_RUNTIMES)
            )
        return f"export:{runtime}"
    if name in ("onnxruntime", "ort"):
        provider = option or (
            "CUDAExecutionProvider" if device == "cuda" else "CPUExecutionProvider"
        )
        return f"onnxruntime:{provider}"
    raise ValueError(
        f"unknown backend {backend!r}; use eager, compile[:MODE] (MODE one of "
        f"{', '.join(COMPILE_MODES)}), cudagraphs, onnxruntime[:PROVIDER] (its own fp32 "
        "export), or export:onnxruntime / export:openvino (the files resnet-pl export writes, "
        "at the row's precision fp32/fp16/int8)"
    )


def final_feature_side(family: str, input_size: int) -> int:
    """Spatial side of the last stage's output (every stride-2 layer maps n to ceil(n / 2))."""
    halvings = 5 if family == "imagenet" else 2
    side = input_size
    for _ in range(halvings):
        side = -(-side // 2)
    return side


def skip_reason(case: Case, caps: Capabilities) -> str | None:
    """Why ``case`` cannot run on this machine, or ``None`` if it can."""
    if dense.parse(case.arch) is not None:
        if case.mode == "train":
            return "dense-prediction rows (backbones, segmentation) time the forward pass only"
        if case.backend.startswith("onnxruntime"):
            return "ONNX Runtime rows export classifiers only"
    if case.device == "cuda" and not caps.cuda:
        return "no CUDA device (torch.cuda.is_available() is False)"
    if case.backend.startswith("export:"):
        return _export_skip_reason(case, caps)
    if case.precision == "int8":
        return (
            "int8 is the dtype of a quantised ONNX file: use backend export:onnxruntime or "
            "export:openvino"
        )
    if case.device == "cpu":
        if case.precision in ("fp16", "tf32"):
            return f"{case.precision} is GPU-only (on CPU this suite runs fp32 and bf16 autocast)"
        if case.precision == "bf16" and not caps.cpu_bf16:
            return "this CPU has no bf16 support (torch.ops.mkldnn._is_mkldnn_bf16_supported())"
        if case.backend == "cudagraphs":
            return "CUDA graphs need a CUDA device"
    if case.backend.startswith("onnxruntime"):
        provider = case.backend.partition(":")[2]
        if caps.ort_providers is None:
            return "onnxruntime is not installed (pip install 'resnet-pl[onnx]')"
        if case.mode == "train":
            return "ONNX Runtime rows are inference only"
        if case.precision != "fp32":
            return "ONNX Runtime rows run the fp32 export (autocast precisions do not export)"
        if provider not in caps.ort_providers:
            hint = " (install onnxruntime-gpu)" if provider == "CUDAExecutionProvider" else ""
            return (
                f"onnxruntime provider {provider} is not available here{hint}; available: "
                f"{', '.join(caps.ort_providers)}"
            )
    if case.backend == "cudagraphs" and case.mode == "train" and case.precision == "fp16":
        return "fp16 training needs GradScaler, whose inf check syncs with the host: not capturable"
    if (
        case.mode == "train"
        and case.batch_size == 1
        and final_feature_side(case.family, case.input_size) == 1
    ):
        return (
            "BatchNorm in training needs more than one value per channel: batch 1 with a "
            "1x1 final feature map; use batch >= 2 or a larger input"
        )
    return None


def _export_skip_reason(case: Case, caps: Capabilities) -> str | None:
    runtime = case.backend.partition(":")[2]
    if case.device != "cpu":
        return "export rows run on the CPU (ONNX Runtime's and OpenVINO's CPU plugins)"
    if case.mode == "train":
        return "exported files are for inference only"
    if case.precision not in EXPORT_DTYPES:
        return (
            f"resnet-pl export writes {'/'.join(EXPORT_DTYPES)} files, not {case.precision} "
            "(OpenVINO may run an fp32 file in bf16 by itself: see the row's runtime_precision)"
        )
    if caps.ort_providers is None:
        return "onnxruntime is not installed (pip install 'resnet-pl[onnx]')"
    if runtime == "openvino" and caps.openvino is None:
        return "openvino is not installed (pip install 'resnet-pl[openvino]')"
    return None


def _check_choices(name: str, values: Sequence[str], allowed: Sequence[str]) -> None:
    bad = [v for v in values if v not in allowed]
    if bad:
        raise ValueError(f"unknown {name} {bad}; choose from {', '.join(allowed)}")


def expand(
    suite: Suite, overrides: Overrides, caps: Capabilities, device: str | None = None
) -> list[Case]:
    """The suite's cases in order (duplicates merged, baselines added, skips marked).

    Raises ``ValueError`` with a clear message on an unknown arch, precision, mode, memory
    format, backend or a non-positive batch/input size.
    """
    device = device or suite.device
    if device not in DEVICES:
        raise ValueError(f"unknown device {device!r}; use cpu or cuda")
    ov = overrides
    for name, vals, allowed in (
        ("precision", ov.precisions, PRECISIONS),
        ("memory format", ov.memory_formats, MEMORY_FORMATS),
        ("mode", ov.modes, MODES),
    ):
        if vals is not None:
            _check_choices(name, vals, allowed)
    if ov.batch_sizes is not None and any(b < 1 for b in ov.batch_sizes):
        raise ValueError(f"batch sizes must be >= 1, got {list(ov.batch_sizes)}")
    if ov.input_size is not None and ov.input_size < 8:
        raise ValueError(f"input size must be >= 8 pixels, got {ov.input_size}")

    cases: dict[tuple[Any, ...], Case] = {}
    for sweep in suite.sweeps:
        archs = ov.archs or sweep.archs
        families = {a: arch_family(a) for a in archs}  # raises on unknown names
        backends = [normalize_backend(b, device) for b in (ov.backends or sweep.backends)]
        for arch in archs:
            family = families[arch]
            size = ov.input_size or sweep.input_size or suite.sizes.get(family)
            if size is None:  # a family the suite has no size for: the arch's own default
                size = int(arch_cfg(arch)["input_size"][-1])
            for mode in ov.modes or sweep.modes:
                for bs in ov.batch_sizes or sweep.batch_sizes:
                    for prec in ov.precisions or sweep.precisions:
                        for fmt in ov.memory_formats or sweep.memory_formats:
                            for backend in backends:
                                if backend.startswith(("onnxruntime", "export:")):
                                    fmt = "contiguous"  # the runtime picks its own layout
                                case = Case(
                                    arch, family, mode, bs, size, prec, fmt, backend, device,
                                    ov.with_loader or sweep.loader, (sweep.name,),
                                    twin=sweep.twin, steps=sweep.steps, warmup=sweep.warmup,
                                    repeats=sweep.repeats, eval_samples=sweep.eval_samples,
                                )  # fmt: skip
                                _add(cases, case)
    ordered: dict[tuple[Any, ...], Case] = {}
    for case in cases.values():
        base = case.baseline()
        if base.key() not in ordered:
            _add(ordered, cases.get(base.key(), base))
        _add(ordered, case)
    return [dataclasses.replace(c, skip=skip_reason(c, caps)) for c in ordered.values()]


def arch_family(arch: str) -> str:
    """``"imagenet"`` or ``"small"``, for a registered arch or a dense spec on one; raises
    ``ValueError`` on an unknown name or an impossible output stride."""
    return str(arch_cfg(arch)["family"])


def _add(cases: dict[tuple[Any, ...], Case], case: Case) -> None:
    """Insert ``case`` or merge its sweep names into an equal case already there."""
    old = cases.get(case.key())
    if old is None:
        cases[case.key()] = case
    else:
        groups = tuple(dict.fromkeys(old.groups + case.groups))
        cases[case.key()] = dataclasses.replace(old, groups=groups)


@cache
def forward_flops(arch: str, input_size: int) -> int:
    """Forward FLOPs per image of ``arch`` at ``input_size`` px (meta device: no memory)."""
    if dense.parse(arch) is not None:
        return dense.flops(arch, input_size)
    chans = int(arch_cfg(arch)["input_size"][0])
    return model_info(arch, (chans, input_size, input_size)).flops


def planned_gflops(case: Case) -> float:
    """GFLOPs one case will execute (ours + twin, warm-up and timed steps excluded)."""
    factor = 3 if case.mode == "train" else 1
    return forward_flops(case.arch, case.input_size) * factor * case.batch_size / 1e9


def format_plan(cases: Sequence[Case], suite: Suite, steps: int, warmup: int, repeats: int) -> str:
    """A human-readable table of planned rows for ``--dry-run``, with the total work (FLOPs of
    every warm-up and timed step of ours and the twins) to size a run before starting it."""
    header = (
        f"{'#':>3}  {'arch':<18} {'mode':<5} {'bs':>5} {'px':>4} {'prec':<5} {'format':<13} "
        f"{'backend':<32} {'twin':<5} {'GFLOP/step':>10}  groups / skip reason"
    )
    lines = [header, "-" * len(header)]
    work = 0.0
    measurements = 0
    for i, c in enumerate(cases, 1):
        gf = planned_gflops(c)
        twin = "tv" if c.has_twin else "-"
        loader = "+loader" if c.loader else ""
        status = f"SKIP: {c.skip}" if c.skip else ",".join(c.groups)
        lines.append(
            f"{i:>3}  {c.arch:<18} {c.mode:<5} {c.batch_size:>5} {c.input_size:>4} "
            f"{c.precision:<5} {c.memory_format:<13} {c.backend + loader:<32} {twin:<5} "
            f"{gf:>10.1f}  {status}"
        )
        if not c.skip:
            impls = 2 if c.has_twin else 1
            measurements += impls
            c_warmup = warmup if c.warmup is None else c.warmup
            work += gf * impls * (c_warmup + (c.steps or steps) * (c.repeats or repeats))
    skipped = sum(1 for c in cases if c.skip)
    lines.append("-" * len(header))
    lines.append(
        f"suite {suite.name}: {len(cases)} cases ({len(cases) - skipped} to run, {skipped} "
        f"skipped), {measurements} model measurements, {steps} steps x {repeats} repeats after "
        f"{warmup} warm-up steps; about {work / 1e3:.1f} TFLOP of work in total"
    )
    return "\n".join(lines)
