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

from resnet_pl.cli.util import (
    OptionSpellingError,
    Renamed,
    accept_dashed,
    new_parser,
    parse,
)
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


def _old_input_size(text: str) -> str:
    """``--input_size 1,28,28`` (or ``1x28x28``) of earlier releases as ``--input_shape``'s
    value, ``[1,28,28]``."""
    parts = text.replace("x", ",").replace(" ", ",").split(",")
    try:
        size = [int(p) for p in parts if p]
    except ValueError:
        raise ValueError(f"expected C,H,W such as 1,28,28, got {text!r}") from None
    if len(size) not in (3, 4):
        raise ValueError(f"expected C,H,W such as 1,28,28, got {text!r}")
    return json.dumps(size)


def _old_metadata(text: str) -> list[str]:
    """``--metadata KEY=VALUE`` of earlier releases as ``--metadata.KEY VALUE``."""
    key, sep, value = text.partition("=")
    if not sep or not key or text.lstrip().startswith("{"):
        if text.lstrip().startswith("{"):  # already the new form: a JSON mapping
            return ["--metadata", text]
        raise ValueError(f"expected KEY=VALUE, got {text!r}")
    return [f"--metadata.{key}", value]


# ``resnet-pl export`` options of earlier releases that were named apart from export_onnx's
# parameters; accept_dashed rewrites them (with a deprecation line naming the new option).
EXPORT_RENAMED: dict[str, Renamed] = {
    "--static_batch": Renamed("--dynamic_batch", value="false"),
    "--no_fold_bn": Renamed("--fold_batchnorm", value="false"),
    "--no_verify": Renamed("--verify", value="false"),
    "--input_size": Renamed("--input_shape", convert=_old_input_size),
    "--metadata": Renamed("--metadata", convert=_old_metadata),
    "--benchmark_runs": Renamed(""),
}
# export_onnx parameters the command line sets otherwise: the model and output are positional /
# -o; the real-image sources are tensors in Python, names or folders here (added below).
EXPORT_NOT_FROM_SIGNATURE: set[str | int] = {
    "model_or_name_or_ckpt",
    "path",
    "benchmark_runs",
    "verify_data",
    "calibration_data",
}


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
    add_export_options(ex)
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
        renamed = EXPORT_RENAMED if argv[0] == "export" else None
        prog = f"resnet-pl {argv[0]}"
        try:
            argv = [argv[0], *accept_dashed(argv[1:], subs[argv[0]], prog, renamed)]
        except OptionSpellingError as e:
            print(f"{prog}: error: {e} ({prog} --help lists the options)", file=sys.stderr)
            return 2
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


def add_export_options(parser: ArgumentParser) -> None:
    """:func:`~resnet_pl.deploy.export_onnx`'s options on ``parser``: read from its signature
    and docstring (names, types, defaults, help), so the command and the function cannot
    drift apart. Only the real-image sources are declared here: in Python they may be tensors,
    on a command line they are a dataset name or a folder."""
    from resnet_pl.deploy.onnx_export import export_onnx

    parser.add_function_arguments(export_onnx, skip=EXPORT_NOT_FROM_SIGNATURE, as_group=False)
    _extend_help(
        parser,
        "input_shape",
        'On the command line a list: --input_shape "[1,28,28]".',
    )
    _extend_help(
        parser,
        "metadata",
        'On the command line: --metadata.owner ci (repeatable) or --metadata \'{"owner": "ci"}\'.',
    )
    parser.add_argument(
        "--calibration_data",
        type=str | None,
        default=None,
        help="int8 calibration images: 'fashion_mnist' (train split) or a folder",
    )
    parser.add_argument(
        "--verify_data",
        type=str | None,
        default=None,
        help="real images to verify on: 'fashion_mnist' (test split) or a folder "
        "(default: the test split of the dataset the model was trained on, when it is on "
        "this machine)",
    )


def _extend_help(parser: ArgumentParser, dest: str, text: str) -> None:
    for action in parser._actions:
        if action.dest == dest:
            action.help = f"{action.help or ''} {text}".strip()


def export_kwargs(args: Namespace) -> dict[str, Any]:
    """The keyword arguments of :func:`~resnet_pl.deploy.export_onnx` in a parsed ``export``
    namespace: every parameter of its signature the parser carries, by its own name."""
    import inspect

    from resnet_pl.deploy.onnx_export import export_onnx

    names = inspect.signature(export_onnx).parameters
    given = args.as_dict()
    return {k: given[k] for k in names if k in given and k not in ("model", "output")}


def _export(args: Namespace) -> int:
    from resnet_pl.deploy.onnx_export import ExportError, ExportVerificationError, export_onnx

    output = args.output or _default_output(args.model)
    try:
        report = export_onnx(args.model, output, **export_kwargs(args))
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


__all__ = ["add_export_options", "build_parsers", "export_kwargs", "expand_inputs", "main"]
