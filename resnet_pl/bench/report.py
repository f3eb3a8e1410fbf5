"""Describe the machine, and write the results: JSON (everything), markdown (a readable table)
and PNG plots (throughput vs batch, speed-ups, throughput vs depth). Plot names are stable
(``<tag>-<device>-<plot>.png``) so a README can link them."""

from __future__ import annotations

import json
import math
import os
import platform
import re
import socket
import subprocess
from collections import defaultdict
from collections.abc import Mapping, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

from resnet_pl.bench.aggregate import CASE_KEY_FIELDS

PLOT_NAMES = ("throughput_vs_batch", "speedup", "throughput_vs_depth")
DEPLOY_PLOT = "deploy"  # added for runs with deployment rows


# ---- machine and versions --------------------------------------------------------------------
def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _run(cmd: Sequence[str]) -> str | None:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=10, check=True)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def _driver_version() -> str | None:
    try:
        import pynvml

        pynvml.nvmlInit()
        version = pynvml.nvmlSystemGetDriverVersion()
        return version.decode() if isinstance(version, bytes) else str(version)
    except Exception:
        out = _run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"])
        return out.splitlines()[0] if out else None


def cpu_flags() -> list[str]:
    """The SIMD flags that decide CPU speed (AVX2, AVX-512, BF16, VNNI, AMX)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    flags = line.split(":", 1)[1].split()
                    keep = ("avx", "amx", "fma", "f16c", "vnni", "bf16", "sse4")
                    return sorted(x for x in flags if x.startswith(keep) or "vnni" in x)
    except OSError:
        pass
    return []


def machine_info() -> dict[str, Any]:
    """Host, CPU, and (where present) GPU, driver, CUDA and cuDNN versions."""
    import torch

    usable: int | None
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    info: dict[str, Any] = {
        "hostname": socket.gethostname(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu_model": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpu_usable": usable,
        "torch_num_threads": torch.get_num_threads(),
        "gpu_name": None,
        "gpu_count": 0,
        "gpu_memory_gib": None,
        "gpu_capability": None,
        "driver_version": None,
        "cuda_version": torch.version.cuda,
        "cudnn_version": torch.backends.cudnn.version() if torch.cuda.is_available() else None,
    }
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        info.update(
            gpu_name=torch.cuda.get_device_name(0),
            gpu_count=torch.cuda.device_count(),
            gpu_memory_gib=round(props.total_memory / 2**30, 1),
            gpu_capability=f"{props.major}.{props.minor}",
            driver_version=_driver_version(),
        )
    return info


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def versions() -> dict[str, Any]:
    """Versions of everything that shapes the numbers, and the git commit of this checkout."""
    import torch
    import torchvision

    from resnet_pl.version import __version__

    root = Path(__file__).resolve().parents[2]  # the clone, when run from one
    commit = _run(["git", "-C", str(root), "rev-parse", "HEAD"])
    dirty = _run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"])
    return {
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "onnxruntime": _version("onnxruntime") or _version("onnxruntime-gpu"),
        "onnx": _version("onnx"),
        "numpy": _version("numpy"),
        "matplotlib": _version("matplotlib"),
        "resnet_pl": __version__,
        "git_commit": commit,
        "git_dirty": bool(dirty) if commit else None,
    }


# ---- JSON ------------------------------------------------------------------------------------
def _finite(obj: Any) -> Any:
    """JSON has no NaN/inf: store them as null."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, Mapping):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_finite(v) for v in obj]
    return obj


