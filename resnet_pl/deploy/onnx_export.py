"""Export a resnet-pl model to ONNX, checked end to end: the entry point.

:func:`export_onnx` folds BatchNorm into the convolutions, exports (exporter choice and
fallback: :mod:`resnet_pl.deploy.exporters`), converts to fp16/int8 if asked
(:mod:`resnet_pl.deploy.precision`), proves the file in ONNX Runtime against PyTorch
(:mod:`resnet_pl.deploy.verify`, on real images from :mod:`resnet_pl.deploy.real_data`), and
writes the metadata a deployment needs (classes, normalisation, input size, provenance) into the
file. Classifiers get one output, ``logits``; ``features_only`` backbones get one named output
per feature map (``layer1`` ... ``layer4``), each verified on its own.

How fast the written files run is measured by the deploy benchmark suite
(``python -m benchmarks.run --suite deploy``), not here.
"""

from __future__ import annotations

import copy
import os
import tempfile
import time
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from resnet_pl.data import resolve_data_cfg
from resnet_pl.deploy.export_report import (
    CheckResult,
    ExportError,
    ExportOptionError,
    ExportReport,
    ExportVerificationError,
)
from resnet_pl.deploy.exporters import (
    DEFAULT_OPSET,
    DYNAMO_MIN_OPSET,
    EXPORT_BATCH,
    EXPORTERS,
    INPUT_NAME,
    JSON_KEYS_KEY,
    MAX_OPSET,
    MIN_OPSET,
    OUTPUT_NAME,
    TORCHSCRIPT_MAX_OPSET,
    Exporter,
    abs_tolerance,
    decode_metadata,
    encode_metadata,
    export_checked,
    finalize,
    read_metadata,
    require_onnx,
    torch_outputs,
)
from resnet_pl.deploy.fold import fold_batchnorm as _fold
from resnet_pl.deploy.precision import convert_fp16, normalize_dtype, quantize_int8
from resnet_pl.deploy.real_data import DataLike, RealData, as_real_data, auto_real_data
from resnet_pl.deploy.source import ModelSource, base_metadata, load_model, sha256_file
from resnet_pl.deploy.verify import TOLERANCES, Tolerance, describe_tolerance, verify_export
from resnet_pl.fileio import as_write_error, make_dirs
from resnet_pl.models.tta import num_views, with_tta

__all__ = [
    "DEFAULT_OPSET",
    "TOLERANCES",
    "CheckResult",
    "ExportError",
    "ExportOptionError",
    "ExportReport",
    "ExportVerificationError",
    "Tolerance",
    "decode_metadata",
    "encode_metadata",
    "export_onnx",
    "read_metadata",
]

FOLD_RTOL = 1e-5  # folded PyTorch model vs original, relative to max(1, max |logit|)


