"""``python -m benchmarks.run --suite quick``: the suite runner of the package
(:mod:`resnet_pl.bench.run`, also ``resnet-pl benchmark``), writing to this folder's
``results/`` by default so that a clone's committed results stay where they were."""

from __future__ import annotations

import sys
from pathlib import Path

from resnet_pl.bench import run as _engine

RESULTS = Path(__file__).resolve().parent / "results"
PROG = "python -m benchmarks.run"


def main(argv: list[str] | None = None) -> int:
    """Run a benchmark suite (see ``python -m benchmarks.run --help``)."""
    return _engine.main(argv, prog=PROG, default_out=RESULTS)


if __name__ == "__main__":
    sys.exit(main())
