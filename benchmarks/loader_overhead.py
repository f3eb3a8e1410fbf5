"""How much of a Fashion-MNIST training epoch the input pipeline costs.

    python -m benchmarks.loader_overhead [--batch-size 128] [--steps 20]
    python -m benchmarks.loader_overhead --study folder-vs-shards [--images 3000] [--workers 1 2 4]

The default study times one full epoch of loading (uint8 batches from memory) and of batch
augmentation, then a few real ResNet-20 training steps, and reports the pipeline's share of an
epoch.

``--study folder-vs-shards`` (issue 24) reads the same real Fashion-MNIST images once as a PNG
class folder (``imagefolder``) and once as LitData shards written from that folder
(``--data.dataset streaming``), through the two data modules' own training loaders (decode +
random resized crop + flip per image in worker processes), at each ``--workers`` count,
interleaved in rounds so that both sources share the machine's state. It reports images/s per
epoch (the first epoch, with worker start-up, and the next) and the loader's share of a training
step if loading and a ResNet-20 step ran one after the other (``t_load / (t_load + t_step)``
per batch). JSON, markdown and a plot go to ``benchmarks/results/``
(``loader_overhead-folder_vs_shards-<time>.*``), with the load average and CPU flags.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import torch


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--study", choices=["memory", "folder-vs-shards"], default="memory")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=20, help="training steps timed")
    parser.add_argument("--precision", choices=["fp32", "bf16"], default="bf16")
    parser.add_argument("--images", type=int, default=3000, help="folder-vs-shards: images")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--rounds", type=int, default=2, help="interleaved repeats")
    parser.add_argument("--out-dir", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args(argv)
    if args.study == "folder-vs-shards":
        return folder_vs_shards(args)

    from resnet_pl import create_model
    from resnet_pl.lightning.augment import batch_augment
    from resnet_pl.lightning.data import ImageDataModule

    dm = ImageDataModule("fashion_mnist", batch_size=args.batch_size)
    dm.setup("fit")
    t0 = time.perf_counter()
    batches = list(dm.train_dataloader())
    load_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    for x, _ in batches:
        batch_augment(x, size=28, mean=dm.mean, std=dm.std, crop_padding=2, hflip=True,
                      random_erasing=0.25)  # fmt: skip
    augment_s = time.perf_counter() - t0

    model = create_model("resnet20", in_chans=1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    x, y = batches[0]
    xf = batch_augment(x, size=28, mean=dm.mean, std=dm.std)

    def step() -> None:
        with torch.autocast("cpu", torch.bfloat16, enabled=args.precision == "bf16"):
            loss = torch.nn.functional.cross_entropy(model(xf), y)
        opt.zero_grad()
        loss.backward()
        opt.step()

    for _ in range(3):
        step()
    t0 = time.perf_counter()
    for _ in range(args.steps):
        step()
    step_s = (time.perf_counter() - t0) / args.steps
    train_s = step_s * len(batches)
    share = (load_s + augment_s) / (load_s + augment_s + train_s)
    print(f"batches/epoch {len(batches)}, threads {torch.get_num_threads()}, {args.precision}")
    print(f"loading   {load_s:7.2f} s/epoch")
    print(f"augment   {augment_s:7.2f} s/epoch")
    print(f"training  {train_s:7.2f} s/epoch ({step_s * 1000:.0f} ms/step, ResNet-20)")
    print(f"input pipeline share of an epoch: {share:.1%}")
    return 0


# ---- folder vs shards (issue 24) ------------------------------------------------------------
def _write_folder(root: Path, n: int) -> None:
    """``n`` real Fashion-MNIST training images as ``root/train/<class>/<i>.png``."""
    from PIL import Image

    from resnet_pl.data import load_fashion_mnist

    x, y = load_fashion_mnist("train", n=n)
    for i in range(len(y)):
        d = root / "train" / f"class_{int(y[i])}"
        d.mkdir(parents=True, exist_ok=True)
        Image.fromarray(x[i], "L").save(d / f"{i:06d}.png")


def _epoch_rates(dm: Any) -> tuple[float, float, int]:
    """Images/s of two consecutive epochs of ``dm``'s training loader, and the images read."""
    loader = dm.train_dataloader()
    rates = []
    count = 0
    for epoch in range(2):
        sampler = getattr(loader, "sampler", None)
        if hasattr(sampler, "set_epoch"):
            sampler.set_epoch(epoch)
        t0 = time.perf_counter()
        count = sum(len(y) for _, y in loader)
        rates.append(count / (time.perf_counter() - t0))
    return rates[0], rates[1], count


