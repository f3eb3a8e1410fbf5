"""The benchmark engine: suites (data, ``suites.json``), the plan they expand to, the
measurements (ours and torchvision's twin, interleaved), the numbers derived from them and the
reports. Run it with ``resnet-pl benchmark --suite quick`` (``--help`` lists every option).

- :mod:`resnet_pl.bench.plan`: suites -> the cases to measure (no torch work: ``--dry-run``
  shows a GPU suite's plan on a CPU machine); :func:`~resnet_pl.bench.plan.load_suites` reads a
  suites file;
- :mod:`resnet_pl.bench.measure`: builds the models and times them (eager, ``torch.compile``,
  CUDA graphs, ONNX Runtime), ours and torchvision's interleaved;
- :mod:`resnet_pl.bench.deploy`: the rows of the files ``resnet-pl export`` writes, in ONNX
  Runtime and OpenVINO, with top-1 on real images;
- :mod:`resnet_pl.bench.dense`: the dense-prediction rows (dilated backbones, DeepLabV3);
- :mod:`resnet_pl.bench.aggregate`: pure functions from raw timings to the reported numbers;
- :mod:`resnet_pl.bench.report`: machine description, JSON, markdown and plots;
- :mod:`resnet_pl.bench.run`: the suite runner (the command line).

Its layer sits above training and deployment (it times exported files and dense models) and
below the command line. Studies that train (time to accuracy, distillation) stay in the
repository's ``benchmarks/`` folder, with the committed results.
"""
