"""Fine-tuning tools for :class:`~resnet_pl.lightning.module.ResNetClassifier`, built so that
any torch or Lightning scheduler, an exact resume and DDP all keep working:

- **Layer-wise learning-rate decay** (``layer_decay``): each parameter group carries its own
  ``"lr"`` (``lr * layer_decay ** (head_depth - depth)``), so every scheduler that scales group
  rates (``LambdaLR``, ``OneCycleLR`` with per-group ``max_lr``, ``CosineAnnealingLR``...) applies
  it. timm's ``lr_scale`` key, which only timm's own scheduler reads, is not used
  (huggingface/pytorch-image-models#2532).
- **Freeze / gradual unfreeze** (``freeze_backbone_epochs``, ``unfreeze_interval``): a frozen
  group keeps its place in the optimizer (the groups never change, so a checkpoint's optimizer
  state always fits: Lightning-AI/pytorch-lightning#6891, #8502) and no parameter's
  ``requires_grad`` is toggled mid-run (fragile under DDP: #20340). Instead the frozen groups'
  learning rate is 0 for the optimizer step only (:func:`gated_step`), and restored right after,
  so the scheduler's own state is untouched. With SGD, Adam and AdamW a zero rate leaves the
  parameter bit-identical (weight decay is scaled by the rate too).
- **BatchNorm while frozen** (``train_bn``): ``False`` keeps the frozen part's BatchNorm layers
  in eval mode (running statistics unchanged) and their affine parameters frozen; ``True``
  trains them (fastai's default) -- honoured, unlike #21531.

Which groups are frozen is a pure function of the epoch, so a resumed run, every DDP rank and
a rerun agree.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from torch import nn

NORM_TYPES = (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm)


def head_module(model: nn.Module) -> nn.Module | None:
    """The classifier: ``get_classifier()`` (timm style) or ``fc``."""
    get = getattr(model, "get_classifier", None)
    return get() if callable(get) else getattr(model, "fc", None)


def depth_of_children(model: nn.Module) -> tuple[dict[str, int], int]:
    """Depth of each top-level child of ``model`` and the head's depth. resnet-pl ResNets: the
    stem (``conv1``, ``bn1``) is 0, ``layerK`` is K, ``final_norm`` goes with the last stage and
    the classifier is one deeper. Other models: their top-level children in order, head last."""
    head = head_module(model)
    head_names = {n for n, m in model.named_children() if m is head}
    stages = list(getattr(model, "stage_names", []) or [])
    depths: dict[str, int] = {}
    if stages:
        last = len(stages)
        for name, _ in model.named_children():
            if name in head_names:
                continue
            if name in stages:
                depths[name] = stages.index(name) + 1
            elif name == "final_norm":
                depths[name] = last
            else:
                depths[name] = 0
        return depths, last + 1
    order = [n for n, _ in model.named_children() if n not in head_names]
    depths = {n: i for i, n in enumerate(order)}
    return depths, len(order)


def parameter_depths(model: nn.Module) -> tuple[dict[int, int], int]:
    """``{id(param): depth}`` and the head's depth (see :func:`depth_of_children`)."""
    depths, head_depth = depth_of_children(model)
    out: dict[int, int] = {}
    for child_name, child in model.named_children():
        d = depths.get(child_name, head_depth)
        for p in child.parameters():
            out.setdefault(id(p), d)
    for p in model.parameters():  # parameters registered on the model itself
        out.setdefault(id(p), 0)
    return out, head_depth


def norm_parameter_ids(model: nn.Module) -> set[int]:
    return {id(p) for m in model.modules() if isinstance(m, NORM_TYPES) for p in m.parameters()}


def build_parameter_groups(
    model: nn.Module,
    *,
    lr: float,
    weight_decay: float,
    backbone_lr_scale: float = 1.0,
    layer_decay: float = 1.0,
    norm_bias_lr_scale: float = 1.0,
) -> list[dict[str, Any]]:
    """Optimizer groups, one per (depth, decayed or not, fast norm bias or not, norm or not).

    Each group's ``"lr"`` is final: ``lr`` x ``backbone_lr_scale`` (backbone only) x
    ``layer_decay ** (head_depth - depth)`` x ``norm_bias_lr_scale`` (BatchNorm biases only).
    No weight decay on 1-D parameters (norm weights, biases). Extra keys ``name``, ``depth``,
    ``is_norm`` and ``head`` say what each group holds (:func:`gated_step` reads them)."""
    depth, head_depth = parameter_depths(model)
    norms = norm_parameter_ids(model)
    norm_biases = {
        id(m.bias)
        for m in model.modules()
        if isinstance(m, nn.modules.batchnorm._NormBase) and m.bias is not None
    }
    groups: dict[tuple[int, bool, bool, bool], list[nn.Parameter]] = {}
    for p in model.parameters():
        key = (
            depth[id(p)],
            p.ndim > 1,
            id(p) in norm_biases and norm_bias_lr_scale != 1.0,
            id(p) in norms,
        )
        groups.setdefault(key, []).append(p)
    out = []
    for (d, decay, fast_bias, is_norm), params in sorted(groups.items()):
        is_head = d == head_depth
        rate = lr * (1.0 if is_head else backbone_lr_scale)
        rate *= layer_decay ** (head_depth - d)
        rate *= norm_bias_lr_scale if fast_bias else 1.0
        kind = "head" if is_head else ("stem" if d == 0 else f"depth{d}")
        out.append(
            {
                "params": params,
                "weight_decay": weight_decay if decay else 0.0,
                "lr": rate,
                "name": f"{kind}.{'decay' if decay else 'no_decay'}"
                + (".norm" if is_norm else "")
                + (".fast_bias" if fast_bias else ""),
                "depth": d,
                "is_norm": is_norm,
                "head": is_head,
            }
        )
    return out


