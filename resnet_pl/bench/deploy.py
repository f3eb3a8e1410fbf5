"""Deployment rows: the files ``resnet-pl export`` writes, run in ONNX Runtime or OpenVINO, and
top-1 on real images for every row of the deploy suite.

- **Files.** Each arch is exported once per dtype (fp32, fp16, int8) with
  :func:`resnet_pl.deploy.export_onnx` from the very model the PyTorch rows time, and the file is
  shared by the ONNX Runtime and OpenVINO rows and by every batch size. The suite calls it with
  ``verify=False``: the file is byte for byte what a verified export writes (verification only
  reads it), the exporter's own parity check still runs, and the accuracy columns below are the
  suite's own check, on the same images for every row.
- **Real images.** A model trained on a dataset this package can load (``resnet20.fashion_mnist``)
  is scored on the first ``eval_samples`` images of that dataset's test split, and its int8 file
  is calibrated on the first ``calibration_samples`` of the train split. Other models (random
  weights) get a stated stand-in: Fashion-MNIST images through the model's own eval transform
  (grey repeated to RGB, resized and centre-cropped to 224 px); their labels mean nothing to
  such a model, so those rows report agreement with eager fp32 instead of top-1.
- **Runtimes.** ONNX Runtime: ``CPUExecutionProvider``, ``ORT_ENABLE_ALL`` graph optimisations,
  ``intra_op_num_threads`` = torch's thread count. OpenVINO: the CPU plugin, ``LATENCY``
  performance hint, ``INFERENCE_NUM_THREADS`` = torch's thread count, the model reshaped to the
  row's static batch; the row records the precision hint the plugin reports and the precision
  its compiled convolutions actually run in (OpenVINO picks bf16 by itself for fp32 files on
  CPUs with AVX512-BF16 or AMX).
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from resnet_pl.bench.plan import Case, arch_cfg

Predict = Callable[[Tensor], np.ndarray]
STAND_IN = "fashion_mnist"  # real images for models without a dataset of their own


@dataclass
class EvalData:
    """Real images for one arch, preprocessed for it: ``x`` to score every row on, ``calib``
    for the int8 export, and ``labels`` when they are the model's own classes."""

    x: Tensor | None
    labels: np.ndarray | None
    calib: Tensor | None
    description: str
    stand_in: bool = False


@cache
def eval_data(arch: str, samples: int, calibration_samples: int) -> EvalData:
    """The images every row of ``arch`` is scored on (cached: one load per arch and run)."""
    from resnet_pl.data import preprocess_uint8
    from resnet_pl.deploy.datasets import dataset_available, load_dataset

    cfg = arch_cfg(arch)
    own = cfg.get("dataset") if cfg.get("pretrained") else None
    name = own or STAND_IN
    if not dataset_available(name):
        return EvalData(None, None, None, f"no real images ({name} is not on this machine)")
    cfg = {**cfg, "input_size": tuple(cfg["input_size"])}
    x_train, _ = load_dataset(name, "train", calibration_samples)
    calib = preprocess_uint8(x_train, cfg)
    if samples <= 0:
        return EvalData(None, None, calib, f"no eval images asked; calibration on {name}")
    x_test, y_test = load_dataset(name, "test", samples)
    x = preprocess_uint8(x_test, cfg)
    side = cfg["input_size"][-1]
    if own:
        return EvalData(x, y_test, calib, f"{name} test[:{len(x)}] (top-1 on real labels)")
    return EvalData(
        x,
        None,
        calib,
        f"stand-in: {name} test[:{len(x)}] through the model's eval transform at {side} px "
        f"(random weights: agreement with eager fp32, not top-1); int8 calibrated on {name} "
        f"train[:{len(calib)}]",
        stand_in=True,
    )


# ---- exported files --------------------------------------------------------------------------
@dataclass
class ExportedFile:
    path: Path
    dtype: str
    export_s: float
    file_mb: float
    exporter: str
    converter: str | None
    notes: list[str] = field(default_factory=list)


_EXPORTS: dict[tuple[Any, ...], ExportedFile] = {}
_EXPORT_DIR: list[Path] = []


def _export_dir() -> Path:
    if not _EXPORT_DIR:
        path = Path(tempfile.mkdtemp(prefix="resnet-pl-deploy-"))
        atexit.register(shutil.rmtree, path, ignore_errors=True)
        _EXPORT_DIR.append(path)
    return _EXPORT_DIR[0]


def exported_file(model: nn.Module, case: Case, data: EvalData) -> ExportedFile:
    """The ``export_onnx`` file of ``model`` at the case's dtype (exported on first use, then
    shared by every row of the same arch, input size and dtype)."""
    from resnet_pl.deploy import export_onnx

    chans = int(arch_cfg(case.arch)["input_size"][0])
    key = (case.arch, case.input_size, case.precision)
    if key in _EXPORTS:
        return _EXPORTS[key]
    if case.precision == "int8" and data.calib is None:
        raise RuntimeError(f"int8 export needs real calibration images: {data.description}")
    path = _export_dir() / f"{case.arch}-{case.input_size}-{case.precision}.onnx"
    start = time.perf_counter()
    report = export_onnx(
        model,
        path,
        input_shape=(chans, case.input_size, case.input_size),
        dtype=case.precision,
        calibration_data=data.calib if case.precision == "int8" else None,
        calibration_samples=len(data.calib) if data.calib is not None else 0,
        verify=False,
    )
    out = ExportedFile(
        path,
        case.precision,
        time.perf_counter() - start,
        report.file_size / 2**20,
        report.exporter,
        report.converter,
        list(report.notes),
    )
    _EXPORTS[key] = out
    return out


