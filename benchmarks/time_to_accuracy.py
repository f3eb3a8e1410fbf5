"""Time to accuracy: train recipes for several seeds and record accuracy against wall time.

    python -m benchmarks.time_to_accuracy                 # fast recipe, 3 seeds, + reference
    python -m benchmarks.time_to_accuracy --seeds 0 --recipe fast=configs/fashion_mnist_fast.yaml
    resnet-pl benchmark time-to-accuracy ...              # the same

Each run is a real ``resnet-pl fit`` subprocess (its wall time includes start-up, data loading
and every validation), followed by ``resnet-pl test`` on the checkpoint chosen on the
validation split. ``metrics.csv`` gives validation accuracy and elapsed seconds at every epoch
(``WallClock`` callback); training FLOPs are the model's forward FLOPs x 3 per training image.

The reference (the 45-epoch ``configs/fashion_mnist_resnet20.yaml``) is expensive, so by
default it is *timed* for ``--reference-epochs`` epochs in the same run and its time to the
target is *extrapolated* from its committed full log: the timed fit (start-up included) plus
the remaining epochs, up to the one at which that log first reached the target, at the steady
seconds per epoch measured here. The output says so.
The speed-up is ``reference time-to-target / fast fit wall time``: conservative, since the
fast recipe's whole fit (not only its time to the target) is counted.

Writes ``benchmarks/results/time_to_accuracy-<UTC>.json`` (and ``-latest``), ``.md`` and a
PNG plot (validation accuracy vs seconds, one line per recipe and seed).
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "benchmarks" / "results"
FAST = "fast=configs/fashion_mnist_fast.yaml"
REFERENCE = "configs/fashion_mnist_resnet20.yaml"
REFERENCE_LOG = "benchmarks/results/fashion_mnist_resnet20-metrics.csv"
WALLCLOCK = "--trainer.callbacks+=resnet_pl.lightning.callbacks.WallClock"


def read_curve(metrics_csv: Path) -> list[dict[str, float]]:
    """Per-validation rows ``{epoch, val_acc, elapsed_s}`` of a run's ``metrics.csv``."""
    rows = []
    with open(metrics_csv) as f:
        for r in csv.DictReader(f):
            if r.get("val_acc"):
                row = {"epoch": float(r["epoch"]), "val_acc": float(r["val_acc"])}
                if r.get("elapsed_s"):
                    row["elapsed_s"] = float(r["elapsed_s"])
                rows.append(row)
    return rows


def first_reaching(curve: list[dict[str, float]], target: float, key: str) -> float | None:
    """``key`` of the first row whose validation accuracy reaches ``target``."""
    return next((r[key] for r in curve if r["val_acc"] >= target and key in r), None)


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "resnet_pl.cli", *args]


