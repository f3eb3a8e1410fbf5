"""Export a resnet-pl model to ONNX, checked end to end.

:func:`export_onnx` folds BatchNorm into the convolutions, exports with the ``torch.export``
("dynamo") exporter by default, proves the file in ONNX Runtime against PyTorch, and writes the
metadata a deployment needs (classes, normalisation, input size, provenance) into the file.

Exporter choice (measured with torch 2.14.1, onnxruntime 1.32, on this project's CPU): both
exporters produce graphs whose ONNX Runtime outputs match PyTorch to ~1e-6 on resnet20,
preact_resnet20, wrn_16_4, resnet18 and resnet50. The dynamo exporter is the default because it
is the one PyTorch maintains (the TorchScript exporter emits a DeprecationWarning announcing its
removal, and is capped at opset 20); it is slower (about 2-4 s against 0.1-1 s per model here).
Since dynamo exports of ResNets have been silently wrong in some torch releases, every export is
checked in ONNX Runtime straight away, and ``exporter="auto"`` falls back to the TorchScript
exporter when the dynamo export raises or misses the fp32 tolerance. Opsets below 18 (which the
dynamo exporter cannot emit) go to the TorchScript exporter directly.

Tolerances (see :data:`TOLERANCES`): fp32 files must match PyTorch to
``1e-4 * max(1, max |logit|)`` with identical top-1 labels (a swap between two classes whose
PyTorch logits differ by less than that tolerance is a tie, not an error); fp16 and int8 files
are judged on top-1 agreement with fp32 PyTorch and on the accuracy change over real labelled
data, with the max-abs difference reported but not gated.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import logging
import os
import tempfile
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor, nn

from resnet_pl.deploy.datasets import fashion_mnist_available, load_fashion_mnist
from resnet_pl.deploy.fold import fold_batchnorm as _fold
from resnet_pl.deploy.preprocess import preprocess_uint8, resolve_data_cfg
from resnet_pl.deploy.source import ModelSource, base_metadata, load_model, sha256_file
from resnet_pl.errors import ResNetPLError
from resnet_pl.fileio import as_write_error, fsync_dir, make_dirs

Exporter = Literal["auto", "dynamo", "torchscript"]
DataLike = Tensor | np.ndarray | tuple[Any, Any] | Sequence[Tensor] | str

DEFAULT_OPSET = 18  # the lowest opset the dynamo exporter emits natively; ORT >= 1.14 runs it
MIN_OPSET = 13  # per-channel QuantizeLinear (int8) and Slice with steps need it
DYNAMO_MIN_OPSET = 18
TORCHSCRIPT_MAX_OPSET = 20
MAX_OPSET = 23
EXPORT_BATCH = 2  # torch.export specialises dims of size 0/1, so never trace a dynamic dim at 1
INPUT_NAME, OUTPUT_NAME = "input", "logits"
FOLD_RTOL = 1e-5  # folded PyTorch model vs original, relative to max(1, max |logit|)
_DTYPE_ALIASES = {
    "fp32": "fp32",
    "float32": "fp32",
    "float": "fp32",
    "fp16": "fp16",
    "float16": "fp16",
    "half": "fp16",
    "int8": "int8",
    "qint8": "int8",
}
# Keys of the ONNX metadata whose values are JSON (the rest are plain strings).
_JSON_KEYS_KEY = "json_keys"


@dataclass(frozen=True)
class Tolerance:
    """Pass criteria for one precision.

    ``max_abs`` (if set) bounds ``max |onnx - torch|`` relative to ``max(1, max |torch|)``;
    ``min_top1`` is the fraction of top-1 labels that must agree with fp32 PyTorch;
    ``max_accuracy_drop`` (percentage points) bounds the accuracy lost on labelled real data.
    """

    max_abs: float | None
    min_top1: float
    max_accuracy_drop: float | None


TOLERANCES: dict[str, Tolerance] = {
    "fp32": Tolerance(max_abs=1e-4, min_top1=1.0, max_accuracy_drop=0.0),
    "fp16": Tolerance(max_abs=None, min_top1=0.98, max_accuracy_drop=1.0),
    "int8": Tolerance(max_abs=None, min_top1=0.95, max_accuracy_drop=2.0),
}


def _describe_tolerance(dtype: str) -> str:
    tol = TOLERANCES[dtype]
    if tol.max_abs is not None:
        return (
            f"{dtype} tolerance: max |onnx - torch| <= {tol.max_abs:g} * max(1, max |logit|) "
            "and identical top-1 labels (ties within that tolerance excepted)"
        )
    return (
        f"{dtype} tolerance: top-1 agreement with fp32 PyTorch >= {tol.min_top1:.0%} on the "
        f"largest real batch, accuracy drop <= {tol.max_accuracy_drop} points"
    )


class ExportOptionError(ResNetPLError, ValueError):
    """An export option that cannot work; the message names the option and the fix."""


class ExportError(ResNetPLError, RuntimeError):
    """The exporter itself failed (and no fallback was allowed or possible)."""


class ExportVerificationError(ResNetPLError, RuntimeError):
    """The exported file does not reproduce PyTorch within tolerance. ``report`` holds every
    check; the message is the table."""

    def __init__(self, message: str, report: ExportReport) -> None:
        super().__init__(message)
        self.report = report


@dataclass
class CheckResult:
    """One comparison of ONNX Runtime with PyTorch on one batch."""

    name: str
    data: str  # "random" or "real"
    batch: int
    max_abs_diff: float
    tolerance: float | None  # absolute bound used (None: not gated on max-abs)
    top1_agreement: float
    top1_mismatches: int  # disagreements that are not ties within tolerance
    gated: bool  # whether this check decides pass/fail
    passed: bool


@dataclass
class ExportReport:
    """What :func:`export_onnx` did and measured. ``str(report)`` is a readable table."""

    path: Path
    arch: str
    source: str
    exporter: str
    opset: int
    dtype: str
    input_shape: tuple[int, int, int]
    dynamic_batch: bool
    dynamic_hw: bool
    bn_folded: int = 0
    bn_remaining: int = 0  # BatchNormalization nodes in the written graph
    fold_max_abs_diff: float | None = None
    checks: list[CheckResult] = field(default_factory=list)
    accuracy: dict[str, float] = field(default_factory=dict)  # backend -> top-1 accuracy
    accuracy_samples: int = 0
    latency_ms: dict[str, float] = field(default_factory=dict)  # model -> ms per batch
    latency_batch: int = 0
    converter: str | None = None  # fp16 converter / int8 quantiser used
    file_size: int = 0
    sha256: str = ""
    export_seconds: float = 0.0
    total_seconds: float = 0.0
    verified: bool = False
    passed: bool = True
    accuracy_failed: bool = False  # fp16/int8 lost more accuracy than the tolerance allows
    notes: list[str] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def max_abs_diff(self) -> dict[str, float]:
        """Max |ONNX - PyTorch| per check name."""
        return {c.name: c.max_abs_diff for c in self.checks}

    @property
    def top1_agreement(self) -> dict[str, float]:
        """Top-1 agreement with PyTorch per check name."""
        return {c.name: c.top1_agreement for c in self.checks}

    def table(self) -> str:
        """The checks as a fixed-width text table, then the measured figures."""
        head = (
            f"{'check':<22} {'batch':>5} {'max_abs_diff':>12} {'tolerance':>10} "
            f"{'top1_agree':>10} {'result':>7}"
        )
        lines = [head, "-" * len(head)]
        for c in self.checks:
            tol = f"{c.tolerance:.1e}" if c.tolerance is not None else "-"
            result = ("ok" if c.passed else "FAIL") if c.gated else "info"
            lines.append(
                f"{c.name:<22} {c.batch:>5} {c.max_abs_diff:>12.3e} {tol:>10} "
                f"{c.top1_agreement:>10.2%} {result:>7}"
            )
        if self.accuracy:
            acc = ", ".join(f"{k} {v:.2%}" for k, v in self.accuracy.items())
            lines.append(f"accuracy on {self.accuracy_samples} real labelled images: {acc}")
        if self.latency_ms:
            lat = ", ".join(f"{k} {v:.2f} ms" for k, v in self.latency_ms.items())
            lines.append(
                f"ONNX Runtime CPU latency, batch {self.latency_batch}, 1 thread (median): {lat}"
            )
        return "\n".join(lines)

    def summary(self) -> str:
        """A few lines: what was written, how, and whether it verified."""
        status = (
            ("verified" if self.passed else "FAILED verification")
            if self.verified
            else "not verified"
        )
        written = (
            f"({self.file_size / 1e6:.2f} MB, sha256 {self.sha256[:16]}...)"
            if self.sha256
            else "(not written)"
        )
        lines = [
            f"{self.path} {written}",
            f"  arch {self.arch} from {self.source}; exporter {self.exporter}, opset "
            f"{self.opset}, {self.dtype}, input (N, {', '.join(map(str, self.input_shape))})"
            f"{' dynamic batch' if self.dynamic_batch else ''}"
            f"{' dynamic H/W' if self.dynamic_hw else ''}",
            f"  BatchNorm folded: {self.bn_folded} (BatchNormalization nodes left: "
            f"{self.bn_remaining}); "
            f"export {self.export_seconds:.1f} s, total {self.total_seconds:.1f} s; {status}",
        ]
        lines += [f"  note: {n}" for n in self.notes]
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.summary() + "\n" + self.table()

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (paths as strings, per-check maps included)."""
        d = asdict(self)
        d["path"] = str(self.path)
        d["max_abs_diff"] = self.max_abs_diff
        d["top1_agreement"] = self.top1_agreement
        return d