def clear_exports() -> None:
    """Forget the exported files (tests; a new run with other weights)."""
    for f in _EXPORTS.values():
        f.path.unlink(missing_ok=True)
    _EXPORTS.clear()


# ---- runtimes --------------------------------------------------------------------------------
def ort_runner(path: Path, threads: int) -> tuple[Callable[[Tensor], Any], dict[str, Any]]:
    """A call running the file in ONNX Runtime, and what to record about the session."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3
    session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name

    def run(x: Tensor) -> Any:
        return session.run(None, {name: x.numpy()})[0]

    info = {
        "runtime": f"onnxruntime {ort.__version__} CPUExecutionProvider",
        "runtime_threads": threads,
        "runtime_settings": "graph_optimization_level=ORT_ENABLE_ALL, inter_op_num_threads=1",
    }
    return run, info


def openvino_runner(
    path: Path, batch: int, threads: int
) -> tuple[Callable[[Tensor], Any], dict[str, Any]]:
    """A call running the file in OpenVINO's CPU plugin at a static batch, and what it ran:
    the precision hint and the precisions of the compiled convolutions."""
    import openvino as ov

    core = ov.Core()
    model = core.read_model(str(path))
    dims = model.inputs[0].get_partial_shape()
    shape = [batch, *(int(d.get_length()) for d in list(dims)[1:])]
    model.reshape(shape)
    compiled = core.compile_model(
        model, "CPU", {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": threads}
    )
    request = compiled.create_infer_request()

    def run(x: Tensor) -> Any:
        request.infer({0: x.numpy()})
        return request.get_output_tensor(0).data

    info = {
        "runtime": f"openvino {ov.__version__.split('-')[0]} CPU",
        "runtime_threads": int(compiled.get_property("INFERENCE_NUM_THREADS")),
        "runtime_settings": "PERFORMANCE_HINT=LATENCY, static batch",
        "precision_hint": compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name(),
        "runtime_precision": openvino_conv_precision(compiled),
    }
    return run, info


def openvino_conv_precision(compiled: Any) -> str:
    """The precisions the compiled model's convolutions run in, e.g. ``"bf16 x53"`` or
    ``"u8 x52, f32 x1"`` (from each op's ``runtimePrecision``)."""
    counts: Counter[str] = Counter()
    for op in compiled.get_runtime_model().get_ordered_ops():
        info = op.get_rt_info()
        if "layerType" in info and info["layerType"].astype(str) == "Convolution":
            counts[info["runtimePrecision"].astype(str)] += 1
    return ", ".join(f"{p} x{n}" for p, n in counts.most_common()) or "unknown"


def batched_predict(run: Callable[[Tensor], Any], x: Tensor, batch: int) -> np.ndarray:
    """Logits of ``x`` through ``run``, ``batch`` images per call (the last chunk padded with
    zeros to ``batch``, as static-shape runtimes and compiled graphs need)."""
    outs = []
    for i in range(0, len(x), batch):
        chunk = x[i : i + batch]
        pad = batch - len(chunk)
        if pad:
            chunk = torch.cat([chunk, chunk.new_zeros((pad, *chunk.shape[1:]))])
        out = run(chunk.contiguous())
        out = out.float().cpu().numpy() if isinstance(out, Tensor) else np.asarray(out)
        outs.append(out[: batch - pad].astype(np.float32))
    return np.concatenate(outs)


def accuracy_fields(
    logits: np.ndarray, reference: np.ndarray | None, data: EvalData
) -> dict[str, Any]:
    """Row fields from a row's logits on the eval images and eager fp32's: top-1 (labelled
    data only) and its change in points, agreement of top-1 labels, and the RMS change of the
    logits relative to their RMS."""
    out: dict[str, Any] = {"eval_samples": len(logits), "eval_data": data.description}
    pred = logits.argmax(1)
    if data.labels is not None:
        out["top1"] = 100.0 * float((pred == data.labels[: len(pred)]).mean())
    if reference is not None:
        ref_pred = reference.argmax(1)
        out["top1_agreement_vs_eager_fp32"] = 100.0 * float((pred == ref_pred).mean())
        rms = float(np.sqrt(np.mean(reference.astype(np.float64) ** 2)))
        err = float(np.sqrt(np.mean((logits.astype(np.float64) - reference) ** 2)))
        out["logits_rel_rms_vs_eager_fp32"] = err / rms if rms > 0 else None
        if data.labels is not None:
            ref_top1 = 100.0 * float((ref_pred == data.labels[: len(ref_pred)]).mean())
            out["top1_delta_vs_eager_fp32"] = out["top1"] - ref_top1
    return out
