"""The one bound on sizes read from files, and the checked readers that apply it.

Every number that resnet-pl reads from a file it did not write itself -- the metadata of an
``.onnx`` file, a Hugging Face folder's ``config.json``, a safetensors header, a checkpoint's
hyperparameters -- is type-checked, finite and bounded here *before* anything is allocated
from it, so a 600-byte file cannot make ``classify`` allocate gigabytes or build a network of
20,000 blocks. The bounds are generous (well above every architecture and dataset resnet-pl
knows) and can be raised by users who really need more:

- in Python: ``resnet_pl.limits.set_limits(classes=200_000)`` (returns the previous limits),
  or ``with resnet_pl.limits.raised_limits(pixels=8192 * 8192): ...``;
- from the shell: ``RESNET_PL_LIMITS="classes=200000,pixels=67108864" resnet-pl classify ...``
  (read at each check, over the values set in Python).

========== =========================== ====================================================
name       default                     bounds
========== =========================== ====================================================
pixels     16,777,216 (4096 x 4096)    height x width of a model input, and of the image a
                                       centre crop is taken from (``size / crop_pct``)
classes    100,000                     classes of a classifier head, names in a class list
channels   1,024                       input channels of a model
width      16,384                      channels of any layer (``widths``, ``base_width`` ...)
depth      2,048                       residual blocks in all (``layers``), stages
json_depth 32                          nesting of JSON / metadata values
json_bytes 16 MiB                      one JSON document or metadata value
========== =========================== ====================================================

This module sits at the bottom of the package (it imports only :mod:`resnet_pl.errors`), so
every layer can use it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from resnet_pl.errors import ResNetPLError

ENV = "RESNET_PL_LIMITS"


class UntrustedValueError(ResNetPLError, ValueError):
    """A value read from a file has the wrong type, is not finite, or exceeds a bound of
    :mod:`resnet_pl.limits`; the message names the file, the key and the fix."""


@dataclasses.dataclass(frozen=True)
class Limits:
    """Upper bounds on sizes read from files (see the module docstring)."""

    pixels: int = 4096 * 4096
    classes: int = 100_000
    channels: int = 1024
    width: int = 16_384
    depth: int = 2048
    json_depth: int = 32
    json_bytes: int = 16 * 1024 * 1024


_LIMITS = Limits()
_FIELDS = tuple(f.name for f in dataclasses.fields(Limits))


def set_limits(**values: int) -> Limits:
    """Change the limits for this process (e.g. ``set_limits(classes=200_000)``); returns the
    previous ones, to restore with ``set_limits(**dataclasses.asdict(previous))``."""
    global _LIMITS
    unknown = sorted(set(values) - set(_FIELDS))
    if unknown:
        raise ValueError(f"unknown limit(s) {unknown}; the limits are {', '.join(_FIELDS)}")
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"limit {name} must be a positive integer, got {value!r}")
    previous = _LIMITS
    _LIMITS = dataclasses.replace(_LIMITS, **values)
    return previous


@contextlib.contextmanager
def raised_limits(**values: int) -> Iterator[Limits]:
    """``set_limits(**values)`` for the duration of a ``with`` block."""
    global _LIMITS
    previous = set_limits(**values)
    try:
        yield _LIMITS
    finally:
        _LIMITS = previous


def limits() -> Limits:
    """The limits in force: those set in Python, overridden by ``$RESNET_PL_LIMITS``."""
    text = os.environ.get(ENV, "").strip()
    if not text:
        return _LIMITS
    values: dict[str, int] = {}
    for item in text.split(","):
        name, _, value = item.partition("=")
        name = name.strip()
        if name not in _FIELDS or not value.strip().isdigit() or int(value) < 1:
            raise UntrustedValueError(
                f"${ENV}: bad item {item.strip()!r}; write NAME=POSITIVE_INTEGER items separated "
                f"by commas, NAME one of {', '.join(_FIELDS)}"
            )
        values[name] = int(value)
    return dataclasses.replace(_LIMITS, **values)


def _raise_hint(name: str) -> str:
    return f"if the file is genuine, raise the limit: {ENV}={name}=N or resnet_pl.limits.set_limits"


def fs_text(name: str) -> str:
    """A file or folder name as valid UTF-8 text: bytes that are not UTF-8 (which Python keeps
    as lone surrogates) become ``\\xNN`` escapes, so the name can be written to JSON, CSV,
    model cards and terminals. Valid names are returned unchanged."""
    try:
        name.encode("utf-8")
        return name
    except UnicodeEncodeError:
        raw = name.encode("utf-8", "surrogateescape") if _only_escapes(name) else None
        if raw is not None:
            return raw.decode("utf-8", "backslashreplace")
        return name.encode("utf-8", "backslashreplace").decode("utf-8")


def _only_escapes(name: str) -> bool:
    return all(not 0xD800 <= ord(c) <= 0xDFFF or 0xDC80 <= ord(c) <= 0xDCFF for c in name)


def printable(text: object, limit: int = 200) -> str:
    """``text`` safe to print on one terminal line: control characters (newlines, ANSI escape
    sequences) and undecodable bytes escaped, long values shortened."""
    out = fs_text(str(text))
    out = "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in out)
    return out if len(out) <= limit else out[: limit - 3] + "..."


_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(text: object) -> str:
    """``text`` for a CSV cell that may be opened in a spreadsheet: :func:`printable` (no control
    characters, no undecodable bytes), and a leading ``'`` when it starts like a formula
    (``=``, ``+``, ``-``, ``@``), so a class or file name such as ``=HYPERLINK(...)`` is shown,
    not evaluated (OWASP's advice against CSV injection)."""
    value = printable(text, limit=10_000)
    return "'" + value if value.startswith(_FORMULA_START) else value


# --------------------------------------------------------------------------------------------
# JSON
# --------------------------------------------------------------------------------------------
_STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL)


