"""The metadata an exported ONNX file carries, and how it is written and read.

One place for the format (``metadata_props``: strings as they are, everything else JSON, with
``json_keys`` naming which) and for what goes in it (provenance: :func:`base_metadata`; the
whole record of one export: :func:`export_metadata`). Used by the export pipeline
(:mod:`resnet_pl.deploy.onnx_export`), the runtimes that read the files back
(:mod:`resnet_pl.deploy.runtime`) and anyone with an exported file
(:func:`read_metadata`); importing it does not import the exporters or ``onnx``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from resnet_pl.version import __version__

# The graph's input, and a classifier's one output (``features_only`` backbones name theirs
# after the stages); stored in the metadata too (``input_name``, ``output_names``).
INPUT_NAME, OUTPUT_NAME = "input", "logits"
# Keys of the ONNX metadata whose values are JSON (the rest are plain strings).
JSON_KEYS_KEY = "json_keys"
# Fields :func:`export_metadata` writes besides :func:`base_metadata`'s: a caller's extra
# ``metadata`` may not use them.
EXPORT_FIELDS = frozenset({"exporter", "opset", "dtype", "input_size", "mean", "std"})


def encode_metadata(meta: Mapping[str, Any]) -> dict[str, str]:
    """String metadata for ``metadata_props``: strings stay as they are, everything else is
    JSON, and the key ``json_keys`` lists which is which (so :func:`decode_metadata` can undo
    it and other tools still read plain strings)."""
    out: dict[str, str] = {}
    json_keys: list[str] = []
    for key, value in meta.items():
        if value is None:
            continue
        if isinstance(value, str):
            out[key] = value
        else:
            out[key] = json.dumps(value)
            json_keys.append(key)
    out[JSON_KEYS_KEY] = json.dumps(sorted(json_keys))
    return out


def decode_metadata(props: Mapping[str, str]) -> dict[str, Any]:
    """Inverse of :func:`encode_metadata`."""
    json_keys = set(json.loads(props.get(JSON_KEYS_KEY, "[]")))
    return {
        k: (json.loads(v) if k in json_keys else v) for k, v in props.items() if k != JSON_KEYS_KEY
    }


def read_metadata(path: str | Path) -> dict[str, Any]:
    """The metadata of an ONNX file written by :func:`resnet_pl.deploy.export_onnx`, parsed:
    ``class_names``, ``mean``, ``std``, ``input_size`` as lists, ``opset``/``num_classes`` as
    ints, booleans as booleans, strings (``arch``, ``exporter``, ``weights_sha256`` ...) as
    strings."""
    from resnet_pl.deploy.exporters import require_onnx

    onnx, _ = require_onnx()
    model = onnx.load(str(path), load_external_data=False)
    return decode_metadata({p.key: p.value for p in model.metadata_props})


def set_metadata(model: Any, meta: Mapping[str, Any]) -> None:
    """Replace the ``metadata_props`` of an in-memory ``onnx.ModelProto``."""
    del model.metadata_props[:]
    for key, value in encode_metadata(meta).items():
        prop = model.metadata_props.add()
        prop.key, prop.value = key, value


def base_metadata(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """The provenance part of the ONNX metadata: arch, classes, weights and versions."""
    num_classes = cfg.get("num_classes")
    names = cfg.get("class_names")
    if names is None and isinstance(num_classes, int) and num_classes > 0:
        names = [str(i) for i in range(num_classes)]
    return {
        "arch": str(cfg.get("arch") or cfg.get("architecture") or "unknown"),
        "num_classes": num_classes,
        "class_names": list(names) if names is not None else None,
        "dataset": cfg.get("dataset"),
        "source_weights": cfg.get("source_weights"),
        "weights_sha256": cfg.get("weights_sha256"),
        "resnet_pl_version": __version__,
        "torch_version": torch.__version__,
    }


def reserved_keys(base: Mapping[str, Any]) -> set[str]:
    """Keys a caller's extra metadata may not use: resnet-pl's own fields."""
    return set(base) | EXPORT_FIELDS | {JSON_KEYS_KEY}


def export_metadata(
    base: Mapping[str, Any],
    cfg: Mapping[str, Any],
    *,
    exporter: str,
    opset: int,
    dtype: str,
    input_size: Sequence[int],
    output_names: Sequence[str],
    features_only: bool,
    feature_info: Any,
    tta: str,
    dynamic_batch: bool,
    dynamic_hw: bool,
    batchnorm_folded: int,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The full metadata of one exported file: provenance, how it was exported, and the
    preprocessing a deployment must apply (input size, mean/std, interpolation, crop)."""
    return {
        **base,
        "exporter": exporter,
        "opset": opset,
        "dtype": dtype,
        "input_name": INPUT_NAME,
        "output_name": output_names[0],
        "output_names": list(output_names),
        "features_only": features_only,
        "feature_info": feature_info,
        "tta": tta,
        "input_size": list(input_size),
        "mean": list(cfg["mean"]),
        "std": list(cfg["std"]),
        "interpolation": cfg["interpolation"],
        "crop_pct": cfg["crop_pct"],
        "dynamic_batch": dynamic_batch,
        "dynamic_hw": dynamic_hw,
        "batchnorm_folded": batchnorm_folded,
        **dict(extra or {}),
    }


__all__ = [
    "INPUT_NAME",
    "JSON_KEYS_KEY",
    "OUTPUT_NAME",
    "base_metadata",
    "decode_metadata",
    "encode_metadata",
    "export_metadata",
    "read_metadata",
    "reserved_keys",
    "set_metadata",
]
