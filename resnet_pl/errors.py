"""The one error hierarchy of resnet-pl.

Every error resnet-pl raises on purpose derives from :class:`ResNetPLError`, and also from the
builtin that describes it (``ValueError`` for a bad value, ``FileNotFoundError`` for a missing
file, ``RuntimeError`` for a failed check ...), so callers can catch either:

.. code-block:: python

    try:
        model = resnet_pl.create_model("resnet20.fashion_mnist", pretrained=True)
    except resnet_pl.ResNetPLError as err:  # any of ours; message names the problem and fix
        print(err)

The command line prints any ``ResNetPLError`` as one line (``resnet-pl: error: ...``) with no
traceback; any other exception is a bug and keeps its traceback.

This module sits at the bottom of the package (it imports nothing), so every layer can raise
these. Each class lives beside the code that raises it; the ones raised by more than one layer
live here.
"""

from __future__ import annotations


class ResNetPLError(Exception):
    """Base class of every error resnet-pl raises on purpose; its message names the problem
    and the fix."""


class DatasetUnavailableError(ResNetPLError, FileNotFoundError):
    """A dataset needed to measure or calibrate is not available here; the message says where
    it was looked for and what to pass."""


__all__ = ["DatasetUnavailableError", "ResNetPLError"]
