"""Proving an exported ONNX file against the PyTorch model it came from, in ONNX Runtime.

Tolerances (see :data:`TOLERANCES`): fp32 files must match PyTorch to
``1e-4 * max(1, max |output|)`` (every feature map of a ``features_only`` model alike) and, for
classifiers, with identical top-1 labels (a swap between two classes whose PyTorch logits differ
by less than that tolerance is a tie, not an error); fp16 and int8 classifier files are judged on
top-1 agreement with fp32 PyTorch and on the accuracy change over real labelled data, with the
max-abs difference reported but not gated.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from resnet_pl.deploy.export_report import CheckResult, ExportReport
from resnet_pl.deploy.exporters import abs_tolerance, ort_session, run_outputs, torch_outputs
from resnet_pl.deploy.real_data import RealData


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


def describe_tolerance(dtype: str) -> str:
    """One line stating the pass criteria of ``dtype``."""
    tol = TOLERANCES[dtype]
    if tol.max_abs is not None:
        return (
            f"{dtype} tolerance: max |onnx - torch| <= {tol.max_abs:g} * max(1, max |output|) "
            "and identical top-1 labels (ties within that tolerance excepted)"
        )
    return (
        f"{dtype} tolerance: top-1 agreement with fp32 PyTorch >= {tol.min_top1:.0%} on the "
        f"largest real batch, accuracy drop <= {tol.max_accuracy_drop} points"
    )


def compare_logits(
    name: str, data: str, got: np.ndarray, ref: np.ndarray, tol: Tolerance, gated: bool
) -> CheckResult:
    """A classifier check: max-abs difference and top-1 agreement (ties within tolerance are
    not mismatches)."""
    diff = float(np.abs(got.astype(np.float64) - ref).max(initial=0.0))
    abs_tol = abs_tolerance(ref, tol.max_abs) if tol.max_abs is not None else None
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


def compare_map(
    name: str, data: str, output: str, got: np.ndarray, ref: np.ndarray, rel: float
) -> CheckResult:
    """A feature-map check: max-abs difference within ``rel * max(1, max |ref|)``."""
    diff = float(np.abs(got.astype(np.float64) - ref).max(initial=0.0))
    bound = abs_tolerance(ref, rel)
    return CheckResult(
        f"{name} {output}", data, len(ref), diff, bound, None, None, True, diff <= bound, output
    )


def batched_logits(model: nn.Module, x: Tensor, batch: int = 64) -> np.ndarray:
    """PyTorch logits of ``x`` in float64, a batch at a time."""
    with torch.no_grad():
        return (
            torch.cat([model(x[i : i + batch]) for i in range(0, len(x), batch)]).double().numpy()
        )


def batched_onnx_logits(session: object, x: Tensor, batch: int) -> np.ndarray:
    """ONNX Runtime logits (first output) of ``x``, ``batch`` images per run."""
    return np.concatenate(
        [run_outputs(session, x[i : i + batch])[0] for i in range(0, len(x), batch)]
    )


def verify_export(
    report: ExportReport,
    reference: nn.Module,
    final_path: Path,
    fp32_path: Path,
    shape: tuple[int, int, int],
    fixed_batch: int,
    real: RealData | None,
    g: torch.Generator,
) -> None:
    """Fill ``report.checks`` (and, with labelled real data, ``report.accuracy``); set
    ``verified`` and ``passed``. Compares against the original (unfolded) PyTorch model at
    batch 1 and 7 (or the static batch) on random and real images, every output."""
    session = ort_session(final_path)
    batches = (1, 7) if report.dynamic_batch else (fixed_batch,)
    inputs: list[tuple[str, str, Tensor]] = [
        (f"random b={b}", "random", torch.randn(b, *shape, generator=g)) for b in batches
    ]
    if report.dynamic_hw:
        c, h, w = shape
        x = torch.randn(batches[-1], c, h + 8, w + 4, generator=g)
        inputs.append((f"random {h + 8}x{w + 4}", "random", x))
    if real is not None:
        inputs += [(f"real b={b}", "real", real.x[:b]) for b in batches if b <= len(real.x)]
    if report.features_only:
        _verify_maps(report, reference, session, inputs)
    else:
        _verify_classifier(report, reference, session, fp32_path, inputs, batches, real, g)
    report.verified = True
    report.passed = all(c.passed for c in report.checks if c.gated)


def _verify_maps(
    report: ExportReport,
    reference: nn.Module,
    session: object,
    inputs: list[tuple[str, str, Tensor]],
) -> None:
    """Every feature map of every input batch within the fp32 tolerance."""
    rel = TOLERANCES["fp32"].max_abs or 1e-4
    for name, data, x in inputs:
        refs = torch_outputs(reference, x)
        gots = run_outputs(session, x)
        if len(gots) != len(refs):
            raise AssertionError(f"{len(gots)} ONNX outputs for {len(refs)} PyTorch feature maps")
        for out_name, got, ref in zip(report.output_names, gots, refs, strict=True):
            ref64 = ref.astype(np.float64)
            report.checks.append(compare_map(name, data, out_name, got, ref64, rel))


def _verify_classifier(
    report: ExportReport,
    reference: nn.Module,
    session: object,
    fp32_path: Path,
    inputs: list[tuple[str, str, Tensor]],
    batches: tuple[int, ...],
    real: RealData | None,
    g: torch.Generator,
) -> None:
    dtype = report.dtype
    tol = TOLERANCES[dtype]
    # fp32: every check decides. fp16/int8: one mismatch in a batch of 7 says little, so only
    # the largest batch of real images (else the last random batch) decides, on top-1 agreement.
    gate_all = dtype == "fp32"
    for name, data, x in inputs:
        got, ref = run_outputs(session, x)[0], batched_logits(reference, x)
        report.checks.append(compare_logits(name, data, got, ref, tol, gate_all))
    if real is not None:
        n = len(real.x)
        sizes = [b for b in batches if b <= n]
        step = batches[-1] if not report.dynamic_batch else 64
        usable = n if report.dynamic_batch else (n // step) * step
        if usable > max(sizes, default=0):
            x = real.x[:usable]
            ref = batched_logits(reference, x)
            got = batched_onnx_logits(session, x, step)
            check = compare_logits(f"real all n={usable}", "real", got, ref, tol, True)
            report.checks.append(check)
            if real.labels is not None:
                _accuracy(report, real.labels[:usable].numpy(), ref, got, fp32_path, x, step)
    if dtype != "fp32":
        report.checks[-1].gated = True  # the largest real batch, else the last random one
        report.checks[-1].passed = report.checks[-1].passed and not report.accuracy_failed


def _accuracy(
    report: ExportReport,
    y: np.ndarray,
    ref: np.ndarray,
    got: np.ndarray,
    fp32_path: Path,
    x: Tensor,
    step: int,
) -> None:
    """Top-1 accuracy of PyTorch, the file (and for fp16/int8 the fp32 file) on labelled data;
    flags a drop beyond the dtype's tolerance."""
    dtype = report.dtype
    tol = TOLERANCES[dtype]
    report.accuracy_samples = len(y)
    report.accuracy["pytorch"] = float((ref.argmax(1) == y).mean())
    if dtype != "fp32":
        fp32 = batched_onnx_logits(ort_session(fp32_path), x, step)
        report.accuracy["onnx_fp32"] = float((fp32.argmax(1) == y).mean())
    report.accuracy[f"onnx_{dtype}"] = float((got.argmax(1) == y).mean())
    if tol.max_accuracy_drop is not None and dtype != "fp32":
        drop = 100 * (report.accuracy["pytorch"] - report.accuracy[f"onnx_{dtype}"])
        if drop > tol.max_accuracy_drop:
            report.notes.append(f"accuracy drops {drop:.2f} points (> {tol.max_accuracy_drop})")
            report.accuracy_failed = True
