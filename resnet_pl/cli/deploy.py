"""``resnet-pl export`` and ``resnet-pl classify``.

``main(["export", ...])`` / ``main(["classify", ...])``: ``argv[0]`` is the subcommand; the
``resnet-pl`` entry point routes those two words here. Returns the exit status: 0 success,
1 some files could not be classified / the export failed verification, 2 bad usage (unknown
model, impossible option, missing file). Errors are one line on stderr, never a traceback.
"""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Iterator, Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import IO, Any

import torch
from jsonargparse import ArgumentParser, Namespace

from resnet_pl.cli.util import accept_dashed, new_parser, parse
from resnet_pl.data import IMAGE_SUFFIXES
from resnet_pl.errors import ResNetPLError
from resnet_pl.fileio import WriteError, atomic_open, write_text
from resnet_pl.limits import csv_cell, printable

_USAGE_ERRORS: tuple[type[BaseException], ...] = (
    ResNetPLError,  # ours (ExportOptionError, CheckpointError, UnknownModelError, sha256 ...)
    ValueError,
    OSError,  # a missing input, an unwritable --output / --report-json
    ImportError,
    KeyError,
)


def _input_size(text: str | None) -> tuple[int, ...] | None:
    if text is None:
        return None
    parts = text.replace("x", ",").replace(" ", ",").split(",")
    try:
        size = tuple(int(p) for p in parts if p)
    except ValueError:
        raise ValueError(f"--input_size: expected C,H,W such as 1,28,28, got {text!r}") from None
    if len(size) not in (3, 4):
        raise ValueError(f"--input_size: expected C,H,W such as 1,28,28, got {text!r}")
    return size


