"""Does ``resnet-pl fit`` reach the same validation accuracy from LitData shards as from the
image folder they were written from? (issue 24)

    python -m benchmarks.streaming_accuracy [--images 3000] [--epochs 3] [--seeds 0 1]

Writes ``--images`` real Fashion-MNIST training images as a PNG class folder, optimises it into
shards (``resnet-pl data optimize``), then runs ``resnet-pl fit`` on each source with each seed
(ResNet-8, 28 px grayscale, the folder path's augmentation), interleaved, and records the final
validation accuracy of every run. Both sources hold out the same validation images (same
``val_fraction`` and seed). JSON to ``benchmarks/results/streaming_accuracy-<time>.json``.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any


def _final_val_acc(run_dir: Path) -> float:
    rows = list(csv.DictReader(next(run_dir.rglob("metrics.csv")).open()))
    values = [float(r["val_acc"]) for r in rows if r.get("val_acc")]
    return values[-1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=3000)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--out-dir", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args(argv)

    from benchmarks.loader_overhead import _write_folder
    from benchmarks.report import cpu_flags, machine_info, versions
    from resnet_pl.cli import cli_main
    from resnet_pl.data.shards import optimize_dataset

    work = Path(tempfile.mkdtemp(prefix="streaming_accuracy-"))
    folder, shards = work / "folder", work / "shards"
    _write_folder(folder, args.images)
    optimize_dataset(folder, shards, num_workers=2, progress=False)
    common = [
        "--data.in_chans", "1", "--data.image_size", "28", "--data.batch_size", "64",
        "--data.num_workers", str(args.workers), "--model.arch", "resnet8", "--model.lr", "0.05",
        "--trainer.max_epochs", str(args.epochs), "--trainer.enable_progress_bar", "false",
        "--trainer.enable_model_summary", "false", "--checkpoint_every_n_steps", "0",
    ]  # fmt: skip
    sources = {
        "folder": ["--data.dataset", "imagefolder", "--data.data_dir", str(folder)],
        "shards": ["--data.dataset", "streaming", "--data.data_dir", str(shards)],
    }
    runs: list[dict[str, Any]] = []
    for seed in args.seeds:
        order = ("folder", "shards") if seed % 2 == 0 else ("shards", "folder")
        for source in order:
            name = f"{source}-seed{seed}"
            t0 = time.perf_counter()
            load = os.getloadavg()[0]
            cli_main(["fit", *sources[source], *common, "--seed_everything", str(seed),
                      "--run_root", str(work / "runs"), "--run_name", name])  # fmt: skip
            runs.append(
                {
                    "source": source,
                    "seed": seed,
                    "val_acc": round(_final_val_acc(work / "runs" / name), 4),
                    "seconds": round(time.perf_counter() - t0, 1),
                    "load_average_before": round(load, 2),
                }
            )
            print(json.dumps(runs[-1]), flush=True)
    summary = {}
    for source in sources:
        accs = [r["val_acc"] for r in runs if r["source"] == source]
        summary[source] = {
            "val_acc_mean": round(statistics.mean(accs), 4),
            "val_acc_values": accs,
        }
    doc = {
        "study": "streaming-vs-folder accuracy",
        "command": f"python -m benchmarks.streaming_accuracy --images {args.images} --epochs "
        f"{args.epochs} --seeds {' '.join(map(str, args.seeds))} --workers {args.workers}",
        "note": "shared machine; val split = 10% of the images, the same images for both sources",
        "machine": {**machine_info(), "cpu_flags": cpu_flags()},
        "versions": versions(),
        "summary": summary,
        "runs": runs,
    }
    args.out_dir.mkdir(parents=True, exist_ok=True)
    path = args.out_dir / f"streaming_accuracy-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(doc, indent=1) + "\n")
    print(json.dumps(summary))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