# --------------------------------------------------------------------------------------------
# Metadata
# --------------------------------------------------------------------------------------------
def _require_onnx() -> tuple[Any, Any]:
    try:
        import onnx
        import onnxruntime
    except ImportError as e:
        raise ImportError(
            f"ONNX export needs onnx and onnxruntime ({e.name} is missing): "
            "pip install 'resnet-pl[onnx]'"
        ) from None
    return onnx, onnxruntime


def encode_metadata(meta: Mapping[str, Any]) -> dict[str, str]:
    """String metadata for ``metadata_props``: strings stay as they are, everything else is
    JSON, and the key ``json_keys`` lists which is which (so :func:`decode_metadata` can undo
    it and other tools still read plain strings)."""
    out: dict[str, str] = {}
    json_keys: list[str] = []
    for key, value in meta.items():
        if value is None:
            continue
        if isinstance(value, str):
            out[key] = value
        else:
            out[key] = json.dumps(value)
            json_keys.append(key)
    out[_JSON_KEYS_KEY] = json.dumps(sorted(json_keys))
    return out


def decode_metadata(props: Mapping[str, str]) -> dict[str, Any]:
    """Inverse of :func:`encode_metadata`."""
    json_keys = set(json.loads(props.get(_JSON_KEYS_KEY, "[]")))
    return {
        k: (json.loads(v) if k in json_keys else v) for k, v in props.items() if k != _JSON_KEYS_KEY
    }


