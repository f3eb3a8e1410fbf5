"""Errors the training side raises on purpose: each message names the problem and the fix.

``resnet-pl`` prints these as one line (``resnet-pl: error: ...``) instead of a traceback; any
other exception is a bug and keeps its traceback.
"""

from __future__ import annotations

import pickle

# Defined with the data layer (which must not import this package); re-exported here.
from resnet_pl.data.errors import BadDataError as BadDataError
from resnet_pl.data.errors import DataNotFoundError as DataNotFoundError
from resnet_pl.errors import ResNetPLError


class ConfigError(ResNetPLError, ValueError):
    """A bad option (name, value, or output folder), found before any training step runs."""


class NonFiniteLossError(ResNetPLError, FloatingPointError):
    """The loss became NaN or infinite; the message names the step and batch."""


class NonFiniteWeightsError(NonFiniteLossError):
    """A checkpoint about to be written holds NaN/inf weights; it is not written, so the last
    good checkpoint stays in place."""


class BadCheckpointError(ResNetPLError, ValueError):
    """A checkpoint file that is truncated, empty or not a PyTorch checkpoint at all."""


class UntrustedCheckpointError(ResNetPLError, pickle.UnpicklingError):
    """A checkpoint that ``torch.load(weights_only=True)`` refuses: it holds objects whose
    unpickling could run code. Loading it needs an explicit opt-in for trusted files."""


def explain_unsafe_checkpoint(path: object, err: BaseException, opt_in: str) -> str:
    """The message for a checkpoint refused by the restricted unpickler: what was refused, why,
    and the opt-in (``opt_in``) for a file the user trusts."""
    text = str(err).strip()
    # torch's message is long; its useful part is the line naming the refused global.
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    named = [ln for ln in lines if "GLOBAL" in ln.upper()]
    detail = (named or lines or [type(err).__name__])[0]
    return (
        f"refused to load checkpoint {path}: it holds objects that only a full unpickle can "
        f"rebuild, and unpickling can run arbitrary code ({detail}). resnet-pl checkpoints hold "
        f"only tensors and plain values, so this file was not written by resnet-pl or was "
        f"altered. If you trust its source, load it with {opt_in}."
    )


def checkpoint_load_error(path: object, err: BaseException, opt_in: str) -> Exception:
    """The error to raise when ``torch.load(path, weights_only=True)`` failed with ``err``:
    :class:`UntrustedCheckpointError` when the restricted unpickler refused an object (the file
    may be a trusted one; ``opt_in`` says how to load it), :class:`BadCheckpointError` when the
    file is torn or not a checkpoint (torch then raises anything from ``RuntimeError`` to
    ``IndexError``, depending on where the bytes stop making sense)."""
    text = str(err)
    if isinstance(err, pickle.UnpicklingError) and "GLOBAL" in text.upper():
        return UntrustedCheckpointError(explain_unsafe_checkpoint(path, err, opt_in))
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    detail = next((ln for ln in lines if "error" in ln.lower()), lines[0] if lines else "")
    reason = f"{type(err).__name__}: {detail}" if detail else type(err).__name__
    return BadCheckpointError(
        f"checkpoint {path} is truncated, corrupt or not a PyTorch checkpoint ({reason}); use "
        f"an intact copy (an interrupted resnet-pl save never leaves a partial last.ckpt)"
    )
