"""Export a resnet-pl model to ONNX, checked end to end: the entry point.

:func:`export_onnx` is a short pipeline of named stages, each a function of one shared
:class:`ExportJob` (the options, and what the stages before it produced):

1. :func:`prepare`: check the options, load the model, fix the input shape and metadata, find
   the real images (verification / int8 calibration) before any work is done.
2. :func:`fold`: fold BatchNorm into the convolutions (:mod:`resnet_pl.deploy.fold`), proven on
   the PyTorch side; put the test-time augmentation views into the network.
3. :func:`export`: export and check the file in ONNX Runtime at once (exporter choice and
   fallback: :mod:`resnet_pl.deploy.exporters`); stable axis names and metadata
   (:mod:`resnet_pl.deploy.metadata`).
4. :func:`precision`: convert to fp16/int8 if asked (:mod:`resnet_pl.deploy.precision`).
5. :func:`verify`: prove the file against the original PyTorch model on random and real images
   (:mod:`resnet_pl.deploy.verify`, :mod:`resnet_pl.deploy.real_data`).
6. :func:`finalise`: refuse a file that failed, else move it into place and record its size and
   sha256.

Stages 3-6 work in a temporary folder beside the output, so nothing partial is left. A new
stage is one function of the job added to :data:`STAGES` (and, if it needs an option, one
keyword of :func:`export_onnx`). Classifiers get one output, ``logits``; ``features_only``
backbones get one named output per feature map (``layer1`` ... ``layer4``), each verified on
its own.

How fast the written files run is measured by the deploy benchmark suite
(``resnet-pl benchmark --suite deploy``), not here.
"""

from __future__ import annotations

import contextlib
import copy
import os
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
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
    MAX_OPSET,
    MIN_OPSET,
    TORCHSCRIPT_MAX_OPSET,
    Exporter,
    abs_tolerance,
    export_checked,
    finalize,
    require_onnx,
    torch_outputs,
)
from resnet_pl.deploy.fold import fold_batchnorm as _fold
from resnet_pl.deploy.metadata import (
    INPUT_NAME,
    OUTPUT_NAME,
    base_metadata,
    decode_metadata,
    encode_metadata,
    export_metadata,
    read_metadata,
    reserved_keys,
)
from resnet_pl.deploy.precision import convert_fp16, normalize_dtype, quantize_int8
from resnet_pl.deploy.real_data import DataLike, RealData, as_real_data, auto_real_data
from resnet_pl.deploy.source import LoadedModel, ModelSource, load_model, sha256_file
from resnet_pl.deploy.verify import TOLERANCES, Tolerance, describe_tolerance, verify_export
from resnet_pl.fileio import as_write_error, make_dirs
from resnet_pl.models.tta import num_views, with_tta

