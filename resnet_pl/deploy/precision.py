"""Reduced-precision copies of an exported fp32 ONNX file: fp16 (weights and activations in
half precision, float32 inputs/outputs) and int8 (static QDQ quantisation calibrated on real
images). Each function reads the fp32 file and writes a new one; the caller verifies it."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from resnet_pl.deploy.export_report import ExportError, ExportOptionError
from resnet_pl.deploy.exporters import quiet, require_onnx
from resnet_pl.deploy.metadata import INPUT_NAME

DTYPES = ("fp32", "fp16", "int8")
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


def normalize_dtype(dtype: str) -> str:
    """``"float16"`` -> ``"fp16"`` etc.; :class:`ExportOptionError` for anything else."""
    key = str(dtype).lower()
    if key not in _DTYPE_ALIASES:
        raise ExportOptionError(
            f"unknown dtype {dtype!r}; choose 'fp32' (default), 'fp16' or 'int8'"
        )
    return _DTYPE_ALIASES[key]


def convert_fp16(src: Path, dst: Path) -> str:
    """fp16 weights and activations, float32 inputs/outputs (callers keep feeding float32).
    Returns the converter used."""
    onnx, _ = require_onnx()
    try:
        from onnxconverter_common import float16

        converter = "onnxconverter-common"
    except ImportError:
        from onnxruntime.transformers import float16  # ships inside onnxruntime

        converter = "onnxruntime.transformers.float16"
    model = onnx.load(str(src))
    with quiet():
        converted = float16.convert_float_to_float16(model, keep_io_types=True)
    _toposort(converted.graph)  # onnxruntime's copy appends the input casts at the end
    onnx.save(converted, str(dst))
    return converter


def _toposort(graph: Any) -> None:
    """Reorder ``graph.node`` so every node comes after the producers of its inputs (the
    checker requires it)."""
    onnx, _ = require_onnx()
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


def quantize_int8(src: Path, dst: Path, batches: list[np.ndarray]) -> str:
    """Static int8 quantisation: QDQ format, per-channel int8 weights, uint8 activations
    (U8S8), calibrated (min/max) on ``batches`` of real, preprocessed images. Returns a
    description of the quantiser and its settings.

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
        with quiet():
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
