"""Turn what a user names (a module, a registry name, a Lightning checkpoint) into an eval-mode
model plus the config that says how to feed it and how to label its outputs.

Checkpoints are read with ``torch.load(weights_only=True)`` (never unpickling arbitrary
objects) and rebuilt from the registry, so exporting or classifying does not import Lightning.
"""

from __future__ import annotations

import hashlib
import pickle
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

import resnet_pl
from resnet_pl.models.registry import create_model, split_name

ModelSource = nn.Module | str | Path
CHECKPOINT_SUFFIXES = (".ckpt", ".pt", ".pth")
_REQUIRED_HPARAMS = ("arch", "num_classes", "in_chans")
_WEIGHTS_SOURCE_KEYS = ("source", "url", "hf_hub_id", "file", "filename")


class CheckpointError(ValueError):
    """A checkpoint that does not follow the resnet-pl Lightning checkpoint contract."""


@dataclass
class LoadedModel:
    """A model in eval mode and its resolved config (``arch``, ``input_size``, ``mean``,
    ``std``, ``class_names``, ``interpolation``, ``crop_pct``, ``source_weights``,
    ``weights_sha256`` ... whatever is known)."""

    model: nn.Module
    cfg: dict[str, Any]
    description: str
    warnings: list[str] = field(default_factory=list)


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


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
    """Rebuild the network of a resnet-pl Lightning checkpoint (contract: plain
    ``hyper_parameters`` with ``arch``, ``num_classes``, ``in_chans``, ``model_kwargs`` ...;
    weights under ``state_dict`` keys prefixed ``model.``), loaded strictly."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        raise CheckpointError(
            f"{path} cannot be loaded safely (weights_only=True refused it: {first}); only "
            "checkpoints holding plain tensors and values are accepted"
        ) from None
    except Exception as e:
        reason = f"{type(e).__name__}: {e}".strip()
        raise CheckpointError(f"{path} is not a readable PyTorch checkpoint ({reason})") from None
    if not isinstance(ckpt, Mapping) or "state_dict" not in ckpt:
        raise CheckpointError(
            f"{path} has no 'state_dict': expected a Lightning checkpoint saved by resnet-pl"
        )
    hp = ckpt.get("hyper_parameters")
    if not isinstance(hp, Mapping) or any(k not in hp for k in _REQUIRED_HPARAMS):
        missing = [k for k in _REQUIRED_HPARAMS if not isinstance(hp, Mapping) or k not in hp]
        raise CheckpointError(
            f"{path} lacks hyper_parameters {missing}: the checkpoint must come from "
            "resnet_pl.lightning.ResNetClassifier (or follow its contract)"
        )
    if hp["arch"] == "custom":
        raise CheckpointError(
            f"{path} was trained with a custom nn.Module (arch='custom') that cannot be rebuilt "
            "from the registry; load it in Python and pass the module to export_onnx()"
        )
    model = create_model(
        hp["arch"],
        num_classes=hp["num_classes"],
        in_chans=hp["in_chans"],
        **dict(hp.get("model_kwargs") or {}),
    )
    state = {k[len("model.") :]: v for k, v in ckpt["state_dict"].items() if k.startswith("model.")}
    if not state:
        raise CheckpointError(f"{path} has no 'model.'-prefixed weights in its state_dict")
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise CheckpointError(
            f"{path}: weights do not match arch={hp['arch']!r} with its saved options: "
            f"{str(e).splitlines()[0]}"
        ) from None
    model.eval()
    cfg = _cfg_from_model(model)
    for key in ("class_names", "mean", "std", "input_size", "crop_pct", "dataset"):
        if hp.get(key) is not None:
            value = hp[key]
            cfg[key] = list(value) if isinstance(value, tuple | list) else value
    cfg["arch"] = hp["arch"]
    cfg["source_weights"] = path.name
    cfg["weights_sha256"] = sha256_file(path)
    return LoadedModel(model, cfg, f"checkpoint {path}")


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
