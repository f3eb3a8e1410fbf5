"""Turn what a user names (a module, a registry name, a Lightning checkpoint) into an eval-mode
model plus the config that says how to feed it and how to label its outputs.

Checkpoints are read by the one checkpoint reader, :func:`resnet_pl.hub.checkpoint.read_checkpoint`
(``torch.load(weights_only=True)``: never unpickling arbitrary objects) and rebuilt from the
registry, so exporting or classifying does not import Lightning.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

import resnet_pl
from resnet_pl.factory import create_model
from resnet_pl.hub.checkpoint import CheckpointError, read_checkpoint
from resnet_pl.hub.files import sha256_file
from resnet_pl.models.registry import split_name

ModelSource = nn.Module | str | Path
CHECKPOINT_SUFFIXES = (".ckpt", ".pt", ".pth")
_WEIGHTS_SOURCE_KEYS = ("source", "url", "hf_hub_id", "file", "filename")


@dataclass
class LoadedModel:
    """A model in eval mode and its resolved config (``arch``, ``input_size``, ``mean``,
    ``std``, ``class_names``, ``interpolation``, ``crop_pct``, ``source_weights``,
    ``weights_sha256`` ... whatever is known)."""

    model: nn.Module
    cfg: dict[str, Any]
    description: str
    warnings: list[str] = field(default_factory=list)


def is_checkpoint_path(source: str | Path) -> bool:
    return str(source).endswith(CHECKPOINT_SUFFIXES)


def _cfg_from_model(model: nn.Module) -> dict[str, Any]:
    cfg = dict(getattr(model, "pretrained_cfg", None) or {})
    cfg.setdefault("architecture", type(model).__name__)
    if "in_chans" not in cfg and hasattr(model, "in_chans"):
        cfg["in_chans"] = int(getattr(model, "in_chans"))  # noqa: B009 (typed as Module attr)
    if cfg.get("num_classes") is None and hasattr(model, "num_classes"):
        cfg["num_classes"] = int(getattr(model, "num_classes"))  # noqa: B009
    # The weights hub calls the class list "categories".
    for key in ("categories", "label_names"):
        if cfg.get("class_names") is None and cfg.get(key) is not None:
            cfg["class_names"] = list(cfg[key])
    if cfg.get("source_weights") is None:
        for key in _WEIGHTS_SOURCE_KEYS:
            if cfg.get(key):
                cfg["source_weights"] = str(cfg[key])
                break
    if cfg.get("weights_sha256") is None and cfg.get("sha256"):
        cfg["weights_sha256"] = str(cfg["sha256"])
    return cfg


def load_checkpoint(path: str | Path) -> LoadedModel:
    """Rebuild the network of a resnet-pl Lightning checkpoint (read by the one checkpoint
    reader, :func:`resnet_pl.hub.checkpoint.read_checkpoint`), loaded strictly, in eval mode."""
    ck = read_checkpoint(path)
    model = create_model(
        ck.arch, num_classes=ck.num_classes, in_chans=ck.in_chans, **ck.arch_kwargs
    )
    try:
        model.load_state_dict(ck.state, strict=True)
    except RuntimeError as e:
        raise CheckpointError(
            f"{ck.path}: weights do not match arch={ck.hparams['arch']!r} with its saved "
            f"options: {str(e).splitlines()[0]}"
        ) from None
    model.eval()
    cfg = _cfg_from_model(model)
    hp = ck.hparams
    for key in ("class_names", "mean", "std", "input_size", "crop_pct", "dataset", "tta"):
        if hp.get(key) is not None:
            value = hp[key]
            cfg[key] = list(value) if isinstance(value, tuple | list) else value
    cfg["arch"] = hp["arch"]
    cfg["source_weights"] = ck.path.name
    cfg["weights_sha256"] = sha256_file(ck.path)
    return LoadedModel(model, cfg, f"checkpoint {ck.path}")


def load_model(source: ModelSource, *, pretrained: bool | None = None) -> LoadedModel:
    """An eval-mode model and its config from ``source``.

    Args:
        source: an ``nn.Module`` (used as is; its ``pretrained_cfg`` is read when present), a
            registry name (``"resnet20"``, ``"resnet20.fashion_mnist"``) or a checkpoint path
            (``*.ckpt``, ``*.pt``, ``*.pth``).
        pretrained: for names: load weights. Default: only when the name carries a weights tag
            (``arch.tag``); a bare architecture name gives random weights, with a warning.
    """
    if isinstance(source, nn.Module):
        return LoadedModel(source.eval(), _cfg_from_model(source), type(source).__name__)
    text = str(source)
    if text.endswith(".onnx"):
        raise ValueError(f"{text} is already an ONNX file; nothing to export from it")
    if isinstance(source, Path) or is_checkpoint_path(text) or Path(text).is_file():
        return load_checkpoint(text)
    arch, tag = split_name(text)
    use_weights = tag is not None if pretrained is None else pretrained
    model = create_model(text, pretrained=use_weights).eval()
    cfg = _cfg_from_model(model)
    cfg["arch"] = arch
    notes: list[str] = []
    if use_weights:
        origin = cfg.get("source_weights")
        cfg["source_weights"] = f"{text} ({origin})" if origin else text
    else:
        notes.append(
            f"{text!r}: randomly initialised weights (name a weights tag such as "
            "'resnet20.fashion_mnist' or pass pretrained=True for trained weights)"
        )
    return LoadedModel(model, cfg, text, notes)


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
        "resnet_pl_version": resnet_pl.__version__,
        "torch_version": torch.__version__,
    }
