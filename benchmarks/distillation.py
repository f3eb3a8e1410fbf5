"""Knowledge distillation on Fashion-MNIST: a student trained with KD against the same student and
recipe without KD, over several seeds, in one run.

    python -m benchmarks.distillation [--seeds 0 1] [--epochs 15] [--teacher resnet20.fashion_mnist]
    python -m benchmarks.distillation --config configs/fashion_mnist_fast.yaml   # the fast recipe
    python -m benchmarks.distillation --max-steps 20 --train-subset 2000   # a quick smoke run
    python -m benchmarks.distillation --arms baseline kd kd_ls dkd   # the KD loss options
    python -m benchmarks.distillation --arms dkd --kd-warmup 1   # KD share ramped over 1 epoch
    python -m benchmarks.distillation --merge a.json b.json   # one table from runs split over jobs

``--config`` takes the student's options, data options, epochs and precision from a LightningCLI
YAML (``--student``, ``--epochs`` and the other flags given explicitly still win), so both arms
use a committed recipe: with ``configs/fashion_mnist_fast.yaml`` that is EMA weights, flip TTA,
the linear schedule and channels_last, with the student's architecture swapped in.

For each seed every arm trains from the same initialisation and data order (``seed_everything``):
``baseline`` is :class:`~resnet_pl.lightning.ResNetClassifier`; the others are
:class:`~resnet_pl.lightning.DistillationClassifier` with the same options plus the teacher and
a KD loss (:mod:`resnet_pl.lightning.kd_losses`): ``kd`` (KL x T^2 at ``--temperature``),
``dkd`` (decoupled KD, ``--dkd-alpha``/``--dkd-beta``, at ``--temperature``), ``kd_ls`` and
``dkd_ls`` (the same on standardised logits, at ``--ls-temperature``).
The final weights (cosine schedule to zero; nothing is chosen on the test split) are measured
on the real test split. The teacher's own test top-1 is measured in the same run. Writes
``benchmarks/results/distillation-<kind>-<time>.json`` and ``.md`` (``kind`` is ``smoke`` when
``--max-steps`` or a subset is set, else ``full``): machine, CPU flags, versions, settings,
every run, per-arm mean/spread of test top-1, the KD gain in points and the wall-time ratio
kd / baseline.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"
ARMS = ("baseline", "kd", "dkd", "kd_ls", "dkd_ls")


def default_student() -> tuple[str, dict[str, Any]]:
    """``resnet8`` when the registry has it, else the ResNet-20 layout at widths 8/16/32."""
    from resnet_pl import list_models

    if "resnet8" in list_models():
        return "resnet8", {}
    return "resnet20", {"widths": [8, 16, 32]}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--teacher", nargs="+", default=["resnet20.fashion_mnist"],
                   help="weights name(s) or checkpoint(s); several = an ensemble")  # fmt: skip
    p.add_argument("--student", default=None, help="registry arch (default: resnet8 if present)")
    p.add_argument("--student-kwargs", default=None, help="JSON, e.g. '{\"widths\": [8, 16, 32]}'")
    p.add_argument("--config", type=Path, default=None, help="LightningCLI YAML giving the recipe")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    p.add_argument("--epochs", type=int, default=None, help="default: the config's, else 15")
    p.add_argument("--max-steps", type=int, default=-1, help="stop each run early (smoke runs)")
    p.add_argument("--batch-size", type=int, default=None, help="default: the config's, else 128")
    p.add_argument("--lr", type=float, default=None, help="default: the config's, else 0.1")
    p.add_argument("--weight-decay", type=float, default=None, help="default: config's or 5e-4")
    p.add_argument("--label-smoothing", type=float, default=None, help="default: config's or 0")
    p.add_argument("--arms", nargs="+", default=["baseline", "kd"], choices=ARMS,
                   help="what to train per seed (default: baseline kd)")  # fmt: skip
    p.add_argument("--merge", type=Path, nargs="+", default=None,
                   help="combine these results files into one (no training)")  # fmt: skip
    p.add_argument("--temperature", type=float, default=4.0)
    p.add_argument("--ls-temperature", type=float, default=2.0,
                   help="temperature of the logit-standardised arms (z-scores)")  # fmt: skip
    p.add_argument("--dkd-alpha", type=float, default=1.0)
    p.add_argument("--dkd-beta", type=float, default=8.0)
    p.add_argument("--alpha", type=float, default=0.9)
    p.add_argument("--kd-warmup", type=float, default=0.0,
                   help="epochs over which the KD share ramps from 0 to --alpha")  # fmt: skip
    p.add_argument("--feature-weight", type=float, default=0.0)
    p.add_argument("--precision", default=None, help="Lightning precision (default: config's "
                   "or bf16-mixed)")  # fmt: skip
    p.add_argument("--train-subset", type=int, default=None)
    p.add_argument("--val-subset", type=int, default=None)
    p.add_argument("--test-subset", type=int, default=None)
    p.add_argument("--data-dir", default=None, help="Fashion-MNIST IDX folder")
    p.add_argument("--out-dir", type=Path, default=RESULTS)
    return p.parse_args(argv)


# Options of a KD config that are the teacher's or the loss's, not the student recipe's.
_KD_ONLY = ("teacher", "temperature", "alpha", "feature_weight", "feature_stage")
# Without --config: the repository's 45-epoch Fashion-MNIST recipe
# (configs/fashion_mnist_resnet20.yaml): a fixed validation split (seed 0), 2-px crops, flips,
# random erasing.
_DEFAULT_DATA = {"dataset": "fashion_mnist", "val_fraction": 0.1, "seed": 0,
                 "augment": "standard", "crop_padding": 2, "random_erasing": 0.25}  # fmt: skip


def read_recipe(path: Path | None) -> dict[str, dict[str, Any]]:
    """``model``, ``data`` and ``trainer`` sections of a LightningCLI YAML (``init_args`` of a
    ``class_path`` model unwrapped; teacher and loss options dropped: the arms set those)."""
    if path is None:
        return {"model": {}, "data": dict(_DEFAULT_DATA), "trainer": {}}
    import yaml

    try:
        cfg = yaml.safe_load(Path(path).read_text()) or {}
    except (OSError, yaml.YAMLError) as err:
        raise SystemExit(f"--config {path}: cannot read it as a YAML file ({err})") from None
    if not isinstance(cfg, dict):
        raise SystemExit(f"--config {path}: expected a LightningCLI YAML mapping")
    model = dict(cfg.get("model") or {})
    model = dict(model.get("init_args") or {}) if "class_path" in model else model
    # Option groups (model: {optim: {lr: ...}}) read flat here; the arms group them again.
    model = {k: v for g, sub in model.items()
             for k, v in (sub.items() if isinstance(sub, dict) and g != "model_kwargs"
                          else [(g, sub)])}  # fmt: skip
    for key in _KD_ONLY:
        model.pop(key, None)
    return {"model": model, "data": dict(cfg.get("data") or {}),
            "trainer": dict(cfg.get("trainer") or {})}  # fmt: skip


def resolve(args: argparse.Namespace) -> None:
    """Fill unset flags from the recipe, then from the built-in defaults."""
    recipe = args.recipe = read_recipe(args.config)
    model, data, trainer = recipe["model"], recipe["data"], recipe["trainer"]
    for flag, value, default in (
        ("epochs", trainer.get("max_epochs"), 15),
        ("precision", trainer.get("precision"), "bf16-mixed"),
        ("batch_size", data.get("batch_size"), 128),
        ("lr", model.get("lr"), 0.1),
        ("weight_decay", model.get("weight_decay"), 5e-4),
        ("label_smoothing", model.get("label_smoothing"), 0.0),
    ):
        if getattr(args, flag) is None:
            setattr(args, flag, default if value is None else value)


def _datamodule(args: argparse.Namespace) -> Any:
    from resnet_pl.lightning import ImageDataModule

    data = {**args.recipe["data"], "data_dir": args.data_dir, "batch_size": args.batch_size,
            "train_subset": args.train_subset, "val_subset": args.val_subset,
            "test_subset": args.test_subset}  # fmt: skip
    data.setdefault("dataset", "fashion_mnist")
    return ImageDataModule(**data)


def _trainer(args: argparse.Namespace, root: Path) -> Any:
    import lightning as L

    return L.Trainer(
        max_epochs=args.epochs,
        max_steps=args.max_steps,
        precision=args.precision,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        default_root_dir=str(root),
    )


def train_one(args: argparse.Namespace, arm: str, seed: int, root: Path) -> dict[str, Any]:
    """One run of ``arm`` (see :data:`ARMS`) with ``seed``: test top-1 and wall time."""
    import lightning as L

    from resnet_pl.lightning import DistillationClassifier, ResNetClassifier
    from resnet_pl.lightning.hparams import migrate_flat

    L.seed_everything(seed, workers=True, verbose=False)
    options: dict[str, Any] = {
        **args.recipe["model"],
        "arch": args.student,
        "in_chans": 1,
        "model_kwargs": args.student_kwargs_dict or None,
        "lr": args.lr,
        "weight_decay": args.weight_decay,
        "label_smoothing": args.label_smoothing,
    }
    if arm != "baseline":
        teacher = args.teacher[0] if len(args.teacher) == 1 else list(args.teacher)
        ls = arm.endswith("_ls")
        loss = {"temperature": args.ls_temperature if ls else args.temperature,
                "alpha": args.alpha, "feature_weight": args.feature_weight,
                "kd_loss": "dkd" if arm.startswith("dkd") else "kl",
                "logit_standardization": ls, "dkd_alpha": args.dkd_alpha,
                "dkd_beta": args.dkd_beta, "kd_warmup_epochs": args.kd_warmup}  # fmt: skip
        grouped = migrate_flat({**options, **loss})[0]
        recorded_loss: dict[str, Any] | None = {k: v for k, v in loss.items()
                                                 if k != "feature_weight" or v}  # fmt: skip
        module: Any = DistillationClassifier(teacher=teacher, **grouped)
    else:
        recorded_loss = None
        module = ResNetClassifier(**migrate_flat(options)[0])
    # The student is built first in both arms, so both start from the same weights; building
    # the teachers then draws random numbers (their init before the weights load), so reseed:
    # augmentation and stochastic draws during training are the same in both arms too.
    L.seed_everything(seed + 1000, workers=True, verbose=False)
    dm = _datamodule(args)
    trainer = _trainer(args, root / f"{arm}-{seed}")
    start = time.perf_counter()
    trainer.fit(module, datamodule=dm)
    wall = time.perf_counter() - start
    val = float(trainer.callback_metrics.get("val_acc", float("nan")))
    test = trainer.test(module, datamodule=dm, verbose=False)[0]
    return {
        "arm": arm,
        "seed": seed,
        "test_top1": round(100 * float(test["test_acc"]), 3),
        "final_val_top1": round(100 * val, 3),
        "fit_wall_s": round(wall, 2),
        "steps": int(trainer.global_step),
        "epochs": int(trainer.current_epoch),
        "kd_loss": recorded_loss,
    }


def teacher_top1(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Each teacher's test top-1, measured here with its own preprocessing and a plain forward
    (what the student is distilled from: no test-time augmentation), and with several teachers
    also the ensemble the student sees (logits averaged)."""
    import torch

    from resnet_pl.deploy.source import load_model
    from resnet_pl.hub.evaluate import accuracy_counts, small_logits

    data_dir = Path(args.data_dir) if args.data_dir else None
    rows, all_logits = [], []
    for source in args.teacher:
        loaded = load_model(source)
        cfg = {**dict(loaded.cfg), "tta": None}
        with torch.no_grad():
            logits, labels = small_logits(
                loaded.model, cfg, "fashion_mnist", limit=args.test_subset, data_dir=data_dir
            )
        all_logits.append(logits)
        hit1 = accuracy_counts(logits, labels)[0]
        n_params = sum(p.numel() for p in loaded.model.parameters())
        rows.append({"teacher": source, "test_top1": round(100 * hit1.float().mean().item(), 2),
                     "n": int(hit1.numel()), "num_params": n_params,
                     "forward": "plain"})  # fmt: skip
    if len(all_logits) > 1:
        hit1 = accuracy_counts(torch.stack(all_logits).mean(0), labels)[0]
        rows.append({"teacher": "ensemble (logits averaged)",
                     "test_top1": round(100 * hit1.float().mean().item(), 2),
                     "n": int(hit1.numel()), "forward": "plain",
                     "num_params": sum(r["num_params"] for r in rows)})  # fmt: skip
    return rows


def summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Per arm: mean, sample standard deviation, min and max of test top-1 and of the final
    validation top-1 (what choices are made on); mean wall time; each arm's gain over
    ``baseline`` and its wall time relative to it."""
    out: dict[str, Any] = {}
    arms = [a for a in ARMS if any(r["arm"] == a for r in runs)]
    for arm in arms:
        acc = [r["test_top1"] for r in runs if r["arm"] == arm]
        val = [r["final_val_top1"] for r in runs if r["arm"] == arm]
        wall = [r["fit_wall_s"] for r in runs if r["arm"] == arm]
        out[arm] = {
            "n": len(acc),
            "seeds": sorted(r["seed"] for r in runs if r["arm"] == arm),
            "test_top1_mean": round(statistics.fmean(acc), 3),
            "test_top1_std": round(statistics.stdev(acc), 3) if len(acc) > 1 else None,
            "test_top1_min": min(acc),
            "test_top1_max": max(acc),
            "val_top1_mean": round(statistics.fmean(val), 3),
            "fit_wall_s_mean": round(statistics.fmean(wall), 2),
        }
    if "baseline" in out:
        base = out["baseline"]
        for arm in arms:
            if arm == "baseline":
                continue
            out[f"{arm}_gain_points"] = round(
                out[arm]["test_top1_mean"] - base["test_top1_mean"], 3
            )
            # Same seed = same initialisation and data order: the per-seed differences.
            base_by_seed = {r["seed"]: r["test_top1"] for r in runs if r["arm"] == "baseline"}
            out[f"{arm}_paired_gains"] = [
                round(r["test_top1"] - base_by_seed[r["seed"]], 3)
                for r in sorted(runs, key=lambda r: r["seed"])
                if r["arm"] == arm and r["seed"] in base_by_seed
            ]
            out[f"wall_ratio_{arm}_over_baseline"] = round(
                out[arm]["fit_wall_s_mean"] / base["fit_wall_s_mean"], 3
            )
    return out


def markdown(doc: dict[str, Any]) -> str:
    s, st = doc["settings"], doc["summary"]
    lines = [
        f"# Knowledge distillation on Fashion-MNIST ({doc['kind']} run)",
        "",
        f"Command: `{doc['command']}`  ",
        f"Machine: {doc['machine']['cpu_model']}, {doc['machine']['cpu_usable']} usable cores, "
        f"flags {', '.join(doc['cpu_flags']) or '-'}; torch {doc['versions']['torch']}; "
        f"{doc['time']}.  ",
        f"Student `{s['student']}` {s['student_kwargs'] or ''} ({doc['student_params']} params); "
        f"T={s['temperature']} (standardised arms: T={s.get('ls_temperature', '-')}), "
        f"alpha={s['alpha']}, DKD alpha/beta={s.get('dkd_alpha', '-')}/{s.get('dkd_beta', '-')}, "
        f"feature_weight={s['feature_weight']}; "
        f"{s['epochs']} epochs (max_steps {s['max_steps']}), batch {s['batch_size']}, "
        f"lr {s['lr']}, precision {s['precision']}, seeds {s['seeds']}.",
        "",
        "| teacher | params | test top-1 (%) | n |",
        "|---|---:|---:|---:|",
    ]
    lines += [
        f"| {t['teacher']} | {t['num_params']} | {t['test_top1']:.2f} | {t['n']} |"
        for t in doc["teachers"]
    ]
    lines += [
        "",
        "| student | runs | test top-1 mean (%) | std | min | max | val top-1 mean (%) "
        "| fit wall (s) | gain vs baseline (points) | gain per seed (same init and data) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for arm in ARMS:
        if arm not in st:
            continue
        a = st[arm]
        std = "-" if a["test_top1_std"] is None else f"{a['test_top1_std']:.2f}"
        gain = st.get(f"{arm}_gain_points")
        lines.append(
            f"| {arm} | {a['n']} | {a['test_top1_mean']:.2f} | {std} | {a['test_top1_min']:.2f} "
            f"| {a['test_top1_max']:.2f} | {a['val_top1_mean']:.2f} | {a['fit_wall_s_mean']:.0f} "
            f"| {'-' if gain is None else f'{gain:+.2f}'} "
            f"| {', '.join(f'{g:+.2f}' for g in st.get(f'{arm}_paired_gains', [])) or '-'} |"
        )
    losses = {r["arm"]: r.get("kd_loss") for r in doc["runs"] if r.get("kd_loss")}
    if losses:
        lines += ["", "KD loss per arm (as each run recorded it):", ""]
        lines += [f"- `{arm}`: " + ", ".join(f"{k}={v}" for k, v in loss.items())
                  for arm, loss in losses.items()]  # fmt: skip
    lines += [
        "",
        f"Load average at the end: {doc.get('loadavg', '-')}. Times are indicative only: the "
        "machine may be shared (compare arms as ratios within one run).",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    import sys
    import tempfile

    import torch

    from resnet_pl.bench.report import cpu_flags, machine_info, versions, write_json, write_text

    args = parse_args(argv)
    given = sys.argv[1:] if argv is None else argv
    if args.merge:
        return merge(
            args.merge, args.out_dir, "python -m benchmarks.distillation " + " ".join(given)
        )
    resolve(args)
    arch, kwargs = default_student()
    if args.student is None:
        args.student = arch
        if args.student_kwargs is None:
            args.student_kwargs = json.dumps(kwargs)
    args.student_kwargs_dict = json.loads(args.student_kwargs) if args.student_kwargs else {}
    subsets = (args.train_subset, args.val_subset, args.test_subset)
    smoke = args.max_steps > 0 or any(n is not None for n in subsets)
    kind = "smoke" if smoke else "full"
    stamp = time.strftime("%Y%m%d-%H%M%S")

    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in args.seeds:
            for arm in args.arms:
                row = train_one(args, arm, seed, Path(tmp))
                print(json.dumps(row), flush=True)
                runs.append(row)
    from resnet_pl import create_model

    student = create_model(args.student, in_chans=1, **args.student_kwargs_dict)
    skip = ("out_dir", "student_kwargs_dict", "recipe")
    settings = {k: v for k, v in vars(args).items() if k not in skip}
    settings["student_kwargs"] = args.student_kwargs_dict
    settings["config"] = None if args.config is None else str(args.config)
    settings["recipe"] = args.recipe
    doc = {
        "benchmark": "distillation",
        "kind": kind,
        "time": stamp,
        "command": "python -m benchmarks.distillation " + " ".join(given),
        "machine": machine_info(),
        "cpu_flags": cpu_flags(),
        "loadavg": [round(v, 2) for v in os.getloadavg()],
        "torch_threads": torch.get_num_threads(),
        "versions": versions(),
        "settings": settings,
        "student_params": sum(p.numel() for p in student.parameters()),
        "teachers": teacher_top1(args),
        "runs": runs,
        "summary": summarise(runs),
    }
    args.out_dir.mkdir(parents=True, exist_ok=True)
    base = args.out_dir / f"distillation-{kind}-{stamp}"
    write_json(doc, [base.with_suffix(".json")])
    write_text(base.with_suffix(".md"), markdown(doc))
    print(f"wrote {base}.json and {base}.md")
    return 0


def merge(paths: list[Path], out_dir: Path, command: str) -> int:
    """One results file from several of the same settings (arms or seeds split over jobs run
    at the same time): the runs concatenated and summarised again; the first file's settings
    and teachers, every file's name and load average kept."""
    from benchmarks.report import write_json, write_text

    docs = [json.loads(Path(p).read_text()) for p in paths]
    first = docs[0]
    keep = ("student", "student_kwargs", "teacher", "epochs", "max_steps", "train_subset",
            "test_subset", "config", "alpha", "temperature", "ls_temperature")  # fmt: skip
    for p, d in zip(paths, docs, strict=True):
        differ = [k for k in keep if d["settings"].get(k) != first["settings"].get(k)]
        if differ:
            raise SystemExit(f"--merge: {p} differs from {paths[0]} in {', '.join(differ)}")
    runs = [r for d in docs for r in d["runs"]]
    # The most complete teacher table (files written before the ensemble row was added lack it).
    teachers = max((d["teachers"] for d in docs), key=len)
    doc = {**first, "command": command, "runs": runs, "summary": summarise(runs),
           "teachers": teachers,
           "merged_from": [{"file": Path(p).name, "command": d["command"],
                            "loadavg": d.get("loadavg")} for p, d in zip(paths, docs, strict=True)],
           "time": time.strftime("%Y%m%d-%H%M%S")}  # fmt: skip
    doc["settings"] = {**first["settings"], "arms": sorted({r["arm"] for r in runs})}
    doc["settings"]["seeds"] = sorted({r["seed"] for r in runs})
    out_dir.mkdir(parents=True, exist_ok=True)
    base = out_dir / f"distillation-{doc['kind']}-merged-{doc['time']}"
    write_json(doc, [base.with_suffix(".json")])
    write_text(base.with_suffix(".md"), markdown(doc))
    print(f"wrote {base}.json and {base}.md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