def read_metadata(path: str | Path) -> dict[str, Any]:
    """The metadata of an ONNX file written by :func:`export_onnx`, parsed: ``class_names``,
    ``mean``, ``std``, ``input_size`` as lists, ``opset``/``num_classes`` as ints, booleans as
    booleans, strings (``arch``, ``exporter``, ``weights_sha256`` ...) as strings."""
    onnx, _ = _require_onnx()
    model = onnx.load(str(path), load_external_data=False)
    return decode_metadata({p.key: p.value for p in model.metadata_props})


def _set_metadata(model: Any, meta: Mapping[str, Any]) -> None:
    del model.metadata_props[:]
    for key, value in encode_metadata(meta).items():
        prop = model.metadata_props.add()
        prop.key, prop.value = key, value


# --------------------------------------------------------------------------------------------
# Exporters
# --------------------------------------------------------------------------------------------
@contextlib.contextmanager
def _quiet() -> Any:
    """Silence exporter chatter (progress prints, deprecation and tracer warnings); the
    ONNX Runtime check, not the warnings, decides whether an export is good."""
    with (
        warnings.catch_warnings(),
        contextlib.redirect_stdout(io.StringIO()),
    ):
        warnings.simplefilter("ignore")
        yield


def _export_dynamo(
    model: nn.Module, example: Tensor, path: Path, opset: int, dyn_batch: bool, dyn_hw: bool
) -> None:
    from torch.export import Dim

    dims: dict[int, Any] = {}
    if dyn_batch:
        dims[0] = Dim("batch", min=1)
    if dyn_hw:
        dims[2], dims[3] = Dim.DYNAMIC, Dim.DYNAMIC
    with _quiet():
        torch.onnx.export(
            model,
            (example,),
            str(path),
            dynamo=True,
            opset_version=opset,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_shapes=(dims,) if dims else None,
            external_data=False,  # one self-contained file
            verbose=False,
            optimize=True,
        )


def _export_torchscript(
    model: nn.Module, example: Tensor, path: Path, opset: int, dyn_batch: bool, dyn_hw: bool
) -> None:
    axes: dict[str, dict[int, str]] = {}
    if dyn_batch:
        axes = {INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}}
    if dyn_hw:
        axes.setdefault(INPUT_NAME, {}).update({2: "height", 3: "width"})
    with _quiet():
        torch.onnx.export(
            model,
            (example,),
            str(path),
            dynamo=False,
            opset_version=opset,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_axes=axes or None,
            do_constant_folding=True,
        )


def _session(path: str | Path, threads: int = 1) -> Any:
    """A CPU ONNX Runtime session; one thread keeps verification cheap and deterministic."""
    _, ort = _require_onnx()
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.log_severity_level = 3
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def _run(session: Any, x: Tensor | np.ndarray) -> np.ndarray:
    arr = x.numpy() if isinstance(x, Tensor) else x
    return np.asarray(session.run(None, {session.get_inputs()[0].name: arr})[0])


def _abs_tolerance(reference: np.ndarray, rel: float) -> float:
    return rel * max(1.0, float(np.abs(reference).max(initial=0.0)))


def _export_checked(
    model: nn.Module,
    example: Tensor,
    path: Path,
    opset: int,
    exporter: Exporter,
    dyn_batch: bool,
    dyn_hw: bool,
) -> tuple[str, list[str], float]:
    """Export with the requested exporter, check parity in ONNX Runtime on ``example`` and,
    for ``"auto"``, fall back from dynamo to TorchScript. Returns (exporter, notes, seconds)."""
    with torch.no_grad():
        expected = model(example).numpy()
    tol = _abs_tolerance(expected, TOLERANCES["fp32"].max_abs or 1e-4)
    if exporter == "auto":
        order = ["dynamo", "torchscript"] if opset >= DYNAMO_MIN_OPSET else ["torchscript"]
        if opset > TORCHSCRIPT_MAX_OPSET:
            order = ["dynamo"]
    else:
        order = [exporter]
    notes: list[str] = []
    if exporter == "auto" and order == ["torchscript"]:
        notes.append(f"opset {opset} < {DYNAMO_MIN_OPSET}: used the TorchScript exporter")
    for i, name in enumerate(order):
        last = i == len(order) - 1
        start = time.perf_counter()
        try:
            fn = _export_dynamo if name == "dynamo" else _export_torchscript
            fn(model, example, path, opset, dyn_batch, dyn_hw)
        except Exception as e:  # any exporter failure: try the next one or report it
            first = (str(e).strip().splitlines() or [type(e).__name__])[0][:300]
            if last:
                raise ExportError(f"the {name} exporter failed: {first}") from e
            notes.append(f"{name} exporter failed ({first}); fell back to {order[i + 1]}")
            continue
        seconds = time.perf_counter() - start
        diff = float(np.abs(_run(_session(path), example) - expected).max())
        if diff <= tol:
            return name, notes, seconds
        message = (
            f"{name} export misses parity in ONNX Runtime (max abs diff {diff:.2e} > {tol:.1e})"
        )
        if last:
            raise ExportError(message + "; try exporter='torchscript' or another opset")
        notes.append(message + f"; fell back to {order[i + 1]}")
    raise AssertionError("unreachable")