__all__ = [
    "DEFAULT_OPSET",
    "STAGES",
    "TOLERANCES",
    "CheckResult",
    "ExportError",
    "ExportJob",
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
# The job the stages share
# --------------------------------------------------------------------------------------------
@dataclass
class ExportJob:
    """One export: :func:`export_onnx`'s options, then what each stage adds to it."""

    source: ModelSource
    path: Path
    input_shape: Sequence[int] | None = None
    opset: int | None = None
    dynamic_batch: bool = True
    dynamic_hw: bool = False
    fold_batchnorm: bool = True
    dtype: str = "fp32"
    verify: bool = True
    calibration_data: DataLike | None = None
    metadata: Mapping[str, Any] | None = None
    exporter: Exporter = "auto"
    verify_data: DataLike | None = None
    pretrained: bool | None = None
    calibration_samples: int = 256
    verify_samples: int = 256
    tta: str | None = None
    start: float = field(default_factory=time.perf_counter)
    # prepare
    loaded: LoadedModel = field(init=False)
    reference: nn.Module = field(init=False)  # the original network, for every comparison
    shape: tuple[int, int, int] = field(init=False)
    fixed_batch: int = field(init=False)
    cfg: dict[str, Any] = field(init=False)
    meta_base: dict[str, Any] = field(init=False)
    generator: torch.Generator = field(init=False)
    example: Tensor = field(init=False)  # the batch the exporter traces
    feature_info: list[dict[str, Any]] | None = field(init=False)
    real: RealData | None = field(init=False)  # verification images
    calib: RealData | None = field(init=False)  # int8 calibration images
    report: ExportReport = field(init=False)
    # fold
    to_export: nn.Module = field(init=False)  # the network that goes into the graph
    tta_mode: str = field(init=False)
    # export / precision (in workdir, a temporary folder beside the output)
    workdir: Path = field(init=False)
    fp32_path: Path = field(init=False)
    final_path: Path = field(init=False)

    def file_metadata(self, dtype: str) -> dict[str, Any]:
        """The metadata written into the file of ``dtype``."""
        return export_metadata(
            self.meta_base,
            self.cfg,
            exporter=self.report.exporter,
            opset=self.report.opset,
            dtype=dtype,
            input_size=self.shape,
            output_names=self.report.output_names,
            features_only=self.report.features_only,
            feature_info=self.feature_info,
            tta=self.tta_mode,
            dynamic_batch=self.dynamic_batch,
            dynamic_hw=self.dynamic_hw,
            batchnorm_folded=self.report.bn_folded,
            extra=self.metadata,
        )


# --------------------------------------------------------------------------------------------
# The stages
# --------------------------------------------------------------------------------------------
def prepare(job: ExportJob) -> None:
    """Check the options, load the model, fix the input shape, the metadata and the real
    images: everything that can be refused is refused here, before any work."""
    job.dtype, opset = _check_options(job.dtype, job.opset, job.exporter, job.calibration_data)
    job.opset = opset
    require_onnx()
    if job.metadata is not None and not isinstance(job.metadata, Mapping):
        raise ExportOptionError("metadata must be a mapping of str keys to values")
    job.loaded = load_model(job.source, pretrained=job.pretrained)
    job.reference = copy.deepcopy(job.loaded.model).float().cpu().eval()
    job.shape, job.fixed_batch = _input_shape(job.input_shape, job.loaded.cfg, job.reference)
    job.cfg = resolve_data_cfg({**job.loaded.cfg, "input_size": job.shape})
    job.meta_base = base_metadata(job.cfg)
    clash = sorted(set(job.metadata or {}) & reserved_keys(job.meta_base))
    if clash:
        raise ExportOptionError(f"metadata keys {clash} are reserved for resnet-pl's own fields")

    job.generator = torch.Generator().manual_seed(0)
    batch = max(EXPORT_BATCH, job.fixed_batch) if job.dynamic_batch else job.fixed_batch
    job.example = torch.randn(batch, *job.shape, generator=job.generator)
    with torch.no_grad():
        try:
            out = job.reference(job.example)
        except Exception as e:
            raise ExportOptionError(
                f"the model does not run on input {tuple(job.example.shape)}: {e}"
            ) from None
    output_names, job.feature_info = _output_names(job.reference, out)
    features_only = job.feature_info is not None
    if features_only and job.dtype != "fp32":
        raise ExportOptionError(
            f"dtype={job.dtype!r} is not supported for features_only models (their outputs are "
            "feature maps, with no top-1 labels to judge reduced precision by); export fp32"
        )
    job.report = ExportReport(
        path=job.path,
        arch=str(job.meta_base["arch"]),
        source=job.loaded.description,
        exporter="",
        opset=opset,
        dtype=job.dtype,
        input_shape=job.shape,
        dynamic_batch=job.dynamic_batch,
        dynamic_hw=job.dynamic_hw,
        output_names=output_names,
        features_only=features_only,
        notes=list(job.loaded.warnings),
    )
    _find_real_data(job)


def _find_real_data(job: ExportJob) -> None:
    """Real images for verification and int8 calibration, checked against the input shape."""
    job.real = None
    if job.verify_data is not None:
        job.real = as_real_data(job.verify_data, job.cfg, "test", job.verify_samples, "verify_data")
    elif job.verify:
        job.real = auto_real_data(job.cfg, job.verify_samples)
    job.calib = None
    if job.calibration_data is not None:
        job.calib = as_real_data(
            job.calibration_data, job.cfg, "train", job.calibration_samples, "calibration_data"
        )
    if job.real is None and job.calib is not None and job.verify:
        job.real = RealData(job.calib.x, None, job.calib.description + " (calibration data)")
        job.report.notes.append("no verify_data: checked on the calibration images (no labels)")
    for data in (job.real, job.calib):
        if data is not None and not job.dynamic_hw and tuple(data.x.shape[1:]) != job.shape:
            raise ExportOptionError(
                f"real images have shape {tuple(data.x.shape[1:])} but the export input is "
                f"{job.shape}; preprocess them with resnet_pl.deploy.eval_transform(cfg)"
            )


def fold(job: ExportJob) -> None:
    """The network that goes into the graph: BatchNorm folded (proven against the original
    PyTorch model before anything is exported), then the test-time augmentation views."""
    report, shape = job.report, job.shape
    job.to_export = job.reference
    if job.fold_batchnorm:
        job.to_export = copy.deepcopy(job.reference)
        folded = _fold(job.to_export, job.example[:1])
        report.bn_folded = folded.num_folded
        probe = torch.randn(4, *shape, generator=job.generator)
        ref_outs = torch_outputs(job.reference, probe)
        fold_outs = torch_outputs(job.to_export, probe)
        diffs = [float(np.abs(r - f).max()) for r, f in zip(ref_outs, fold_outs, strict=True)]
        tols = [abs_tolerance(r, FOLD_RTOL) for r in ref_outs]
        report.fold_max_abs_diff = max(diffs)
        worst = max(range(len(diffs)), key=lambda i: diffs[i] / tols[i])
        if diffs[worst] > tols[worst]:
            raise ExportError(
                f"BatchNorm folding changed the outputs by {report.fold_max_abs_diff:.2e} "
                f"(> {tols[worst]:.1e}); export with fold_batchnorm=False and report this model"
            )

    # Test-time augmentation: by default the views the checkpoint was evaluated with go into
    # the graph (after folding, which needs the plain network), so the file reproduces
    # `resnet-pl test`; tta="none" exports the single-view network, and the report says which.
    recorded = job.loaded.cfg.get("tta")
    job.tta_mode = job.tta if job.tta is not None else str(recorded or "none")
    if job.tta_mode != "none":
        if report.features_only:
            raise ExportOptionError("tta applies to classifiers, not features_only backbones")
        job.to_export = with_tta(job.to_export, job.tta_mode)
        job.reference = with_tta(job.reference, job.tta_mode)
        report.notes.append(
            f"test-time augmentation {job.tta_mode!r} ({num_views(job.tta_mode)} views) is "
            "inside the graph, as `resnet-pl test` evaluated it; export with tta='none' "
            "(--tta none) for the single-view network"
        )
    elif recorded not in (None, "none"):
        report.notes.append(
            f"the model was evaluated with tta={recorded!r}; this file has no TTA "
            "views (its accuracy can be a little lower than `resnet-pl test` reported)"
        )


def export(job: ExportJob) -> None:
    """Export at fp32 with an immediate ONNX Runtime parity check (dynamo, falling back to
    TorchScript), then stable axis names, metadata, full checker and shape inference."""
    report = job.report
    job.fp32_path = job.final_path = job.workdir / "fp32.onnx"
    used, notes, seconds = export_checked(
        job.to_export, job.example, job.fp32_path, report.opset, job.exporter,
        job.dynamic_batch, job.dynamic_hw, report.output_names,
    )  # fmt: skip
    report.exporter, report.export_seconds = used, seconds
    report.notes += notes
    report.bn_remaining = finalize(
        job.fp32_path, job.file_metadata("fp32"), job.dynamic_batch, job.dynamic_hw
    )


def precision(job: ExportJob) -> None:
    """fp16 conversion or int8 static quantisation (calibrated on real images)."""
    report = job.report
    if job.dtype == "fp16":
        job.final_path = job.workdir / "fp16.onnx"
        report.converter = convert_fp16(job.fp32_path, job.final_path)
    elif job.dtype == "int8":
        assert job.calib is not None  # prepare() refuses int8 without calibration data
        job.final_path = job.workdir / "int8.onnx"
        x = job.calib.x
        batches = [x[i : i + 32].numpy() for i in range(0, len(x), 32)]
        report.converter = quantize_int8(job.fp32_path, job.final_path, batches)
    if job.final_path != job.fp32_path:
        report.bn_remaining = finalize(
            job.final_path, job.file_metadata(job.dtype), job.dynamic_batch, job.dynamic_hw
        )


def verify(job: ExportJob) -> None:
    """Compare ONNX Runtime with the original (unfolded) PyTorch model (skipped with
    ``verify=False``; the export stage's parity check runs regardless)."""
    if job.verify:
        verify_export(
            job.report, job.reference, job.final_path, job.fp32_path, job.shape,
            job.fixed_batch, job.real, job.generator,
        )  # fmt: skip


def finalise(job: ExportJob) -> None:
    """Refuse a file that failed verification (nothing is written), else move it into place."""
    report = job.report
    report.metadata = decode_metadata(encode_metadata(job.file_metadata(job.dtype)))
    if report.verified and not report.passed:
        report.total_seconds = time.perf_counter() - job.start
        failed = [c.name for c in report.checks if c.gated and not c.passed]
        failed += ["accuracy"] if report.accuracy_failed else []
        raise ExportVerificationError(
            f"ONNX export of {report.arch} ({job.dtype}) does not match PyTorch "
            f"(failed: {', '.join(failed)}); nothing written to {job.path}.\n"
            f"{describe_tolerance(job.dtype)}\n{report.table()}",
            report,
        )
    os.replace(job.final_path, job.path)


Stage = Callable[[ExportJob], None]
# The pipeline, in order. Stages from `export` on write, in the job's temporary folder.
STAGES: tuple[Stage, ...] = (prepare, fold, export, precision, verify, finalise)
_WRITING_STAGES = frozenset({export, precision, verify, finalise})


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
        calibration_samples: how many real images to calibrate int8 with, at most.
        verify_samples: how many real images to verify on, at most.
        benchmark_runs: deprecated and ignored (export no longer times the file; the deploy
            benchmark suite does: ``resnet-pl benchmark --suite deploy``).
        tta: test-time augmentation views put into the graph: ``"none"``, ``"flip"``,
            ``"shift"`` or ``"flip_shift"``; default: what the checkpoint was evaluated with.

    Returns:
        An :class:`ExportReport`.

    Raises:
        ExportOptionError: an impossible option combination (message names the fix).
        ExportError: the exporter failed and no fallback applied.
        ExportVerificationError: the file does not match PyTorch; nothing is written.
    """
    start = time.perf_counter()
    if benchmark_runs is not None:
        warnings.warn(
            "export_onnx(benchmark_runs=...) is deprecated and ignored: export no longer times "
            "the file; run `resnet-pl benchmark --suite deploy` (in a clone: python -m "
            "benchmarks.run --suite deploy) to compare runtimes",
            DeprecationWarning,
            stacklevel=2,
        )
    job = ExportJob(
        source=model_or_name_or_ckpt,
        path=Path(path),
        input_shape=input_shape,
        opset=opset,
        dynamic_batch=dynamic_batch,
        dynamic_hw=dynamic_hw,
        fold_batchnorm=fold_batchnorm,
        dtype=dtype,
        verify=verify,
        calibration_data=calibration_data,
        metadata=metadata,
        exporter=exporter,
        verify_data=verify_data,
        pretrained=pretrained,
        calibration_samples=calibration_samples,
        verify_samples=verify_samples,
        tta=tta,
        start=start,
    )
    return run_stages(job)


def run_stages(job: ExportJob, stages: Sequence[Stage] | None = None) -> ExportReport:
    """Run :data:`STAGES` (or ``stages``) on ``job``. From the first stage that writes
    (``export``) on, the work happens in a temporary folder beside the output, and a disk
    problem (full, read-only, no permission) is reported as a WriteError naming the output,
    not as an exporter fault."""
    stages = STAGES if stages is None else stages
    writing = False
    with ExitStack() as stack:
        for stage in stages:
            if stage in _WRITING_STAGES and not writing:
                writing = True
                stack.enter_context(_write_errors_name(job.path))
                make_dirs(job.path.parent)
                job.workdir = Path(
                    stack.enter_context(
                        tempfile.TemporaryDirectory(
                            prefix=".resnet_pl_export_", dir=job.path.parent
                        )
                    )
                )
            stage(job)
    report = job.report
    report.file_size = job.path.stat().st_size
    report.sha256 = sha256_file(job.path)
    report.total_seconds = time.perf_counter() - job.start
    return report


@contextlib.contextmanager
def _write_errors_name(path: Path) -> Iterator[None]:
    """An OS error while writing (full disk, read-only folder, no permission) becomes a
    WriteError naming ``path``; the temporary folder leaves no partial file."""
    try:
        yield
    except Exception as err:
        write_error = as_write_error(path, err)
        if write_error is None:
            raise
        raise write_error from err


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
