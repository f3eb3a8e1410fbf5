"""Moved to :mod:`resnet_pl.bench.aggregate`: the benchmark engine ships with the package, so
``resnet-pl benchmark`` works from an installed wheel. This name stays for the studies and
scripts of this folder that import it: it *is* that module (one object, so patching either
patches both)."""

import sys

from resnet_pl.bench import aggregate as _module

sys.modules[__name__] = _module
