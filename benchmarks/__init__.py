"""The repository's benchmarks: suites' committed results and the studies.

The measuring and reporting engine ships with the package, in :mod:`resnet_pl.bench` (suites as
data in ``resnet_pl/bench/suites.json``, planning, measuring, aggregation, reports; run it with
``resnet-pl benchmark --suite quick``). This folder keeps what only a clone needs:

- ``results/``: the committed results of the suites and studies;
- the studies: :mod:`benchmarks.time_to_accuracy`, :mod:`benchmarks.distillation`,
  :mod:`benchmarks.loader_overhead`, :mod:`benchmarks.model_table`;
- ``python -m benchmarks.run``: the package's suite runner, writing to ``results/``;
- ``benchmarks/gpu_run.sh``: the GPU suite on a fresh CUDA machine in one command.

``benchmarks.plan``, ``.measure``, ``.aggregate``, ``.report``, ``.dense`` and ``.deploy`` are
the package's modules under their old names (for the studies and scripts that import them).
"""