def _fsync(path: Path) -> None:
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def _rename_dims(model: Any, dyn_batch: bool, dyn_hw: bool) -> None:
    """Give dynamic axes stable names (``batch``, ``height``, ``width``) whichever exporter
    produced the file, so runtimes and tools see the same signature."""
    names = {0: "batch"} if dyn_batch else {}
    if dyn_hw:
        names.update({2: "height", 3: "width"})
    for value in (*model.graph.input, *model.graph.output):
        dims = value.type.tensor_type.shape.dim
        for axis, name in names.items():
            symbolic = axis < len(dims) and not dims[axis].HasField("dim_value")
            if symbolic and (axis == 0 or value in model.graph.input):
                dims[axis].dim_param = name


def _finalize(path: Path, meta: Mapping[str, Any], dyn_batch: bool, dyn_hw: bool) -> int:
    """Write metadata, then prove the graph well-formed: full checker and strict shape
    inference; the file is rewritten with the inferred shapes. Returns the number of
    BatchNormalization nodes left in the graph."""
    onnx, _ = _require_onnx()
    model = onnx.load(str(path))
    _rename_dims(model, dyn_batch, dyn_hw)
    _set_metadata(model, meta)
    model.doc_string = f"{meta.get('arch')} exported by resnet-pl {meta.get('resnet_pl_version')}"
    onnx.checker.check_model(model, full_check=True)
    model = onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True)
    onnx.save(model, str(path))
    return sum(node.op_type == "BatchNormalization" for node in model.graph.node)


# --------------------------------------------------------------------------------------------
# Reduced precision
# --------------------------------------------------------------------------------------------
def _convert_fp16(src: Path, dst: Path) -> str:
    """fp16 weights and activations, float32 inputs/outputs (callers keep feeding float32)."""
    onnx, _ = _require_onnx()
    try:
        from onnxconverter_common import float16

        converter = "onnxconverter-common"
    except ImportError:
        from onnxruntime.transformers import float16  # ships inside onnxruntime

        converter = "onnxruntime.transformers.float16"
    model = onnx.load(str(src))
    with _quiet():
        converted = float16.convert_float_to_float16(model, keep_io_types=True)
    _toposort(converted.graph)  # onnxruntime's copy appends the input casts at the end
    onnx.save(converted, str(dst))
    return converter


def _toposort(graph: Any) -> None:
    """Reorder ``graph.node`` so every node comes after the producers of its inputs (the
    checker requires it)."""
    onnx, _ = _require_onnx()
    available = {v.name for v in graph.input} | {t.name for t in graph.initializer} | {""}
    pending = [onnx.NodeProto() for _ in graph.node]
    for copy_, node in zip(pending, graph.node, strict=True):
        copy_.CopyFrom(node)
    ordered = []
    while pending:
        ready = [n for n in pending if all(i in available for i in n.input)]
        if not ready:
            raise ExportError("fp16 conversion produced a graph with unresolvable inputs")
        for node in ready:
            available.update(node.output)
        ordered += ready
        done = {id(n) for n in ready}
        pending = [n for n in pending if id(n) not in done]
    del graph.node[:]
    graph.node.extend(ordered)


def _quantize_int8(src: Path, dst: Path, batches: list[np.ndarray]) -> str:
    """Static int8 quantisation: QDQ format, per-channel int8 weights, uint8 activations
    (U8S8), calibrated (min/max) on ``batches`` of real, preprocessed images.

    U8S8 rather than S8S8: on this project's x86 CPU (AVX-512 VNNI) the S8S8 model ran
    slower than fp32 while U8S8 did not, at the same top-1 agreement. (On x86 CPUs without
    VNNI, U8S8 can saturate; the agreement check after export would catch that.)"""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    class Reader(CalibrationDataReader):  # type: ignore[misc]
        def __init__(self) -> None:
            self._it = iter(batches)

        def get_next(self) -> dict[str, np.ndarray] | None:
            batch = next(self._it, None)
            return None if batch is None else {INPUT_NAME: batch}

        def rewind(self) -> None:
            self._it = iter(batches)

    disabled = logging.root.manager.disable
    logging.disable(logging.WARNING)  # "consider pre-processing" advice on the root logger
    try:
        with _quiet():
            quantize_static(
                str(src),
                str(dst),
                Reader(),
                quant_format=QuantFormat.QDQ,
                per_channel=True,
                activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8,
                calibrate_method=CalibrationMethod.MinMax,
            )
    finally:
        logging.disable(disabled)
    return "onnxruntime.quantization.quantize_static (QDQ U8S8, per-channel, MinMax)"


# --------------------------------------------------------------------------------------------
# Data for verification and calibration
# --------------------------------------------------------------------------------------------
@dataclass
class _RealData:
    x: Tensor
    labels: Tensor | None
    description: str


