"""Reading an ``.onnx`` file someone else wrote: its metadata and its graph's signature are
checked before anything is sized from them.

The metadata of a resnet-pl export (``input_size``, ``mean``, ``std``, ``crop_pct``,
``class_names`` ...) configures ``classify`` and ``serve``. A file from elsewhere can carry any
strings there: every value is parsed with the bounded JSON reader of :mod:`resnet_pl.limits`
(size and nesting), type-checked, required finite, and bounded by the one size limit
(``RESNET_PL_LIMITS``); then the metadata must agree with the graph's own input (rank 4, a
float tensor, the same channels and, where static, height and width) and output (rank 2, a
class axis within the limit). Every refusal is an :class:`OnnxMetadataError`: one line naming
the file, the key and the fix.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from resnet_pl.errors import ResNetPLError
from resnet_pl.limits import (
    UntrustedValueError,
    check_float,
    check_image_geometry,
    check_int,
    check_list,
    check_names,
    check_norm,
    limits,
    load_json,
    printable,
)

JSON_KEYS_KEY = "json_keys"
FIX = "re-export the model with resnet-pl export, or use a file from a source you trust"
_FLOAT_INPUTS = ("tensor(float)", "tensor(float16)", "tensor(double)")


class OnnxMetadataError(ResNetPLError, ValueError):
    """An ``.onnx`` file whose metadata or signature cannot be used as it is: a wrong type, a
    non-finite or out-of-bound value, or metadata that contradicts the graph."""


class OnnxRunError(ResNetPLError, RuntimeError):
    """ONNX Runtime failed to run a file, or the file's output is not ``(N, classes)`` finite
    logits."""


def _fail(path: Path | str, message: str) -> OnnxMetadataError:
    return OnnxMetadataError(f"{path}: {message}; {FIX}")


def read_onnx_metadata(props: Mapping[str, str], path: Path | str) -> dict[str, Any]:
    """The custom metadata of an ONNX file, decoded (the inverse of resnet-pl's
    ``encode_metadata``) and checked: JSON values bounded in size and nesting, and the keys
    that configure inference (``input_size``, ``mean``, ``std``, ``crop_pct``,
    ``interpolation``, ``class_names``, ``num_classes``, ``output_names``, ``features_only``)
    of the right type, finite and within :func:`resnet_pl.limits.limits`.

    Raises:
        OnnxMetadataError: naming the file and the key.
    """
    try:
        return _read(props, path)
    except UntrustedValueError as err:
        raise OnnxMetadataError(f"{err}; {FIX}") from None


def _read(props: Mapping[str, str], path: Path | str) -> dict[str, Any]:
    where = f"{path}: metadata"
    json_keys: set[str] = set()
    if JSON_KEYS_KEY in props:
        listed = load_json(props[JSON_KEYS_KEY], f"{where} {JSON_KEYS_KEY}")
        names = check_list(listed, f"{where} {JSON_KEYS_KEY}", max_len=1000)
        if not all(isinstance(k, str) for k in names):
            raise UntrustedValueError(f"{where} {JSON_KEYS_KEY} must be a list of key names")
        json_keys = set(names)
    meta: dict[str, Any] = {}
    for key, value in props.items():
        if key == JSON_KEYS_KEY:
            continue
        meta[key] = load_json(value, f"{where} {printable(key, 60)}") if key in json_keys else value
    if meta.get("input_size") is not None:
        crop = meta.get("crop_pct")
        c, h, w = check_image_geometry(meta["input_size"], where, crop_pct=crop)
        meta["input_size"] = [c, h, w]
    if meta.get("crop_pct") is not None:
        meta["crop_pct"] = check_float(
            meta["crop_pct"], f"{where} crop_pct", low=0.0, high=1.0, low_open=True
        )
    for key in ("mean", "std"):
        if meta.get(key) is not None:
            meta[key] = check_norm(meta[key], f"{where} {key}", positive=key == "std")
    if meta.get("class_names") is not None:
        meta["class_names"] = check_names(meta["class_names"], f"{where} class_names")
    if meta.get("num_classes") is not None:
        meta["num_classes"] = check_int(
            meta["num_classes"], f"{where} num_classes", low=0, limit="classes"
        )
    if meta.get("output_names") is not None:
        outs = check_list(meta["output_names"], f"{where} output_names", max_len=limits().depth)
        meta["output_names"] = [printable(v, 100) for v in outs]
    for key in ("interpolation", "tta", "arch", "dtype"):
        if meta.get(key) is not None and not isinstance(meta[key], str):
            raise UntrustedValueError(f"{where} {key} must be a string, got {printable(meta[key])}")
    if "features_only" in meta and not isinstance(meta["features_only"], bool | None):
        raise UntrustedValueError(f"{where} features_only must be true or false")
    return meta


def _dims(shape: Sequence[Any]) -> list[int | None]:
    return [d if isinstance(d, int) and not isinstance(d, bool) and d >= 0 else None for d in shape]


def check_signature(
    path: Path | str,
    meta: Mapping[str, Any],
    input_shape: Sequence[Any],
    input_type: str | None,
    output_shape: Sequence[Any] | None,
) -> None:
    """The graph's first input and output against the metadata: a rank-4 float input whose
    static channels (and height, width) equal ``input_size``; a rank-2 output whose static
    class axis is in ``[1, classes]``.

    Raises:
        OnnxMetadataError: naming the file and what disagrees.
    """
    dims = _dims(input_shape)
    if len(dims) != 4:
        raise _fail(path, f"the graph's input has rank {len(dims)} {list(input_shape)}; an image "
                          "classifier takes (N, C, H, W)")  # fmt: skip
    if input_type is not None and input_type not in _FLOAT_INPUTS:
        raise _fail(path, f"the graph's input is {input_type}; classify feeds float images")
    size = meta.get("input_size")
    if size is not None:
        for axis, (want, got) in enumerate(zip(size, dims[1:], strict=True), start=1):
            if got is not None and got != want:
                raise _fail(
                    path,
                    f"metadata input_size {list(size)} disagrees with the graph's input "
                    f"{list(input_shape)} on axis {axis}",
                )
    if output_shape is None:
        return
    out = _dims(output_shape)
    if len(out) != 2:
        raise _fail(path, f"the graph's output has rank {len(out)} {list(output_shape)}; a "
                          "classifier outputs (N, num_classes)")  # fmt: skip
    if out[1] is not None:
        try:
            check_int(out[1], f"{path}: the graph's class axis", limit="classes")
        except UntrustedValueError as err:
            raise OnnxMetadataError(f"{err}; {FIX}") from None


def check_logits(path: Path | str, logits: Any, batch: int) -> np.ndarray:
    """What the graph returned, as finite ``(batch, classes)`` logits.

    Raises:
        OnnxRunError: another shape, or NaN/infinite values (which would print NaN
            probabilities).
    """
    out = np.asarray(logits)
    if out.ndim != 2 or out.shape[0] != batch or not 1 <= out.shape[1] <= limits().classes:
        raise OnnxRunError(
            f"{path}: the model returned an output of shape {list(out.shape)} for {batch} "
            f"images, not (N, classes); {FIX}"
        )
    if not np.issubdtype(out.dtype, np.number) or not np.isfinite(out).all():
        raise OnnxRunError(
            f"{path}: the model returned NaN or infinite outputs; its weights are damaged or "
            f"its metadata (mean/std) is wrong: {FIX}"
        )
    return out


def run_error(path: Path | str, err: BaseException) -> OnnxRunError:
    """ONNX Runtime's own exception from ``run`` as one line naming the file."""
    text = str(err).strip()
    first = text.splitlines()[0] if text else type(err).__name__
    return OnnxRunError(f"{path}: ONNX Runtime could not run the model ({printable(first)}); {FIX}")


__all__ = [
    "OnnxMetadataError",
    "OnnxRunError",
    "check_logits",
    "check_signature",
    "read_onnx_metadata",
    "run_error",
]