def _test_acc(config: str, run_dir: Path, root: Path, name: str, env: dict[str, str]) -> float:
    ckpt = sorted(run_dir.glob("**/best-*.ckpt"), key=lambda p: p.stat().st_mtime) or sorted(
        run_dir.glob("**/last.ckpt"), key=lambda p: p.stat().st_mtime
    )
    out = subprocess.run(
        _cli("test", "--config", config, "--ckpt_path", str(ckpt[-1]),
             "--run_root", str(root), "--run_name", name + "-test",
             "--trainer.enable_progress_bar", "false"),
        cwd=REPO, env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    if out.returncode:
        raise RuntimeError(f"resnet-pl test failed:\n{out.stderr[-3000:]}")
    for line in out.stdout.splitlines():
        parts = line.replace("│", " ").split()
        if len(parts) >= 2 and parts[0] == "test_acc":
            return float(parts[1])
    raise RuntimeError(f"no test_acc in resnet-pl test output:\n{out.stdout[-3000:]}")


def _metrics_csv(run_dir: Path) -> Path:
    found = sorted(run_dir.glob("**/metrics.csv"), key=lambda p: p.stat().st_mtime)
    if not found:
        raise RuntimeError(f"no metrics.csv under {run_dir}")
    return found[-1]


def run_recipe(
    label: str,
    config: str,
    seed: int,
    root: Path,
    extra: list[str],
    env: dict[str, str],
    test: bool = True,
) -> dict[str, Any]:
    """One ``fit`` (timed as a whole) and one ``test``."""
    name = f"{label}-seed{seed}"
    cmd = _cli("fit", "--config", config, "--seed_everything", str(seed),
               "--run_root", str(root), "--run_name", name, WALLCLOCK,
               "--trainer.enable_progress_bar", "false", *extra)  # fmt: skip
    start = time.perf_counter()
    out = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - start
    if out.returncode:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{out.stderr[-3000:]}")
    run_dir = root / name
    curve = read_curve(_metrics_csv(run_dir))
    row: dict[str, Any] = {
        "recipe": label, "config": config, "seed": seed, "extra_args": extra,
        "fit_wall_s": round(wall, 1), "curve": curve,
        "epochs": int(max(r["epoch"] for r in curve)) + 1 if curve else 0,
        "best_val_acc": max((r["val_acc"] for r in curve), default=None),
    }  # fmt: skip
    if test:
        row["test_acc"] = _test_acc(config, run_dir, root, name, env)
    return row


def eval_ablation(run_dir: Path, config: str) -> dict[str, float]:
    """Validation top-1 of a run's final checkpoint with each eval-time trick removed.

    EMA only changes which weights are evaluated (the raw ones are kept in the checkpoint as
    ``current_model_state``) and TTA only changes evaluation, so removing either from the
    trained recipe is exact without retraining. Uses the validation split, never test.
    """
    import lightning as L
    import torch
    import yaml

    from resnet_pl.lightning import ImageDataModule, ResNetClassifier

    ckpts = sorted(run_dir.glob("**/last.ckpt"), key=lambda p: p.stat().st_mtime)
    if not ckpts:
        return {}
    ckpt = torch.load(ckpts[-1], map_location="cpu", weights_only=True)
    data = yaml.safe_load((REPO / config).read_text()).get("data", {})
    dm = ImageDataModule(**data)
    out: dict[str, float] = {}
    # With EMA on, the state_dict is the average and the raw weights ride along; without it the
    # state_dict is the raw weights.
    if "current_model_state" in ckpt:
        weights = {"ema": ckpt["state_dict"], "raw": ckpt["current_model_state"]}
    else:
        weights = {"raw": ckpt["state_dict"]}
    for wname, state in weights.items():
        for mode in ("none", "flip", "flip_shift"):
            model = ResNetClassifier.load_from_checkpoint(ckpts[-1], tta=mode)
            model.load_state_dict(state)
            trainer = L.Trainer(accelerator="cpu", devices=1, logger=False,
                                enable_progress_bar=False, enable_model_summary=False,
                                precision="bf16-mixed")  # fmt: skip
            res = trainer.validate(model, dm, verbose=False)[0]
            out[f"{wname}/tta={mode}"] = float(res["val_acc"])
    return out


def _flops_per_train_image(config: str) -> float | None:
    """Forward FLOPs x 3 (forward + backward) of the config's model at its input size."""
    import yaml

    from resnet_pl.data import SPECS
    from resnet_pl.factory import model_info

    cfg = yaml.safe_load((REPO / config).read_text())
    model, data = cfg.get("model", {}), cfg.get("data", {})
    spec = SPECS.get(data.get("dataset", "fashion_mnist"))
    if spec is None:
        return None
    size = data.get("image_size") or spec.image_size
    info = model_info(
        model.get("arch", "resnet20"),
        (spec.in_chans, size, size),
        in_chans=spec.in_chans,
        num_classes=spec.num_classes,
        **(model.get("model_kwargs") or {}),
    )
    return 3.0 * info.flops


def summarize(rows: list[dict[str, Any]], target: float) -> dict[str, Any]:
    tests = [r["test_acc"] for r in rows if r.get("test_acc") is not None]
    walls = [r["fit_wall_s"] for r in rows]
    hits = [first_reaching(r["curve"], target, "elapsed_s") for r in rows]
    return {
        "runs": len(rows),
        "test_acc_mean": statistics.fmean(tests) if tests else None,
        "test_acc_std": statistics.stdev(tests) if len(tests) > 1 else 0.0,
        "test_acc_min": min(tests) if tests else None,
        "fit_wall_s_mean": statistics.fmean(walls),
        "fit_wall_s_max": max(walls),
        "val_time_to_target_s": [None if h is None else round(h, 1) for h in hits],
    }


def reference_estimate(
    rows: list[dict[str, Any]], log: Path, target: float, timed_epochs: int
) -> dict[str, Any]:
    """The reference's time to ``target``: its timed runs here, extended to the epoch at which
    the committed full log first reached the target (1-based).

    Each timed run of ``timed_epochs`` epochs gives its whole ``fit`` wall time (start-up
    included, once, as in the fast recipe's figure) and, from its per-epoch ``elapsed_s``, the
    steady seconds per epoch; the remaining epochs are added at that rate. With a single timed
    epoch the whole fit is the per-epoch figure (start-up then counts in every epoch)."""
    curve = read_curve(log)
    epoch = first_reaching(curve, target, "epoch")
    walls = [r["fit_wall_s"] for r in rows]
    steady = []
    for r in rows:
        elapsed = [c["elapsed_s"] for c in r.get("curve", []) if "elapsed_s" in c]
        if len(elapsed) >= 2:
            steady.append((elapsed[-1] - elapsed[0]) / (len(elapsed) - 1))
    wall = statistics.fmean(walls)
    per_epoch = statistics.fmean(steady) if steady else wall / max(timed_epochs, 1)
    needed = None if epoch is None else int(epoch) + 1
    shown = log.relative_to(REPO) if log.is_relative_to(REPO) else log
    return {
        "method": (
            f"timed {timed_epochs} epoch(s) of it in this run ({wall:.1f} s for the whole fit, "
            f"start-up included; {per_epoch:.1f} s per further epoch, validation included); "
            f"time to {target:.0%} extrapolated to the epoch at which the committed log "
            f"{shown} first reached it"
        ),
        "timed_fit_wall_s": round(wall, 1),
        "seconds_per_epoch": round(per_epoch, 1),
        "epochs_to_target": needed,
        "time_to_target_s": (
            None if needed is None else round(wall + per_epoch * (needed - timed_epochs), 1)
        ),
        "log_curve": curve,
    }


def write_markdown(result: dict[str, Any], path: Path) -> None:
    m, s = result["machine"], result["settings"]
    lines = [
        "# Time to accuracy",
        "",
        f"{m['cpu_model']}, {m['cpu_usable']} usable cores, flags: {' '.join(m['cpu_flags'])}; "
        f"torch {result['versions']['torch']}; OMP_NUM_THREADS={s['omp_num_threads']}; "
        f"load average at start {s['load_average_start']}.",
        "",
        f"Target: {s['target']:.1%} validation accuracy (checkpoint chosen on validation; test "
        "measured once per run).",
        "",
        "| recipe | seeds | epochs | fit wall (s), mean | max | test top-1 mean ± std | min |"
        " val time to target (s) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for label, summ in result["summary"].items():
        rows = [r for r in result["runs"] if r["recipe"] == label]
        acc = summ["test_acc_mean"]
        acc_s = f"{acc:.2%} ± {summ['test_acc_std']:.2%}" if acc is not None else "-"
        amin = f"{summ['test_acc_min']:.2%}" if summ["test_acc_min"] is not None else "-"
        lines.append(
            f"| {label} | {','.join(str(r['seed']) for r in rows)} | {rows[0]['epochs']} | "
            f"{summ['fit_wall_s_mean']:.0f} | {summ['fit_wall_s_max']:.0f} | {acc_s} | {amin} | "
            f"{', '.join('-' if t is None else f'{t:.0f}' for t in summ['val_time_to_target_s'])}"
            " |"
        )
    ref = result.get("reference")
    if ref:
        lines += [
            "",
            f"Reference ({s['reference_config']}): {ref['method']}: "
            f"{ref.get('timed_fit_wall_s', 0)} s + "
            f"({ref['epochs_to_target']} - {s['reference_epochs']}) epochs x "
            f"{ref['seconds_per_epoch']} s = **{ref['time_to_target_s']} s** to "
            f"{s['target']:.0%}.",
        ]
        for label, ratio in result.get("speedup_vs_reference", {}).items():
            lines.append(f"- {label}: reference time-to-target / fast fit wall = **{ratio:.2f}x**")
    lines += ["", f"Command: `{result['command']}`", ""]
    path.write_text("\n".join(lines))


def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    labels = list(result["summary"])
    for i, label in enumerate(labels):
        for j, r in enumerate(x for x in result["runs"] if x["recipe"] == label):
            pts = [(c["elapsed_s"], c["val_acc"] * 100) for c in r["curve"] if "elapsed_s" in c]
            if pts:
                xs, ys = zip(*pts, strict=True)
                ax.plot(xs, ys, "-o", ms=3, color=colors[i % 10], alpha=0.8,
                        label=label if j == 0 else None)  # fmt: skip
    ref = result.get("reference")
    if ref and ref["log_curve"]:
        per = ref["seconds_per_epoch"]
        # start-up: the timed fit minus its epochs at the steady rate
        start = max(
            ref.get("timed_fit_wall_s", 0.0) - per * result["settings"]["reference_epochs"], 0.0
        )
        ref_xs = [start + (c["epoch"] + 1) * per for c in ref["log_curve"]]
        ref_ys = [c["val_acc"] * 100 for c in ref["log_curve"]]
        ax.plot(ref_xs, ref_ys, "--", color="gray", label="reference (45 epochs, extrapolated)")
    target = result["settings"]["target"] * 100
    ax.axhline(target, color="k", lw=0.8, ls=":")
    ax.set_xlabel("wall time of fit (s)")
    ax.set_ylabel("validation top-1 (%)")
    ax.set_ylim(max(80.0, target - 10), 96)
    ax.set_title("Fashion-MNIST: validation accuracy vs wall time")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.time_to_accuracy",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Each run is a real `resnet-pl fit` subprocess; see the module docstring.",
    )
    p.add_argument("--recipe", action="append", metavar="LABEL=CONFIG",
                   help=f"a recipe to run (repeatable); default {FAST}")  # fmt: skip
    p.add_argument("--seeds", default="0,1,2", help="comma-separated seeds (default 0,1,2)")
    p.add_argument("--target", type=float, default=0.94, help="accuracy target (default 0.94)")
    p.add_argument("--reference", default=REFERENCE, help="the recipe to compare with")
    p.add_argument("--reference-log", default=REFERENCE_LOG,
                   help="its committed full metrics.csv (for the extrapolation)")  # fmt: skip
    p.add_argument("--reference-epochs", type=int, default=2,
                   help="reference epochs timed in this run (0: no reference)")  # fmt: skip
    p.add_argument("--extra", action="append", default=[], metavar="LABEL:ARG",
                   help="a fit argument of one recipe: 'fast:--trainer.max_epochs=9'")  # fmt: skip
    p.add_argument("--out", type=Path, default=RESULTS, help="results folder")
    p.add_argument("--name", default="time_to_accuracy", help="results file prefix")
    p.add_argument("--keep-runs", type=Path, help="keep run folders here (default: temporary)")
    p.add_argument("--ablate", action="store_true",
                   help="also evaluate each run's final checkpoint on validation without EMA "
                   "and/or TTA (exact ablations of eval-time tricks, no retraining)")  # fmt: skip
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    recipes = [r.split("=", 1) for r in (args.recipe or [FAST])]
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    extras: dict[str, list[str]] = {}
    for item in args.extra:
        label, _, arg = item.partition(":")
        extras.setdefault(label, []).append(arg)
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    from resnet_pl.bench.report import cpu_flags, machine_info, versions

    started = dt.datetime.now(dt.timezone.utc)
    result: dict[str, Any] = {
        "benchmark": "time_to_accuracy",
        "started_utc": started.isoformat(timespec="seconds"),
        "command": " ".join(["python -m benchmarks.time_to_accuracy", *(argv or sys.argv[1:])]),
        "machine": {**machine_info(), "cpu_flags": cpu_flags()},
        "versions": versions(),
        "settings": {
            "target": args.target, "seeds": seeds, "recipes": dict(recipes),
            "extra_args": extras, "reference_config": args.reference,
            "reference_epochs": args.reference_epochs,
            "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
            "load_average_start": [round(x, 2) for x in os.getloadavg()],
        },
        "runs": [],
    }  # fmt: skip
    args.out.mkdir(parents=True, exist_ok=True)
    stamp = started.strftime("%Y%m%d-%H%M%S")
    with tempfile.TemporaryDirectory(prefix="tta-runs-") as tmp:
        root = args.keep_runs or Path(tmp)
        ref_rows: list[dict[str, Any]] = []

        def time_reference(when: str) -> None:
            print(f"[time_to_accuracy] reference ({when}), {args.reference_epochs} epoch(s) ...",
                  flush=True)  # fmt: skip
            row = run_recipe(
                f"reference-{when}", args.reference, seeds[0], root,
                [f"--trainer.max_epochs={args.reference_epochs}"], env, test=False,
            )  # fmt: skip
            print(f"  fit {row['fit_wall_s']:.0f} s", flush=True)
            ref_rows.append(row)

        # The reference is timed before and after the recipes, and seed 0 of every recipe runs
        # before seed 1 ..., so a drift in machine load touches every recipe alike.
        if args.reference_epochs > 0:
            time_reference("first")
        for seed in seeds:
            for label, config in recipes:
                print(f"[time_to_accuracy] {label} seed {seed} ...", flush=True)
                row = run_recipe(label, config, seed, root, extras.get(label, []), env)
                flops = _flops_per_train_image(config)
                if flops:
                    images = 54_000 * row["epochs"]  # Fashion-MNIST train split minus val
                    row["train_flops"] = flops * images
                if args.ablate:
                    row["eval_ablation_val"] = eval_ablation(root / f"{label}-seed{seed}", config)
                result["runs"].append(row)
                print(
                    f"  fit {row['fit_wall_s']:.0f} s, best val {row['best_val_acc']:.4f}, "
                    f"test {row.get('test_acc', float('nan')):.4f}",
                    flush=True,
                )
        if args.reference_epochs > 0:
            time_reference("last")
            result["reference_runs"] = ref_rows
            result["reference"] = reference_estimate(
                ref_rows, REPO / args.reference_log, args.target, args.reference_epochs
            )
            result["reference"]["method"] += " (mean of a timing before and one after the recipes)"
    result["summary"] = {
        label: summarize([r for r in result["runs"] if r["recipe"] == label], args.target)
        for label, _ in recipes
    }
    ref = result.get("reference")
    if ref and ref["time_to_target_s"]:
        result["speedup_vs_reference"] = {
            label: ref["time_to_target_s"] / s["fit_wall_s_mean"]
            for label, s in result["summary"].items()
        }
    for suffix in (stamp, "latest"):
        base = args.out / f"{args.name}-{suffix}"
        base.with_suffix(".json").write_text(json.dumps(result, indent=1))
        write_markdown(result, base.with_suffix(".md"))
    plot(result, args.out / f"{args.name}.png")
    print((args.out / f"{args.name}-latest.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
