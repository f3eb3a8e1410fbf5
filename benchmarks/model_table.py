"""Print a markdown table of every registered architecture: parameters and forward cost.

Numbers come from :func:`resnet_pl.model_info`, which builds each model on the meta device and
counts FLOPs with ``torch.utils.flop_counter`` (convolutions and matmuls; 1 MAC = 2 FLOPs), so
the whole table takes seconds and no memory. Run::

    python -m benchmarks.model_table            # every architecture at its default input size
    python -m benchmarks.model_table resnet*    # a shell pattern, as for list_models()
"""

from __future__ import annotations

import argparse
import sys

from resnet_pl import list_models, model_info
from resnet_pl.models import get_default_cfg


def markdown_table(pattern: str | None = None) -> str:
    """The table as markdown, one row per architecture, ImageNet family first."""
    names = list_models(pattern)
    if not names:
        raise ValueError(f"no architecture matches {pattern!r}; see resnet_pl.list_models()")
    cfgs = {n: get_default_cfg(n) for n in names}
    infos = {n: model_info(n) for n in names}
    names.sort(key=lambda n: (cfgs[n]["family"] != "imagenet", infos[n].params))
    lines = [
        "| architecture | family | input | params (M) | GMACs | GFLOPs | paper |",
        "|---|---|---|---:|---:|---:|---|",
    ]
    for name in names:
        info, family, paper = infos[name], cfgs[name]["family"], cfgs[name]["paper"]
        c, h, w = info.input_size
        lines.append(
            f"| {name} | {family} | {c}x{h}x{w} | {info.params / 1e6:.2f} "
            f"| {info.gmacs:.4g} | {info.gflops:.4g} | [{paper.rsplit('/', 1)[-1]}]({paper}) |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("pattern", nargs="?", default=None, help="shell pattern, e.g. 'wrn_*'")
    args = parser.parse_args(argv)
    try:
        print(markdown_table(args.pattern))
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