# --------------------------------------------------------------------------------------------
# Options
# --------------------------------------------------------------------------------------------
def _check_options(
    dtype: str, opset: int | None, exporter: str, calibration_data: Any
) -> tuple[str, int]:
    dtype = normalize_dtype(dtype)
    if exporter not in EXPORTERS:
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
    benchmark_runs: int | None = None,
    tta: str | None = None,
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
            (static QDQ quantisation; needs ``calibration_data``). ``features_only``
            models export at fp32 only.
        verify: compare ONNX Runtime with PyTorch at batch 1 and 7 on random and real images
            (every feature map of a ``features_only`` model on its own);
            raise :class:`ExportVerificationError` (with the table) outside :data:`TOLERANCES`.
            (A parity check on the export batch runs even with ``verify=False``.)
        calibration_data: real images for int8 calibration (see ``verify_data`` for forms).
        metadata: extra ``metadata_props`` (str values stored as is, others as JSON).
        exporter: ``"auto"`` (dynamo, TorchScript fallback), ``"dynamo"`` or ``"torchscript"``.
        verify_data: real images for verification: a float tensor ``(N, C, H, W)`` already
            normalised, uint8 images, ``(images, labels)`` for accuracy, a folder of images,
            or a dataset name (``"fashion_mnist"``). Default: the test split of the dataset the
            model was trained on when it is on this machine (see
            :func:`resnet_pl.deploy.datasets.dataset_of`), else the calibration data
            (unlabelled) if any.
        pretrained: for registry names: load weights (default: only for tagged names).
        calibration_samples, verify_samples: how many real images to use at most.
        benchmark_runs: deprecated and ignored (export no longer times the file; the deploy
            benchmark suite does: ``python -m benchmarks.run --suite deploy``).

    Returns:
        An :class:`ExportReport`.

    Raises:
        ExportOptionError: an impossible option combination (message names the fix).
        ExportError: the exporter failed and no fallback applied.
        ExportVerificationError: the file does not match PyTorch; nothing is written.
    """
    start_total = time.perf_counter()
    if benchmark_runs is not None:
        warnings.warn(
            "export_onnx(benchmark_runs=...) is deprecated and ignored: export no longer times "
            "the file; run `python -m benchmarks.run --suite deploy` to compare runtimes",
            DeprecationWarning,
            stacklevel=2,
        )
    dtype, opset = _check_options(dtype, opset, exporter, calibration_data)
    require_onnx()
    if metadata is not None and not isinstance(metadata, Mapping):
        raise ExportOptionError("metadata must be a mapping of str keys to values")
    path = Path(path)
    loaded = load_model(model_or_name_or_ckpt, pretrained=pretrained)
    reference = copy.deepcopy(loaded.model).float().cpu().eval()
    shape, fixed_batch = _input_shape(input_shape, loaded.cfg, reference)
    cfg = resolve_data_cfg({**loaded.cfg, "input_size": shape})
    meta_base = base_metadata(cfg)
    reserved = set(meta_base) | {"exporter", "opset", "dtype", "input_size", "mean", "std"}
    clash = sorted(set(metadata or {}) & (reserved | {JSON_KEYS_KEY}))
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
    output_names, feature_info = _output_names(reference, out)
    features_only = feature_info is not None
    if features_only and dtype != "fp32":
        raise ExportOptionError(
            f"dtype={dtype!r} is not supported for features_only models (their outputs are "
            "feature maps, with no top-1 labels to judge reduced precision by); export fp32"
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
        output_names=output_names,
        features_only=features_only,
        notes=list(loaded.warnings),
    )

    # Real data (verification / calibration), checked before any work is done.
    real: RealData | None = None
    if verify_data is not None:
        real = as_real_data(verify_data, cfg, "test", verify_samples, "verify_data")
    elif verify:
        real = auto_real_data(cfg, verify_samples)
    calib: RealData | None = None
    if calibration_data is not None:
        calib = as_real_data(
            calibration_data, cfg, "train", calibration_samples, "calibration_data"
        )
    if real is None and calib is not None and verify:
        real = RealData(calib.x, None, calib.description + " (calibration data)")
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
        ref_outs, fold_outs = torch_outputs(reference, probe), torch_outputs(to_export, probe)
        diffs = [float(np.abs(r - f).max()) for r, f in zip(ref_outs, fold_outs, strict=True)]
        tols = [abs_tolerance(r, FOLD_RTOL) for r in ref_outs]
        report.fold_max_abs_diff = max(diffs)
        worst = max(range(len(diffs)), key=lambda i: diffs[i] / tols[i])
        fold_tol = tols[worst]
        if diffs[worst] > fold_tol:
            raise ExportError(
                f"BatchNorm folding changed the outputs by {report.fold_max_abs_diff:.2e} "
                f"(> {fold_tol:.1e}); export with fold_batchnorm=False and report this model"
            )

    # Test-time augmentation: by default the views the checkpoint was evaluated with go into
    # the graph (after folding, which needs the plain network), so the file reproduces
    # `resnet-pl test`; tta="none" exports the single-view network, and the report says which.
    tta_mode = tta if tta is not None else str(loaded.cfg.get("tta") or "none")
    if tta_mode != "none":
        if features_only:
            raise ExportOptionError("tta applies to classifiers, not features_only backbones")
        to_export, reference = with_tta(to_export, tta_mode), with_tta(reference, tta_mode)
        report.notes.append(
            f"test-time augmentation {tta_mode!r} ({num_views(tta_mode)} views) is inside the "
            "graph, as `resnet-pl test` evaluated it; export with tta='none' (--tta none) "
            "for the single-view network"
        )
    elif loaded.cfg.get("tta") not in (None, "none"):
        report.notes.append(
            f"the model was evaluated with tta={loaded.cfg['tta']!r}; this file has no TTA "
            "views (its accuracy can be a little lower than `resnet-pl test` reported)"
        )

    # A disk problem (full, read-only, no permission) is reported as such: a WriteError
    # naming `path`, not an exporter fault; the temporary folder leaves no partial file.
    try:
        make_dirs(path.parent)
        with tempfile.TemporaryDirectory(prefix=".resnet_pl_export_", dir=path.parent) as tmp:
            fp32_path = Path(tmp) / "fp32.onnx"
            # 2. Export + immediate ONNX Runtime parity check (with dynamo -> TorchScript fallback).
            used, notes, seconds = export_checked(
                to_export, example, fp32_path, opset, exporter, dynamic_batch, dynamic_hw,
                output_names,
            )  # fmt: skip
            report.exporter, report.export_seconds = used, seconds
            report.notes += notes

            def meta_for(kind: str) -> dict[str, Any]:
                return {
                    **meta_base,
                    "exporter": used,
                    "opset": opset,
                    "dtype": kind,
                    "input_name": INPUT_NAME,
                    "output_name": output_names[0],
                    "output_names": output_names,
                    "features_only": features_only,
                    "feature_info": feature_info,
                    "tta": tta_mode,
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

            report.bn_remaining = finalize(fp32_path, meta_for("fp32"), dynamic_batch, dynamic_hw)

            # 3. Reduced precision.
            final_path = fp32_path
            if dtype == "fp16":
                final_path = Path(tmp) / "fp16.onnx"
                report.converter = convert_fp16(fp32_path, final_path)
            elif dtype == "int8":
                assert calib is not None
                final_path = Path(tmp) / "int8.onnx"
                batches = [calib.x[i : i + 32].numpy() for i in range(0, len(calib.x), 32)]
                report.converter = quantize_int8(fp32_path, final_path, batches)
            if final_path != fp32_path:
                report.bn_remaining = finalize(
                    final_path, meta_for(dtype), dynamic_batch, dynamic_hw
                )

            # 4. Verification against the original (unfolded) PyTorch model.
            if verify:
                verify_export(report, reference, final_path, fp32_path, shape, fixed_batch, real, g)
            report.metadata = decode_metadata(encode_metadata(meta_for(dtype)))
            if report.verified and not report.passed:
                report.total_seconds = time.perf_counter() - start_total
                failed = [c.name for c in report.checks if c.gated and not c.passed]
                failed += ["accuracy"] if report.accuracy_failed else []
                raise ExportVerificationError(
                    f"ONNX export of {report.arch} ({dtype}) does not match PyTorch "
                    f"(failed: {', '.join(failed)}); nothing written to {path}.\n"
                    f"{describe_tolerance(dtype)}\n{report.table()}",
                    report,
                )
            os.replace(final_path, path)
    except Exception as err:
        write_error = as_write_error(path, err)
        if write_error is None:
            raise
        raise write_error from err
    report.file_size = path.stat().st_size
    report.sha256 = sha256_file(path)
    report.total_seconds = time.perf_counter() - start_total
    return report


def _output_names(model: nn.Module, out: Any) -> tuple[list[str], list[dict[str, Any]] | None]:
    """Output names for the graph, and for ``features_only`` models the feature info stored
    in the metadata (``name``, ``num_chs``, ``reduction`` per map, in output order).

    A classifier (output ``(N, num_classes)``) has one output, ``logits``. A model returning a
    list of maps gets one output per map, named after the stage that produces it (from its
    ``feature_info`` and ``out_indices``, as timm and resnet-pl describe features), else
    ``feature0``, ``feature1`` ...
    """
    if isinstance(out, Tensor):
        if out.dim() != 2:
            raise ExportOptionError(
                "export_onnx exports classifiers (output (N, num_classes)) and features_only "
                f"backbones (a list of maps); this model returns a tensor {tuple(out.shape)}"
            )
        return [OUTPUT_NAME], None
    if not isinstance(out, list | tuple) or not out or not all(isinstance(o, Tensor) for o in out):
        raise ExportOptionError(
            "export_onnx exports classifiers (output (N, num_classes)) and features_only "
            f"backbones (a list of maps); this model returns {type(out).__name__}"
        )
    info = list(getattr(model, "feature_info", None) or [])
    indices = list(getattr(model, "out_indices", None) or [])
    if len(indices) == len(out) and all(1 <= i <= len(info) for i in indices):
        chosen = [info[i - 1] for i in indices]
    elif len(info) == len(out):
        chosen = info
    else:
        chosen = [{"module": f"feature{i}"} for i in range(len(out))]
    names = [str(c.get("module") or f"feature{i}") for i, c in enumerate(chosen)]
    if len(set(names)) != len(names) or INPUT_NAME in names:
        names = [f"feature{i}" for i in range(len(out))]
    feature_info = [
        {
            "name": name,
            "num_chs": int(o.shape[1]),
            "reduction": c.get("reduction"),
            "shape": list(o.shape[1:]),
        }
        for name, c, o in zip(names, chosen, out, strict=True)
    ]
    return names, feature_info
