"""Loading pretrained weights safely: split into :mod:`resnet_pl.hub.files` (where files come
from, the cache, sha256 verification) and :mod:`resnet_pl.hub.loading` (verified state dicts
into models). This module re-exports both for the imports of before."""

from resnet_pl.hub.files import (
    _MAX_SAFETENSORS_HEADER,
    CACHE_ENV,
    CACHE_HINT,
    OFFLINE_ENVS,
    cache_dir,
    cache_path,
    check_safetensors,
    local_path,
    offline,
    quarantine,
    read_state_dict,
    resolve_file,
    sha256_file,
    sidecar_path,
    sniff_format,
    verify_file,
)
from resnet_pl.hub.loading import (
    HEAD_PREFIX,
    STEM_KEY,
    TRAINING_ONLY_KWARGS,
    adapt_conv1,
    build_pretrained,
    load_into,
    model_cfg,
    structural_kwargs,
)

__all__ = [
    "CACHE_ENV",
    "CACHE_HINT",
    "HEAD_PREFIX",
    "OFFLINE_ENVS",
    "STEM_KEY",
    "TRAINING_ONLY_KWARGS",
    "_MAX_SAFETENSORS_HEADER",
    "adapt_conv1",
    "build_pretrained",
    "cache_dir",
    "cache_path",
    "check_safetensors",
    "load_into",
    "local_path",
    "model_cfg",
    "offline",
    "quarantine",
    "read_state_dict",
    "resolve_file",
    "sha256_file",
    "sidecar_path",
    "sniff_format",
    "structural_kwargs",
    "verify_file",
]
