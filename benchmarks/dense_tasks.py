"""Segmentation and detection on Fashion-MNIST scenes: pretrained backbone vs scratch at equal
epochs, each trained from its committed config through ``resnet-pl fit`` and measured on the
test split with ``resnet-pl test`` (best validation checkpoint).

    python -m benchmarks.dense_tasks       # generate scenes if missing, train, report
    python -m benchmarks.dense_tasks --tasks segmentation --seg_epochs 2   # a quicker look
    python -m benchmarks.dense_tasks --report_only RUN_ROOT  # redo JSON/plots from finished runs

Arms: ``pretrained`` = the config as committed (backbone ``resnet20.fashion_mnist`` from the
hub); ``scratch`` = the same config with ``arch resnet20, pretrained false``. Writes
``benchmarks/results/dense_tasks-<time>.json`` (+ ``-latest.json``), ``dense_tasks-curves.png``
(validation metric per epoch, both arms) and ``dense_tasks-predictions.png`` (test scenes:
image, true mask, predicted mask; true and predicted boxes). Every run's command, wall time and
the machine's load average are recorded; the machine is shared, so wall times are indicative only.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
CONFIGS = {
    "segmentation": "configs/scenes_segmentation.yaml",
    "detection": "configs/scenes_detection.yaml",
}
METRIC = {"segmentation": "miou", "detection": "map"}
SCRATCH = ["--model.init_args.arch", "resnet20", "--model.init_args.pretrained", "false"]


def _cpu_flags() -> list[str]:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                return sorted(f for f in flags if f.startswith(("avx", "amx", "fma", "sse4")))
    except OSError:
        pass
    return []


def _run(cmd: list[str], log: Path) -> float:
    start = time.perf_counter()
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    with open(log, "w") as f:
        proc = subprocess.run(cmd, cwd=ROOT, stdout=f, stderr=subprocess.STDOUT, env=env)
    if proc.returncode != 0:
        raise SystemExit(f"failed ({proc.returncode}): {' '.join(cmd)}; see {log}")
    return time.perf_counter() - start


def _read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _version_dir(run_dir: Path) -> Path:
    versions = sorted(run_dir.glob("version_*"), key=lambda p: int(p.name.split("_")[1]))
    return versions[-1]


def train_arm(task: str, arm: str, epochs: int, run_root: Path) -> dict[str, Any]:
    name = f"{task}-{arm}"
    extra = SCRATCH if arm == "scratch" else []
    base = [sys.executable, "-m", "resnet_pl.cli"]
    fit = [*base, "fit", "--config", CONFIGS[task], *extra, "--trainer.max_epochs", str(epochs),
           "--run_root", str(run_root), "--run_name", name]  # fmt: skip
    load_before = os.getloadavg()
    fit_s = _run(fit, run_root / f"{name}-fit.log")
    version = _version_dir(run_root / name)
    best = sorted((version / "checkpoints").glob("best-*.ckpt"))[-1]
    test = [*base, "test", "--config", CONFIGS[task], *extra, "--ckpt_path", str(best),
            "--run_root", str(run_root), "--run_name", f"{name}-test"]  # fmt: skip
    test_s = _run(test, run_root / f"{name}-test.log")
    return {"task": task, "arm": arm, "epochs": epochs, "fit_command": " ".join(fit[2:]),
            "test_command": " ".join(test[2:]), "fit_wall_s": round(fit_s, 1),
            "test_wall_s": round(test_s, 1), "loadavg_before": load_before,
            "loadavg_after": os.getloadavg(), "fit_dir": str(version), "best_checkpoint": str(best),
            "test_dir": str(_version_dir(run_root / f"{name}-test"))}  # fmt: skip


def collect(run: dict[str, Any]) -> dict[str, Any]:
    """Validation curve (per epoch) and test metrics of a finished arm."""
    key = METRIC[run["task"]]
    curve = []
    for row in _read_csv(Path(run["fit_dir"]) / "metrics.csv"):
        if row.get(f"val_{key}"):
            curve.append({"epoch": int(row["epoch"]) + 1, f"val_{key}": float(row[f"val_{key}"])})
    test: dict[str, float] = {}
    if run.get("test_dir"):
        test_rows = _read_csv(Path(run["test_dir"]) / "metrics.csv")
        test = {k: round(float(v), 4) for row in test_rows for k, v in row.items()
                if k.startswith("test_") and v}  # fmt: skip
    best = max((c[f"val_{key}"] for c in curve), default=None)
    return {**run, "val_curve": curve, "best_val": best, "test": test}


def plot_curves(runs: list[dict[str, Any]], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = sorted({r["task"] for r in runs}, reverse=True)
    fig, axes = plt.subplots(1, len(tasks), figsize=(5.5 * len(tasks), 4), squeeze=False)
    for ax, task in zip(axes[0], tasks, strict=True):
        key = f"val_{METRIC[task]}"
        for r in runs:
            if r["task"] == task and r["val_curve"]:
                xs = [c["epoch"] for c in r["val_curve"]]
                ax.plot(xs, [c[key] for c in r["val_curve"]], "-o", markersize=3, label=r["arm"])
        ax.set_title(f"{task}: {key} (validation)")
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def plot_predictions(runs: list[dict[str, Any]], data: Path, out: Path, n: int = 4) -> None:
    """Test scenes with the pretrained arms' predictions."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    import torch
    from matplotlib.patches import Rectangle

    from resnet_pl.data.scenes import voc_palette
    from resnet_pl.data.voc import read_mask
    from resnet_pl.deploy.dense import load_dense_checkpoint, predict_files

    names = (data / "ImageSets/Segmentation/test.txt").read_text().split()[:n]
    files = [data / "JPEGImages" / f"{name}.png" for name in names]
    palette = np.array(voc_palette(), np.uint8).reshape(-1, 3)
    by = {(r["task"], r["arm"]): r for r in runs}
    seg, det = by.get(("segmentation", "pretrained")), by.get(("detection", "pretrained"))
    seg = seg if seg and seg.get("best_checkpoint") else None
    det = det if det and det.get("best_checkpoint") else None
    cols = 2 + (seg is not None) + (det is not None)
    fig, axes = plt.subplots(n, cols, figsize=(2.2 * cols, 2.2 * n), squeeze=False)
    seg_out = det_out = None
    with torch.no_grad():
        if seg is not None:
            seg_out = predict_files(load_dense_checkpoint(seg["best_checkpoint"]), files)
        if det is not None:
            det_out = predict_files(load_dense_checkpoint(det["best_checkpoint"]), files)
    coco = json.loads((data / "annotations/instances_test.json").read_text())
    ids = {im["file_name"]: im["id"] for im in coco["images"]}
    for i, (name, path) in enumerate(zip(names, files, strict=True)):
        image = np.asarray(__import__("PIL.Image", fromlist=["Image"]).open(path))
        row = axes[i]
        row[0].imshow(image, cmap="gray")
        for a in coco["annotations"]:
            if a["image_id"] == ids[path.name]:
                x, y, w, h = a["bbox"]
                row[0].add_patch(Rectangle((x - 0.5, y - 0.5), w, h, fill=False, ec="lime", lw=1))
        row[0].set_title("image + true boxes" if i == 0 else "", fontsize=8)
        row[1].imshow(palette[read_mask(data / "SegmentationClass" / f"{name}.png")])
        row[1].set_title("true mask" if i == 0 else "", fontsize=8)
        col = 2
        if seg_out is not None:
            row[col].imshow(palette[seg_out[i]["mask"]])
            row[col].set_title("predicted mask" if i == 0 else "", fontsize=8)
            col += 1
        if det_out is not None:
            row[col].imshow(image, cmap="gray")
            for box, score in zip(det_out[i]["boxes"], det_out[i]["scores"], strict=True):
                if score >= 0.5:
                    x0, y0, x1, y1 = box
                    row[col].add_patch(Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0, y1 - y0,
                                                 fill=False, ec="red", lw=1))  # fmt: skip
            row[col].set_title("predicted boxes (score >= 0.5)" if i == 0 else "", fontsize=8)
        for ax in row:
            ax.axis("off")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, default=ROOT / "data" / "scenes")
    p.add_argument("--tasks", nargs="+", default=["segmentation", "detection"])
    p.add_argument("--arms", nargs="+", default=["pretrained", "scratch"])
    p.add_argument("--seg_epochs", type=int, default=8)
    p.add_argument("--det_epochs", type=int, default=8)
    p.add_argument("--run_root", type=Path, default=None)
    p.add_argument("--report_only", type=Path, nargs="+", default=None,
                   help="run roots already trained (their runs.json, plus arms still running, "
                   "reported as unfinished)")  # fmt: skip
    args = p.parse_args(argv)
    if not (args.data / "scenes.json").is_file():
        from resnet_pl.data.scenes import main as scenes_main

        scenes_main([str(args.data), "--n_train", "400", "--n_val", "100", "--n_test", "100"])
    stamp = time.strftime("%Y%m%d-%H%M%S")
    if args.report_only is not None:
        runs = []
        for root in args.report_only:
            listed = (
                json.loads((root / "runs.json").read_text())
                if (root / "runs.json").is_file()
                else []
            )
            runs += listed
            done = {f"{r['task']}-{r['arm']}" for r in listed}
            for task in CONFIGS:
                for arm in ("pretrained", "scratch"):
                    name = f"{task}-{arm}"
                    if name not in done and (root / name).is_dir():
                        runs.append({"task": task, "arm": arm, "finished": False,
                                     "fit_dir": str(_version_dir(root / name)),
                                     "best_checkpoint": None, "test_dir": None,
                                     "note": "still training when reported: validation "
                                     "curve so far, no test run"})  # fmt: skip
    else:
        run_root = args.run_root or ROOT / "runs" / f"dense_tasks-{stamp}"
        run_root.mkdir(parents=True, exist_ok=True)
        runs = []
        for task in args.tasks:
            epochs = args.seg_epochs if task == "segmentation" else args.det_epochs
            for arm in args.arms:
                print(f"{task} / {arm}: {epochs} epochs ...", flush=True)
                runs.append(train_arm(task, arm, epochs, run_root))
                (run_root / "runs.json").write_text(json.dumps(runs, indent=1))
    runs = [collect(r) for r in runs]
    import torch

    summary = {
        "benchmark": "dense_tasks", "time": stamp, "data": str(args.data),
        "scenes": json.loads((args.data / "scenes.json").read_text()),
        "machine": {"platform": platform.platform(), "cpu_count": os.cpu_count(),
                    "cpu_flags": _cpu_flags(), "torch": torch.__version__,
                    "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
                    "loadavg_at_report": os.getloadavg(),
                    "note": "shared 2-core CPU (8 engineers); wall times are indicative only"},
        "runs": runs,
    }  # fmt: skip
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"dense_tasks-{stamp}.json"
    for path in (out, RESULTS / "dense_tasks-latest.json"):
        path.write_text(json.dumps(summary, indent=1) + "\n")
    plot_curves(runs, RESULTS / "dense_tasks-curves.png")
    plot_predictions(runs, args.data, RESULTS / "dense_tasks-predictions.png")
    for r in runs:
        key = METRIC[r["task"]]
        test = r["test"].get(f"test_{key}")
        print(f"{r['task']:<13} {r['arm']:<10} best val_{key} {r['best_val']}  "
              f"test_{key} {test}  fit {r.get('fit_wall_s')} s")  # fmt: skip
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
