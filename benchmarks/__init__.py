"""Throughput, latency and memory benchmarks for resnet-pl, each row beside torchvision's twin.

Run ``python -m benchmarks.run --help`` from the repository root. The package splits into:

- :mod:`benchmarks.plan`: suites -> the list of cases to measure (no torch work, so a GPU plan
  can be checked on a CPU machine with ``--dry-run``);
- :mod:`benchmarks.measure`: builds the models and times them (eager, ``torch.compile``, CUDA
  graphs, ONNX Runtime), ours and torchvision's interleaved;
- :mod:`benchmarks.aggregate`: pure functions from raw timings to the reported numbers
  (percentiles, images/s, TFLOP/s, MFU, ratios), tested with known timings;
- :mod:`benchmarks.report`: machine description, JSON, markdown and plots;
- :mod:`benchmarks.model_table`: the parameter/FLOP table of every architecture (no timing).

``benchmarks/gpu_run.sh`` runs the GPU suite on a fresh CUDA machine in one command.
"""
