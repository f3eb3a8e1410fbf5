"""Raw timings -> reported numbers. Pure functions (no torch, no clock), so every figure in a
results file can be recomputed from the raw timings it came from and checked in tests.

Conventions:
- a *step* is one batch: a forward pass (``infer``) or forward + backward + optimizer step
  (``train``);
- throughput of a repeat = ``batch_size * steps_per_repeat / wall seconds of that repeat``; the
  reported ``images_per_s`` is the median over repeats, with min/max and the interquartile range;
- latency percentiles are over every timed step of every repeat, in milliseconds per batch;
- FLOPs are forward FLOPs per image (2 per multiply-add, as :func:`resnet_pl.models.count_flops`
  counts them); a training step is counted as 3x forward (forward, and backward's two
  products: activations' and weights' gradients);
- MFU = achieved TFLOP/s / the device's dense peak for the precision.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

# Fields that identify a planned case (requested settings; the measured batch may be smaller
# after an out-of-memory retry). A row's twin and baseline are found by these.
CASE_KEY_FIELDS = (
    "arch",
    "mode",
    "requested_batch_size",
    "input_size",
    "precision",
    "memory_format",
    "backend",
    "device",
    "loader",
)
# Filled in by attach_references (comparisons with the torchvision twin and the eager baseline).
REFERENCE_FIELDS = (
    "ratio_vs_torchvision",
    "ratio_vs_torchvision_min",
    "ratio_vs_torchvision_max",
    "ratio_vs_torchvision_paired_median",
    "ratio_within_noise",
    "speedup_vs_eager_fp32",
)
BASELINE = {"precision": "fp32", "memory_format": "contiguous", "backend": "eager"}
# Filled in for deploy rows: what the path needed to set up, what it ran, and how accurate it is
# on real images (see resnet_pl/bench/deploy.py). Accuracy is measured once per path, at its
# throughput batch, and copied to the path's other rows by attach_references.
ACCURACY_FIELDS = (
    "top1",
    "top1_delta_vs_eager_fp32",
    "top1_agreement_vs_eager_fp32",
    "logits_rel_rms_vs_eager_fp32",
    "eval_samples",
    "eval_data",
)
DEPLOY_FIELDS = (
    "compile_s",
    "export_s",
    "model_file",
    "model_file_mb",
    "runtime",
    "runtime_threads",
    "runtime_settings",
    "precision_hint",
    "runtime_precision",
    "peak_mem_rise_mb",
    *ACCURACY_FIELDS,
)
PATH_FIELDS = ("arch", "impl", "mode", "input_size", "precision", "memory_format", "backend",
               "device", "loader")  # fmt: skip
DEFAULT_ACCURACY_BUDGET = 0.3  # points of top-1 a recommended path may lose
TRAIN_FLOPS_FACTOR = 3

# Dense (no sparsity) peak TFLOP/s from the vendors' datasheets. fp32 is the plain (non-tensor
# core) rate; tf32/bf16/fp16 are tensor-core rates. Matched against torch.cuda.get_device_name.
PEAK_TFLOPS: dict[str, dict[str, float]] = {
    "H200": {"bf16": 989.0, "fp16": 989.0, "tf32": 495.0, "fp32": 67.0},
    "H100": {"bf16": 989.0, "fp16": 989.0, "tf32": 495.0, "fp32": 67.0},  # SXM only
    "A100": {"bf16": 312.0, "fp16": 312.0, "tf32": 156.0, "fp32": 19.5},
}
# Parts whose names contain a table key but whose peaks are lower than the SXM figures above.
_NOT_SXM = ("PCIE", "NVL")


@dataclass(frozen=True)
class Measurement:
    """Raw timings of one implementation (``resnet_pl`` or ``torchvision``) on one case.

    ``case`` holds the planned settings (see :data:`CASE_KEY_FIELDS`, plus ``groups``);
    ``batch_size`` is the batch actually run; ``repeat_wall_s`` is the wall time of each repeat of
    ``steps_per_repeat`` steps; ``step_s`` holds every timed step's duration.
    """

    case: Mapping[str, Any]
    impl: str
    batch_size: int
    repeat_wall_s: Sequence[float]
    steps_per_repeat: int
    step_s: Sequence[float]
    flops_per_image: int | None = None
    peak_mem_bytes: int | None = None
    peak_mem_kind: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)


def percentile(values: Iterable[float], q: float) -> float:
    """The ``q``-th percentile (0..100) by linear interpolation between closest ranks (numpy's
    default method), so results match ``numpy.percentile`` exactly."""
    data = sorted(values)
    if not data:
        raise ValueError("percentile of an empty sequence")
    if not 0.0 <= q <= 100.0:
        raise ValueError(f"percentile q must be in [0, 100], got {q}")
    pos = (len(data) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(data) - 1)
    return data[lo] + (data[hi] - data[lo]) * (pos - lo)


def peak_tflops_for(
    device_name: str | None,
    precision: str,
    override: float | Mapping[str, float] | None = None,
) -> tuple[float | None, str | None]:
    """Dense peak TFLOP/s for ``precision`` on ``device_name`` and where the figure came from.

    ``override`` (from ``--peak-tflops``) wins: one number for every precision, or a mapping per
    precision. Without an override only the GPUs in :data:`PEAK_TFLOPS` have a peak (CPUs none).
    """
    if isinstance(override, int | float):
        return float(override), "override"
    if override and precision in override:
        return float(override[precision]), "override"
    if not device_name:
        return None, None
    upper = device_name.upper()
    if any(tag in upper for tag in _NOT_SXM):
        return None, None
    for key, peaks in PEAK_TFLOPS.items():
        if key in upper and precision in peaks:
            return peaks[precision], f"table:{key}"
    return None, None


def summarize(
    m: Measurement,
    *,
    device_name: str | None = None,
    peak_override: float | Mapping[str, float] | None = None,
) -> dict[str, Any]:
    """One result row from one measurement: throughput (median over repeats, with spread),
    latency percentiles, FLOP rate and MFU. References (twin, baseline) come later, from
    :func:`attach_references`, once every row exists."""
    if not m.repeat_wall_s or not m.step_s:
        raise ValueError("a measurement needs at least one repeat and one timed step")
    if any(t <= 0 for t in m.repeat_wall_s):
        raise ValueError(f"repeat wall times must be positive, got {list(m.repeat_wall_s)}")
    per_repeat = [m.batch_size * m.steps_per_repeat / t for t in m.repeat_wall_s]
    ips = percentile(per_repeat, 50)
    lat_ms = [t * 1e3 for t in m.step_s]
    factor = TRAIN_FLOPS_FACTOR if m.case["mode"] == "train" else 1
    flops = m.flops_per_image
    achieved = flops * factor * ips / 1e12 if flops else None
    peak, peak_source = peak_tflops_for(device_name, m.case["precision"], peak_override)
    row: dict[str, Any] = {
        **{k: m.case[k] for k in CASE_KEY_FIELDS},
        "family": m.case.get("family"),
        "groups": list(m.case.get("groups", [])),
        "impl": m.impl,
        "status": "ok",
        "reason": None,
        "batch_size": m.batch_size,
        "steps_per_repeat": m.steps_per_repeat,
        "repeats": len(per_repeat),
        "images_per_s": ips,
        "images_per_s_min": min(per_repeat),
        "images_per_s_max": max(per_repeat),
        "images_per_s_q1": percentile(per_repeat, 25),
        "images_per_s_q3": percentile(per_repeat, 75),
        "images_per_s_repeats": per_repeat,
        "latency_ms_p50": percentile(lat_ms, 50),
        "latency_ms_p90": percentile(lat_ms, 90),
        "latency_ms_p99": percentile(lat_ms, 99),
        "latency_ms_mean": sum(lat_ms) / len(lat_ms),
        "peak_mem_mb": m.peak_mem_bytes / 2**20 if m.peak_mem_bytes is not None else None,
        "peak_mem_kind": m.peak_mem_kind,
        "flops_per_image": flops,
        "gflops_per_image": flops / 1e9 if flops else None,
        "flops_factor": factor,
        "achieved_tflops": achieved,
        "peak_tflops": peak,
        "peak_tflops_source": peak_source,
        "mfu": achieved / peak if (achieved is not None and peak) else None,
    }
    row.update(m.extra)
    return row


# Every field of a result row, in the order written to JSON: a skipped or failed row carries the
# same fields (``None`` where nothing was measured), so readers never miss a key.
ROW_FIELDS = (
    *CASE_KEY_FIELDS,
    "family",
    "groups",
    "impl",
    "status",
    "reason",
    "batch_size",
    "steps_per_repeat",
    "repeats",
    "images_per_s",
    "images_per_s_min",
    "images_per_s_max",
    "images_per_s_q1",
    "images_per_s_q3",
    "images_per_s_repeats",
    "latency_ms_p50",
    "latency_ms_p90",
    "latency_ms_p99",
    "latency_ms_mean",
    "peak_mem_mb",
    "peak_mem_kind",
    "flops_per_image",
    "gflops_per_image",
    "flops_factor",
    "achieved_tflops",
    "peak_tflops",
    "peak_tflops_source",
    "mfu",
    "setup_s",
    "params",
    "oom_retries",
    *REFERENCE_FIELDS,
    # Deployment rows (the deploy suite; None elsewhere).
    *DEPLOY_FIELDS,
    "note",
)


def blank_row(case: Mapping[str, Any], impl: str, status: str, reason: str) -> dict[str, Any]:
    """A row for a case that was not measured (``status`` "skipped" or "error")."""
    row: dict[str, Any] = dict.fromkeys(ROW_FIELDS)
    row.update({k: case[k] for k in CASE_KEY_FIELDS})
    row.update(
        family=case.get("family"),
        groups=list(case.get("groups", [])),
        impl=impl,
        status=status,
        reason=reason,
    )
    return row


def complete_row(row: Mapping[str, Any]) -> dict[str, Any]:
    """``row`` with every field of :data:`ROW_FIELDS` present, in that order (extra keys after)."""
    out = {k: row.get(k) for k in ROW_FIELDS}
    out.update({k: v for k, v in row.items() if k not in out})
    return out


def case_key(row: Mapping[str, Any], **replace: Any) -> tuple[Any, ...]:
    """The planned-settings key of a row, with some fields replaced (to find its baseline)."""
    return tuple(replace.get(k, row[k]) for k in CASE_KEY_FIELDS)


def attach_references(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Copies of ``rows`` with ``ratio_vs_torchvision`` and ``speedup_vs_eager_fp32`` filled in.

    - ``ratio_vs_torchvision``: our images/s over torchvision's at the same settings (on our rows
      only; ``None`` where there is no twin, as for the CIFAR family). Because repeats alternate
      ours/theirs, paired per-repeat ratios give the spread (``ratio_vs_torchvision_min/max``)
      and a drift-robust estimate (``ratio_vs_torchvision_paired_median``: a slow patch of the
      machine hits both halves of a pair), and ``ratio_within_noise`` says whether 1.0 lies
      inside the spread.
    - ``speedup_vs_eager_fp32``: images/s over the same implementation's eager, fp32,
      contiguous row at the same arch, mode, batch, input size and loader setting.
    """
    out = [dict(r) for r in rows]
    _share_accuracy(out)
    ok = {(case_key(r), r["impl"]): r for r in out if r.get("status") == "ok"}
    for r in out:
        for k in REFERENCE_FIELDS:
            r.setdefault(k, None)
        if r.get("status") != "ok":
            continue
        notes = r["note"].split("; ") if r.get("note") else []  # a re-render adds nothing twice
        base = ok.get((case_key(r, **BASELINE), r["impl"]))
        if base is not None:
            r["speedup_vs_eager_fp32"] = r["images_per_s"] / base["images_per_s"]
        if r["impl"] == "torchvision":
            notes.append("torchvision reference row")
        else:
            twin = ok.get((case_key(r), "torchvision"))
            if twin is not None:
                r["ratio_vs_torchvision"] = r["images_per_s"] / twin["images_per_s"]
                paired = [
                    a / b
                    for a, b in zip(
                        r["images_per_s_repeats"], twin["images_per_s_repeats"], strict=False
                    )
                ]
                r["ratio_vs_torchvision_min"] = min(paired)
                r["ratio_vs_torchvision_max"] = max(paired)
                r["ratio_vs_torchvision_paired_median"] = percentile(paired, 50)
                r["ratio_within_noise"] = min(paired) <= 1.0 <= max(paired)
            elif r.get("family") == "small":
                notes.append(
                    "no torchvision twin for the CIFAR family: reference is resnet_pl eager fp32"
                )
            else:
                notes.append("torchvision twin not measured")
        r["note"] = "; ".join(dict.fromkeys(notes)) or None
    return [complete_row(r) for r in out]


