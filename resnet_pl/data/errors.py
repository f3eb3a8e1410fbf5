"""Errors of the data layer: each message names the file or folder and the fix.

Like every resnet-pl error they derive from :class:`resnet_pl.errors.ResNetPLError` and from
the matching builtin (``FileNotFoundError``, ``ValueError``), so code that catches those keeps
working; the command line prints them as one line instead of a traceback.
"""

from __future__ import annotations

from resnet_pl.errors import DatasetUnavailableError, ResNetPLError


class DataNotFoundError(DatasetUnavailableError):
    """A dataset's files are missing; the message names the paths tried and how to get them.

    A :class:`~resnet_pl.errors.DatasetUnavailableError` (and so a ``FileNotFoundError``): the
    hub's measuring code catches both the same way."""


class BadDataError(ResNetPLError, ValueError):
    """Data files that exist but cannot be used (corrupt, truncated, inconsistent); the
    message names the file."""


class IdxFormatError(BadDataError):
    """A file that is not a complete unsigned-byte IDX file; the message names it."""


class ImageLoadError(BadDataError):
    """A file that cannot be used as an image: missing, empty, not an image, truncated, over
    the pixel limit, or in a mode that cannot be converted. The message is one line."""