def _nesting(text: str) -> int:
    """The deepest ``[``/``{`` nesting of a JSON text (strings skipped), found without
    parsing, so a deeply nested document never reaches the recursive parser."""
    depth = deepest = 0
    for char in _STRINGS.sub("", text):
        if char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}":
            depth -= 1
    return deepest


def load_json(
    data: str | bytes, where: str, *, error: type[Exception] = UntrustedValueError
) -> Any:
    """Parse untrusted JSON: at most ``json_bytes`` long and ``json_depth`` deep, so neither
    a RecursionError nor an unbounded allocation can come out of it.

    Raises:
        ``error`` (default :class:`UntrustedValueError`): one line naming ``where``.
    """
    lim = limits()
    if len(data) > lim.json_bytes:
        raise error(
            f"{where}: {len(data)} bytes of JSON, more than the {lim.json_bytes}-byte limit; "
            f"{_raise_hint('json_bytes')}"
        )
    try:
        text = data.decode("utf-8") if isinstance(data, bytes) else data
    except UnicodeDecodeError as err:
        raise error(f"{where}: not UTF-8 text ({err.reason} at byte {err.start})") from None
    if _nesting(text) > lim.json_depth:
        raise error(
            f"{where}: JSON nested deeper than {lim.json_depth} levels; the file is damaged or "
            f"hostile ({_raise_hint('json_depth')})"
        )
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as err:  # JSONDecodeError, int digit limit
        raise error(f"{where}: not valid JSON ({printable(err, 120)})") from None


# --------------------------------------------------------------------------------------------
# Values
# --------------------------------------------------------------------------------------------
def _show(value: Any) -> str:
    return printable(repr(value), 80)


def check_int(
    value: Any,
    where: str,
    *,
    low: int = 1,
    high: int | None = None,
    limit: str | None = None,
    error: type[Exception] = UntrustedValueError,
) -> int:
    """``value`` as an int in ``[low, high]`` (``high`` defaults to the limit named ``limit``);
    bools, floats and strings are refused (``3.0`` is accepted as 3)."""
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise error(f"{where} must be an integer, got {_show(value)}")
    if high is None and limit is not None:
        high = getattr(limits(), limit)
    if value < low:
        raise error(f"{where} must be >= {low}, got {value}")
    if high is not None and value > high:
        hint = f"; {_raise_hint(limit)}" if limit else ""
        raise error(f"{where} is {value}, more than the limit {high}{hint}")
    return value


