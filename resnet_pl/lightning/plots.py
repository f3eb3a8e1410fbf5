"""PNG plots a person would rather look at than read: training curves and confusion matrices."""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from pathlib import Path

import torch

from resnet_pl.fileio import write_with


def _pyplot():  # type: ignore[no-untyped-def]
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save_png(plt, fig, out: Path) -> None:  # type: ignore[no-untyped-def]
    """Through a temporary file: a full disk never leaves a truncated PNG."""
    try:
        hint = "free space there or choose another folder with --run_root"
        write_with(out, lambda tmp: fig.savefig(tmp, dpi=120, format="png"), hint=hint)
    finally:
        plt.close(fig)


def read_metrics_csv(path: Path) -> dict[str, list[tuple[float, float]]]:
    """Lightning's ``metrics.csv`` as ``{metric: [(epoch_or_step, value), ...]}``; epoch-level
    metrics are keyed by epoch, step-level ones by step."""
    series: dict[str, list[tuple[float, float]]] = {}
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            for key, raw in row.items():
                if key in ("epoch", "step") or raw in ("", None):
                    continue
                x_key = "step" if key.endswith("_step") else "epoch"
                try:
                    x, y = float(row[x_key]), float(raw)
                except (TypeError, ValueError):
                    continue
                if math.isfinite(y):
                    series.setdefault(key, []).append((x, y))
    return series


def plot_training_curves(metrics_csv: Path, out: Path) -> Path:
    """Loss and accuracy per epoch (train and val) side by side."""
    plt = _pyplot()
    series = read_metrics_csv(metrics_csv)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, kind, label in ((axes[0], "loss", "loss"), (axes[1], "acc", "top-1 accuracy")):
        for stage, style in (("train", "-"), ("val", "-o")):
            key = (
                f"{stage}_{kind}_epoch" if f"{stage}_{kind}_epoch" in series else f"{stage}_{kind}"
            )
            points = series.get(key)
            if points:
                xs, ys = zip(*points, strict=True)
                ax.plot([x + 1 for x in xs], ys, style, label=stage, markersize=3)
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        ax.set_title(label)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(f"training curves ({metrics_csv.parent.name})")
    fig.tight_layout()
    _save_png(plt, fig, out)
    return out


def plot_confusion_matrix(matrix: torch.Tensor, class_names: Sequence[str], out: Path) -> Path:
    """Row-normalised confusion matrix (rows: true class), counts in each cell."""
    plt = _pyplot()
    m = matrix.float()
    norm = m / m.sum(dim=1, keepdim=True).clamp(min=1)
    n = len(class_names)
    size = max(5.0, 0.55 * n + 2)
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(norm.numpy(), cmap="Blues", vmin=0, vmax=1)
    if n <= 30:
        ax.set_xticks(range(n), class_names, rotation=45, ha="right")
        ax.set_yticks(range(n), class_names)
        for i in range(n):
            for j in range(n):
                color = "white" if norm[i, j] > 0.5 else "black"
                ax.text(j, i, f"{int(m[i, j])}", ha="center", va="center", fontsize=7, color=color)
    acc = (m.diag().sum() / m.sum().clamp(min=1)).item()
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"confusion matrix (top-1 {acc:.2%}, n={int(m.sum())})")
    fig.tight_layout()
    _save_png(plt, fig, out)
    return out
