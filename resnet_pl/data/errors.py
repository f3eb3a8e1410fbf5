"""Errors of the data layer: each message names the file or folder and the fix.

They subclass the matching builtins (``FileNotFoundError``, ``ValueError``), so code that catches
those keeps working; the training CLI prints them as one line instead of a traceback.
"""

from __future__ import annotations


class DataNotFoundError(FileNotFoundError):
    """A dataset's files are missing; the message names the paths tried and how to get them."""


class BadDataError(ValueError):
    """Data files that exist but cannot be used (corrupt, truncated, inconsistent); the
    message names the file."""


class IdxFormatError(BadDataError):
    """A file that is not a complete unsigned-byte IDX file; the message names it."""


class ImageLoadError(BadDataError):
    """A file that cannot be used as an image: missing, empty, not an image, truncated, over
    the pixel limit, or in a mode that cannot be converted. The message is one line."""
