"""Pretrained weights: a registry beside the architectures, verified loading, HF Hub folders.

- :func:`list_pretrained` / :func:`get_weights`: the ``arch.tag`` entries (shipped Fashion-MNIST
  weights, torchvision's ImageNet weights, extra folders from ``RESNET_PL_EXTRA_WEIGHTS``).
- ``create_model("resnet20.fashion_mnist", pretrained=True)`` loads them (sha256 checked before
  every use; see :mod:`resnet_pl.hub.files` for the guarantees).
- :func:`transforms`: the evaluation preprocessing of a ``pretrained_cfg``.
- :func:`save_pretrained` / :func:`from_pretrained` / :func:`push_to_hub` (also methods of
  :class:`resnet_pl.ResNet`): Hugging Face Hub-style folders.
- ``resnet-pl hub ...``: the command line (:mod:`resnet_pl.cli.hub`).

Heavy modules (safetensors, huggingface_hub, Lightning) are imported only when used.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from resnet_pl.hub.weights import (
    UnknownWeightsError,
    WeightsEntry,
    WeightsMismatchError,
    WeightsUnavailableError,
    WeightsVerificationError,
    default_tag,
    get_weights,
    list_pretrained,
    register_weights,
    reload_registry,
    remove_weights,
)


def transforms(cfg: Mapping[str, Any]) -> Any:
    """The evaluation transform for a ``pretrained_cfg`` (resize, centre crop, scale, normalise),
    for PIL images and uint8 tensors: :func:`resnet_pl.data.transforms.eval_transform`, the one
    shared by training's evaluation, ONNX inference and ``classify``."""
    from resnet_pl.data.transforms import eval_transform

    return eval_transform(cfg)


def save_pretrained(model: Any, save_directory: str | Path, **kwargs: Any) -> Path:
    """See :func:`resnet_pl.hub.hf.save_pretrained`."""
    from resnet_pl.hub.hf import save_pretrained as _save

    return _save(model, save_directory, **kwargs)


def from_pretrained(name_or_path: str | Path, **kwargs: Any) -> Any:
    """See :func:`resnet_pl.hub.hf.from_pretrained`."""
    from resnet_pl.hub.hf import from_pretrained as _load

    return _load(name_or_path, **kwargs)


def push_to_hub(model: Any, repo_id: str, **kwargs: Any) -> str:
    """See :func:`resnet_pl.hub.hf.push_to_hub`."""
    from resnet_pl.hub.hf import push_to_hub as _push

    return _push(model, repo_id, **kwargs)


__all__ = [
    "UnknownWeightsError",
    "WeightsEntry",
    "WeightsMismatchError",
    "WeightsUnavailableError",
    "WeightsVerificationError",
    "default_tag",
    "from_pretrained",
    "get_weights",
    "list_pretrained",
    "push_to_hub",
    "register_weights",
    "reload_registry",
    "remove_weights",
    "save_pretrained",
    "transforms",
]
