"""The one version source of resnet-pl.

``pyproject.toml`` reads it (``[tool.setuptools.dynamic]``), ``resnet_pl.__version__`` is it, and
every record, ONNX file and benchmark that stores a version imports :data:`__version__` from
here (never ``importlib.metadata``, which reports a stale value for an out-of-date editable
install and nothing at all for a source checkout).
"""

__version__ = "0.1.0"
