"""Deployment: verified ONNX export, ONNX Runtime inference and the ``classify`` command.

``export_onnx`` needs the ``onnx`` extra (``pip install 'resnet-pl[onnx]'``); the heavy
imports happen only when it runs.
"""

from resnet_pl.data import (
    ImageLoadError,
    convert_mode,
    eval_transform,
    load_image,
    resolve_data_cfg,
)
from resnet_pl.data import eval_transform as transforms
from resnet_pl.deploy.fold import FoldResult, fold_batchnorm
from resnet_pl.deploy.metadata import read_metadata
from resnet_pl.deploy.onnx_export import (
    TOLERANCES,
    CheckResult,
    ExportError,
    ExportOptionError,
    ExportReport,
    ExportVerificationError,
    export_onnx,
)
from resnet_pl.deploy.source import CheckpointError, LoadedModel, load_checkpoint, load_model

__all__ = [
    "TOLERANCES",
    "CheckResult",
    "CheckpointError",
    "ExportError",
    "ExportOptionError",
    "ExportReport",
    "ExportVerificationError",
    "FoldResult",
    "ImageLoadError",
    "LoadedModel",
    "convert_mode",
    "eval_transform",
    "export_onnx",
    "fold_batchnorm",
    "load_checkpoint",
    "load_image",
    "load_model",
    "read_metadata",
    "resolve_data_cfg",
    "transforms",
]