def _as_real_data(
    data: DataLike, cfg: Mapping[str, Any], split: str, n: int, what: str
) -> _RealData:
    """Normalise user data: a dataset name (``"fashion_mnist"``), a preprocessed float tensor
    ``(N, C, H, W)``, uint8 images (preprocessed with the model's cfg), a list of batches, or
    an ``(images, labels)`` pair."""
    labels: Any = None
    if isinstance(data, str | Path) and Path(data).is_dir():
        return _images_from_dir(Path(data), cfg, n, what)
    if isinstance(data, str):
        if data != "fashion_mnist":
            raise ExportOptionError(
                f"{what}={data!r} is neither 'fashion_mnist' nor a folder of images; pass "
                "one of those or a tensor of preprocessed images"
            )
        images, labels = load_fashion_mnist(split, n)
        return _RealData(
            preprocess_uint8(images, cfg),
            torch.from_numpy(labels),
            f"Fashion-MNIST {split}[:{len(images)}]",
        )
    if isinstance(data, tuple) and len(data) == 2:
        data, labels = data
    x: Any
    if isinstance(data, list | tuple):
        x = torch.cat([torch.as_tensor(np.asarray(b)) for b in data])
    else:
        x = torch.as_tensor(np.asarray(data)) if isinstance(data, np.ndarray) else data
    if not isinstance(x, Tensor):
        raise ExportOptionError(f"{what} must be a tensor, an array or a list of batches")
    if x.dtype == torch.uint8:
        x = preprocess_uint8(x, cfg)
    if x.dim() != 4:
        raise ExportOptionError(f"{what} must be a batch (N, C, H, W), got shape {tuple(x.shape)}")
    x = x.float().cpu()[:n]
    y = torch.as_tensor(np.asarray(labels)).long()[:n] if labels is not None else None
    return _RealData(x, y, f"{what} ({len(x)} images)")


def _images_from_dir(folder: Path, cfg: Mapping[str, Any], n: int, what: str) -> _RealData:
    """Up to ``n`` images found under ``folder`` (sorted, recursive), preprocessed with the
    model's cfg; unreadable files are skipped."""
    from resnet_pl.deploy.preprocess import (
        IMAGE_SUFFIXES,
        ImageLoadError,
        eval_transform,
        load_image,
    )

    chans = int(cfg["input_size"][0])
    transform = eval_transform(cfg)
    images = []
    for f in sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES):
        try:
            images.append(transform(load_image(f, chans)))
        except ImageLoadError:
            continue
        if len(images) >= n:
            break
    if not images:
        raise ExportOptionError(f"{what}: no readable images under {folder}")
    return _RealData(torch.stack(images), None, f"{len(images)} images from {folder}")


def _auto_real_data(cfg: Mapping[str, Any], n: int) -> _RealData | None:
    """Real images for models trained on Fashion-MNIST, when its files are on this machine."""
    tagged = "fashion_mnist" in str(cfg.get("source_weights") or "")
    if (cfg.get("dataset") == "fashion_mnist" or tagged) and fashion_mnist_available():
        return _as_real_data("fashion_mnist", cfg, "test", n, "verify_data")
    return None


# --------------------------------------------------------------------------------------------
# Verification
# --------------------------------------------------------------------------------------------
def _compare(
    name: str,
    data: str,
    got: np.ndarray,
    ref: np.ndarray,
    tol: Tolerance,
    gated: bool,
) -> CheckResult:
    diff = float(np.abs(got.astype(np.float64) - ref).max(initial=0.0))
    abs_tol = _abs_tolerance(ref, tol.max_abs) if tol.max_abs is not None else None
    pred_ref, pred_got = ref.argmax(1), got.argmax(1)
    agree = float((pred_ref == pred_got).mean()) if len(ref) else 1.0
    rows = np.arange(len(ref))
    margin = ref[rows, pred_ref] - ref[rows, pred_got]  # 0 where they agree
    tie_tol = abs_tol if abs_tol is not None else 0.0
    mismatches = int(((pred_ref != pred_got) & (margin > tie_tol)).sum())
    if tol.max_abs is not None:
        passed = (abs_tol is None or diff <= abs_tol) and mismatches == 0
    else:
        passed = agree >= tol.min_top1
    return CheckResult(name, data, len(ref), diff, abs_tol, agree, mismatches, gated, passed)


def _latency_ms(session: Any, x: np.ndarray, runs: int) -> float:
    name = session.get_inputs()[0].name
    for _ in range(2):
        session.run(None, {name: x})
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        session.run(None, {name: x})
        times.append((time.perf_counter() - start) * 1e3)
    return float(np.median(times))


def _torch_logits(model: nn.Module, x: Tensor, batch: int = 64) -> np.ndarray:
    with torch.no_grad():
        return (
            torch.cat([model(x[i : i + batch]) for i in range(0, len(x), batch)]).double().numpy()
        )


def _onnx_logits(session: Any, x: Tensor, batch: int) -> np.ndarray:
    return np.concatenate([_run(session, x[i : i + batch]) for i in range(0, len(x), batch)])


