"""``resnet-pl benchmark``: the throughput suites (``benchmark --suite quick``) and the
time-to-accuracy study (``benchmark time-to-accuracy``)."""

from __future__ import annotations

import sys


def main(argv: list[str]) -> int:
    try:
        if argv[:1] == ["time-to-accuracy"]:
            from benchmarks.time_to_accuracy import main as tta_main

            return int(tta_main(argv[1:]))
        from benchmarks.run import main as bench_main
    except ImportError:
        print(
            "resnet-pl benchmark needs the repository's benchmarks/ folder: run it from a "
            "clone, or use python -m benchmarks.run",
            file=sys.stderr,
        )
        return 2
    return int(bench_main(argv))