def frozen_depths(
    epoch: int, head_depth: int, freeze_epochs: int, unfreeze_interval: int = 0
) -> set[int]:
    """Depths whose parameters are frozen in ``epoch``. The head is never frozen. Everything
    below it is frozen for ``freeze_epochs`` epochs; with ``unfreeze_interval = k > 0`` the
    backbone then thaws one depth every ``k`` epochs from the top (gradual unfreezing: the last
    stage at ``freeze_epochs``, the one below ``k`` epochs later, ..., the stem last)."""
    if freeze_epochs <= 0:
        return set()
    out = set()
    for d in range(head_depth):
        thaw = freeze_epochs + unfreeze_interval * (head_depth - 1 - d)
        if epoch < thaw:
            out.add(d)
    return out


def is_gated(group: dict[str, Any], frozen: set[int], train_bn: bool) -> bool:
    """Whether an optimizer group takes no step while ``frozen`` depths are frozen."""
    if group.get("head") or group.get("depth") not in frozen:
        return False
    return not (train_bn and group.get("is_norm"))


@contextlib.contextmanager
def gated_step(optimizer: Any, frozen: set[int], train_bn: bool) -> Iterator[None]:
    """Set the learning rate of the frozen groups to 0 for one optimizer step, then restore
    what the scheduler had set (schedulers that read the current rate keep working)."""
    if not frozen:
        yield
        return
    saved: list[tuple[dict[str, Any], Any]] = []
    for group in optimizer.param_groups:
        if is_gated(group, frozen, train_bn):
            saved.append((group, group["lr"]))
            group["lr"] = 0.0
    try:
        yield
    finally:
        for group, lr in saved:
            group["lr"] = lr


def set_frozen_norms_eval(model: nn.Module, frozen: set[int], train_bn: bool) -> None:
    """Put the BatchNorm layers of frozen depths in eval mode (running statistics neither used
    from the batch nor updated) unless ``train_bn``. Called before every training batch, since
    Lightning switches the whole model back to train mode after each validation."""
    if not frozen or train_bn or not model.training:
        return
    depths, _ = depth_of_children(model)
    for name, child in model.named_children():
        if depths.get(name) not in frozen:
            continue
        for m in child.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.eval()


def group_rates(optimizer: Any) -> dict[str, float]:
    """``{group name: lr}`` (for logs and tests)."""
    return {str(g.get("name", i)): float(g["lr"]) for i, g in enumerate(optimizer.param_groups)}


LR_FIND_STEPS = 60


def find_lr(
    trainer: Any,
    model: Any,
    datamodule: Any,
    *,
    num_training: int | None = None,
    quiet: bool = False,
) -> float | None:
    """``lr: auto``: run Lightning's learning-rate finder (``Tuner.lr_find``) before fit, set
    the suggestion as the model's ``lr`` (saved in its hyperparameters, hence in every
    checkpoint), log it as ``lr_found`` and save the finder's curve as ``lr_find.png`` in the run
    folder. Does nothing unless ``lr`` is ``"auto"`` (a resumed run has the found value)."""
    from lightning.pytorch.tuner import Tuner

    from resnet_pl.lightning.errors import ConfigError

    hp = model.hparams.get("optim")
    if not isinstance(hp, dict) or hp.get("lr") != "auto":  # a dense task has no optim group
        return None
    hp["lr"] = 1e-3  # a number for configure_optimizers; the finder replaces every group's
    # The finder's steps may span several epochs of a small dataset: lift max_epochs meanwhile.
    fit_loop = trainer.fit_loop
    max_epochs = fit_loop.max_epochs
    fit_loop.max_epochs = max(max_epochs or 1, 10_000)
    try:
        finder = Tuner(trainer).lr_find(
            model,
            datamodule=datamodule,
            min_lr=1e-5,
            max_lr=1.0,
            num_training=num_training or LR_FIND_STEPS,
            update_attr=False,
        )
    finally:
        fit_loop.max_epochs = max_epochs
    suggestion = finder.suggestion() if finder is not None else None
    if suggestion is None or not suggestion > 0:
        hp["lr"] = "auto"
        raise ConfigError(
            "the learning-rate finder found no usable rate (too few batches or a flat loss); "
            "give --model.lr a number"
        )
    lr = float(suggestion)
    hp["lr"] = lr
    model._hparams_initial["optim"]["lr"] = lr
    for logger in trainer.loggers:
        logger.log_hyperparams({"lr": lr, "lr_found": lr})
    root = trainer.default_root_dir
    try:
        import matplotlib.pyplot as plt

        fig: Any = finder.plot(suggest=True)  # type: ignore[union-attr]
        fig.savefig(f"{root}/lr_find.png", dpi=80)
        plt.close(fig)
    except Exception:  # the plot is a convenience; the value is what matters
        pass
    if not quiet and trainer.is_global_zero:
        print(f"resnet-pl: lr auto: the learning-rate finder chose lr = {lr:.3g}")
    return lr
