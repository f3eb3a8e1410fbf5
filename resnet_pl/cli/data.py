"""``resnet-pl data optimize SRC OUT``: an image folder or a built-in dataset as LitData shards.

``main(["optimize", ...])`` returns the exit status: 0 written, 1 a file could not be written,
2 bad input (a missing source, a bad file with ``--bad_files error``, an OUT that is not empty).
Errors are one line on stderr. See :func:`resnet_pl.data.shards.optimize_dataset`.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Sequence

from jsonargparse import ArgumentParser

from resnet_pl.cli.util import new_parser, parse
from resnet_pl.errors import ResNetPLError

PROG = "resnet-pl data"

OPTIMIZE_HELP = (
    "Write an image folder (train/, val/, test/ class folders) or a built-in dataset as LitData "
    "shards: the images' encoded bytes as they are, labels, and OUT/manifest.json (classes, "
    "counts per split, sources with sha256). Then: resnet-pl fit --data.dataset streaming "
    "--data.data_dir OUT (or the URL you copied OUT to)."
)


def build_parsers() -> tuple[ArgumentParser, dict[str, ArgumentParser]]:
    parser = new_parser(PROG, "Datasets for training at scale (LitData shards).")
    opt = new_parser(f"{PROG} optimize", OPTIMIZE_HELP)
    opt.add_argument("src", type=str, help="image folder, or fashion_mnist, cifar10, ...")
    opt.add_argument("out", type=str, help="new or empty local folder for the shards")
    opt.add_argument(
        "--num_workers", type=int | None, default=None, help="processes (default min(8, cpus))"
    )
    opt.add_argument(
        "--max_side",
        type=int | None,
        default=None,
        help="shrink images whose longer side exceeds this (re-encoded); default: bytes as-is",
    )
    opt.add_argument(
        "--bad_files",
        type=str,
        default="skip",
        choices=["skip", "error"],
        help="unreadable images and empty class folders: skip and list them, or stop",
    )
    opt.add_argument(
        "--val_fraction",
        type=float,
        default=0.1,
        help="held out for validation when SRC has no val split (drawn as --data.val_fraction)",
    )
    opt.add_argument("--seed", type=int, default=0, help="seed of that held-out draw")
    opt.add_argument(
        "--chunk_bytes", type=str, default="64MB", help="target chunk file size (LitData)"
    )
    opt.add_argument(
        "--compression", type=str | None, default=None, help="chunk compression, e.g. zstd"
    )
    opt.add_argument(
        "--data_dir",
        type=str | None,
        default=None,
        help="where a built-in dataset's files are (default: the usual places)",
    )
    opt.add_argument(
        "--overwrite", type=bool, default=False, help="replace shards written earlier in OUT"
    )
    opt.add_argument("--quiet", type=bool, default=False, help="no progress bars")
    sub = parser.add_subcommands(dest="command", required=True, metavar="COMMAND")
    sub.add_subcommand("optimize", opt, help="image folder or dataset -> LitData shards")
    return parser, {"optimize": opt}


def main(argv: Sequence[str] | None = None) -> int:
    parser, _ = build_parsers()
    ns = parse(parser, list(sys.argv[1:] if argv is None else argv), PROG)
    if isinstance(ns, int):
        return ns
    args = ns[str(ns.command)]
    from resnet_pl.fileio import WriteError

    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    try:
        from resnet_pl.data.shards import optimize_dataset

        manifest = optimize_dataset(
            args.src,
            args.out,
            num_workers=args.num_workers,
            max_side=args.max_side,
            bad_files=args.bad_files,
            val_fraction=args.val_fraction,
            seed=args.seed,
            chunk_bytes=args.chunk_bytes,
            compression=args.compression,
            data_dir=args.data_dir,
            overwrite=args.overwrite,
            progress=not args.quiet,
        )
    except WriteError as err:
        print(f"resnet-pl: error: {' '.join(str(err).split())}", file=sys.stderr)
        return 1
    except ResNetPLError as err:
        print(f"resnet-pl: error: {' '.join(str(err).split())}", file=sys.stderr)
        return 2
    except OSError as err:  # e.g. disk full while LitData writes a chunk
        print(f"resnet-pl: error: cannot write {args.out}: {err.strerror or err}", file=sys.stderr)
        return 1
    summary = {k: manifest[k] for k in ("counts", "classes", "seconds")}
    summary["skipped"] = len(manifest["skipped"])
    print(json.dumps({"out": args.out, **summary}))
    print(
        f"train with: resnet-pl fit --data.dataset streaming --data.data_dir {args.out}",
        file=sys.stderr,
    )
    return 0
