"""Turning a PyTorch model into an ONNX graph: the two exporters, the choice between them with a
checked fallback, and the finishing of the file (stable axis names, metadata, full checker,
strict shape inference).

Exporter choice (measured with torch 2.14.1, onnxruntime 1.32, on this project's CPU): both
exporters produce graphs whose ONNX Runtime outputs match PyTorch to ~1e-6 on resnet20,
preact_resnet20, wrn_16_4, resnet18 and resnet50. The dynamo exporter is the default because it
is the one PyTorch maintains (the TorchScript exporter emits a DeprecationWarning announcing its
removal, and is capped at opset 20); it is slower (about 2-4 s against 0.1-1 s per model here).
Since dynamo exports of ResNets have been silently wrong in some torch releases, every export is
checked in ONNX Runtime straight away, and ``exporter="auto"`` falls back to the TorchScript
exporter when the dynamo export raises or misses the fp32 tolerance. Opsets below 18 (which the
dynamo exporter cannot emit) go to the TorchScript exporter directly.
"""

from __future__ import annotations

import contextlib
import io
import time
import warnings
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor, nn

from resnet_pl.deploy.export_report import ExportError
from resnet_pl.deploy.metadata import INPUT_NAME, OUTPUT_NAME, set_metadata

Exporter = Literal["auto", "dynamo", "torchscript"]
EXPORTERS = ("auto", "dynamo", "torchscript")
DEFAULT_OPSET = 18  # the lowest opset the dynamo exporter emits natively; ORT >= 1.14 runs it
MIN_OPSET = 13  # per-channel QuantizeLinear (int8) and Slice with steps need it
DYNAMO_MIN_OPSET = 18
TORCHSCRIPT_MAX_OPSET = 20
MAX_OPSET = 23
EXPORT_BATCH = 2  # torch.export specialises dims of size 0/1, so never trace a dynamic dim at 1
FP32_PARITY_RTOL = 1e-4  # ONNX Runtime vs PyTorch, relative to max(1, max |output|)


def require_onnx() -> tuple[Any, Any]:
    """``(onnx, onnxruntime)``, or an ImportError naming the extra to install."""
    try:
        import onnx
        import onnxruntime
    except ImportError as e:
        raise ImportError(
            f"ONNX export needs onnx and onnxruntime ({e.name} is missing): "
            "pip install 'resnet-pl[onnx]'"
        ) from None
    return onnx, onnxruntime


