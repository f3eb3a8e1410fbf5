"""``weights``: the one option that names starting weights for fine-tuning -- a registry entry
(``arch.tag``), a Lightning checkpoint file or a ``save_pretrained`` folder. The network's
architecture comes from the weights; the head (and stem) are adapted with a warning as for
``pretrained=True``; the weights' name and sha256 are recorded in the model's hyperparameters
(``weights``, ``weights_sha256``), so every checkpoint and the hub model card say where the
run started. A model rebuilt from a checkpoint that already records them builds the bare
architecture and never reads the starting weights again."""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

from torch import nn

from resnet_pl.errors import ResNetPLError
from resnet_pl.hub.pretrained import (
    TRAINING_ONLY_KWARGS,
    load_into,
    sha256_file,
    structural_kwargs,
)
from resnet_pl.hub.weights import UnknownWeightsError
from resnet_pl.lightning.errors import ConfigError
from resnet_pl.models.registry import get_builder, list_models, split_name


def _record(module: Any, *, arch: str, kwargs: dict[str, Any], name: str, sha: str) -> None:
    """Write the rebuild recipe and the provenance into the hyperparameters (and their initial
    copy, which loggers and LightningCLI read)."""
    values = {
        "arch": arch,
        "model_kwargs": kwargs or None,
        "pretrained": False,
        "weights": name,
        "weights_sha256": sha,
    }
    module.hparams.update(values)
    module._hparams_initial.update(values)


def _training_kwargs(hp: Any) -> dict[str, Any]:
    return {
        k: v for k, v in dict(hp.get("model_kwargs") or {}).items() if k in TRAINING_ONLY_KWARGS
    }


def _user_kwargs(hp: Any) -> dict[str, Any]:
    return dict(hp.get("model_kwargs") or {})


def build_from_weights(module: Any) -> nn.Module:
    """The network of ``module.hparams["weights"]`` (see the module docstring)."""
    hp = module.hparams
    source = str(hp["weights"])
    n, c = hp["num_classes"], hp["in_chans"]
    if hp.get("weights_sha256"):  # restored: the checkpoint's state_dict fills it in
        return get_builder(split_name(str(hp["arch"]))[0])(
            num_classes=n, in_chans=c, **_user_kwargs(hp)
        )
    path = Path(source).expanduser()
    if path.is_file():
        from resnet_pl.hub.checkpoint import read_checkpoint

        try:
            ck = read_checkpoint(path)
        except ResNetPLError as err:
            raise ConfigError(f"--model.weights {source}: {err}") from None
        kwargs = {**ck.arch_kwargs, **_training_kwargs(hp)}
        model = get_builder(ck.arch)(num_classes=n, in_chans=c, **kwargs)
        load_into(model, dict(ck.state), name=str(path))
        _record(module, arch=ck.arch, kwargs=kwargs, name=str(path), sha=sha256_file(path))
        return model
    if path.is_dir():
        from resnet_pl.hub.hf import WEIGHTS_NAME, from_pretrained, read_config

        try:
            config = read_config(path / "config.json")
            model = from_pretrained(path, num_classes=n, in_chans=c, **_training_kwargs(hp))
        except (ValueError, FileNotFoundError, ResNetPLError) as err:
            raise ConfigError(f"--model.weights {source}: {' '.join(str(err).split())}") from None
        arch = str(config["architecture"])
        kwargs = {**structural_kwargs(config.get("arch_kwargs") or {}), **_training_kwargs(hp)}
        sha = sha256_file(path / WEIGHTS_NAME)
        _record(module, arch=arch, kwargs=kwargs, name=str(path), sha=sha)
        return model
    return _from_registry(module, source, n, c)


def _from_registry(module: Any, source: str, n: int, c: int) -> nn.Module:
    from resnet_pl.factory import create_model
    from resnet_pl.hub.weights import get_weights, list_pretrained

    arch, tag = split_name(source)
    names = list(list_pretrained())
    if tag is None or source not in names:
        close = difflib.get_close_matches(source, names, n=3, cutoff=0.5)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        bare = (
            " (an architecture name alone has no weights: use --model.arch)"
            if (tag is None and arch in list_models())
            else ""
        )
        raise UnknownWeightsError(
            f"--model.weights {source!r} is not a file, a save_pretrained folder or a registry "
            f"weights name{bare}.{hint} `resnet-pl hub list` shows the names"
        )
    entry = get_weights(arch, tag)
    kwargs = {**_training_kwargs(module.hparams)}
    model = create_model(source, pretrained=True, num_classes=n, in_chans=c, **kwargs)
    structural = structural_kwargs({**dict(entry.arch_kwargs), **kwargs})
    sha = str(entry.pretrained_cfg.get("sha256") or "")
    _record(module, arch=arch, kwargs={**structural, **kwargs}, name=source, sha=sha)
    return model


def weights_record(source: str) -> dict[str, Any]:
    """What the starting weights were trained on (``input_size``, ``mean``, ``std``, when
    recorded), without loading them: for the recipe's choices. Unknown names raise
    :class:`UnknownWeightsError` now, before any data is read."""
    path = Path(source).expanduser()
    if path.is_file():
        from resnet_pl.hub.checkpoint import read_checkpoint

        try:
            hp = read_checkpoint(path).hparams
        except ResNetPLError as err:
            raise ConfigError(f"--model.weights {source}: {err}") from None
        return {k: hp.get(k) for k in ("input_size", "mean", "std")}
    if path.is_dir():
        import json

        try:
            config = json.loads((path / "config.json").read_text(encoding="utf-8"))
        except (OSError, ValueError) as err:
            raise ConfigError(
                f"--model.weights {source}: not a save_pretrained folder ({err})"
            ) from None
        cfg = config.get("pretrained_cfg") or config
        return {k: cfg.get(k) for k in ("input_size", "mean", "std")}
    from resnet_pl.hub.weights import get_weights, list_pretrained

    if source not in list_pretrained():
        arch, tag = split_name(source)
        close = difflib.get_close_matches(source, list(list_pretrained()), n=3, cutoff=0.5)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise UnknownWeightsError(
            f"--model.weights {source!r} is not a file, a save_pretrained folder or a registry "
            f"weights name.{hint} `resnet-pl hub list` shows the names"
        )
    arch, tag = split_name(source)
    cfg = get_weights(arch, tag).pretrained_cfg
    return {k: cfg.get(k) for k in ("input_size", "mean", "std")}