# --------------------------------------------------------------------------------------------
# Options
# --------------------------------------------------------------------------------------------
def _check_options(
    dtype: str, opset: int | None, exporter: str, calibration_data: Any
) -> tuple[str, int]:
    key = str(dtype).lower()
    if key not in _DTYPE_ALIASES:
        raise ExportOptionError(
            f"unknown dtype {dtype!r}; choose 'fp32' (default), 'fp16' or 'int8'"
        )
    dtype = _DTYPE_ALIASES[key]
    if exporter not in ("auto", "dynamo", "torchscript"):
        raise ExportOptionError(
            f"unknown exporter {exporter!r}; choose 'auto' (dynamo, falling back to "
            "TorchScript), 'dynamo' or 'torchscript'"
        )
    if opset is None:
        opset = DEFAULT_OPSET
    if not isinstance(opset, int) or isinstance(opset, bool):
        raise ExportOptionError(f"opset must be an integer, got {opset!r}")
    if opset < MIN_OPSET:
        raise ExportOptionError(
            f"opset {opset} is too low: resnet-pl exports need opset >= {MIN_OPSET} "
            f"(Slice with steps, per-channel quantisation); use the default {DEFAULT_OPSET}"
        )
    if opset > MAX_OPSET:
        raise ExportOptionError(
            f"opset {opset} is above the newest this torch/onnxruntime pair supports "
            f"({MAX_OPSET}); use {DEFAULT_OPSET}"
        )
    if exporter == "dynamo" and opset < DYNAMO_MIN_OPSET:
        raise ExportOptionError(
            f"the dynamo exporter emits opset >= {DYNAMO_MIN_OPSET}, not {opset}; use "
            f"exporter='torchscript' (or 'auto') for opset {opset}"
        )
    if exporter == "torchscript" and opset > TORCHSCRIPT_MAX_OPSET:
        raise ExportOptionError(
            f"the TorchScript exporter stops at opset {TORCHSCRIPT_MAX_OPSET}; use "
            f"exporter='dynamo' (or 'auto') for opset {opset}"
        )
    if dtype == "int8" and calibration_data is None:
        raise ExportOptionError(
            "dtype='int8' needs calibration_data: a few hundred real, preprocessed images "
            "(tensor (N, C, H, W), uint8 images, or 'fashion_mnist') to set activation ranges; "
            "without it use dtype='fp16' or 'fp32'"
        )
    return dtype, opset


def _input_shape(
    input_shape: Sequence[int] | None, cfg: Mapping[str, Any], model: nn.Module
) -> tuple[tuple[int, int, int], int]:
    """(C, H, W) and the fixed batch size (used when the batch axis is static)."""
    batch = 1
    if input_shape is None:
        size = cfg.get("input_size")
        if size is None:
            raise ExportOptionError(
                "the model has no pretrained_cfg['input_size']; pass input_shape=(C, H, W)"
            )
        shape = tuple(int(v) for v in size)
    else:
        shape = tuple(int(v) for v in input_shape)
        if len(shape) == 4:
            batch, shape = shape[0], shape[1:]
    if len(shape) != 3 or min(shape) < 1 or batch < 1:
        raise ExportOptionError(f"input_shape must be (C, H, W) or (N, C, H, W), got {input_shape}")
    chans = getattr(model, "in_chans", None)
    if chans is not None and shape[0] != chans:
        raise ExportOptionError(
            f"input_shape has {shape[0]} channels but the model takes in_chans={chans}"
        )
    return (shape[0], shape[1], shape[2]), batch


