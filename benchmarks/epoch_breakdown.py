"""Where an epoch of a recipe goes: the same short fit with one part switched off at a time.

    python -m benchmarks.epoch_breakdown                       # configs/fashion_mnist_fast.yaml
    python -m benchmarks.epoch_breakdown --config configs/fashion_mnist_resnet20.yaml --epochs 1

Each variant is a real ``resnet-pl fit`` (in this process, through ``cli_main``) of ``--epochs``
epochs, with a callback that times every training epoch and the validation inside it:

- ``as configured``: the config as committed;
- ``no validation``: ``--trainer.limit_val_batches 0``;
- ``EMA on`` / ``no EMA``: ``--model.evaluation.ema_decay 0.99`` or ``0`` (whichever the config
  does not already do);
- ``data only``: one pass over the training loader with no model (reading and batching; the
  augmentation of in-memory datasets runs on the batch inside the step, so it is part of the
  epoch time of the other variants).

One warm-up fit is run and discarded, each fit's first epoch (start-up effects) is left out of
its mean, and the variants run in ``--rounds`` alternating rounds (A B C D, then D C B A), so
the machine's drift hits all of them; read the per-epoch differences against ``as
configured`` (``delta_s``), not the absolute seconds. Writes
``benchmarks/results/epoch_breakdown-<time>.json`` with the machine, CPU flags and versions.
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

RESULTS = Path(__file__).resolve().parent / "results"


def _timed_fit(config: str, epochs: int, extra: list[str], root: str) -> dict[str, Any]:
    import lightning as L

    from resnet_pl.cli.lightning import cli_main

    class Clock(L.Callback):
        def __init__(self) -> None:
            self.rows: list[dict[str, float]] = []
            self.t0 = self.v0 = self.val = 0.0

        def on_train_epoch_start(self, trainer: Any, pl_module: Any) -> None:
            self.t0, self.val = time.perf_counter(), 0.0

        def on_validation_start(self, trainer: Any, pl_module: Any) -> None:
            self.v0 = time.perf_counter()

        def on_validation_end(self, trainer: Any, pl_module: Any) -> None:
            if trainer.training or trainer.state.fn == "fit":
                self.val += time.perf_counter() - self.v0

        def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
            total = time.perf_counter() - self.t0
            self.rows.append({"epoch_s": round(total, 2), "validation_s": round(self.val, 2)})

    args = ["--config", config, "--trainer.max_epochs", str(epochs), "--run_root", root,
            "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
            "--checkpoint_every_n_steps", "0", *extra]  # fmt: skip
    cli = cli_main(args, run=False)
    clock = Clock()
    cli.trainer.callbacks.append(clock)
    t0 = time.perf_counter()
    cli.trainer.fit(cli.model, cli.datamodule)
    return {"fit_s": round(time.perf_counter() - t0, 2), "epochs": clock.rows}


def _data_only(config: str, root: str) -> dict[str, Any]:
    from resnet_pl.cli.lightning import cli_main

    cli = cli_main(["--config", config, "--run_root", root], run=False)
    dm = cli.datamodule
    dm.prepare_data()
    dm.setup("fit")
    t0 = time.perf_counter()
    n = 0
    for batch in dm.train_dataloader():
        n += len(batch[1])
    return {"epoch_s": round(time.perf_counter() - t0, 2), "images": n}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.epoch_breakdown", description=__doc__)
    p.add_argument("--config", default="configs/fashion_mnist_fast.yaml")
    p.add_argument("--epochs", type=int, default=3, help="per fit; the first is not counted")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--out-dir", type=Path, default=RESULTS)
    a = p.parse_args(argv)
    import torch
    import yaml

    from resnet_pl.bench.report import cpu_flags, machine_info

    cfg = yaml.safe_load(Path(a.config).read_text())
    ema = float(((cfg.get("model") or {}).get("evaluation") or {}).get("ema_decay", 0.0) or 0.0)
    toggle = ("no EMA", "0") if ema > 0 else ("EMA on", "0.99")
    variants = {
        "as configured": [],
        # The validation every epoch, whatever the config's interval, so its cost is measured.
        "validation every epoch": ["--trainer.check_val_every_n_epoch", "1"],
        "no validation": ["--trainer.limit_val_batches", "0"],
        toggle[0]: ["--model.evaluation.ema_decay", toggle[1]],
    }
    doc: dict[str, Any] = {
        "benchmark": "epoch_breakdown",
        "command": "python -m benchmarks.epoch_breakdown " + " ".join(argv or []),
        "config": a.config,
        "epochs": a.epochs,
        "machine": machine_info(),
        "cpu_flags": cpu_flags(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "loadavg_start": os.getloadavg(),
        "variants": {},
    }
    if a.epochs < 2:
        p.error("--epochs must be at least 2 (the first epoch of each fit is not counted)")
    with tempfile.TemporaryDirectory() as root:
        _timed_fit(a.config, 1, [], root)  # warm-up: imports, data cache, kernels
        order = list(variants)
        for k in range(a.rounds):
            for name in order if k % 2 == 0 else order[::-1]:
                extra = variants[name]
                r = _timed_fit(a.config, a.epochs, extra, root)
                entry = doc["variants"].setdefault(name, {"args": extra, "fits": []})
                entry["fits"].append(r)
                print(name, json.dumps(r), flush=True)
        doc["data_only"] = _data_only(a.config, root)

    def steady(entry: dict[str, Any]) -> float:
        return statistics.mean(e["epoch_s"] for f in entry["fits"] for e in f["epochs"][1:])

    base = steady(doc["variants"]["as configured"])
    for r in doc["variants"].values():
        r["mean_epoch_s"] = round(steady(r), 2)
        r["delta_s"] = round(r["mean_epoch_s"] - base, 2)
    doc["loadavg_end"] = os.getloadavg()
    a.out_dir.mkdir(parents=True, exist_ok=True)
    out = a.out_dir / f"epoch_breakdown-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps(doc, indent=1))
    print(f"wrote {out}")
    for name, r in doc["variants"].items():
        print(f"  {name:<24} {r['mean_epoch_s']:7.2f} s/epoch  ({r['delta_s']:+.2f})")
    print(f"  {'data only':<24} {doc['data_only']['epoch_s']:7.2f} s/epoch")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
