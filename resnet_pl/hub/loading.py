"""Verified weights into models: the state dict of a file that :mod:`resnet_pl.hub.files`
has checked goes into a network strictly. The only keys ever dropped are the classifier's
(``fc.*``) when ``num_classes`` differs or the model is ``features_only``, and the only key
ever changed is ``conv1.weight`` when ``in_chans`` differs -- each with a warning.
"""

from __future__ import annotations

import math
import os
import sys
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from torch import Tensor, nn

from resnet_pl.hub.files import read_state_dict, resolve_file
from resnet_pl.hub.weights import (
    WeightsMismatchError,
    get_weights,
)
from resnet_pl.models.registry import get_default_cfg

HEAD_PREFIX = "fc."
STEM_KEY = "conv1.weight"
# Options that change training, not the network's structure or eval output: not recorded, so
# a model rebuilt for fine-tuning starts from the builder's defaults.
TRAINING_ONLY_KWARGS = ("drop_path_rate", "drop_rate", "zero_init_residual")


def structural_kwargs(kwargs: Mapping[str, Any] | None) -> dict[str, Any]:
    """Builder options worth recording to rebuild a network: ``kwargs`` without training-only
    options and without ``num_classes``/``in_chans`` (recorded separately)."""
    skip = (*TRAINING_ONLY_KWARGS, "num_classes", "in_chans", "pretrained")
    return {k: v for k, v in dict(kwargs or {}).items() if k not in skip}


# --------------------------------------------------------------------------------------------
# Locations
# --------------------------------------------------------------------------------------------


def _warn(message: str) -> None:
    """A UserWarning attributed to the first caller outside resnet_pl (and hubconf/torch.hub),
    so the user sees the line of their own code that asked for the adaptation."""
    package = str(Path(__file__).resolve().parents[1])
    level, frame = 2, sys._getframe(1)  # stacklevel 2 is our caller
    while frame is not None:
        filename = frame.f_code.co_filename
        internal = (
            filename.startswith(package)
            or filename.endswith(("hubconf.py", f"torch{os.sep}hub.py"))
            or "importlib" in filename
        )
        if not internal:
            break
        level += 1
        frame = frame.f_back  # type: ignore[assignment]
    warnings.warn(message, UserWarning, stacklevel=level)


def adapt_conv1(weight: Tensor, in_chans: int) -> Tensor:
    """A stem convolution weight ``(O, C, k, k)`` adapted to ``in_chans`` input channels.

    1 from C: the sum over channels (a gray image copied to C channels gives the same output).
    C' from 1: the single channel repeated and divided by C'. Otherwise: channels cycled and
    scaled by C / C', keeping the expected activation size.
    """
    src = weight.shape[1]
    if in_chans == src:
        return weight
    if in_chans == 1:
        return weight.sum(dim=1, keepdim=True)
    if src == 1:
        return weight.repeat(1, in_chans, 1, 1) / in_chans
    reps = math.ceil(in_chans / src)
    return weight.repeat(1, reps, 1, 1)[:, :in_chans] * (src / in_chans)