# --------------------------------------------------------------------------------------------
# The entry point
# --------------------------------------------------------------------------------------------
def export_onnx(
    model_or_name_or_ckpt: ModelSource,
    path: str | Path,
    *,
    input_shape: Sequence[int] | None = None,
    opset: int | None = None,
    dynamic_batch: bool = True,
    dynamic_hw: bool = False,
    fold_batchnorm: bool = True,
    dtype: str = "fp32",
    verify: bool = True,
    calibration_data: DataLike | None = None,
    metadata: Mapping[str, Any] | None = None,
    exporter: Exporter = "auto",
    verify_data: DataLike | None = None,
    pretrained: bool | None = None,
    calibration_samples: int = 256,
    verify_samples: int = 256,
    benchmark_runs: int = 20,
) -> ExportReport:
    """Export a model to a verified, self-describing ONNX file.

    Args:
        model_or_name_or_ckpt: an ``nn.Module``, a registry name (``"resnet20"``; with a tag,
            ``"resnet20.fashion_mnist"``, its pretrained weights) or a resnet-pl Lightning
            checkpoint (``*.ckpt``).
        path: output ``.onnx`` file (weights stored inside; parent folders are created).
        input_shape: ``(C, H, W)`` (or ``(N, C, H, W)`` for a static batch of N); default
            the model's ``pretrained_cfg["input_size"]``.
        opset: ONNX opset, 13..23; default 18.
        dynamic_batch: symbolic batch axis (``batch``). Export traces a batch of 2 so that
            ``torch.export`` does not specialise it to 1.
        dynamic_hw: symbolic height and width too (fixed by default: fixed shapes let runtimes
            plan memory and pick kernels ahead of time).
        fold_batchnorm: fold BatchNorm into convolutions first (checked against the original
            PyTorch model to ``1e-5 * max(1, max |logit|)``).
        dtype: ``"fp32"``, ``"fp16"`` (fp16 weights/activations, float32 I/O) or ``"int8"``
            (static QDQ quantisation; needs ``calibration_data``).
        verify: compare ONNX Runtime with PyTorch at batch 1 and 7 on random and real images;
            raise :class:`ExportVerificationError` (with the table) outside :data:`TOLERANCES`.
            (A parity check on the export batch runs even with ``verify=False``.)
        calibration_data: real images for int8 calibration (see ``verify_data`` for forms).
        metadata: extra ``metadata_props`` (str values stored as is, others as JSON).
        exporter: ``"auto"`` (dynamo, TorchScript fallback), ``"dynamo"`` or ``"torchscript"``.
        verify_data: real images for verification: a float tensor ``(N, C, H, W)`` already
            normalised, uint8 images, ``(images, labels)`` for accuracy, or
            ``"fashion_mnist"``. Default: Fashion-MNIST test images for models trained on it,
            else the calibration data (unlabelled) if any.
        pretrained: for registry names: load weights (default: only for tagged names).
        calibration_samples, verify_samples: how many real images to use at most.
        benchmark_runs: timed ONNX Runtime runs per model for the fp16/int8 speed comparison.

    Returns:
        An :class:`ExportReport`.

    Raises:
        ExportOptionError: an impossible option combination (message names the fix).
        ExportError: the exporter failed and no fallback applied.
        ExportVerificationError: the file does not match PyTorch; nothing is written.
    """
    start_total = time.perf_counter()
    dtype, opset = _check_options(dtype, opset, exporter, calibration_data)
    _require_onnx()
    if metadata is not None and not isinstance(metadata, Mapping):
        raise ExportOptionError("metadata must be a mapping of str keys to values")
    path = Path(path)
    loaded = load_model(model_or_name_or_ckpt, pretrained=pretrained)
    reference = copy.deepcopy(loaded.model).float().cpu().eval()
    shape, fixed_batch = _input_shape(input_shape, loaded.cfg, reference)
    cfg = resolve_data_cfg({**loaded.cfg, "input_size": shape})
    meta_base = base_metadata(cfg)
    reserved = set(meta_base) | {"exporter", "opset", "dtype", "input_size", "mean", "std"}
    clash = sorted(set(metadata or {}) & (reserved | {_JSON_KEYS_KEY}))
    if clash:
        raise ExportOptionError(f"metadata keys {clash} are reserved for resnet-pl's own fields")

    g = torch.Generator().manual_seed(0)
    export_batch = max(EXPORT_BATCH, fixed_batch) if dynamic_batch else fixed_batch
    example = torch.randn(export_batch, *shape, generator=g)
    with torch.no_grad():
        try:
            out = reference(example)
        except Exception as e:
            raise ExportOptionError(
                f"the model does not run on input {tuple(example.shape)}: {e}"
            ) from None
    if not isinstance(out, Tensor) or out.dim() != 2:
        raise ExportOptionError(
            "export_onnx exports classifiers (output (N, num_classes)); this model returns "
            f"{type(out).__name__}{'' if not isinstance(out, Tensor) else tuple(out.shape)} "
            "(a features_only model?)"
        )

    report = ExportReport(
        path=path,
        arch=str(meta_base["arch"]),
        source=loaded.description,
        exporter="",
        opset=opset,
        dtype=dtype,
        input_shape=shape,
        dynamic_batch=dynamic_batch,
        dynamic_hw=dynamic_hw,
        notes=list(loaded.warnings),
    )

    # Real data (verification / calibration), checked before any work is done.
    real: _RealData | None = None
    if verify_data is not None:
        real = _as_real_data(verify_data, cfg, "test", verify_samples, "verify_data")
    elif verify:
        real = _auto_real_data(cfg, verify_samples)
    calib: _RealData | None = None
    if calibration_data is not None:
        calib = _as_real_data(
            calibration_data, cfg, "train", calibration_samples, "calibration_data"
        )
    if real is None and calib is not None and verify:
        real = _RealData(calib.x, None, calib.description + " (calibration data)")
        report.notes.append("no verify_data: checked on the calibration images (no labels)")
    for data in (real, calib):
        if data is not None and not dynamic_hw and tuple(data.x.shape[1:]) != shape:
            raise ExportOptionError(
                f"real images have shape {tuple(data.x.shape[1:])} but the export input is "
                f"{shape}; preprocess them with resnet_pl.deploy.eval_transform(cfg)"
            )

    # 1. BatchNorm folding, proven on the PyTorch side before anything is exported.
    to_export = reference
    if fold_batchnorm:
        to_export = copy.deepcopy(reference)
        folded = _fold(to_export, example[:1])
        report.bn_folded = folded.num_folded
        probe = torch.randn(4, *shape, generator=g)
        with torch.no_grad():
            ref_out, fold_out = reference(probe), to_export(probe)
        report.fold_max_abs_diff = float((ref_out - fold_out).abs().max())
        fold_tol = FOLD_RTOL * max(1.0, float(ref_out.abs().max()))
        if report.fold_max_abs_diff > fold_tol:
            raise ExportError(
                f"BatchNorm folding changed the outputs by {report.fold_max_abs_diff:.2e} "
                f"(> {fold_tol:.1e}); export with fold_batchnorm=False and report this model"
            )

    # Everything is written inside a temporary folder beside the output and renamed over it at
    # the end: an error, a full disk or Ctrl-C leaves any previous file at `path` as it was.
    # A disk problem is reported as such (WriteError naming `path`), not as an exporter fault.
    try:
        make_dirs(path.parent)
        with tempfile.TemporaryDirectory(prefix=".resnet_pl_export_", dir=path.parent) as tmp:
            fp32_path = Path(tmp) / "fp32.onnx"
            # 2. Export + immediate ONNX Runtime parity check (with dynamo -> TorchScript fallback).
            used, notes, seconds = _export_checked(
                to_export, example, fp32_path, opset, exporter, dynamic_batch, dynamic_hw
            )
            report.exporter, report.export_seconds = used, seconds
            report.notes += notes

            def meta_for(kind: str) -> dict[str, Any]:
                return {
                    **meta_base,
                    "exporter": used,
                    "opset": opset,
                    "dtype": kind,
                    "input_name": INPUT_NAME,
                    "output_name": OUTPUT_NAME,
                    "input_size": list(shape),
                    "mean": list(cfg["mean"]),
                    "std": list(cfg["std"]),
                    "interpolation": cfg["interpolation"],
                    "crop_pct": cfg["crop_pct"],
                    "dynamic_batch": dynamic_batch,
                    "dynamic_hw": dynamic_hw,
                    "batchnorm_folded": report.bn_folded,
                    **dict(metadata or {}),
                }

            report.bn_remaining = _finalize(fp32_path, meta_for("fp32"), dynamic_batch, dynamic_hw)

            # 3. Reduced precision.
            final_path = fp32_path
            if dtype == "fp16":
                final_path = Path(tmp) / "fp16.onnx"
                report.converter = _convert_fp16(fp32_path, final_path)
            elif dtype == "int8":
                assert calib is not None
                final_path = Path(tmp) / "int8.onnx"
                batches = [calib.x[i : i + 32].numpy() for i in range(0, len(calib.x), 32)]
                report.converter = _quantize_int8(fp32_path, final_path, batches)
            if final_path != fp32_path:
                report.bn_remaining = _finalize(
                    final_path, meta_for(dtype), dynamic_batch, dynamic_hw
                )

            # 4. Verification against the original (unfolded) PyTorch model.
            if verify:
                _verify(
                    report,
                    reference,
                    final_path,
                    fp32_path,
                    shape,
                    fixed_batch,
                    real,
                    g,
                    benchmark_runs,
                )
            report.metadata = decode_metadata(encode_metadata(meta_for(dtype)))
            if report.verified and not report.passed:
                report.total_seconds = time.perf_counter() - start_total
                failed = [c.name for c in report.checks if c.gated and not c.passed]
                failed += ["accuracy"] if report.accuracy_failed else []
                raise ExportVerificationError(
                    f"ONNX export of {report.arch} ({dtype}) does not match PyTorch "
                    f"(failed: {', '.join(failed)}); nothing written to {path}.\n"
                    f"{_describe_tolerance(dtype)}\n{report.table()}",
                    report,
                )
            _fsync(final_path)  # the rename must not overtake the data on a crash
            os.replace(final_path, path)
    except Exception as err:
        write_error = as_write_error(path, err)
        if write_error is None:
            raise
        raise write_error from err
    fsync_dir(path.parent)
    report.file_size = path.stat().st_size
    report.sha256 = sha256_file(path)
    report.total_seconds = time.perf_counter() - start_total
    return report


