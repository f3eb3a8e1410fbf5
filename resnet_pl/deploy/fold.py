"""Fold inference-mode BatchNorm into the convolution that feeds it.

At inference a BatchNorm is a fixed per-channel affine map, so ``bn(conv(x))`` equals one
convolution with rescaled weights and a bias: the exported graph loses a node (and a memory
round-trip) per convolution, and reduced-precision conversion sees one weight tensor instead
of a weight and four statistics vectors.

Which convolution feeds which BatchNorm is found by running the model once and watching the
data flow (module hooks plus a :class:`~torch.overrides.TorchFunctionMode` that counts every use
of every convolution output). A pair is folded only when the BatchNorm's input *is* the
convolution's output tensor and nothing else reads that tensor, so the rewrite is exact for any
module, not just this project's ResNets; a BatchNorm that follows a ReLU or a residual sum (the
pre-activation blocks) is left in place.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_leaves

_CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)


@dataclass(frozen=True)
class FoldResult:
    """What :func:`fold_batchnorm` did: pairs folded and BatchNorms left (not foldable)."""

    folded: list[tuple[str, str]]  # (conv name, bn name)
    remaining: list[str]

    @property
    def num_folded(self) -> int:
        return len(self.folded)


class _UseCounter(TorchFunctionMode):
    """Counts, for each watched tensor, the torch calls that read it and which BatchNorm (if
    any) was running at the time."""

    def __init__(self) -> None:
        super().__init__()
        self.watched: dict[int, Tensor] = {}  # id -> tensor (kept alive so ids stay unique)
        self.uses: dict[int, list[nn.Module | None]] = defaultdict(list)
        self.active_bn: nn.Module | None = None

    def __torch_function__(
        self,
        func: Callable[..., Any],
        types: Iterable[type],
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
    ) -> Any:
        kwargs = kwargs or {}
        for leaf in tree_leaves((args, kwargs)):
            if isinstance(leaf, Tensor) and id(leaf) in self.watched:
                self.uses[id(leaf)].append(self.active_bn)
        return func(*args, **kwargs)


def _foldable_bn(m: nn.Module) -> bool:
    return isinstance(m, _BatchNorm) and m.running_mean is not None and m.running_var is not None


@torch.no_grad()
def find_conv_bn_pairs(
    model: nn.Module, example: Tensor
) -> tuple[list[tuple[str, str]], list[str]]:
    """``(conv, bn)`` module-name pairs that can be folded exactly, and the BatchNorms that
    cannot, found by running ``model`` (in eval mode) on ``example`` once."""
    names = {m: n for n, m in model.named_modules(remove_duplicate=False)}
    counter = _UseCounter()
    conv_calls: dict[nn.Module, int] = defaultdict(int)
    bn_calls: dict[nn.Module, int] = defaultdict(int)
    out_of: dict[int, nn.Module] = {}  # conv output tensor id -> conv
    bn_input: dict[nn.Module, int] = {}
    handles = []

    def conv_hook(m: nn.Module, inputs: tuple[Any, ...], out: Any) -> None:
        conv_calls[m] += 1
        if isinstance(out, Tensor):
            counter.watched[id(out)] = out
            out_of[id(out)] = m

    def bn_pre(m: nn.Module, inputs: tuple[Any, ...]) -> None:
        bn_calls[m] += 1
        if inputs and isinstance(inputs[0], Tensor):
            bn_input[m] = id(inputs[0])
        counter.active_bn = m

    def bn_post(m: nn.Module, inputs: tuple[Any, ...], out: Any) -> None:
        counter.active_bn = None

    for m in model.modules():
        if isinstance(m, _CONVS):
            handles.append(m.register_forward_hook(conv_hook))
        elif _foldable_bn(m):
            handles.append(m.register_forward_pre_hook(bn_pre))
            handles.append(m.register_forward_hook(bn_post))
    try:
        with counter:
            model(example)
    finally:
        for h in handles:
            h.remove()

    pairs: list[tuple[str, str]] = []
    remaining: list[str] = []
    for bn in (m for m in model.modules() if _foldable_bn(m)):
        tid = bn_input.get(bn)
        conv = out_of.get(tid) if tid is not None else None
        ok = (
            conv is not None
            and bn_calls[bn] == 1
            and conv_calls[conv] == 1
            and isinstance(conv, nn.Conv1d | nn.Conv2d | nn.Conv3d)
            and conv.out_channels == bn.num_features
            and all(user is bn for user in counter.uses[tid])  # type: ignore[index]
        )
        if ok and conv is not None:
            pairs.append((names[conv], names[bn]))
        else:
            remaining.append(names[bn])
    return pairs, remaining


def _replace(model: nn.Module, target: nn.Module, new: nn.Module) -> None:
    for parent in model.modules():
        for child_name, child in list(parent.named_children()):
            if child is target:
                setattr(parent, child_name, new)


@torch.no_grad()
def fold_conv_bn(conv: nn.Conv1d | nn.Conv2d | nn.Conv3d, bn: _BatchNorm) -> None:
    """Fold ``bn`` (eval statistics) into ``conv`` in place. Computed in float64, so the
    folded weights are as close to the exact product as float32 can store."""
    assert bn.running_mean is not None and bn.running_var is not None
    w = conv.weight.double()
    mean, var = bn.running_mean.double(), bn.running_var.double()
    gamma = bn.weight.double() if bn.weight is not None else torch.ones_like(mean)
    beta = bn.bias.double() if bn.bias is not None else torch.zeros_like(mean)
    scale = gamma / torch.sqrt(var + bn.eps)
    bias = conv.bias.double() if conv.bias is not None else torch.zeros_like(mean)
    new_w = w * scale.reshape(-1, *([1] * (w.dim() - 1)))
    new_b = (bias - mean) * scale + beta
    conv.weight = nn.Parameter(new_w.to(conv.weight.dtype), requires_grad=False)
    conv.bias = nn.Parameter(new_b.to(conv.weight.dtype), requires_grad=False)


@torch.no_grad()
def fold_batchnorm(model: nn.Module, example: Tensor) -> FoldResult:
    """Fold every foldable BatchNorm of ``model`` into its convolution, **in place** (pass a
    copy to keep the original), replacing the BatchNorm with :class:`nn.Identity`.

    Args:
        model: any module; it is put in eval mode (folding uses the running statistics).
        example: one input batch, used only to trace which convolution feeds which norm.
    """
    model.eval()
    pairs, remaining = find_conv_bn_pairs(model, example)
    modules = dict(model.named_modules(remove_duplicate=False))
    for conv_name, bn_name in pairs:
        conv, bn = modules[conv_name], modules[bn_name]
        fold_conv_bn(conv, bn)  # type: ignore[arg-type]
        _replace(model, bn, nn.Identity())
    return FoldResult(pairs, remaining)