def _share_accuracy(rows: list[dict[str, Any]]) -> None:
    """Copy a path's accuracy fields (measured at one batch size) to its rows at other batch
    sizes, which run the same model, file and runtime."""
    measured: dict[tuple[Any, ...], dict[str, Any]] = {}
    for r in rows:
        if r.get("status") == "ok" and r.get("eval_samples"):
            measured.setdefault(tuple(r.get(k) for k in PATH_FIELDS), r)
    for r in rows:
        src = measured.get(tuple(r.get(k) for k in PATH_FIELDS))
        if r.get("status") == "ok" and src is not None and not r.get("eval_samples"):
            for k in ACCURACY_FIELDS:
                r[k] = src.get(k)
            where = f"accuracy measured at batch {src['batch_size']}"
            r["note"] = "; ".join(n for n in (r.get("note"), where) if n)


def accuracy_loss(row: Mapping[str, Any]) -> tuple[float | None, str]:
    """Points of top-1 a row loses against eager fp32, and what they are: ``"top-1"`` on real
    labels, or ``"disagreement"`` with eager fp32's labels (stand-in images, random weights);
    ``(None, "unknown")`` when the row has neither."""
    if row.get("top1_delta_vs_eager_fp32") is not None:
        return max(0.0, -float(row["top1_delta_vs_eager_fp32"])), "top-1"
    if row.get("top1_agreement_vs_eager_fp32") is not None:
        return 100.0 - float(row["top1_agreement_vs_eager_fp32"]), "disagreement"
    if (row.get("backend"), row.get("precision"), row.get("memory_format")) == (
        "eager",
        "fp32",
        "contiguous",
    ):
        return 0.0, "reference"
    return None, "unknown"