def write_text(path: Path, text: str) -> None:
    """Write through a temporary file and rename, so a reader (or a killed run) never sees a
    half-written file."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)


def write_json(doc: Mapping[str, Any], paths: Sequence[Path]) -> None:
    text = json.dumps(_finite(doc), indent=1, allow_nan=False) + "\n"
    for p in paths:
        write_text(p, text)


# ---- markdown --------------------------------------------------------------------------------
def _fmt(v: Any, spec: str = ".3g", none: str = "-") -> str:
    if v is None:
        return none
    if isinstance(v, float):
        return format(v, spec)
    return str(v)


def _median(sorted_values: Sequence[float]) -> float:
    n = len(sorted_values)
    mid = n // 2
    return sorted_values[mid] if n % 2 else (sorted_values[mid - 1] + sorted_values[mid]) / 2


def _label(r: Mapping[str, Any]) -> str:
    return (
        f"{r['arch']} {r['mode']} bs{r['requested_batch_size']} {r['input_size']}px "
        f"{r['precision']} {r['memory_format']} {r['backend']}"
        + (" +loader" if r["loader"] else "")
    )


def markdown(doc: Mapping[str, Any], plot_files: Sequence[str]) -> str:
    """The results as a markdown report: setup, ratio summary, one table row per result row,
    the skipped cases with reasons, and the plots."""
    m, v, s = doc["machine"], doc["versions"], doc["settings"]
    rows: list[dict[str, Any]] = doc["rows"]
    device = (
        m["gpu_name"] if doc["device"] == "cuda" else f"{m['cpu_model']} ({m['cpu_usable']} cores)"
    )
    lines = [
        f"# Benchmark `{doc['tag']}` on {doc['device']}: {device}",
        "",
        f"- when: {doc['timestamp']} (took {doc['elapsed_s']:.0f} s)"
        + (" — PARTIAL: the run stopped early" if doc.get("partial") else ""),
        f"- host: {m['hostname']}; torch {v['torch']}, torchvision {v['torchvision']}, "
        f"onnxruntime {v['onnxruntime']}, resnet_pl {v['resnet_pl']} ({v['git_commit'] or '?'}"
        f"{', dirty' if v['git_dirty'] else ''})",
        f"- CUDA {m['cuda_version']}, driver {m['driver_version']}, cuDNN {m['cudnn_version']}"
        if doc["device"] == "cuda"
        else f"- torch threads: {m['torch_num_threads']}",
        f"- {s['steps']} timed steps x {s['repeats']} repeats after {s['warmup']} warm-up "
        f"steps; ours and torchvision's repeats interleaved (ABBA); throughput = median over "
        f"repeats [min-max]; latency percentiles per batch over all timed steps",
        f"- command: `{s['command']}`",
        "",
    ]
    ratios = [r for r in rows if r.get("ratio_vs_torchvision") is not None]
    if ratios:
        vals = sorted(r["ratio_vs_torchvision"] for r in ratios)
        paired = sorted(r["ratio_vs_torchvision_paired_median"] for r in ratios)
        outside = [r for r in ratios if r["ratio_within_noise"] is False]
        lines += [
            f"**resnet_pl / torchvision throughput** over {len(vals)} paired rows: ratio of "
            f"medians min {vals[0]:.3f}, median {_median(vals):.3f}, max {vals[-1]:.3f}; "
            f"median of paired per-repeat ratios min {paired[0]:.3f}, median "
            f"{_median(paired):.3f}, max {paired[-1]:.3f}; {len(outside)} row(s) where 1.0 "
            "lies outside the paired per-repeat spread"
            + (": " + ", ".join(_label(r) for r in outside) if outside else "")
            + ".",
            "",
        ]
    lines += [
        "| arch | impl | mode | bs | px | prec | format | backend | images/s [min-max] "
        "| p50/p90/p99 ms | peak MiB | GFLOP/img | TFLOP/s | MFU | ours/tv | vs eager fp32 |",
        "|---|---|---|--:|--:|---|---|---|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for r in rows:
        if r["status"] != "ok":
            continue
        bs = str(r["batch_size"])
        if r["batch_size"] != r["requested_batch_size"]:
            bs += f" (asked {r['requested_batch_size']})"
        backend = r["backend"] + (" +loader" if r["loader"] else "")
        lines.append(
            f"| {r['arch']} | {'tv' if r['impl'] == 'torchvision' else 'ours'} | {r['mode']} "
            f"| {bs} | {r['input_size']} | {r['precision']} | {r['memory_format']} | {backend} "
            f"| {r['images_per_s']:.1f} [{r['images_per_s_min']:.1f}-{r['images_per_s_max']:.1f}] "
            f"| {r['latency_ms_p50']:.2f}/{r['latency_ms_p90']:.2f}/{r['latency_ms_p99']:.2f} "
            f"| {_fmt(r['peak_mem_mb'], '.0f')} | {_fmt(r['gflops_per_image'], '.3f')} "
            f"| {_fmt(r['achieved_tflops'], '.3g')} | {_fmt(r['mfu'], '.1%')} "
            f"| {_fmt(r['ratio_vs_torchvision'], '.3f')} "
            f"| {_fmt(r['speedup_vs_eager_fp32'], '.2f')}x |"
        )
    not_run: dict[tuple[str, str], str] = {}
    for r in rows:
        if r["status"] != "ok":
            not_run.setdefault((_label(r), r["status"]), r["reason"])
    if not_run:
        lines += ["", "Not measured:", ""]
        lines += [f"- {label}: {status}: {reason}" for (label, status), reason in not_run.items()]
    notes = sorted({r["note"] for r in rows if r.get("note")})
    if notes:
        lines += ["", "Notes:", ""] + [f"- {n}" for n in notes]
    lines += [
        "",
        "Peak memory: "
        + (
            "the implementation's own CUDA bytes (setup + largest rise during a repeat)."
            if doc["device"] == "cuda"
            else "process peak RSS during the implementation's repeats (both models loaded)."
        ),
        "",
    ]
    lines += [f"![{Path(p).stem}]({Path(p).name})" for p in plot_files]
    if is_deploy(rows):
        lines += ["", *deploy_markdown(doc)]
    return "\n".join(lines) + "\n"


# ---- deployment paths (the deploy suite) -----------------------------------------------------
def is_deploy(rows: Sequence[Mapping[str, Any]]) -> bool:
    """Whether the rows hold deployment paths (export rows or the deploy suite's groups)."""
    return any(
        str(r.get("backend", "")).startswith("export:") or "deploy" in (r.get("groups") or [])
        for r in rows
    )


def _pair(a: Any, b: Any, spec: str = ".2f") -> str:
    return f"{_fmt(a, spec)}/{_fmt(b, spec)}"


def deploy_markdown(doc: Mapping[str, Any]) -> list[str]:
    """Per arch, one line per deployment path (throughput at the largest batch, latency at
    batch 1 and at that batch, memory, speed-up, accuracy), then the recommendation."""
    from resnet_pl.bench.aggregate import PATH_FIELDS, path_label, recommend

    rows = [r for r in doc["rows"] if r.get("status") == "ok"]
    s = doc["settings"]
    budget = s.get("accuracy_budget_points", 0.3)
    lines = ["## Deployment paths", ""]
    load = s.get("load_average_at_start"), s.get("load_average_at_end")
    if any(load):
        lines.append(
            f"Machine load average (1/5/15 min) at start {load[0]}, at end {load[1]}"
            + (f"; note: {s['note']}" if s.get("note") else "")
            + ". Timings on a busy machine are noisy; ratios within one run hold up better "
            "than absolute figures (rows of one batch size were interleaved)."
        )
        lines.append("")
    for arch in dict.fromkeys(r["arch"] for r in rows):
        mine = [r for r in rows if r["arch"] == arch]
        big = max(r["requested_batch_size"] for r in mine)
        paths: dict[tuple[Any, ...], dict[int, Mapping[str, Any]]] = {}
        for r in mine:
            key = (*(r.get(k) for k in PATH_FIELDS),)
            paths.setdefault(key, {})[r["requested_batch_size"]] = r
        evals = {r.get("eval_data") for r in mine if r.get("eval_data")}
        lines += [f"### {arch} at {mine[0]['input_size']} px", ""]
        lines += [f"Accuracy images: {e}." for e in sorted(evals)] + ([""] if evals else [])
        lines += [
            f"| path | images/s at bs{big} | p50/p99 ms bs1 | p50/p99 ms bs{big} | peak RSS "
            "MiB (rise) | speed-up vs eager fp32 | top-1 % | Δ top-1 (points) | agreement % "
            "| logits rel. RMS | runtime, precision run | set-up |",
            "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|---|",
        ]
        for by_batch in paths.values():
            r = by_batch.get(big) or next(iter(by_batch.values()))
            b1 = by_batch.get(1)
            ran = r.get("runtime") or ("torch " + str(doc["versions"].get("torch")))
            if r.get("runtime_precision"):
                ran += f"; hint {r.get('precision_hint')}, convs {r['runtime_precision']}"
            if r.get("runtime_threads"):
                ran += f"; {r['runtime_threads']} threads"
            setup = []
            if r.get("compile_s") is not None:
                setup.append(f"compile {r['compile_s']:.1f} s")
            if r.get("export_s") is not None:
                setup.append(f"export {r['export_s']:.1f} s, {r['model_file_mb']:.2f} MB")
            lines.append(
                f"| {path_label(r)} | {_fmt(by_batch.get(big, {}).get('images_per_s'), '.1f')} "
                f"| {_pair(b1 and b1['latency_ms_p50'], b1 and b1['latency_ms_p99'])} "
                f"| {_pair(r['latency_ms_p50'], r['latency_ms_p99'])} "
                f"| {_fmt(r['peak_mem_mb'], '.0f')} ({_fmt(r.get('peak_mem_rise_mb'), '.0f')}) "
                f"| {_fmt(r.get('speedup_vs_eager_fp32'), '.2f')}x "
                f"| {_fmt(r.get('top1'), '.2f')} "
                f"| {_fmt(r.get('top1_delta_vs_eager_fp32'), '+.2f')} "
                f"| {_fmt(r.get('top1_agreement_vs_eager_fp32'), '.2f')} "
                f"| {_fmt(r.get('logits_rel_rms_vs_eager_fp32'), '.1e')} | {ran} "
                f"| {', '.join(setup) or '-'} |"
            )
        lines.append("")
    recs = recommend(doc["rows"], budget)
    lines += ["## Recommendation", ""]
    lines += recommendation_text(recs, doc["rows"]).splitlines() or ["(no candidate rows)"]
    return lines


def recommendation_text(
    recs: Sequence[Mapping[str, Any]], rows: Sequence[Mapping[str, Any]] = ()
) -> str:
    """The fastest path within the accuracy budget, per arch, and the command for it."""
    if not recs:
        return "No recommendation: no measured path has a known accuracy within the budget."
    out = []
    for rec in recs:
        r = rec["row"]
        kind = {
            "top-1": "top-1 on real test images",
            "disagreement": "top-1 disagreement with eager fp32 on stand-in images (random "
            "weights: no real accuracy exists)",
            "reference": "the reference itself",
        }[rec["loss_kind"]]
        lat = rec["latency_row"]
        lat_text = (
            f"; batch-1 latency p50 {lat['latency_ms_p50']:.2f} ms" if lat is not None else ""
        )
        out += [
            f"- **{rec['arch']}**: fastest within {rec['budget']:g} points of top-1 lost "
            f"({kind}): **{rec['label']}**, {r['images_per_s']:.1f} images/s at batch "
            f"{rec['batch']} = {_fmt(r.get('speedup_vs_eager_fp32'), '.2f')}x eager fp32"
            f"{lat_text}; loses {rec['loss']:.2f} points "
            f"({rec['candidates']} paths within budget).",
            f"  Command: `{rec['command']}`",
        ]
        if rec["excluded"]:
            out.append(
                "  Outside the budget: "
                + "; ".join(f"{k}: {v}" for k, v in rec["excluded"].items())
                + "."
            )
    return "\n".join(out)


# ---- plots -----------------------------------------------------------------------------------
_SHORT = {"contiguous": "contig", "channels_last": "CL", "ExecutionProvider": ""}


def _short(value: Any) -> str:
    """Compact spelling for plot labels: channels_last -> CL, onnxruntime:CPUExecutionProvider
    -> ort:CPU, compile:default -> compile."""
    text = str(value)
    for long, short in _SHORT.items():
        text = text.replace(long, short)
    return text.replace("onnxruntime:", "ort:").replace("compile:default", "compile")


def _series_label(r: Mapping[str, Any], *fields: str) -> str:
    prefixes = {"requested_batch_size": "bs", "batch_size": "bs"}
    parts = [
        f"{r[f]}px" if f == "input_size" else prefixes.get(f, "") + _short(r[f]) for f in fields
    ]
    if r.get("loader"):
        parts.append("+loader")
    return " ".join(parts)


def _style(impl: str) -> dict[str, Any]:
    if impl == "torchvision":
        return {"linestyle": "--", "marker": "x", "alpha": 0.8}
    return {"linestyle": "-", "marker": "o"}


def _plain_y(ax: Any) -> None:
    """Log axes label 100 as 100, not 10^2."""
    from matplotlib.ticker import FuncFormatter

    fmt = FuncFormatter(lambda v, _: f"{v:g}")
    ax.yaxis.set_major_formatter(fmt)
    ax.yaxis.set_minor_formatter(fmt)
    ax.tick_params(axis="y", which="minor", labelsize=7)


def _empty(ax: Any, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes)
    ax.set_axis_off()


def plot_throughput_vs_batch(rows: Sequence[Mapping[str, Any]], path: Path, title: str) -> None:
    """images/s against batch size, one panel per (arch, mode, input size), one line per
    precision/format/backend; ours solid, torchvision dashed; log-log axes."""
    import matplotlib.pyplot as plt

    panels: dict[tuple[Any, ...], dict[tuple[str, str], list[tuple[int, float]]]] = defaultdict(
        lambda: defaultdict(list)
    )
    for r in rows:
        if r["status"] == "ok":
            key = (_series_label(r, "precision", "memory_format", "backend"), r["impl"])
            panels[(r["arch"], r["mode"], r["input_size"])][key].append(
                (r["batch_size"], r["images_per_s"])
            )
    keep = {
        k: {s: sorted(p) for s, p in v.items() if len({b for b, _ in p}) >= 2}
        for k, v in panels.items()
    }
    keep = {k: v for k, v in keep.items() if v}
    n = max(len(keep), 1)
    ncols = min(3, n)
    nrows = math.ceil(n / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(9 * ncols, 4.5 * nrows), squeeze=False)
    flat = list(axes.flat)
    colors: dict[str, Any] = {}
    cycle = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, ((arch, mode, px), series) in zip(flat, sorted(keep.items()), strict=False):
        for (label, impl), pts in sorted(series.items()):
            color = colors.setdefault(label, cycle[len(colors) % len(cycle)])
            xs, ys = zip(*pts, strict=True)
            name = f"{label} ({'torchvision' if impl == 'torchvision' else 'resnet_pl'})"
            ax.plot(xs, ys, color=color, label=name, **_style(impl))
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        batches = sorted({b for pts in series.values() for b, _ in pts})
        ax.set_xticks(batches, [str(b) for b in batches])
        ax.minorticks_off()
        _plain_y(ax)
        ax.set_title(f"{arch} {mode} @ {px}px")
        ax.set_xlabel("batch size (images, log)")
        ax.set_ylabel("throughput (images/s, log)")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    if not keep:
        _empty(flat[0], "no batch-size sweep in this run")
    for ax in flat[len(keep) :]:
        ax.set_axis_off()
    fig.suptitle(f"{title}: throughput vs batch size (solid: resnet_pl, dashed: torchvision)")
    fig.tight_layout()
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)


