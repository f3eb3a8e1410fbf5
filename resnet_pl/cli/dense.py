"""``resnet-pl segment`` and ``resnet-pl detect``: predict image files with a segmentation or
detection checkpoint.

``segment`` writes ``OUT/masks/<stem>.png`` (palette PNGs whose pixel values are the class
numbers: read them as indices), ``detect`` writes ``OUT/detections.json`` (boxes ``[x0, y0,
x1, y1]`` in the image's pixels, scores, labels and names); ``--overlay`` adds
``OUT/overlays/<stem>.png``. Images are decoded by the one decoder and normalised as in
training, at their own size. A file that cannot be read is one line on stderr and the exit
status is 1; the others are still written.
"""

from __future__ import annotations

import sys
from pathlib import Path

from resnet_pl.cli.util import new_parser, parse
from resnet_pl.data import IMAGE_SUFFIXES
from resnet_pl.errors import ResNetPLError


def _files(inputs: list[Path]) -> list[Path]:
    files: list[Path] = []
    for item in inputs:
        if item.is_dir():
            files += sorted(p for p in item.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        else:
            files.append(item)
    return files


def main(argv: list[str]) -> int:
    """``argv[0]`` is ``segment`` or ``detect``; returns the exit status."""
    command, rest = argv[0], argv[1:]
    task = "segmentation" if command == "segment" else "detection"
    prog = f"resnet-pl {command}"
    what = "index-mask PNGs" if task == "segmentation" else "a JSON of boxes"
    parser = new_parser(prog, f"Predict image files with a {task} checkpoint: {what}.")
    parser.add_argument("inputs", nargs="+", type=Path, help="image files or folders")
    parser.add_argument("--model", type=str, required=True, help=f"a {task} checkpoint (.ckpt)")
    parser.add_argument("-o", "--output", type=Path, default=Path("predictions"),
                        help="output folder (default: predictions/)")  # fmt: skip
    parser.add_argument("--overlay", action="store_true", help="also write overlay images")
    parser.add_argument("--score_threshold", type=float, default=0.5,
                        help="boxes drawn on overlays (detections.json keeps all)")  # fmt: skip
    parser.add_argument("--max_pixels", type=int | None, default=None,
                        help="refuse larger images (decompression-bomb guard)")  # fmt: skip
    parser.add_argument("--threads", type=int | None, default=None, help="PyTorch CPU threads")
    ns = parse(parser, rest, prog)
    if isinstance(ns, int):
        return ns
    import torch

    from resnet_pl.data.errors import ImageLoadError
    from resnet_pl.deploy.dense import load_dense_checkpoint, predict_files, write_predictions

    if ns.threads:
        torch.set_num_threads(ns.threads)
    try:
        dense = load_dense_checkpoint(ns.model)
    except (ResNetPLError, OSError) as err:
        print(f"{prog}: error: {' '.join(str(err).split())}", file=sys.stderr)
        return 2
    if dense.task != task:
        other = "segment" if dense.task == "segmentation" else "detect"
        print(f"{prog}: error: {ns.model} is a {dense.task} checkpoint; use resnet-pl {other}",
              file=sys.stderr)  # fmt: skip
        return 2
    files = _files(list(ns.inputs))
    if not files:
        print(f"{prog}: error: no image files in {[str(p) for p in ns.inputs]}", file=sys.stderr)
        return 2
    results, failed = [], 0
    for file in files:
        try:
            results += predict_files(dense, [file], ns.max_pixels)
        except ImageLoadError as err:
            failed += 1
            print(f"{prog}: {file}: {' '.join(str(err).split())}", file=sys.stderr)
    try:
        written = write_predictions(dense, results, ns.output, overlay=ns.overlay,
                                    score_threshold=ns.score_threshold)  # fmt: skip
    except OSError as err:
        print(f"{prog}: error: cannot write {ns.output}: {err.strerror or err}", file=sys.stderr)
        return 1
    print(f"{len(results)} images -> {ns.output} ({len(written)} files)"
          + (f"; {failed} unreadable" if failed else ""))  # fmt: skip
    return 1 if failed else 0