def path_label(row: Mapping[str, Any]) -> str:
    """A deployment path in words: ``PyTorch eager fp32 channels_last``, ``ONNX Runtime int8
    file``, ``torchvision eager fp32`` ..."""
    backend, prec = str(row.get("backend")), row.get("precision")
    who = "torchvision" if row.get("impl") == "torchvision" else "PyTorch"
    if backend.startswith("export:"):
        runtime = {"onnxruntime": "ONNX Runtime", "openvino": "OpenVINO"}.get(
            backend.partition(":")[2], backend
        )
        return f"{runtime}, {prec} file"
    fmt = " channels_last" if row.get("memory_format") == "channels_last" else ""
    if backend.startswith("compile:"):
        mode = backend.partition(":")[2]
        return f"{who} torch.compile{'' if mode == 'default' else ' ' + mode} {prec}{fmt}"
    amp = " autocast" if prec in ("bf16", "fp16") else ""
    return f"{who} {backend} {prec}{amp}{fmt}"


def recommend(
    rows: Sequence[Mapping[str, Any]], budget: float = DEFAULT_ACCURACY_BUDGET
) -> list[dict[str, Any]]:
    """Per arch: the fastest path (images/s at the arch's largest measured batch) whose
    accuracy loss (see :func:`accuracy_loss`) is within ``budget`` points, with the runner-up
    candidates' count and the command that produces its file.

    Rows with unknown accuracy are not candidates (except the eager fp32 reference, which loses
    nothing by definition). Returns one dict per arch, in the rows' order: ``arch``, ``row``
    (the chosen row), ``batch``, ``loss``, ``loss_kind``, ``budget``, ``candidates``,
    ``excluded`` (label -> why), ``latency_row`` (the same path at batch 1, if measured),
    ``command``.
    """
    out: list[dict[str, Any]] = []
    archs = list(dict.fromkeys(r["arch"] for r in rows if r.get("status") == "ok"))
    for arch in archs:
        ok = [r for r in rows if r["arch"] == arch and r.get("status") == "ok"]
        if not ok:
            continue
        batch = max(r["requested_batch_size"] for r in ok)
        at_batch = [r for r in ok if r["requested_batch_size"] == batch]
        candidates, excluded = [], {}
        for r in at_batch:
            loss, kind = accuracy_loss(r)
            if loss is None:
                excluded[path_label(r)] = "accuracy not measured"
            elif loss > budget + 1e-9:
                excluded[path_label(r)] = f"loses {loss:.2f} points ({kind}) > {budget:g}"
            else:
                candidates.append((r, loss, kind))
        if not candidates:
            continue
        best, loss, kind = max(candidates, key=lambda c: c[0]["images_per_s"])
        same_path = [
            r
            for r in ok
            if r["requested_batch_size"] == 1 and all(r.get(k) == best.get(k) for k in PATH_FIELDS)
        ]
        out.append(
            {
                "arch": arch,
                "row": dict(best),
                "label": path_label(best),
                "batch": batch,
                "loss": loss,
                "loss_kind": kind,
                "budget": budget,
                "candidates": len(candidates),
                "excluded": excluded,
                "latency_row": dict(same_path[0]) if same_path else None,
                "command": deploy_command(best),
            }
        )
    return out