def check_float(
    value: Any,
    where: str,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    error: type[Exception] = UntrustedValueError,
) -> float:
    """``value`` as a finite float in ``[low, high]`` (``(low, high]`` with ``low_open``)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise error(f"{where} must be a number, got {_show(value)}")
    number = float(value)
    if not math.isfinite(number):
        raise error(f"{where} must be a finite number, got {number}")
    too_low = low is not None and (number <= low if low_open else number < low)
    if too_low or (high is not None and number > high):
        lo = "(" if low_open else "["
        raise error(f"{where} must be in {lo}{low}, {high}], got {number}")
    return number


def check_list(
    value: Any,
    where: str,
    *,
    max_len: int,
    min_len: int = 0,
    error: type[Exception] = UntrustedValueError,
) -> list[Any]:
    """``value`` as a list (a JSON array / Python list or tuple) of ``min_len..max_len``
    items."""
    if isinstance(value, str | bytes) or not isinstance(value, Sequence):
        raise error(f"{where} must be a list, got {_show(value)}")
    if not min_len <= len(value) <= max_len:
        raise error(f"{where} must have {min_len}..{max_len} items, got {len(value)}")
    return list(value)


def check_names(
    value: Any, where: str, *, error: type[Exception] = UntrustedValueError
) -> list[str]:
    """A list of class names: strings (numbers become strings), at most ``classes`` of them,
    each at most 1,000 characters."""
    items = check_list(value, where, max_len=limits().classes, error=error)
    names = []
    for i, item in enumerate(items):
        if isinstance(item, bool) or not isinstance(item, str | int | float):
            raise error(f"{where}[{i}] must be a string, got {_show(item)}")
        name = fs_text(str(item))
        if len(name) > 1000:
            raise error(f"{where}[{i}] is {len(name)} characters long (at most 1000)")
        names.append(name)
    return names


def check_norm(
    value: Any, where: str, *, positive: bool, error: type[Exception] = UntrustedValueError
) -> list[float]:
    """Per-channel ``mean`` (``positive=False``) or ``std`` (``positive=True``): finite numbers,
    one per channel at most ``channels``; a NaN or infinite value would make every output
    NaN, so it is refused."""
    items = check_list(value, where, max_len=limits().channels, min_len=1, error=error)
    return [
        check_float(
            v, f"{where}[{i}]", low=0.0 if positive else None, low_open=positive, error=error
        )
        for i, v in enumerate(items)
    ]


def check_image_geometry(
    input_size: Any,
    where: str,
    *,
    crop_pct: Any = None,
    error: type[Exception] = UntrustedValueError,
) -> tuple[int, int, int]:
    """``input_size`` (C, H, W) with C <= ``channels`` and H x W <= ``pixels``; with
    ``crop_pct``, also the image resized before the centre crop (``H / crop_pct`` x
    ``W / crop_pct``) within ``pixels``."""
    size = check_list(input_size, f"{where} input_size", min_len=3, max_len=3, error=error)
    chans = check_int(size[0], f"{where} input_size[0] (channels)", limit="channels", error=error)
    height = check_int(size[1], f"{where} input_size[1] (height)", limit="pixels", error=error)
    width = check_int(size[2], f"{where} input_size[2] (width)", limit="pixels", error=error)
    pixels = limits().pixels
    if height * width > pixels:
        raise error(
            f"{where} input_size {height}x{width} is {height * width} pixels per image, more "
            f"than the limit {pixels}; {_raise_hint('pixels')}"
        )
    if crop_pct is not None:
        crop = check_float(
            crop_pct, f"{where} crop_pct", low=0.0, high=1.0, low_open=True, error=error
        )
        resized = math.floor(height / crop) * math.floor(width / crop)
        if resized > pixels:
            raise error(
                f"{where} crop_pct {crop} resizes each image to {resized} pixels before the "
                f"{height}x{width} crop, more than the limit {pixels}; use a crop_pct near 1 "
                f"(0.875 is usual), or {_raise_hint('pixels')}"
            )
    return chans, height, width


# Builder options that are sizes: bounded by `width`, except the ones named here.
_DEPTH_KEYS = ("layers",)
_FREE_KEYS = ("out_indices", "output_stride", "replace_stride_with_dilation")


def check_build_args(
    num_classes: Any,
    in_chans: Any,
    arch_kwargs: Any,
    where: str,
    *,
    error: type[Exception] = UntrustedValueError,
) -> tuple[int, int, dict[str, Any]]:
    """The sizes a model is built from, read from a file: ``num_classes`` in
    ``[0, classes]`` (0: no classifier head), ``in_chans`` in ``[1, channels]``, and in
    ``arch_kwargs`` every integer in ``[0, width]``, ``layers`` summing to at most ``depth``,
    every list at most ``depth`` long, every float finite, nothing nested more than 2 deep.

    Returns:
        ``(num_classes, in_chans, arch_kwargs)`` as plain values.
    """
    lim = limits()
    classes = check_int(num_classes, f"{where} num_classes", low=0, limit="classes", error=error)
    chans = check_int(in_chans, f"{where} in_chans", limit="channels", error=error)
    if arch_kwargs is None:
        arch_kwargs = {}
    if not isinstance(arch_kwargs, Mapping):
        raise error(
            f"{where} arch_kwargs must be a mapping of builder options, got {_show(arch_kwargs)}"
        )
    options: dict[str, Any] = {}
    for key, value in arch_kwargs.items():
        if not isinstance(key, str) or not key.isidentifier():
            raise error(f"{where} arch_kwargs has a bad option name {_show(key)}")
        options[key] = _check_option(value, f"{where} arch_kwargs.{key}", key, lim, error, 0)
    layers = options.get("layers")
    if isinstance(layers, list):
        total = sum(v for v in layers if isinstance(v, int))
        if total > lim.depth:
            raise error(
                f"{where} arch_kwargs.layers {printable(layers, 60)} is {total} blocks, more than "
                f"the limit {lim.depth}; {_raise_hint('depth')}"
            )
    return classes, chans, options


def _check_option(
    value: Any, where: str, key: str, lim: Limits, error: type[Exception], level: int
) -> Any:
    if value is None or isinstance(value, bool | str):
        if isinstance(value, str) and len(value) > 1000:
            raise error(f"{where} is a {len(value)}-character string (at most 1000)")
        return value
    if isinstance(value, int):
        high = lim.depth if key in _DEPTH_KEYS else lim.width
        return check_int(
            value,
            where,
            low=0 if key not in _DEPTH_KEYS else 1,
            high=high,
            limit="depth" if key in _DEPTH_KEYS else "width",
            error=error,
        )
    if isinstance(value, float):
        return check_float(value, where, error=error)
    if isinstance(value, list | tuple) and level < 2:
        items = check_list(value, where, max_len=lim.depth, error=error)
        return [
            _check_option(v, f"{where}[{i}]", key, lim, error, level + 1)
            for i, v in enumerate(items)
        ]
    if key in _FREE_KEYS and isinstance(value, Mapping) and level < 1:
        return {
            str(k): _check_option(v, where, key, lim, error, level + 1) for k, v in value.items()
        }
    raise error(f"{where} must be a number, string, boolean or list of them, got {_show(value)}")


__all__ = [
    "ENV",
    "Limits",
    "UntrustedValueError",
    "check_build_args",
    "csv_cell",
    "fs_text",
    "check_float",
    "check_image_geometry",
    "check_int",
    "check_list",
    "check_names",
    "check_norm",
    "limits",
    "load_json",
    "printable",
    "raised_limits",
    "set_limits",
]