def plot_speedups(rows: Sequence[Mapping[str, Any]], path: Path, title: str) -> None:
    """Bars: our speed-up over our eager fp32 row; and our throughput over torchvision's, with
    the paired per-repeat spread as error bars. A dashed line marks 1.0 on both."""
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter

    ours = [r for r in rows if r["status"] == "ok" and r["impl"] == "resnet_pl"]
    speed = [
        r
        for r in ours
        if r["speedup_vs_eager_fp32"] is not None
        and (r["precision"], r["memory_format"], r["backend"]) != ("fp32", "contiguous", "eager")
    ]
    ratio = [r for r in ours if r["ratio_vs_torchvision"] is not None]
    # A row's label: its case key, less the settings one chart shares (device, loader).
    fields = tuple(f for f in CASE_KEY_FIELDS if f not in ("device", "loader"))

    height = max(3.0, 0.26 * max(len(speed), len(ratio)) + 1.8)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(16, height))
    for ax, data, key, xlabel in (
        (ax1, speed, "speedup_vs_eager_fp32", "speed-up vs eager fp32, same implementation (x)"),
        (ax2, ratio, "ratio_vs_torchvision", "resnet_pl / torchvision throughput (x)"),
    ):
        if not data:
            _empty(ax, f"no rows with {key} in this run")
            continue
        ys = list(range(len(data)))
        vals = [r[key] for r in data]
        kwargs: dict[str, Any] = {}
        if key == "ratio_vs_torchvision":
            # The ratio of medians can lie outside the paired spread: clamp (no negative bars).
            lo = [
                max(0.0, v - r["ratio_vs_torchvision_min"]) for v, r in zip(vals, data, strict=True)
            ]
            hi = [
                max(0.0, r["ratio_vs_torchvision_max"] - v) for v, r in zip(vals, data, strict=True)
            ]
            kwargs["xerr"] = [lo, hi]
        # Bars start at 1.0, so a slow-down points left and a speed-up right.
        colors = ["tab:green" if v >= 1.0 else "tab:red" for v in vals]
        ax.barh(ys, [v - 1.0 for v in vals], left=1.0, color=colors, alpha=0.8, **kwargs)
        ax.axvline(1.0, color="black", linestyle="--", linewidth=1)
        ax.set_yticks(ys, [_series_label(r, *fields) for r in data], fontsize=7)
        ax.invert_yaxis()
        ax.set_xlabel(xlabel)
        ax.grid(True, axis="x", alpha=0.3)
        if key == "ratio_vs_torchvision":
            ends = vals + [r["ratio_vs_torchvision_min"] for r in data]
            ends += [r["ratio_vs_torchvision_max"] for r in data]
            span = max(abs(v - 1.0) for v in ends)
            ax.set_xlim(max(0.0, 1.0 - 1.2 * span - 0.01), 1.0 + 1.2 * span + 0.01)
            ax.set_title("ours vs torchvision, same settings (error bars: paired repeats min-max)")
        else:
            ax.set_xscale("log")
            ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}x"))
            ax.xaxis.set_minor_formatter(FuncFormatter(lambda v, _: f"{v:g}x"))
            ax.tick_params(axis="x", which="minor", labelsize=7)
            ax.set_title("speed-up vs PyTorch eager fp32 (log scale)")
    fig.suptitle(f"{title}: speed-ups")
    fig.tight_layout()
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)