def deploy_command(row: Mapping[str, Any]) -> str:
    """How to get the path of ``row`` as a user: the ``resnet-pl export`` command that writes its
    file and the ``resnet-pl classify`` command that runs it, or the PyTorch settings."""
    arch, prec, backend = str(row["arch"]), str(row["precision"]), str(row["backend"])
    if backend.startswith("export:"):
        runtime = backend.partition(":")[2]
        out = f"{arch.replace('.', '_')}-{prec}.onnx"
        cmd = f"resnet-pl export {arch} -o {out} --dtype {prec}"
        if prec == "int8":
            tagged = "." in arch
            data = "fashion_mnist" if tagged and "fashion_mnist" in arch else "DIR_OF_YOUR_IMAGES"
            cmd += f" --calibration_data {data}"
        return f"{cmd} && resnet-pl classify --model {out} --runtime {runtime} IMAGES..."
    steps = []
    if row.get("memory_format") == "channels_last":
        steps.append("model.to(memory_format=torch.channels_last)")
    if prec == "bf16":
        steps.append('torch.autocast("cpu", dtype=torch.bfloat16)')
    if backend.startswith("compile:"):
        steps.append(f'torch.compile(model, mode="{backend.partition(":")[2]}")')
    how = ", ".join(steps) or "plain eager fp32"
    build = f'"{arch}", pretrained=True' if "." in arch else f'"{arch}"'
    return f"PyTorch (no file to export): resnet_pl.create_model({build}) + {how}"