def _verify(
    report: ExportReport,
    reference: nn.Module,
    final_path: Path,
    fp32_path: Path,
    shape: tuple[int, int, int],
    fixed_batch: int,
    real: _RealData | None,
    g: torch.Generator,
    benchmark_runs: int,
) -> None:
    """Fill ``report.checks``/``accuracy``/``latency_ms``; set ``passed``."""
    dtype = report.dtype
    tol = TOLERANCES[dtype]
    session = _session(final_path)
    batches = (1, 7) if report.dynamic_batch else (fixed_batch,)
    # fp32: every check decides. fp16/int8: one mismatch in a batch of 7 says little, so only
    # the largest batch of real images (else the last random batch) decides, on top-1 agreement.
    gate_all = dtype == "fp32"

    def check(name: str, data: str, x: Tensor) -> None:
        got, ref = _run(session, x), _torch_logits(reference, x)
        report.checks.append(_compare(name, data, got, ref, tol, gate_all))

    for b in batches:
        check(f"random b={b}", "random", torch.randn(b, *shape, generator=g))
    if report.dynamic_hw:
        c, h, w = shape
        x = torch.randn(batches[-1], c, h + 8, w + 4, generator=g)
        check(f"random {h + 8}x{w + 4}", "random", x)
    fp32_session = _session(fp32_path) if dtype != "fp32" else session
    if real is not None:
        n = len(real.x)
        sizes = [b for b in batches if b <= n]
        for b in sizes:
            check(f"real b={b}", "real", real.x[:b])
        step = batches[-1] if not report.dynamic_batch else 64
        usable = n if report.dynamic_batch else (n // step) * step
        if usable > max(sizes, default=0):
            x = real.x[:usable]
            ref = _torch_logits(reference, x)
            got = _onnx_logits(session, x, step)
            report.checks.append(_compare(f"real all n={usable}", "real", got, ref, tol, True))
            if real.labels is not None:
                y = real.labels[:usable].numpy()
                report.accuracy_samples = usable
                report.accuracy["pytorch"] = float((ref.argmax(1) == y).mean())
                if dtype != "fp32":
                    fp32 = _onnx_logits(fp32_session, x, step)
                    report.accuracy["onnx_fp32"] = float((fp32.argmax(1) == y).mean())
                report.accuracy[f"onnx_{dtype}"] = float((got.argmax(1) == y).mean())
                if tol.max_accuracy_drop is not None and dtype != "fp32":
                    drop = 100 * (report.accuracy["pytorch"] - report.accuracy[f"onnx_{dtype}"])
                    if drop > tol.max_accuracy_drop:
                        report.notes.append(
                            f"accuracy drops {drop:.2f} points (> {tol.max_accuracy_drop})"
                        )
                        report.accuracy_failed = True
    if dtype != "fp32":
        report.checks[-1].gated = True  # the largest real batch, else the last random one
        report.checks[-1].passed = report.checks[-1].passed and not report.accuracy_failed
        bench_b = batches[-1] if not report.dynamic_batch else 32
        bench = (
            real.x[:bench_b]
            if real is not None and len(real.x) >= bench_b
            else torch.randn(bench_b, *shape, generator=g)
        ).numpy()
        report.latency_batch = bench_b
        report.latency_ms["onnx_fp32"] = _latency_ms(fp32_session, bench, benchmark_runs)
        report.latency_ms[f"onnx_{dtype}"] = _latency_ms(session, bench, benchmark_runs)
    report.verified = True
    report.passed = all(c.passed for c in report.checks if c.gated)