_DEPTH = re.compile(r"^resnet(\d+)$")


def plot_throughput_vs_depth(rows: Sequence[Mapping[str, Any]], path: Path, title: str) -> None:
    """images/s against network depth for the plain ResNets, ImageNet family and CIFAR family
    in separate panels; one line per setting; log axes."""
    import matplotlib.pyplot as plt

    fams = {"imagenet": "ImageNet ResNets (18-152)", "small": "CIFAR ResNets (20-110)"}
    data: dict[str, dict[tuple[str, str], list[tuple[int, float, str]]]] = {
        f: defaultdict(list) for f in fams
    }
    for r in rows:
        match = _DEPTH.match(r["arch"])
        if r["status"] != "ok" or not match or r["family"] not in data:
            continue
        label = _series_label(
            r, "mode", "requested_batch_size", "input_size", "precision", "memory_format", "backend"
        )
        data[r["family"]][(label, r["impl"])].append(
            (int(match.group(1)), r["images_per_s"], r["arch"])
        )
    fig, axes = plt.subplots(2, 1, figsize=(12, 10))
    cycle = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, (fam, fam_title) in zip(axes, fams.items(), strict=True):
        series = {k: sorted(v) for k, v in data[fam].items() if len(v) >= 2}
        if not series:
            _empty(ax, f"no depth sweep for the {fam_title}")
            continue
        colors: dict[str, Any] = {}
        for (label, impl), pts in sorted(series.items()):
            color = colors.setdefault(label, cycle[len(colors) % len(cycle)])
            xs = [p[0] for p in pts]
            ys = [p[1] for p in pts]
            nice = label.replace(" ", ", ", 1)
            name = f"{nice} ({'torchvision' if impl == 'torchvision' else 'resnet_pl'})"
            ax.plot(xs, ys, color=color, label=name, **_style(impl))
        depths = sorted({p[0] for pts in series.values() for p in pts})
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xticks(depths, [str(d) for d in depths])
        ax.minorticks_off()
        _plain_y(ax)
        ax.set_title(fam_title)
        ax.set_xlabel("depth (layers, log)")
        ax.set_ylabel("throughput (images/s, log)")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.suptitle(f"{title}: throughput vs depth (solid: resnet_pl, dashed: torchvision)")
    fig.tight_layout()
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)