# --------------------------------------------------------------------------------------------
# ONNX Runtime helpers (the parity check here, and verification)
# --------------------------------------------------------------------------------------------
@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Silence exporter chatter (progress prints, deprecation and tracer warnings); the
    ONNX Runtime check, not the warnings, decides whether an export is good."""
    with (
        warnings.catch_warnings(),
        contextlib.redirect_stdout(io.StringIO()),
    ):
        warnings.simplefilter("ignore")
        yield


def ort_session(path: str | Path, threads: int = 1) -> Any:
    """A CPU ONNX Runtime session; one thread keeps verification cheap and deterministic."""
    _, ort = require_onnx()
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.log_severity_level = 3
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def run_outputs(session: Any, x: Tensor | np.ndarray) -> list[np.ndarray]:
    """Every output of ``session`` on ``x``, in graph order."""
    arr = x.numpy() if isinstance(x, Tensor) else x
    return [np.asarray(o) for o in session.run(None, {session.get_inputs()[0].name: arr})]


def torch_outputs(model: nn.Module, x: Tensor) -> list[np.ndarray]:
    """The model's output(s) as float32 arrays: one for a classifier, one per feature map for a
    ``features_only`` model."""
    with torch.no_grad():
        out = model(x)
    outs = out if isinstance(out, list | tuple) else [out]
    return [o.float().numpy() for o in outs]


def abs_tolerance(reference: np.ndarray, rel: float) -> float:
    """``rel * max(1, max |reference|)``: relative for large outputs, absolute near zero."""
    return rel * max(1.0, float(np.abs(reference).max(initial=0.0)))


# --------------------------------------------------------------------------------------------
# Exporters
# --------------------------------------------------------------------------------------------
def _export_dynamo(
    model: nn.Module,
    example: Tensor,
    path: Path,
    opset: int,
    dyn_batch: bool,
    dyn_hw: bool,
    output_names: Sequence[str] = (OUTPUT_NAME,),
) -> None:
    from torch.export import Dim

    dims: dict[int, Any] = {}
    if dyn_batch:
        dims[0] = Dim("batch", min=1)
    if dyn_hw:
        dims[2], dims[3] = Dim.DYNAMIC, Dim.DYNAMIC
    with quiet():
        torch.onnx.export(
            model,
            (example,),
            str(path),
            dynamo=True,
            opset_version=opset,
            input_names=[INPUT_NAME],
            output_names=list(output_names),
            dynamic_shapes=(dims,) if dims else None,
            external_data=False,  # one self-contained file
            verbose=False,
            optimize=True,
        )


def _export_torchscript(
    model: nn.Module,
    example: Tensor,
    path: Path,
    opset: int,
    dyn_batch: bool,
    dyn_hw: bool,
    output_names: Sequence[str] = (OUTPUT_NAME,),
) -> None:
    axes: dict[str, dict[int, str]] = {}
    if dyn_batch:
        axes = {INPUT_NAME: {0: "batch"}, **{name: {0: "batch"} for name in output_names}}
    if dyn_hw:
        axes.setdefault(INPUT_NAME, {}).update({2: "height", 3: "width"})
    with quiet():
        torch.onnx.export(
            model,
            (example,),
            str(path),
            dynamo=False,
            opset_version=opset,
            input_names=[INPUT_NAME],
            output_names=list(output_names),
            dynamic_axes=axes or None,
            do_constant_folding=True,
        )


def exporter_order(exporter: Exporter, opset: int) -> tuple[list[str], list[str]]:
    """The exporters to try, in order, and a note for the report when ``auto`` had to skip one."""
    if exporter != "auto":
        return [exporter], []
    if opset > TORCHSCRIPT_MAX_OPSET:
        return ["dynamo"], []
    if opset < DYNAMO_MIN_OPSET:
        return ["torchscript"], [
            f"opset {opset} < {DYNAMO_MIN_OPSET}: used the TorchScript exporter"
        ]
    return ["dynamo", "torchscript"], []


def export_checked(
    model: nn.Module,
    example: Tensor,
    path: Path,
    opset: int,
    exporter: Exporter,
    dyn_batch: bool,
    dyn_hw: bool,
    output_names: Sequence[str] = (OUTPUT_NAME,),
) -> tuple[str, list[str], float]:
    """Export with the requested exporter, check parity of every output in ONNX Runtime on
    ``example`` and, for ``"auto"``, fall back from dynamo to TorchScript. Returns
    (exporter used, notes, export seconds)."""
    expected = torch_outputs(model, example)
    order, notes = exporter_order(exporter, opset)
    exporters = {"dynamo": _export_dynamo, "torchscript": _export_torchscript}
    for i, name in enumerate(order):
        last = i == len(order) - 1
        start = time.perf_counter()
        try:
            exporters[name](model, example, path, opset, dyn_batch, dyn_hw, output_names)
        except Exception as e:  # any exporter failure: try the next one or report it
            first = (str(e).strip().splitlines() or [type(e).__name__])[0][:300]
            if last:
                raise ExportError(f"the {name} exporter failed: {first}") from e
            notes.append(f"{name} exporter failed ({first}); fell back to {order[i + 1]}")
            continue
        seconds = time.perf_counter() - start
        got = run_outputs(ort_session(path), example)
        misses = [
            (out_name, float(np.abs(g - e).max()), abs_tolerance(e, FP32_PARITY_RTOL))
            for out_name, g, e in zip(output_names, got, expected, strict=True)
        ]
        misses = [m for m in misses if m[1] > m[2]]
        if len(got) == len(expected) and not misses:
            return name, notes, seconds
        detail = (
            ", ".join(f"{o}: max abs diff {d:.2e} > {t:.1e}" for o, d, t in misses)
            or f"{len(got)} outputs instead of {len(expected)}"
        )
        message = f"{name} export misses parity in ONNX Runtime ({detail})"
        if last:
            raise ExportError(message + "; try exporter='torchscript' or another opset")
        notes.append(message + f"; fell back to {order[i + 1]}")
    raise AssertionError("unreachable")


def _rename_dims(model: Any, dyn_batch: bool, dyn_hw: bool) -> None:
    """Give dynamic axes stable names (``batch``, ``height``, ``width``) whichever exporter
    produced the file, so runtimes and tools see the same signature. (Outputs get ``batch``
    only: their spatial sizes are expressions of the input's.)"""
    names = {0: "batch"} if dyn_batch else {}
    if dyn_hw:
        names.update({2: "height", 3: "width"})
    for value in (*model.graph.input, *model.graph.output):
        dims = value.type.tensor_type.shape.dim
        for axis, name in names.items():
            symbolic = axis < len(dims) and not dims[axis].HasField("dim_value")
            if symbolic and (axis == 0 or value in model.graph.input):
                dims[axis].dim_param = name


def finalize(path: Path, meta: Mapping[str, Any], dyn_batch: bool, dyn_hw: bool) -> int:
    """Write metadata, then prove the graph well-formed: full checker and strict shape
    inference; the file is rewritten with the inferred shapes. Returns the number of
    BatchNormalization nodes left in the graph."""
    onnx, _ = require_onnx()
    model = onnx.load(str(path))
    _rename_dims(model, dyn_batch, dyn_hw)
    set_metadata(model, meta)
    model.doc_string = f"{meta.get('arch')} exported by resnet-pl {meta.get('resnet_pl_version')}"
    onnx.checker.check_model(model, full_check=True)
    model = onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True)
    onnx.save(model, str(path))
    return sum(node.op_type == "BatchNormalization" for node in model.graph.node)
