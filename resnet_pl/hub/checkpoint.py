"""The checkpoint reader: a resnet-pl Lightning checkpoint read safely
(``torch.load(weights_only=True)``) and its network picked out. Used by export and classify
(:mod:`resnet_pl.deploy.source`), distillation teachers and the publishing workflow
(:mod:`resnet_pl.hub.publish`).

The contract (see the Lightning module) is that ``hyper_parameters`` holds ``arch``,
``num_classes``, ``in_chans``, ``model_kwargs`` and the preprocessing (``mean``, ``std``,
``input_size``, ``dataset``, ``class_names``...), flat as resnet-pl 0.1 wrote them or in option
groups as today (:func:`flat_hparams` reads both), and that the network's weights are the
``model.``-prefixed keys of ``state_dict``.

The publishing names that used to live here (:func:`publish`, :func:`export_checkpoint`,
:func:`checkpoint_cfg`...) are in :mod:`resnet_pl.hub.publish` and still importable from here.
"""

from __future__ import annotations

import pickle
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from resnet_pl.errors import ResNetPLError
from resnet_pl.hub.loading import load_into, structural_kwargs
from resnet_pl.hub.untrusted import check_checkpoint_hparams
from resnet_pl.models.registry import get_builder

MODEL_PREFIX = "model."


class CheckpointError(ResNetPLError, ValueError):
    """A checkpoint that does not follow the resnet-pl Lightning checkpoint contract (or cannot
    be read safely); the message says what lacks."""


# The name this error had in resnet_pl.hub before the two checkpoint readers were merged.
CheckpointFormatError = CheckpointError


@dataclass(frozen=True)
class CheckpointContents:
    """What a resnet-pl Lightning checkpoint holds that weights need."""

    path: Path
    arch: str
    arch_kwargs: dict[str, Any]
    num_classes: int
    in_chans: int
    hparams: dict[str, Any]
    state: dict[str, Tensor]
    epoch: int | None
    global_step: int | None


def read_checkpoint(path: str | Path) -> CheckpointContents:
    """Read a checkpoint safely (``weights_only=True``) and pick out the network: the one
    checkpoint reader, used by ``hub export``/``publish`` and by export/classify.

    Raises:
        FileNotFoundError: no such file.
        CheckpointError: unreadable, refused by the restricted unpickler, not a resnet-pl
            checkpoint, or a custom model.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    try:
        ckpt = torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(
            f"{path} cannot be read with torch.load(weights_only=True) ({first}); only "
            f"checkpoints of plain tensors and values are accepted"
        ) from None
    except Exception as err:  # torn or foreign files fail anywhere in torch's reader
        raise CheckpointError(
            f"{path} is not a readable PyTorch checkpoint ({type(err).__name__}: {err})"
        ) from None
    if not isinstance(ckpt, Mapping) or "state_dict" not in ckpt or "hyper_parameters" not in ckpt:
        raise CheckpointError(
            f"{path} is not a Lightning checkpoint (no state_dict / hyper_parameters)"
        )
    hp, weights = ckpt["hyper_parameters"], ckpt["state_dict"]
    if not isinstance(hp, Mapping) or not isinstance(weights, Mapping):
        raise CheckpointError(f"{path}: hyper_parameters and state_dict must be mappings")
    hp = flat_hparams(hp)
    arch_name = str(hp.get("arch", ""))
    if not arch_name or arch_name == "custom":
        raise CheckpointError(
            f"{path} holds a custom model (arch={arch_name!r}); only registry architectures can "
            f"be rebuilt by name: load it in Python and pass the module itself"
        )
    missing = [k for k in ("num_classes", "in_chans") if hp.get(k) is None]
    if missing:
        raise CheckpointError(f"{path}: hyper_parameters lack {', '.join(missing)}")
    state = {
        k[len(MODEL_PREFIX) :]: v
        for k, v in weights.items()
        if isinstance(k, str) and k.startswith(MODEL_PREFIX) and isinstance(v, Tensor)
    }
    if not state:
        raise CheckpointError(f"{path}: state_dict has no '{MODEL_PREFIX}*' keys")
    model_kwargs = hp.get("model_kwargs")
    arch_kwargs = structural_kwargs(model_kwargs if isinstance(model_kwargs, Mapping) else {})
    arch = arch_name.partition(".")[0]
    # Untrusted: sizes bounded and checked against the stored weights (on the meta device)
    # before anything is built from them.
    shapes = {k: tuple(v.shape) for k, v in state.items()}
    hp = dict(hp)
    if dense_task_of(hp) is None:
        num_classes, in_chans = check_checkpoint_hparams(
            hp, arch, arch_kwargs, shapes, path, CheckpointError
        )
    else:  # a dense task's backbone + heads: resnet_pl.deploy.dense rebuilds and checks it
        try:
            num_classes, in_chans = int(hp["num_classes"]), int(hp["in_chans"])
        except (TypeError, ValueError, OverflowError) as err:
            raise CheckpointError(f"{path}: malformed hyper_parameters ({err})") from None
    return CheckpointContents(
        path=path,
        arch=arch,
        arch_kwargs=arch_kwargs,
        num_classes=num_classes,
        in_chans=in_chans,
        hparams=dict(hp),
        state=state,
        epoch=ckpt.get("epoch"),
        global_step=ckpt.get("global_step"),
    )


def dense_task_of(hparams: Mapping[str, Any]) -> str | None:
    """``"segmentation"``, ``"detection"`` or ``None`` (a classifier) for a checkpoint's
    hyperparameters."""
    path = str(hparams.get("_class_path", ""))
    if path.endswith("SegmentationTask") or ("head" in hparams and "ignore_index" in hparams):
        return "segmentation"
    if path.endswith("DetectionTask") or "detector" in hparams:
        return "detection"
    return None


# Mappings among hyperparameters that are options of something else, not option groups.
NOT_GROUPS = frozenset({"model_kwargs"})


def flat_hparams(hp: Mapping[str, Any]) -> dict[str, Any]:
    """One flat view of a checkpoint's hyperparameters, whichever form they have: the grouped
    form of today (``{"optim": {"lr": ...}, "data_info": {"mean": ...}}``) is flattened to the
    flat form of before (``{"lr": ..., "mean": ...}``), which is what this reader's users look
    up (``arch``, ``num_classes``, ``mean``, ``tta``, ``teacher``...). Any mapping value except
    ``model_kwargs`` is a group, so a group added later needs no change here."""
    flat: dict[str, Any] = {}
    for key, value in hp.items():
        if isinstance(value, Mapping) and key not in NOT_GROUPS:
            flat.update(value)
        else:
            flat[key] = value
    return flat


def build_model(ck: CheckpointContents) -> nn.Module:
    """The network of a checkpoint, loaded strictly, in eval mode, fp32."""
    model = get_builder(ck.arch)(num_classes=ck.num_classes, in_chans=ck.in_chans, **ck.arch_kwargs)
    state = {k: (v.float() if v.is_floating_point() else v) for k, v in ck.state.items()}
    load_into(model, state, name=str(ck.path))
    return model.eval()


# The publishing workflow's names, importable from here as before the split.
_PUBLISH_NAMES = frozenset(
    {
        "DATASET_CREDITS", "SLICES", "checkpoint_cfg", "export_checkpoint", "find_run_file",
        "git_commit", "make_recipe", "measure", "publish", "training_summary",
    }
)  # fmt: skip


def __getattr__(name: str) -> Any:
    if name in _PUBLISH_NAMES:
        from resnet_pl.hub import publish

        return getattr(publish, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
