"""``resnet-pl hub``: list, inspect and verify pretrained weights; turn checkpoints into weights.

``main(argv)`` takes the arguments after ``hub`` and returns the exit status (0 success, 1 a
failed verification, 2 a usage or input error).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from jsonargparse import ArgumentParser, Namespace

from resnet_pl.cli.util import accept_dashed, new_parser, parse
from resnet_pl.errors import ResNetPLError
from resnet_pl.fileio import WriteError
from resnet_pl.hub.weights import (
    UnknownWeightsError,
    WeightsEntry,
    WeightsUnavailableError,
    WeightsVerificationError,
    default_tag,
    get_weights,
    list_pretrained,
)
from resnet_pl.limits import printable

DESCRIPTION = """\
Pretrained weights of resnet-pl: names are ARCH.TAG (resnet20.fashion_mnist, resnet50.tv2_in1k);
a bare ARCH means its default tag. Every weights file is checked against its full sha256 before
use (torchvision files: the published prefix, then the full hash recorded on first download).
Files come from the package, then the cache ($RESNET_PL_CACHE, default
<torch.hub.get_dir()>/resnet_pl), then the entry's URL or Hugging Face repo (not when
HF_HUB_OFFLINE=1 or RESNET_PL_OFFLINE=1).
"""

VERIFY_HELP = """\
Re-check a weights file's sha256 and re-measure its recorded top-1 accuracy with its own
preprocessing, in fp32. Fails (exit 1) unless |measured - recorded| <= tolerance:
0.1 percentage points on the same images as recorded (the full test split, or a recorded slice
such as --limit 2000), 0.3 for numbers published by a third party (torchvision), plus 3 binomial
standard errors when --limit picks a subset that was not recorded. Fashion-MNIST is read from
/usr/share/datasets/fashion-mnist (or --data_dir). ImageNet entries need --data_dir pointing at
an ImageNet validation folder (one sub-folder per class); without it only the hash is verified,
if the file is present (add --download to fetch it).
"""

PUBLISH_HELP = """\
Turn a resnet-pl Lightning checkpoint into a shipped weights entry ARCH.TAG: writes
<out_dir>/ARCH.TAG.safetensors (fp32 network weights only, no optimizer), ARCH.TAG.json (the
record read at import), ARCH.TAG.md (model card) and ARCH.TAG.metrics.csv (training log). The
record's top-1/top-5 are measured here on the dataset's real test split with the record's own
preprocessing, from the file as written. The recipe records the command, the run's saved
config.yaml, the commit and the checkpoint's epoch/step.
"""


def _fmt_metric(entry: WeightsEntry, key: str) -> str:
    value = (entry.pretrained_cfg.get("metrics") or {}).get(key)
    return f"{value:.2f}" if isinstance(value, int | float) else "-"


def _availability(entry: WeightsEntry) -> str:
    from resnet_pl.hub.files import local_path

    found = local_path(entry)
    if found is None:
        return "download"
    return "shipped" if found == entry.shipped_path else "cached"


def cmd_list(args: Namespace) -> int:
    names = list_pretrained(args.pattern)
    if not names:
        print(f"no weights match {args.pattern!r}" if args.pattern else "no weights registered")
        return 0 if not args.pattern else 1
    rows = [("name", "default", "dataset", "top1", "top5", "params(M)", "input", "where")]
    for name in names:
        e = get_weights(name)
        cfg = e.pretrained_cfg
        rows.append(
            (
                name,
                "*" if default_tag(e.arch) == e.tag else "",
                str(cfg.get("dataset")),
                _fmt_metric(e, "top1"),
                _fmt_metric(e, "top5"),
                f"{int(cfg.get('num_params') or 0) / 1e6:.2f}",
                "x".join(str(v) for v in cfg.get("input_size", ())),
                _availability(e),
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
    print("\ntop1/top5 in %; '*' marks the tag loaded by create_model(ARCH, pretrained=True)")
    return 0


def cmd_info(args: Namespace) -> int:
    from resnet_pl.hub.files import cache_path

    e = get_weights(args.name)
    cfg = e.cfg()
    categories = cfg.get("categories") or []
    if not args.all_categories and len(categories) > 12:
        cfg["categories"] = [*categories[:12], f"... ({len(categories)} in all)"]
    info: dict[str, Any] = {
        "name": e.name,
        "default": default_tag(e.arch) == e.tag,
        "arch": e.arch,
        "arch_kwargs": dict(e.arch_kwargs),
        "num_classes": e.num_classes,
        "in_chans": e.in_chans,
        "metrics": cfg.get("metrics"),
        "file": str(e.shipped_path) if e.shipped_path else None,
        "url": e.url,
        "hf_hub_id": e.hf_hub_id,
        "cache_path": str(cache_path(e)),
        "sha256": e.sha256
        or f"{e.sha256_prefix}... (published prefix; the full hash is "
        f"recorded beside the cached file on first download)",
        "available": _availability(e),
        "pretrained_cfg": cfg,
    }
    print(json.dumps(info, indent=2, default=str))
    return 0


def cmd_verify(args: Namespace) -> int:
    from resnet_pl.factory import create_model
    from resnet_pl.hub.evaluate import (
        IDX_DATASETS,
        IMAGENET_NAMES,
        TORCHVISION_DATASETS,
        DatasetUnavailableError,
        measure_folder,
        measure_small,
        tolerance,
    )
    from resnet_pl.hub.files import resolve_file

    e = get_weights(args.name)
    try:
        path = resolve_file(e, download=args.download, progress=True)
    except WeightsVerificationError as err:
        print(f"FAIL hash: {err}", file=sys.stderr)
        return 1
    except WeightsUnavailableError as err:
        print(f"cannot verify {e.name}: {err}. Pass --download to fetch it.", file=sys.stderr)
        return 1
    print(f"ok   hash: {path} matches sha256 {e.sha256 or f'{e.sha256_prefix}... (prefix)'}")
    cfg = e.cfg()
    recorded = cfg.get("metrics") or {}
    dataset = str(cfg.get("dataset"))
    if "top1" not in recorded:
        print(f"no recorded metrics for {e.name}: hash verified only")
        return 0
    if dataset in IMAGENET_NAMES and args.data_dir is None:
        print(
            f"{e.name} was measured on ImageNet-1k val (top1 {recorded['top1']}%): re-measuring "
            f"needs the ImageNet validation folder, pass --data_dir /path/to/imagenet/val "
            f"(one sub-folder per class). Hash verified only."
        )
        return 0
    model = create_model(e.name, pretrained=True).eval()
    # The headline figure (with the record's test-time augmentation, if any), then, when the
    # record has it, the plain forward that create_model / torch.hub.load users get.
    checks = [("accuracy", cfg, recorded)]
    plain = recorded.get("plain_forward")
    if isinstance(plain, dict) and "top1" in plain:
        checks.append(("accuracy (plain forward, no TTA)", {**cfg, "tta": None}, plain))
    failed = False
    for label, eval_cfg, reference_metrics in checks:
        try:
            if dataset in (*IDX_DATASETS, *TORCHVISION_DATASETS):
                got = measure_small(
                    model,
                    eval_cfg,
                    dataset,
                    split=str(recorded.get("split", "test")),
                    limit=args.limit,
                    data_dir=args.data_dir,
                    batch_size=args.batch_size,
                )
            elif dataset in IMAGENET_NAMES:
                got = measure_folder(
                    model, eval_cfg, Path(args.data_dir), limit=args.limit,
                    batch_size=args.batch_size,
                )  # fmt: skip
            else:
                print(f"no evaluation loader for dataset {dataset!r}: hash verified only")
                return 0
        except (DatasetUnavailableError, FileNotFoundError) as err:
            print(f"cannot re-measure {e.name}: {err}", file=sys.stderr)
            return 2
        ok, line = _compare(got, reference_metrics, dataset in IMAGENET_NAMES, tolerance)
        if ok:
            print(f"ok   {label}: {line}")
        else:
            print(f"FAIL {label}: {line}", file=sys.stderr)
            failed = True
    return 1 if failed else 0


def _compare(
    got: dict[str, Any], recorded: dict[str, Any], imagenet: bool, tolerance: Any
) -> tuple[bool, str]:
    """Whether a re-measured top-1 is within the tolerance of the recorded one (on the same
    images, or a recorded ``first_<n>`` slice of them), and the line that says so."""
    n = int(got["n"])
    reference = recorded
    same = n == int(recorded.get("n", -1))
    if not same and isinstance(recorded.get(f"first_{n}"), dict) and not imagenet:
        reference, same = {**recorded, **recorded[f"first_{n}"]}, True
    tol = tolerance(reference, n, same_images=same)
    diff = float(got["top1"]) - float(reference["top1"])
    scope = f"the recorded {n} images" if same else f"a {n}-image subset"
    line = (
        f"top1 {got['top1']:.2f}% on {scope} vs recorded {float(reference['top1']):.2f}% "
        f"(diff {diff:+.2f}, tolerance {tol:.2f}); top5 {got['top5']:.2f}%"
    )
    return abs(diff) <= tol, line


def cmd_export(args: Namespace) -> int:
    from resnet_pl.hub.publish import export_checkpoint

    folder = export_checkpoint(
        args.ckpt,
        args.out_dir,
        measure_metrics=not args.no_measure,
        command=args.recipe,
        commit=args.commit,
        data_dir=args.data_dir,
        limit=args.limit,
    )
    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    metrics = config["pretrained_cfg"].get("metrics") or {}
    print(f"wrote {folder}/config.json, model.safetensors, README.md")
    print(
        f"sha256 {config['sha256']}; metrics {json.dumps(metrics) if metrics else 'not measured'}"
    )
    return 0


def cmd_publish(args: Namespace) -> int:
    from resnet_pl.hub.publish import publish

    kwargs: dict[str, Any] = {}
    if args.out_dir is not None:
        kwargs["out_dir"] = args.out_dir
    entry = publish(
        args.ckpt,
        args.tag,
        metrics_csv=args.metrics_csv,
        command=args.recipe,
        commit=args.commit,
        config_yaml=args.config_yaml,
        default=not args.not_default,
        license=args.license,
        credit=args.credit,
        force=args.force,
        data_dir=args.data_dir,
        limit=args.limit,
        **kwargs,
    )
    metrics = entry.pretrained_cfg.get("metrics") or {}
    print(f"published {entry.name}: {entry.shipped_path} (sha256 {entry.sha256})")
    print(f"measured: {json.dumps(metrics)}")
    return 0


PROG = "resnet-pl hub"
Path_ = Path | None  # an optional path option


def build_parsers() -> tuple[ArgumentParser, dict[str, ArgumentParser]]:
    """The ``resnet-pl hub`` parser and its subcommand parsers, by name."""
    parser = new_parser(PROG, DESCRIPTION)
    subs: dict[str, ArgumentParser] = {}

    p = subs["list"] = new_parser(
        f"{PROG} list",
        "List weights names, their dataset, recorded top-1/top-5 (%), size, input and whether "
        "the file is shipped, cached or must be downloaded.",
    )
    p.add_argument(
        "pattern",
        nargs="?",
        type=str | None,
        default=None,
        help="shell pattern, e.g. 'resnet50.*' or '*fashion*'",
    )

    p = subs["info"] = new_parser(
        f"{PROG} info",
        "Print an entry's pretrained_cfg (preprocessing, classes, metrics, recipe, license, "
        "credit), file, cache path and sha256 as JSON.",
    )
    p.add_argument("name", type=str, help="ARCH.TAG or ARCH (default tag)")
    p.add_argument("--all_categories", action="store_true", help="print every class name")

    p = subs["verify"] = new_parser(f"{PROG} verify", VERIFY_HELP)
    p.add_argument("name", type=str, help="ARCH.TAG or ARCH (default tag)")
    p.add_argument(
        "--limit",
        type=int | None,
        default=None,
        help="measure on the first N test images (ImageNet: N evenly spaced images)",
    )
    p.add_argument(
        "--data_dir", type=Path_, default=None, help="dataset folder (ImageNet: the val folder)"
    )
    p.add_argument(
        "--download", action="store_true", help="download the file if neither shipped nor cached"
    )
    p.add_argument("--batch_size", type=int, default=256, help="evaluation batch size")

    p = subs["export-checkpoint"] = new_parser(
        f"{PROG} export-checkpoint",
        "Write DIR/config.json, DIR/model.safetensors (fp32 weights only) and DIR/README.md "
        "(model card) from a resnet-pl Lightning checkpoint. Load it with "
        "resnet_pl.ResNet.from_pretrained(DIR); upload it with huggingface-cli upload or "
        "model.push_to_hub(repo_id).",
    )
    p.add_argument("ckpt", type=Path, help="Lightning checkpoint (.ckpt)")
    p.add_argument("out_dir", type=Path, metavar="DIR", help="output folder (created)")
    p.add_argument(
        "--no_measure",
        action="store_true",
        help="do not measure test accuracy (for datasets without a local copy)",
    )
    _common_recipe_args(p)

    p = subs["publish"] = new_parser(f"{PROG} publish", PUBLISH_HELP)
    p.add_argument("ckpt", type=Path, help="Lightning checkpoint (.ckpt)")
    p.add_argument("--tag", type=str, required=True, help="weights tag, e.g. fashion_mnist")
    p.add_argument(
        "--out_dir",
        type=Path_,
        default=None,
        help="where to write (default: the package's resnet_pl/weights)",
    )
    p.add_argument(
        "--metrics_csv",
        type=Path_,
        default=None,
        help="training log to copy (default: the run's newest version_N/metrics.csv)",
    )
    p.add_argument(
        "--config_yaml",
        type=Path_,
        default=None,
        help="training config to record (default: the run's version_N/config.yaml)",
    )
    p.add_argument(
        "--not_default", action="store_true", help="do not make this the architecture's default tag"
    )
    p.add_argument("--license", type=str, default="BSD-3-Clause", help="licence of the weights")
    p.add_argument(
        "--credit", type=str | None, default=None, help="credit line (default: dataset authors)"
    )
    p.add_argument("--force", action="store_true", help="replace an existing entry")
    _common_recipe_args(p)

    sub = parser.add_subcommands(dest="command", required=True, metavar="COMMAND")
    helps = {
        "list": "list registered weights (with measured accuracy)",
        "info": "print one entry: cfg, metrics, file, sha256",
        "verify": "re-check the hash and re-measure the recorded accuracy",
        "export-checkpoint": "checkpoint -> Hugging Face Hub-style folder",
        "publish": "checkpoint -> shipped weights entry ARCH.TAG",
    }
    for name, sub_parser in subs.items():
        sub.add_subcommand(name, sub_parser, help=helps[name])
    return parser, subs


def _common_recipe_args(p: ArgumentParser) -> None:
    p.add_argument(
        "--recipe",
        type=str | None,
        default=None,
        help="the exact training command to record (default: resnet-pl fit --config "
        "<the run's saved config.yaml>)",
    )
    p.add_argument(
        "--commit",
        type=str | None,
        default=None,
        help="git commit the weights were trained at (default: current HEAD)",
    )
    p.add_argument(
        "--data_dir",
        type=Path_,
        default=None,
        help="dataset folder for measuring (default: the dataset's usual places)",
    )
    p.add_argument(
        "--limit",
        type=int | None,
        default=None,
        help="measure on the first N test images only (default: all)",
    )


COMMANDS = {
    "list": cmd_list,
    "info": cmd_info,
    "verify": cmd_verify,
    "export-checkpoint": cmd_export,
    "publish": cmd_publish,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``resnet-pl hub ARGV``; returns the exit status (0 success, 1 a failed
    verification, 2 a usage or input error)."""
    parser, subs = build_parsers()
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in subs:
        argv = [argv[0], *accept_dashed(argv[1:], subs[argv[0]], f"{PROG} {argv[0]}")]
    ns = parse(parser, argv, PROG)
    if isinstance(ns, int):
        return ns
    command = str(ns.command)
    try:
        return int(COMMANDS[command](ns[command]))
    except UnknownWeightsError as err:
        print(f"{PROG}: {_line(err)}", file=sys.stderr)
        return 2
    except WriteError as err:  # disk full / no permission; nothing partial was left
        print(f"resnet-pl: error: {_line(err)}", file=sys.stderr)
        return 1
    except WeightsVerificationError as err:
        print(f"{PROG} {command}: {_line(err)}", file=sys.stderr)
        return 1
    except (ResNetPLError, OSError, ValueError) as err:  # bad input, missing/unwritable files
        print(f"{PROG} {command}: {_line(err)}", file=sys.stderr)
        return 2


def _line(err: BaseException) -> str:
    """An error as one printable line: names from files (newlines, ANSI escapes, bytes that
    are not UTF-8) are escaped, never echoed raw to the terminal."""
    return printable(" ".join(str(err).split()), limit=4000)


if __name__ == "__main__":
    sys.exit(main())