def load_into(model: nn.Module, state: dict[str, Tensor], *, name: str) -> dict[str, Any]:
    """Load ``state`` into ``model`` with ``strict=True``, after the two explicit adaptations
    (classifier dropped if ``num_classes`` differs or ``features_only``; ``conv1`` adapted if
    ``in_chans`` differs). Returns what was adapted (``{"num_classes": (src, dst)}``,
    ``{"in_chans": (src, dst)}``, ``{"head_dropped": True}``).

    Raises:
        WeightsMismatchError: anything else differs (another architecture or options).
    """
    state = dict(state)
    adapted: dict[str, Any] = {}
    head_keys = [k for k in state if k.startswith(HEAD_PREFIX)]
    if head_keys and getattr(model, "features_only", False):
        for k in head_keys:
            del state[k]
        adapted["head_dropped"] = True
    elif f"{HEAD_PREFIX}weight" in state:
        src_n = int(state[f"{HEAD_PREFIX}weight"].shape[0])
        dst_n = int(getattr(model, "num_classes", src_n))
        if src_n != dst_n:
            for k in head_keys:
                del state[k]
            # The model's own freshly initialised head takes their place, so the load below
            # stays strict for every other key.
            fresh = model.state_dict()
            state.update({k: fresh[k] for k in fresh if k.startswith(HEAD_PREFIX)})
            adapted["num_classes"] = (src_n, dst_n)
            adapted["head_dropped"] = True
            _warn(
                f"weights {name} have a {src_n}-class classifier but the model has "
                f"num_classes={dst_n}: the classifier (fc.*) is re-initialised, the rest is "
                f"loaded. Fine-tune before use."
            )
    conv1 = getattr(model, "conv1", None)
    if STEM_KEY in state and isinstance(conv1, nn.Conv2d):
        src_c, dst_c = int(state[STEM_KEY].shape[1]), int(conv1.weight.shape[1])
        if src_c != dst_c and state[STEM_KEY].shape[2:] == conv1.weight.shape[2:]:
            state[STEM_KEY] = adapt_conv1(state[STEM_KEY], dst_c)
            adapted["in_chans"] = (src_c, dst_c)
            how = (
                "summed over channels"
                if dst_c == 1
                else "repeated and divided by the channel count"
                if src_c == 1
                else "cycled over channels and rescaled"
            )
            _warn(
                f"weights {name} expect {src_c}-channel input but the model has "
                f"in_chans={dst_c}: conv1.weight was {how}. Fine-tune for best accuracy."
            )
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:
        lines = [ln.strip() for ln in str(err).splitlines() if ln.strip()]
        detail = " ".join(lines[1:4]) if len(lines) > 1 else lines[0] if lines else ""
        raise WeightsMismatchError(
            f"weights {name} do not fit this model: {detail[:600]}. Build the architecture "
            f"with the weights' own options (drop conflicting keyword arguments)."
        ) from None
    return adapted


def model_cfg(
    arch: str, entry_cfg: Mapping[str, Any], adapted: Mapping[str, Any], name: str
) -> dict[str, Any]:
    """``model.pretrained_cfg`` for a model built from weights: the architecture's default cfg,
    the weights' cfg, then the adaptations (classes, channels) reflected in it."""
    cfg: dict[str, Any] = {**get_default_cfg(arch), **dict(entry_cfg)}
    cfg["architecture"] = arch
    cfg["weights"] = name
    source: dict[str, Any] = {"weights": name}
    if "in_chans" in adapted:
        src_c, dst_c = adapted["in_chans"]
        cfg["input_size"] = (dst_c, *tuple(cfg["input_size"])[1:])
        for key in ("mean", "std"):
            values = [float(v) for v in cfg[key]]
            if dst_c == 1:
                cfg[key] = (sum(values) / len(values),)
            else:
                cfg[key] = tuple(values[i % len(values)] for i in range(dst_c))
        source["in_chans"] = src_c
    if adapted.get("head_dropped"):
        if "num_classes" in adapted:
            cfg["num_classes"] = adapted["num_classes"][1]
            source["num_classes"] = adapted["num_classes"][0]
        source["categories"] = cfg.get("categories")
        source["metrics"] = cfg.get("metrics")
        cfg["categories"] = None
        cfg["metrics"] = {}
    if len(source) > 1:
        cfg["adapted_from"] = source
    return cfg


def build_pretrained(
    arch: str,
    tag: str | None,
    builder: Any,
    num_classes: int | None,
    in_chans: int | None,
    kwargs: dict[str, Any],
) -> nn.Module:
    """``create_model(..., pretrained=True)``: build ``arch`` with the weights' options (user
    ``kwargs`` override them), then load the verified weights."""
    entry = get_weights(arch, tag)
    options = {**dict(entry.arch_kwargs), **kwargs}
    options["num_classes"] = entry.num_classes if num_classes is None else num_classes
    options["in_chans"] = entry.in_chans if in_chans is None else in_chans
    model = builder(**options)
    path = resolve_file(entry)
    state = read_state_dict(path, entry.file_format)
    adapted = load_into(model, state, name=entry.name)
    cfg = model_cfg(arch, entry.pretrained_cfg, adapted, entry.name)
    cfg["arch_kwargs"] = structural_kwargs(options)
    model.pretrained_cfg = cfg  # type: ignore[assignment]
    return model