def _metadata(items: Sequence[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for text in items:
        key, sep, value = text.partition("=")
        if not sep or not key:
            raise ValueError(f"--metadata: expected KEY=VALUE, got {text!r}")
        out[key] = value
    return out


EXPORT_HELP = (
    "Export to ONNX: BatchNorm folded, checked in ONNX Runtime against PyTorch, metadata "
    "(classes, normalisation, provenance) stored in the file."
)
CLASSIFY_HELP = (
    "Classify image files (folders are searched recursively). Unreadable files get an error "
    "row; the exit status is 1 if there were any."
)


def build_parsers() -> tuple[ArgumentParser, dict[str, ArgumentParser]]:
    """The ``export`` / ``classify`` parser and the two subcommand parsers, by name."""
    parser = new_parser("resnet-pl", __doc__.splitlines()[0])
    ex = new_parser("resnet-pl export", EXPORT_HELP)
    ex.add_argument(
        "model", type=str, help="registry name (resnet20.fashion_mnist) or checkpoint (.ckpt)"
    )
    ex.add_argument(
        "-o",
        "--output",
        type=Path | None,
        default=None,
        help="output .onnx (default: <model>.onnx)",
    )
    ex.add_argument(
        "--input_size", type=str | None, default=None, help="C,H,W (default: the model's cfg)"
    )
    ex.add_argument(
        "--opset", type=int | None, default=None, help="ONNX opset, 13..23 (default 18)"
    )
    ex.add_argument(
        "--static_batch", action="store_true", help="fixed batch axis (default dynamic)"
    )
    ex.add_argument("--dynamic_hw", action="store_true", help="symbolic height/width too")
    ex.add_argument(
        "--no_fold_bn", action="store_true", help="skip folding BatchNorm into convolutions"
    )
    ex.add_argument("--dtype", type=str, default="fp32", help="fp32 (default), fp16 or int8")
    ex.add_argument(
        "--exporter",
        type=str,
        default="auto",
        choices=["auto", "dynamo", "torchscript"],
        help="torch.export-based (dynamo), TorchScript, or dynamo with a TorchScript fallback",
    )
    ex.add_argument(
        "--calibration_data",
        type=str | None,
        default=None,
        help="int8 calibration images: 'fashion_mnist' (train split) or a folder",
    )
    ex.add_argument(
        "--calibration_samples", type=int, default=256, help="int8 calibration images used"
    )
    ex.add_argument(
        "--verify_data",
        type=str | None,
        default=None,
        help="real images to verify on: 'fashion_mnist' (test split) or a folder "
        "(default: Fashion-MNIST for models trained on it)",
    )
    ex.add_argument("--verify_samples", type=int, default=256, help="real images verified on")
    ex.add_argument(
        "--tta",
        type=str | None,
        default=None,
        help="test-time augmentation views in the graph: none, flip, shift, flip_shift "
        "(default: what the checkpoint was evaluated with)",
    )
    ex.add_argument(
        "--benchmark_runs",
        type=int | None,
        default=None,
        help="deprecated, ignored: timing moved to `python -m benchmarks.run --suite deploy`",
    )
    ex.add_argument("--no_verify", action="store_true", help="skip the full verification")
    ex.add_argument(
        "--pretrained", action="store_true", help="load the default weights of a bare arch name"
    )
    ex.add_argument(
        "--metadata",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra metadata stored in the file (repeatable)",
    )
    ex.add_argument(
        "--report_json", type=Path | None, default=None, help="also write the report as JSON here"
    )
    ex.add_argument("--threads", type=int | None, default=None, help="PyTorch CPU threads")

    cl = new_parser("resnet-pl classify", CLASSIFY_HELP)
    cl.add_argument("inputs", nargs="+", type=Path, help="image files or folders")
    cl.add_argument(
        "--model", type=str, required=True, help="registry name, checkpoint (.ckpt) or .onnx"
    )
    cl.add_argument("--top_k", type=int, default=5, help="labels reported per image")
    cl.add_argument(
        "--output", type=Path | None, default=None, help="write predictions as CSV (default stdout)"
    )
    cl.add_argument("--batch_size", type=int, default=32, help="images per forward pass")
    cl.add_argument("--device", type=str, default="cpu", help="cpu or cuda")
    cl.add_argument(
        "--backend",
        type=str,
        default="auto",
        choices=["auto", "torch", "onnx"],
        help="auto: ONNX Runtime for .onnx files, PyTorch otherwise",
    )
    cl.add_argument(
        "--runtime",
        type=str,
        default="onnxruntime",
        choices=["onnxruntime", "openvino"],
        help="what runs an .onnx file: ONNX Runtime (default) or OpenVINO (pip install "
        "'resnet-pl[openvino]'); docs/deploy.md says which was faster here",
    )
    cl.add_argument(
        "--max_pixels",
        type=int | None,
        default=None,
        help="refuse larger images (decompression-bomb guard; default PIL's ~89M)",
    )
    cl.add_argument("--threads", type=int | None, default=None, help="CPU threads for the backend")
    cl.add_argument("--no_progress", action="store_true", help="no progress bar")

    sub = parser.add_subcommands(dest="command", required=True, metavar="COMMAND")
    sub.add_subcommand("export", ex, help="export a model to a verified ONNX file")
    sub.add_subcommand("classify", cl, help="classify image files with a model or an ONNX file")
    return parser, {"export": ex, "classify": cl}


def _err(message: str) -> None:
    first, *rest = str(message).splitlines() or [""]
    # Escaped: a file or class name must not move the cursor or recolour the terminal.
    print(f"error: {printable(first, 4000)}", file=sys.stderr)
    for line in rest:
        print(printable(line, 4000), file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    """Run ``export`` or ``classify`` (``argv[0]``); returns the exit status."""
    parser, subs = build_parsers()
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in subs:
        argv = [argv[0], *accept_dashed(argv[1:], subs[argv[0]], f"resnet-pl {argv[0]}")]
    ns = parse(parser, argv, f"resnet-pl {argv[0]}" if argv and argv[0] in subs else "resnet-pl")
    if isinstance(ns, int):
        return ns
    args = ns[ns.command]
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        if ns.command == "export":
            return _export(args)
        return _classify(args)
    except WriteError as e:  # disk full / no permission: the output was not (partly) written
        print(f"resnet-pl: error: {printable(e, 4000)}", file=sys.stderr)
        return 1
    except _USAGE_ERRORS as e:
        message = e.args[0] if isinstance(e, KeyError) and e.args else e
        _err(str(message))
        return 2


# --------------------------------------------------------------------------------------------
# export
# --------------------------------------------------------------------------------------------
def _default_output(model: str) -> Path:
    stem = Path(model).stem if model.endswith((".ckpt", ".pt", ".pth")) else model
    return Path(stem.replace("/", "_") + ".onnx")


def _export(args: Namespace) -> int:
    from resnet_pl.deploy.onnx_export import ExportError, ExportVerificationError, export_onnx

    output = args.output or _default_output(args.model)
    if args.benchmark_runs is not None:
        print(
            "warning: --benchmark_runs is deprecated and ignored; compare runtimes with "
            "`python -m benchmarks.run --suite deploy`",
            file=sys.stderr,
        )
    try:
        report = export_onnx(
            args.model,
            output,
            input_shape=_input_size(args.input_size),
            opset=args.opset,
            dynamic_batch=not args.static_batch,
            dynamic_hw=args.dynamic_hw,
            fold_batchnorm=not args.no_fold_bn,
            dtype=args.dtype,
            verify=not args.no_verify,
            calibration_data=args.calibration_data,
            metadata=_metadata(args.metadata) or None,
            exporter=args.exporter,
            verify_data=args.verify_data,
            pretrained=True if args.pretrained else None,
            calibration_samples=args.calibration_samples,
            verify_samples=args.verify_samples,
            tta=args.tta,
        )
    except ExportVerificationError as e:
        _err(str(e))
        _write_report(args.report_json, e.report.to_dict())
        return 1
    except ExportError as e:
        _err(str(e))
        return 1
    print(report)
    _write_report(args.report_json, report.to_dict())
    return 0


def _write_report(path: Path | None, data: dict[str, Any]) -> None:
    if path is not None:
        write_text(path, json.dumps(data, indent=2, default=str) + "\n")


# --------------------------------------------------------------------------------------------
# classify
# --------------------------------------------------------------------------------------------
def expand_inputs(inputs: Sequence[Path]) -> Iterator[Path]:
    """Files as given, folders searched recursively for image files (sorted; hidden files and
    folders skipped). A missing path is yielded as is and reported as unreadable."""
    for item in inputs:
        if item.is_dir():
            for f in sorted(item.rglob("*")):
                rel = f.relative_to(item).parts
                hidden = any(part.startswith(".") for part in rel)
                if f.is_file() and not hidden and f.suffix.lower() in IMAGE_SUFFIXES:
                    yield f
        else:
            yield item


_FIELDS = ["path", "label", "index", "prob", "top_k_labels", "top_k_probs", "error"]


def _classify(args: Namespace) -> int:
    from resnet_pl.deploy.runtime import open_classifier

    if args.top_k < 1:
        raise ValueError(f"--top_k must be >= 1, got {args.top_k}")
    if args.batch_size < 1:
        raise ValueError(f"--batch_size must be >= 1, got {args.batch_size}")
    files = list(expand_inputs(args.inputs))
    if not files:
        raise ValueError(f"no image files found in {', '.join(map(str, args.inputs))}")
    clf = open_classifier(
        args.model,
        backend=args.backend,
        device=args.device,
        threads=args.threads,
        runtime=args.runtime,
        pretrained=True
        if not str(args.model).endswith((".onnx", ".ckpt", ".pt", ".pth"))
        else None,
    )
    for note in getattr(clf, "warnings", []):
        print(f"warning: {printable(note, 4000)}", file=sys.stderr)

    with ExitStack() as stack:
        # --output is written to a temporary file renamed into place at the end: a full disk,
        # an error or Ctrl-C leaves any previous file as it was and no partial one.
        out: IO[str] = (
            stack.enter_context(atomic_open(args.output, "w", newline="", encoding="utf-8"))
            if args.output
            else sys.stdout
        )
        n_bad = _classify_into(out, clf, files, args)
    ok = len(files) - n_bad
    summary = f"classified {ok} of {len(files)} files with {clf.backend} backend"
    if args.output:
        summary += f"; predictions in {args.output}"
    if n_bad:
        summary += f"; {n_bad} could not be read (see the error column)"
    print(summary, file=sys.stderr)
    return 1 if n_bad else 0


def _classify_into(out: IO[str], clf: Any, files: list[Path], args: Namespace) -> int:
    """Write one CSV row per file to ``out``; returns the number of unreadable files."""
    from resnet_pl.deploy.runtime import FileResult

    writer = csv.DictWriter(out, fieldnames=_FIELDS)
    writer.writeheader()
    n_bad = 0
    progress, task = _progress(len(files), args)

    def record(result: FileResult) -> None:
        nonlocal n_bad
        p = result.prediction
        if result.error is not None:
            n_bad += 1
            # File names and messages are escaped: no raw newline, ANSI sequence or
            # undecodable byte reaches the terminal.
            print(f"error: {printable(result.path)}: {printable(result.error, 500)}",
                  file=sys.stderr)  # fmt: skip
        # Cells escaped against control characters and spreadsheet formulas (=, +, -, @).
        writer.writerow(
            {
                "path": csv_cell(result.path),
                "label": csv_cell(p.label) if p else "",
                "index": p.index if p else "",
                "prob": f"{p.prob:.6f}" if p else "",
                "top_k_labels": json.dumps([printable(v) for v in p.labels]) if p else "",
                "top_k_probs": json.dumps([round(v, 6) for v in p.probs]) if p else "",
                "error": csv_cell(result.error or ""),
            }
        )
        if progress is not None:
            progress.advance(task)

    try:
        if progress is not None:
            progress.start()
        for _ in clf.classify_files(
            files,
            top_k=args.top_k,
            batch_size=args.batch_size,
            max_pixels=args.max_pixels,
            on_file=record,
        ):
            pass
    finally:
        if progress is not None:
            progress.stop()
    return n_bad


def _progress(total: int, args: Namespace) -> tuple[Any, Any]:
    """A rich progress bar on stderr, for runs of more than one batch on a terminal."""
    if args.no_progress or total <= args.batch_size or not sys.stderr.isatty():
        return None, None
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    progress = Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        transient=True,
    )
    return progress, progress.add_task("classifying", total=total)


__all__ = ["build_parsers", "expand_inputs", "main"]