def write_plots(rows: Sequence[Mapping[str, Any]], out_dir: Path, prefix: str) -> list[Path]:
    """All plots, named ``<prefix>-<plot>.png``; each is drawn even when it has no data (with a
    note saying so), so the file names a README links always exist."""
    import matplotlib

    matplotlib.use("Agg")
    paths = [out_dir / f"{prefix}-{name}.png" for name in PLOT_NAMES]
    plot_throughput_vs_batch(rows, paths[0], prefix)
    plot_speedups(rows, paths[1], prefix)
    plot_throughput_vs_depth(rows, paths[2], prefix)
    if is_deploy(rows):
        paths.append(out_dir / f"{prefix}-{DEPLOY_PLOT}.png")
        plot_deploy(rows, paths[-1], prefix)
    return paths


def plot_deploy(rows: Sequence[Mapping[str, Any]], path: Path, title: str) -> None:
    """Per arch: images/s at its largest batch by path (bars, coloured by backend family) and,
    beside it, the accuracy change against eager fp32 (top-1 points on real labels, else
    disagreement on stand-in images, drawn as a loss)."""
    import matplotlib.pyplot as plt

    from resnet_pl.bench.aggregate import accuracy_loss, path_label

    ok = [r for r in rows if r.get("status") == "ok"]
    archs = list(dict.fromkeys(r["arch"] for r in ok))
    fig, axes = plt.subplots(
        max(1, len(archs)), 2, figsize=(13, 1.2 + 0.42 * max(
            [1] + [len({path_label(r) for r in ok if r["arch"] == a}) for a in archs]
        ) * max(1, len(archs))), squeeze=False, gridspec_kw={"width_ratios": [3, 1.4]},
    )  # fmt: skip
    if not archs:
        _empty(axes[0][0], "no measured rows")
        axes[0][1].set_axis_off()
    colours = {"eager": "tab:blue", "compile": "tab:purple", "onnxruntime": "tab:orange",
               "openvino": "tab:green"}  # fmt: skip
    for (ax, ax_acc), arch in zip(axes, archs, strict=False):
        mine = [r for r in ok if r["arch"] == arch]
        big = max(r["requested_batch_size"] for r in mine)
        bars = sorted(
            (r for r in mine if r["requested_batch_size"] == big), key=lambda r: r["images_per_s"]
        )
        labels = [path_label(r) for r in bars]
        family = [str(r["backend"]).split(":")[-1] if str(r["backend"]).startswith("export:")
                  else str(r["backend"]).split(":")[0] for r in bars]  # fmt: skip
        ys = range(len(bars))
        ax.barh(ys, [r["images_per_s"] for r in bars],
                color=[colours.get(f, "tab:gray") for f in family])  # fmt: skip
        for y, r in zip(ys, bars, strict=True):
            speed = r.get("speedup_vs_eager_fp32")
            ax.text(r["images_per_s"], y, f" {r['images_per_s']:.3g}" +
                    (f" ({speed:.2f}x)" if speed else ""), va="center", fontsize=8)  # fmt: skip
        ax.set_yticks(list(ys), labels, fontsize=8)
        ax.set_xlabel(f"images/s at batch {big} (higher is better)")
        ax.set_title(f"{arch} {bars[0]['input_size'] if bars else ''}px", fontsize=10)
        ax.margins(x=0.25)
        losses = [accuracy_loss(r) for r in bars]
        # Real top-1 change where measured (gains shown as gains), else minus the disagreement.
        vals = [
            float(r["top1_delta_vs_eager_fp32"])
            if r.get("top1_delta_vs_eager_fp32") is not None
            else (0.0 - loss if loss else 0.0)
            for r, (loss, _) in zip(bars, losses, strict=True)
        ]
        kinds = {k for _, k in losses if k in ("top-1", "disagreement")}
        ax_acc.barh(ys, vals, color=["tab:red" if v < 0 else "tab:gray" for v in vals])
        for y, v, (loss, _kind) in zip(ys, vals, losses, strict=True):
            ax_acc.text(0, y, " n/a" if loss is None else f" {v + 0.0:+.2f}", va="center",
                        fontsize=8)  # fmt: skip
        ax_acc.set_yticks(list(ys), [""] * len(bars))
        ax_acc.axvline(0, color="black", linewidth=0.8)
        what = "Δ top-1 (points)" if kinds == {"top-1"} else "-disagreement with fp32 (points)"
        ax_acc.set_xlabel(what + " vs eager fp32")
        lo, hi = min([-0.5, *vals]), max([0.0, *vals])
        ax_acc.set_xlim(lo * 1.3, max(0.4 * abs(lo), hi * 1.5))
    fig.suptitle(f"{title}: deployment paths (same run)", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
