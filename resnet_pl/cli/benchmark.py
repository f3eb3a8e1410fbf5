"""``resnet-pl benchmark``: the throughput suites (``benchmark --suite quick``, the engine in
:mod:`resnet_pl.bench`, shipped with the package) and, in a clone, the time-to-accuracy study
(``benchmark time-to-accuracy``, in the repository's ``benchmarks/`` folder)."""

from __future__ import annotations

import sys


def main(argv: list[str]) -> int:
    if argv[:1] == ["time-to-accuracy"]:
        try:
            from benchmarks.time_to_accuracy import main as tta_main
        except ImportError:
            print(
                "resnet-pl benchmark time-to-accuracy is a study of the repository's benchmarks/ "
                "folder: run it from a clone (the suites, resnet-pl benchmark --suite ..., run "
                "anywhere)",
                file=sys.stderr,
            )
            return 2
        return int(tta_main(argv[1:]))
    from resnet_pl.bench.run import main as bench_main

    return int(bench_main(argv))