def _step_seconds(batch_size: int, steps: int) -> float:
    """Seconds per ResNet-20 training step on a 28 px grayscale batch (fp32)."""
    from resnet_pl import create_model

    model = create_model("resnet20", in_chans=1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    x = torch.randn(batch_size, 1, 28, 28)
    y = torch.randint(0, 10, (batch_size,))

    def step() -> None:
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()

    for _ in range(2):
        step()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    return (time.perf_counter() - t0) / steps


def folder_vs_shards(args: argparse.Namespace) -> int:
    from benchmarks.report import cpu_flags, machine_info, versions
    from resnet_pl.data.shards import optimize_dataset
    from resnet_pl.lightning.data import ImageDataModule

    work = Path(tempfile.mkdtemp(prefix="loader_overhead-"))
    folder, shards = work / "folder", work / "shards"
    _write_folder(folder, args.images)
    t0 = time.perf_counter()
    manifest = optimize_dataset(
        folder, shards, num_workers=max(args.workers), val_fraction=0.0, progress=False
    )
    optimize_s = time.perf_counter() - t0
    common = {"in_chans": 1, "image_size": 28, "batch_size": args.batch_size, "val_fraction": 0.0}

    def module(source: str, workers: int) -> Any:
        if source == "folder":
            dm = ImageDataModule("imagefolder", data_dir=str(folder), num_workers=workers, **common)
        else:
            opts = {k: v for k, v in common.items() if k != "val_fraction"}
            dm = ImageDataModule("streaming", data_dir=str(shards), num_workers=workers, **opts)
        dm.setup("fit")
        return dm

    rows: list[dict[str, Any]] = []
    for rnd in range(args.rounds):
        for workers in args.workers:
            order = ("folder", "shards") if rnd % 2 == 0 else ("shards", "folder")
            for source in order:  # interleaved: both sources see the same machine state
                load_before = os.getloadavg()[0]
                first, steady, count = _epoch_rates(module(source, workers))
                rows.append(
                    {
                        "round": rnd,
                        "source": source,
                        "workers": workers,
                        "images": count,
                        "first_epoch_images_per_s": round(first, 1),
                        "images_per_s": round(steady, 1),
                        "load_average_before": round(load_before, 2),
                        "load_average_after": round(os.getloadavg()[0], 2),
                    }
                )
                print(json.dumps(rows[-1]), flush=True)
    step_s = _step_seconds(args.batch_size, args.steps)
    summary = []
    for workers in args.workers:
        entry: dict[str, Any] = {"workers": workers}
        for source in ("folder", "shards"):
            rates = [r["images_per_s"] for r in rows if r["source"] == source and
                     r["workers"] == workers]  # fmt: skip
            firsts = [r["first_epoch_images_per_s"] for r in rows if r["source"] == source and
                      r["workers"] == workers]  # fmt: skip
            ips = statistics.median(rates)
            load_s = args.batch_size / ips
            entry[source] = {
                "images_per_s_median": round(ips, 1),
                "first_epoch_images_per_s_median": round(statistics.median(firsts), 1),
                "load_ms_per_batch": round(load_s * 1000, 1),
                "share_of_step_if_serial": round(load_s / (load_s + step_s), 3),
            }
        entry["shards_over_folder"] = round(
            entry["shards"]["images_per_s_median"] / entry["folder"]["images_per_s_median"], 2
        )
        summary.append(entry)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    doc = {
        "study": "folder-vs-shards",
        "command": "python -m benchmarks.loader_overhead --study folder-vs-shards "
        f"--images {args.images} --workers {' '.join(map(str, args.workers))} "
        f"--rounds {args.rounds} --batch-size {args.batch_size}",
        "note": "shared machine: compare only the ratios measured in the same run (interleaved)",
        "machine": {**machine_info(), "cpu_flags": cpu_flags()},
        "versions": versions(),
        "images": args.images,
        "batch_size": args.batch_size,
        "optimize_seconds": round(optimize_s, 2),
        "shard_chunks": len(list((shards / "train").glob("chunk-*.bin"))),
        "shard_bytes": sum(p.stat().st_size for p in (shards / "train").glob("chunk-*.bin")),
        "folder_bytes": sum(p.stat().st_size for p in folder.rglob("*.png")),
        "counts": manifest["counts"],
        "resnet20_step_ms": round(step_s * 1000, 1),
        "summary": summary,
        "rows": rows,
    }
    args.out_dir.mkdir(parents=True, exist_ok=True)
    base = args.out_dir / f"loader_overhead-folder_vs_shards-{stamp}"
    base.with_suffix(".json").write_text(json.dumps(doc, indent=1) + "\n")
    lines = [
        f"# Folder vs LitData shards, {args.images} Fashion-MNIST PNGs, batch {args.batch_size}",
        "",
        f"{doc['note']}; load average {rows[0]['load_average_before']} -> "
        f"{rows[-1]['load_average_after']}; ResNet-20 step {doc['resnet20_step_ms']} ms.",
        "",
        "| workers | folder img/s | shards img/s | shards/folder | folder share | shards share |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for e in summary:
        f, sh = e["folder"], e["shards"]
        lines.append(
            f"| {e['workers']} | {f['images_per_s_median']} | {sh['images_per_s_median']} | "
            f"{e['shards_over_folder']} | {f['share_of_step_if_serial']:.1%} | "
            f"{sh['share_of_step_if_serial']:.1%} |"
        )
    base.with_suffix(".md").write_text("\n".join(lines) + "\n")
    _plot(summary, base.with_suffix(".png"), args)
    print("\n".join(lines))
    print(f"wrote {base}.json/.md/.png")
    return 0


def _plot(summary: list[dict[str, Any]], path: Path, args: argparse.Namespace) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.4))
    workers = [e["workers"] for e in summary]
    for source, style in (("folder", "o-"), ("shards", "s-")):
        ax.plot(workers, [e[source]["images_per_s_median"] for e in summary], style, label=source)
    ax.set_xlabel("loader workers")
    ax.set_ylabel("training images / s")
    ax.set_xticks(workers)
    ax.set_title(f"{args.images} Fashion-MNIST PNGs, decode + crop + flip", fontsize=9)
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    raise SystemExit(main())
