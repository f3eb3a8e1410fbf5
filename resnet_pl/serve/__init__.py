"""Serve a classifier over HTTP with LitServe: ``resnet-pl serve MODEL`` or, in Python,
:func:`build_server` (a ``LitServer``) / :class:`ImageClassifierAPI` (the ``LitAPI``, to mount
in your own LitServe app). See docs/serve.md.

Needs the ``serve`` extra: ``pip install 'resnet-pl[serve]'``.
"""

from resnet_pl.serve.api import (
    API_KEY_ENV,
    DEFAULT_MAX_BODY_MB,
    DEFAULT_MAX_PIXELS,
    ImageClassifierAPI,
    ImageRequestSpec,
    ServeConfig,
    ServeOptionError,
    build_server,
    model_card,
    open_model,
)

__all__ = [
    "API_KEY_ENV",
    "DEFAULT_MAX_BODY_MB",
    "DEFAULT_MAX_PIXELS",
    "ImageClassifierAPI",
    "ImageRequestSpec",
    "ServeConfig",
    "ServeOptionError",
    "build_server",
    "model_card",
    "open_model",
]
