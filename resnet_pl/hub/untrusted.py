"""Checks on what the hub reads from files it did not write: a Hugging Face folder's
``config.json`` and a Lightning checkpoint's ``hyper_parameters``.

Each value that sizes a network or a preprocessing step is type-checked, required finite and
bounded by :mod:`resnet_pl.limits` first; then the network the file describes is built on the
``meta`` device (no memory) and its shapes are compared with the weights actually present (the
safetensors header, the checkpoint's state dict), so a config that promises
``num_classes: 1000000000`` or ``layers: [20000, 1, 1]`` is refused in milliseconds, before any
real tensor is allocated. Errors are one line naming the file, the key and the fix.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from resnet_pl.hub.weights import WeightsMismatchError, WeightsVerificationError
from resnet_pl.limits import (
    UntrustedValueError,
    check_build_args,
    check_float,
    check_image_geometry,
    check_names,
    check_norm,
    printable,
)
from resnet_pl.models.registry import get_builder

SHA256_HEX = re.compile(r"[0-9a-f]{64}")


def meta_shapes(
    arch: str, num_classes: int, in_chans: int, arch_kwargs: Mapping[str, Any], where: str,
    error: type[Exception],
) -> dict[str, tuple[int, ...]]:  # fmt: skip
    """The state-dict shapes of ``arch`` built with these (already bounded) sizes on the meta
    device: nothing is allocated."""
    try:
        with torch.device("meta"):
            twin = get_builder(arch)(num_classes=num_classes, in_chans=in_chans, **arch_kwargs)
    except (TypeError, ValueError, RuntimeError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise error(f"{where} describes no buildable {arch!r} ({printable(first)})") from None
    return {k: tuple(v.shape) for k, v in twin.state_dict().items()}


def shape_difference(
    want: Mapping[str, tuple[int, ...]], got: Mapping[str, tuple[int, ...]]
) -> str:
    """The first keys whose shapes differ, for a message ('' when none)."""
    diff = [
        f"{k}: described {want.get(k)}, stored {got.get(k)}"
        for k in sorted(set(want) | set(got))
        if want.get(k) != got.get(k)
    ]
    return "; ".join(diff[:3]) + (" ..." if len(diff) > 3 else "")


def check_preprocessing(cfg: Any, where: str, error: type[Exception]) -> dict[str, Any]:
    """``input_size``, ``crop_pct``, ``mean``, ``std`` and the class list of a recorded
    preprocessing (a ``pretrained_cfg`` or checkpoint hyperparameters): finite, bounded, of
    the right types. Absent keys are fine.

    Returns:
        The class lists (``class_names``, ``categories``) present, as valid UTF-8 strings.
    """
    names: dict[str, Any] = {}
    if cfg is None:
        return names
    if not isinstance(cfg, Mapping):
        raise error(f"{where} must be a mapping, got {printable(repr(cfg), 60)}")
    try:
        if cfg.get("input_size") is not None:
            check_image_geometry(cfg["input_size"], where, crop_pct=cfg.get("crop_pct"))
        elif cfg.get("crop_pct") is not None:
            check_float(cfg["crop_pct"], f"{where} crop_pct", low=0.0, high=1.0, low_open=True)
        for key in ("mean", "std"):
            if cfg.get(key) is not None:
                check_norm(cfg[key], f"{where} {key}", positive=key == "std")
        for key in ("class_names", "categories"):
            if cfg.get(key) is not None:
                names[key] = check_names(cfg[key], f"{where} {key}")
    except UntrustedValueError as err:
        raise error(str(err)) from None
    return names


def check_folder_config(config: Mapping[str, Any], path: Path) -> dict[str, Any]:
    """A ``save_pretrained`` folder's ``config.json`` made safe to build from: a recorded
    sha256 (a folder whose weights cannot be verified is refused, not loaded unchecked), an
    architecture name, bounded ``num_classes``/``in_chans``/``arch_kwargs`` and a sane
    ``pretrained_cfg``.

    Returns:
        The config with ``num_classes``, ``in_chans`` and ``arch_kwargs`` as checked values.

    Raises:
        WeightsVerificationError: no usable sha256.
        WeightsMismatchError: a value of the wrong type, not finite or beyond the limits.
    """
    digest = config.get("sha256")
    weights = config.get("weights_file") or "model.safetensors"
    if not isinstance(digest, str) or not SHA256_HEX.fullmatch(digest):
        raise WeightsVerificationError(
            f"{path}: sha256 is {printable(repr(digest), 80)}, not the 64-hex-digit digest of "
            f"{printable(weights, 80)}; resnet-pl loads no folder whose weights it cannot verify. "
            f"Re-save it with save_pretrained (which records the digest), or, for weights you "
            f"trust, write the output of `sha256sum {printable(weights, 80)}` there"
        )
    arch = config.get("architecture")
    if not isinstance(arch, str) or not 0 < len(arch) <= 100:
        raise WeightsMismatchError(f"{path}: architecture must be a registry name, got "
                                   f"{printable(repr(arch), 80)}")  # fmt: skip
    try:
        num_classes, in_chans, kwargs = check_build_args(
            config.get("num_classes"), config.get("in_chans"), config.get("arch_kwargs"),
            str(path),
        )  # fmt: skip
    except UntrustedValueError as err:
        raise WeightsMismatchError(
            f"{err}; fix config.json or re-save the folder with model.save_pretrained"
        ) from None
    check_preprocessing(config.get("pretrained_cfg"), f"{path} pretrained_cfg",
                        WeightsMismatchError)  # fmt: skip
    return {**dict(config), "num_classes": num_classes, "in_chans": in_chans, "arch_kwargs": kwargs}


def check_checkpoint_hparams(
    hparams: Mapping[str, Any],
    arch: str,
    arch_kwargs: Mapping[str, Any],
    state_shapes: Mapping[str, tuple[int, ...]],
    path: Path | str,
    error: type[Exception],
) -> tuple[int, int]:
    """A checkpoint's hyperparameters against the weights it holds: sizes bounded, the
    recorded preprocessing and class names sane, and the network they describe (built on the
    meta device) of exactly the shapes in the state dict, so that a checkpoint claiming
    ``num_classes: 10**9`` is refused before anything of that size exists.

    Returns:
        ``(num_classes, in_chans)``.

    Raises:
        ``error`` (the caller's checkpoint error): naming the file, the key and the fix.
    """
    where = f"{path}: hyper_parameters"
    try:
        num_classes, in_chans, kwargs = check_build_args(
            hparams.get("num_classes"), hparams.get("in_chans"), arch_kwargs, where
        )
    except UntrustedValueError as err:
        raise error(f"{err}; the checkpoint is damaged or was not written by resnet-pl") from None
    names = check_preprocessing(hparams, where, error)
    if isinstance(hparams, dict):
        hparams.update(names)  # class names as valid UTF-8 text (for cards, JSON, CSV)
    want = meta_shapes(arch, num_classes, in_chans, kwargs, where, error)
    if dict(want) != dict(state_shapes):
        raise error(
            f"{where} (arch={arch!r}, num_classes={num_classes}, in_chans={in_chans}) disagree "
            f"with the weights it holds: {shape_difference(want, state_shapes)}; the checkpoint "
            f"was edited or is damaged: use the file training wrote"
        )
    return num_classes, in_chans


__all__ = [
    "check_checkpoint_hparams",
    "check_folder_config",
    "check_preprocessing",
    "meta_shapes",
    "shape_difference",
]
