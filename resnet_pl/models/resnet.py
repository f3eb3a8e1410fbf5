"""Residual networks: one configurable :class:`ResNet` and its blocks.

Papers:
- Deep Residual Learning for Image Recognition, He et al. 2015, https://arxiv.org/abs/1512.03385
  (ImageNet ResNets, and the CIFAR ResNets of its section 4.2 with option-A shortcuts).
- Identity Mappings in Deep Residual Networks, He et al. 2016, https://arxiv.org/abs/1603.05027
  (pre-activation blocks).
- Aggregated Residual Transformations, Xie et al. 2016, https://arxiv.org/abs/1611.05431 (ResNeXt).
- Wide Residual Networks, Zagoruyko & Komodakis 2016, https://arxiv.org/abs/1605.07146.
- Deep Networks with Stochastic Depth, Huang et al. 2016, https://arxiv.org/abs/1603.09382.

Attribute names (``conv1``, ``bn1``, ``layer1`` ... ``layer4``, ``fc``, ``downsample``) follow
torchvision, so an ImageNet-family model loads a torchvision ``state_dict`` with ``strict=True``.
The file reads top to bottom: helpers, blocks, the network; the named builders
(``resnet50()`` ...) are in :mod:`resnet_pl.models.builders`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.ops import StochasticDepth

from resnet_pl.models.hub_hooks import HubMixin

Stem = Literal["imagenet", "small"]
Shortcut = Literal["A", "B"]
BlockType = Literal["basic", "bottleneck"]


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------
def conv3x3(
    in_ch: int, out_ch: int, stride: int = 1, groups: int = 1, dilation: int = 1
) -> nn.Conv2d:
    """3x3 convolution, padded to keep the size (``padding = dilation``), without bias (a
    BatchNorm always follows or precedes it)."""
    return nn.Conv2d(
        in_ch, out_ch, 3, stride=stride, padding=dilation, groups=groups, bias=False,
        dilation=dilation,
    )  # fmt: skip


def conv1x1(in_ch: int, out_ch: int, stride: int = 1) -> nn.Conv2d:
    """1x1 convolution without bias."""
    return nn.Conv2d(in_ch, out_ch, 1, stride=stride, bias=False)


class PadShortcut(nn.Module):
    """Option-A shortcut of He et al. 2015: subsample spatially, zero-pad the new channels.

    It has no parameters, which is why the CIFAR ResNets hit the paper's parameter counts.
    Slicing and ``F.pad`` export to ONNX as plain ``Slice``/``Pad`` nodes. In a stage whose
    stride is replaced by dilation (``output_stride``) it gets ``stride=1`` and only pads.
    """

    def __init__(self, in_ch: int, out_ch: int, stride: int) -> None:
        super().__init__()
        self.stride = stride
        self.extra = out_ch - in_ch

    def forward(self, x: Tensor) -> Tensor:
        if self.stride > 1:
            x = x[:, :, :: self.stride, :: self.stride]
        # Pad the channel dimension (dim 1): F.pad lists pads from the last dim backwards.
        return F.pad(x, (0, 0, 0, 0, 0, self.extra))


def make_shortcut(
    in_ch: int, out_ch: int, stride: int, kind: Shortcut, preact: bool
) -> nn.Module | None:
    """The shortcut for a block whose output differs in shape from its input, else ``None``."""
    if stride == 1 and in_ch == out_ch:
        return None
    if kind == "A":
        return PadShortcut(in_ch, out_ch, stride)
    if preact:
        # A pre-activation block normalises its input before both paths, so no BN here.
        return nn.Sequential(conv1x1(in_ch, out_ch, stride))
    return nn.Sequential(conv1x1(in_ch, out_ch, stride), nn.BatchNorm2d(out_ch))


# --------------------------------------------------------------------------------------------
# Blocks
# --------------------------------------------------------------------------------------------
class BasicBlock(nn.Module):
    """Two 3x3 convolutions (ResNet-18/34, CIFAR ResNets). Post-activation as in He et al. 2015.

    ``dilation`` / ``first_dilation`` (all four blocks): the 3x3 conv that carries the block's
    stride uses ``first_dilation`` (default: ``dilation``), every later 3x3 conv ``dilation``.
    In the first block of a stage whose stride became dilation, ``first_dilation`` is the
    previous stage's dilation, so each conv sees exactly the input pixels it saw with the
    stride, only without subsampling. For bottlenecks this is torchvision's rule (its only 3x3
    conv gets the previous dilation); for basic blocks it is timm's (torchvision refuses
    dilation there).
    """

    expansion = 1

    def __init__(
        self,
        in_ch: int,
        planes: int,
        stride: int = 1,
        downsample: nn.Module | None = None,
        groups: int = 1,
        base_width: int = 64,
        drop_path: float = 0.0,
        dilation: int = 1,
        first_dilation: int | None = None,
    ) -> None:
        super().__init__()
        if groups != 1 or base_width != 64:
            raise ValueError("BasicBlock supports only groups=1 and base_width=64")
        first_dilation = first_dilation or dilation
        self.conv1 = conv3x3(in_ch, planes, stride, dilation=first_dilation)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(planes, planes, dilation=dilation)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample
        self.drop_path = StochasticDepth(drop_path, "row") if drop_path > 0 else nn.Identity()

    def last_norm(self) -> nn.BatchNorm2d:
        """The norm whose weight ``zero_init_residual`` sets to zero."""
        return self.bn2

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out = self.drop_path(out)
        out += identity  # in place, as torchvision: saves one activation-sized allocation
        return self.relu(out)


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3 (grouped for ResNeXt), 1x1 expand. Stride sits on the 3x3 ("v1.5")."""

    expansion = 4

    def __init__(
        self,
        in_ch: int,
        planes: int,
        stride: int = 1,
        downsample: nn.Module | None = None,
        groups: int = 1,
        base_width: int = 64,
        drop_path: float = 0.0,
        dilation: int = 1,
        first_dilation: int | None = None,
    ) -> None:
        super().__init__()
        width = int(planes * (base_width / 64.0)) * groups
        self.conv1 = conv1x1(in_ch, width)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = conv3x3(width, width, stride, groups, first_dilation or dilation)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = conv1x1(width, planes * self.expansion)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample
        self.drop_path = StochasticDepth(drop_path, "row") if drop_path > 0 else nn.Identity()

    def last_norm(self) -> nn.BatchNorm2d:
        return self.bn3

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        out = self.drop_path(out)
        out += identity  # in place, as torchvision: saves one activation-sized allocation
        return self.relu(out)


class PreActBasicBlock(nn.Module):
    """BN-ReLU-conv twice (He et al. 2016); also the block of Wide ResNets."""

    expansion = 1

    def __init__(
        self,
        in_ch: int,
        planes: int,
        stride: int = 1,
        downsample: nn.Module | None = None,
        groups: int = 1,
        base_width: int = 64,
        drop_path: float = 0.0,
        dilation: int = 1,
        first_dilation: int | None = None,
    ) -> None:
        super().__init__()
        if groups != 1 or base_width != 64:
            raise ValueError("PreActBasicBlock supports only groups=1 and base_width=64")
        first_dilation = first_dilation or dilation
        self.bn1 = nn.BatchNorm2d(in_ch)
        self.conv1 = conv3x3(in_ch, planes, stride, dilation=first_dilation)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = conv3x3(planes, planes, dilation=dilation)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample
        self.drop_path = StochasticDepth(drop_path, "row") if drop_path > 0 else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        pre = self.relu(self.bn1(x))
        # With a projection the shortcut sees the pre-activated input, as in the paper's code.
        identity = x if self.downsample is None else self.downsample(pre)
        out = self.conv1(pre)
        out = self.conv2(self.relu(self.bn2(out)))
        out = self.drop_path(out)
        out += identity
        return out


class PreActBottleneck(nn.Module):
    """Pre-activation bottleneck (He et al. 2016), e.g. PreAct-ResNet-164."""

    expansion = 4

    def __init__(
        self,
        in_ch: int,
        planes: int,
        stride: int = 1,
        downsample: nn.Module | None = None,
        groups: int = 1,
        base_width: int = 64,
        drop_path: float = 0.0,
        dilation: int = 1,
        first_dilation: int | None = None,
    ) -> None:
        super().__init__()
        width = int(planes * (base_width / 64.0)) * groups
        self.bn1 = nn.BatchNorm2d(in_ch)
        self.conv1 = conv1x1(in_ch, width)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv2 = conv3x3(width, width, stride, groups, first_dilation or dilation)
        self.bn3 = nn.BatchNorm2d(width)
        self.conv3 = conv1x1(width, planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample
        self.drop_path = StochasticDepth(drop_path, "row") if drop_path > 0 else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        pre = self.relu(self.bn1(x))
        identity = x if self.downsample is None else self.downsample(pre)
        out = self.conv1(pre)
        out = self.conv2(self.relu(self.bn2(out)))
        out = self.conv3(self.relu(self.bn3(out)))
        out = self.drop_path(out)
        out += identity
        return out


Block = BasicBlock | Bottleneck | PreActBasicBlock | PreActBottleneck
_BLOCKS: dict[tuple[str, bool], type[Block]] = {
    ("basic", False): BasicBlock,
    ("bottleneck", False): Bottleneck,
    ("basic", True): PreActBasicBlock,
    ("bottleneck", True): PreActBottleneck,
}


# --------------------------------------------------------------------------------------------
# The network
# --------------------------------------------------------------------------------------------
class ResNet(nn.Module, HubMixin):
    """A residual network; every variant in this file is a set of constructor arguments.

    Args:
        layers: blocks per stage, e.g. ``(3, 4, 6, 3)`` for ResNet-50, ``(3, 3, 3)`` for ResNet-20.
        block: ``"basic"`` (two 3x3 convs) or ``"bottleneck"`` (1x1-3x3-1x1, expansion 4).
        num_classes: size of the classifier; ``0`` leaves the pooled features (``fc`` = identity).
        in_chans: input channels (1 for grayscale).
        stem: ``"imagenet"`` (7x7/2 conv + 3x3/2 max-pool, for 224 px) or ``"small"``
            (3x3/1 conv, for 32 px inputs such as CIFAR or Fashion-MNIST).
        widths: ``planes`` of each stage (block output is ``planes * expansion``).
        stem_width: channels out of the stem; defaults to ``widths[0]``.
        groups, width_per_group: ResNeXt cardinality and width; ``width_per_group=128`` with
            ``groups=1`` gives Wide ResNet-50-2.
        shortcut: ``"B"`` projects with a 1x1 conv where shapes change; ``"A"`` zero-pads
            (parameter-free, the CIFAR ResNets of the 2015 paper).
        preact: pre-activation blocks (BN-ReLU-conv) with a final BN-ReLU before pooling.
        zero_init_residual: start each residual branch at zero (its last norm's weight = 0),
            so every block begins as the identity (Goyal et al. 2017).
        drop_path_rate: stochastic depth, rising linearly from 0 to this rate over the blocks.
        drop_rate: dropout before the classifier.
        features_only: build no pooling/classifier; ``forward`` returns the stage feature maps
            selected by ``out_indices`` (1-based stage numbers).
        conv_init: ``"he"`` (He et al. 2015 normal init, as torchvision) or ``"dirac"``:
            convolutions that keep their shape start as the identity
            (:func:`resnet_pl.models.init.dirac_init_`), the others as ``"he"``.
        output_stride: the total reduction of the last feature map relative to the input
            (``feature_info[-1]["reduction"]``), for dense prediction. ``None`` keeps the
            network's natural stride: ``stem stride x 2 ** (stages - 1)``, i.e. 32 for the
            ImageNet stem with 4 stages, 4 for a 3-stage small-stem (CIFAR) net, 8 for a
            4-stage small-stem net. Half or a quarter of it replaces the stride 2 of the last
            one or two stages by dilation (2, then 4), as DeepLab and timm do: 32/16/8 on
            ImageNet-stem nets, 4/2/1 on CIFAR nets. Dilation adds no parameters, so every
            state dict (pretrained weights included) loads unchanged.
        replace_stride_with_dilation: torchvision's spelling, one bool per strided stage
            (stages 2.., so 3 for the ImageNet family): ``[False, True, True]`` is
            ``output_stride=8`` on ResNet-50. Any combination is accepted, as in torchvision.
            Give this or ``output_stride``, not both.
    """

    def __init__(
        self,
        layers: Sequence[int],
        block: BlockType = "basic",
        num_classes: int = 1000,
        in_chans: int = 3,
        stem: Stem = "imagenet",
        widths: Sequence[int] = (64, 128, 256, 512),
        stem_width: int | None = None,
        groups: int = 1,
        width_per_group: int = 64,
        shortcut: Shortcut = "B",
        preact: bool = False,
        zero_init_residual: bool = False,
        drop_path_rate: float = 0.0,
        drop_rate: float = 0.0,
        features_only: bool = False,
        out_indices: Sequence[int] | None = None,
        conv_init: Literal["he", "dirac"] = "he",
        output_stride: int | None = None,
        replace_stride_with_dilation: Sequence[bool] | None = None,
    ) -> None:
        super().__init__()
        _check_options(
            layers, block, num_classes, in_chans, stem, widths, groups, width_per_group,
            shortcut, drop_path_rate, drop_rate, stem_width,
        )  # fmt: skip
        dilate = _dilated_stages(len(layers), stem, output_stride, replace_stride_with_dilation)
        block_cls = _BLOCKS[(block, preact)]
        stem_width = widths[0] if stem_width is None else stem_width
        self.num_classes = num_classes
        self.in_chans = in_chans
        self.preact = preact
        self.features_only = features_only
        self.drop_rate = drop_rate

        # Stem. Pre-activation nets skip the stem BN-ReLU on small images: the first block
        # normalises its input itself, and its identity path carries the raw conv output
        # (He et al. 2016, CIFAR models). ``relu`` is then an Identity, not a ReLU.
        if stem == "imagenet":
            self.conv1 = nn.Conv2d(in_chans, stem_width, 7, stride=2, padding=3, bias=False)
            self.bn1: nn.Module = nn.BatchNorm2d(stem_width)
            self.relu: nn.Module = nn.ReLU(inplace=True)
            self.maxpool: nn.Module = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
            stem_stride = 4
        else:
            self.conv1 = conv3x3(in_chans, stem_width)
            self.bn1 = nn.Identity() if preact else nn.BatchNorm2d(stem_width)
            self.relu = nn.Identity() if preact else nn.ReLU(inplace=True)
            self.maxpool = nn.Identity()
            stem_stride = 1

        # Stages: the first keeps resolution, every later one halves it, unless its stride is
        # replaced by dilation. As in torchvision's ``_make_layer``, a dilated stage's first
        # block still starts at the previous dilation (see BasicBlock), and its shortcut
        # keeps stride 1.
        total_blocks = sum(layers)
        block_idx = 0
        in_ch = stem_width
        self.feature_info: list[dict[str, Any]] = []
        self.stage_names: list[str] = []
        reduction = stem_stride
        dilation = 1
        for stage, (n_blocks, planes) in enumerate(zip(layers, widths, strict=True)):
            stride = 1 if stage == 0 else 2
            previous_dilation = dilation
            if stage > 0 and dilate[stage - 1]:
                dilation *= stride
                stride = 1
            reduction *= stride
            blocks: list[nn.Module] = []
            for i in range(n_blocks):
                out_ch = planes * block_cls.expansion
                s = stride if i == 0 else 1
                dp = drop_path_rate * block_idx / max(total_blocks - 1, 1)
                downsample = make_shortcut(in_ch, out_ch, s, shortcut, preact)
                blocks.append(
                    block_cls(
                        in_ch, planes, s, downsample, groups, width_per_group, dp,
                        dilation=dilation,
                        first_dilation=previous_dilation if i == 0 else dilation,
                    )
                )  # fmt: skip
                in_ch = out_ch
                block_idx += 1
            name = f"layer{stage + 1}"
            self.add_module(name, nn.Sequential(*blocks))
            self.stage_names.append(name)
            self.feature_info.append(
                {"module": name, "num_chs": in_ch, "reduction": reduction, "dilation": dilation}
            )
        self.num_features = in_ch
        self.output_stride = reduction
        self.out_indices = tuple(out_indices or range(1, len(layers) + 1))
        if any(not 1 <= i <= len(layers) for i in self.out_indices):
            raise ValueError(f"out_indices must be stage numbers in 1..{len(layers)}")

        # Pre-activation nets end with BN-ReLU, since their blocks end with a bare conv.
        self.final_norm: nn.Module = nn.BatchNorm2d(in_ch) if preact else nn.Identity()
        if not features_only:
            self.avgpool = nn.AdaptiveAvgPool2d(1)
            self.fc: nn.Module = nn.Linear(in_ch, num_classes) if num_classes else nn.Identity()

        if conv_init not in ("he", "dirac"):
            raise ValueError(f"conv_init must be 'he' or 'dirac', got {conv_init!r}")
        self._init_weights(zero_init_residual)
        if conv_init == "dirac":
            from resnet_pl.models.init import dirac_init_

            dirac_init_(self)

    def _init_weights(self, zero_init_residual: bool) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        if zero_init_residual:
            for m in self.modules():
                if isinstance(m, BasicBlock | Bottleneck):
                    nn.init.zeros_(m.last_norm().weight)
                elif isinstance(m, PreActBasicBlock):
                    # A pre-activation branch ends in a conv: zero that conv, since a zeroed
                    # BN before it would still pass its bias through.
                    nn.init.zeros_(m.conv2.weight)
                elif isinstance(m, PreActBottleneck):
                    nn.init.zeros_(m.conv3.weight)

    # ---- timm-style interface -----------------------------------------------------------------
    @property
    def stages(self) -> list[nn.Sequential]:
        return [getattr(self, n) for n in self.stage_names]

    def forward_stem(self, x: Tensor) -> Tensor:
        _check_input(x, self.in_chans)
        return self.maxpool(self.relu(self.bn1(self.conv1(x))))

    def forward_features(self, x: Tensor) -> Tensor:
        """The last stage's feature map, before pooling: ``(N, num_features, H/s, W/s)`` with
        ``s = output_stride`` (32 for the ImageNet stem by default)."""
        x = self.forward_stem(x)
        for stage in self.stages:
            x = stage(x)
        return F.relu(self.final_norm(x)) if self.preact else x

    def forward_intermediates(self, x: Tensor) -> list[Tensor]:
        """Feature maps after each stage listed in ``out_indices`` (strides 4/8/16/32 with the
        ImageNet stem, 1/2/4(/8) with the small stem, fewer halvings with ``output_stride``:
        ``feature_info`` has the real ones), for detection/segmentation necks."""
        x = self.forward_stem(x)
        feats: list[Tensor] = []
        last = len(self.stage_names)
        for i, stage in enumerate(self.stages, start=1):
            x = stage(x)
            if i in self.out_indices:
                feats.append(F.relu(self.final_norm(x)) if (self.preact and i == last) else x)
        return feats

    def forward_head(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        """Pool, (dropout), classify. ``pre_logits=True`` returns the pooled features."""
        x = torch.flatten(self.avgpool(x), 1)
        if self.drop_rate > 0:
            x = F.dropout(x, p=self.drop_rate, training=self.training)
        return x if pre_logits else self.fc(x)

    def forward(self, x: Tensor) -> Tensor | list[Tensor]:
        if self.features_only:
            return self.forward_intermediates(x)
        return self.forward_head(self.forward_features(x))

    def get_classifier(self) -> nn.Module:
        return self.fc

    def reset_classifier(self, num_classes: int) -> None:
        """Replace the head with a freshly initialised one (``0`` removes it)."""
        if self.features_only:
            raise ValueError("a features_only model has no classifier to reset")
        if num_classes < 0:
            raise ValueError(f"num_classes must be >= 0, got {num_classes}")
        # Build the new head where the old one lived, so a model already on a GPU (or in half
        # precision) stays usable without another ``.to()``.
        ref = self.conv1.weight
        self.num_classes = num_classes
        self.fc = (
            nn.Linear(self.num_features, num_classes, device=ref.device, dtype=ref.dtype)
            if num_classes
            else nn.Identity()
        )
        cfg = getattr(self, "pretrained_cfg", None)
        if isinstance(cfg, dict):
            cfg["num_classes"] = num_classes


def _check_options(
    layers: Sequence[int],
    block: str,
    num_classes: int,
    in_chans: int,
    stem: str,
    widths: Sequence[int],
    groups: int,
    width_per_group: int,
    shortcut: str,
    drop_path_rate: float,
    drop_rate: float,
    stem_width: int | None,
) -> None:
    """Reject bad option values with one message naming the option and the allowed values."""
    if block not in ("basic", "bottleneck"):
        raise ValueError(f"block must be 'basic' or 'bottleneck', got {block!r}")
    if stem not in ("imagenet", "small"):
        raise ValueError(f"stem must be 'imagenet' or 'small', got {stem!r}")
    if shortcut not in ("A", "B"):
        raise ValueError(f"shortcut must be 'A' (zero-pad) or 'B' (projection), got {shortcut!r}")
    if not isinstance(num_classes, int) or num_classes < 0:
        raise ValueError(f"num_classes must be an integer >= 0, got {num_classes!r}")
    if not isinstance(in_chans, int) or in_chans < 1:
        raise ValueError(f"in_chans must be an integer >= 1, got {in_chans!r}")
    if len(layers) != len(widths) or not layers or any(n < 1 for n in layers):
        raise ValueError(f"layers {tuple(layers)} must be positive, one per stage of {widths}")
    if groups < 1 or width_per_group < 1:
        raise ValueError("groups and width_per_group must be >= 1")
    if block == "basic" and (groups != 1 or width_per_group != 64):
        raise ValueError(
            "block='basic' supports only groups=1 and width_per_group=64 (ResNeXt and "
            f"Wide ResNet-50-2 style widths need block='bottleneck'), got groups={groups}, "
            f"width_per_group={width_per_group}"
        )
    if stem_width is not None and stem_width < 1:
        raise ValueError(f"stem_width must be >= 1 (or None for widths[0]), got {stem_width}")
    for name, rate in (("drop_path_rate", drop_path_rate), ("drop_rate", drop_rate)):
        if not 0.0 <= rate < 1.0:
            raise ValueError(f"{name} must be in [0, 1), got {rate}")


def _dilated_stages(
    n_stages: int,
    stem: str,
    output_stride: int | None,
    replace_stride_with_dilation: Sequence[bool] | None,
) -> list[bool]:
    """One flag per strided stage (stages 2..n): replace its stride 2 by dilation.

    ``output_stride`` may be the natural stride, half or a quarter of it (the last one or two
    stages dilated); anything else, or both spellings at once, is a ``ValueError``.
    """
    n_strided = n_stages - 1
    if output_stride is not None and replace_stride_with_dilation is not None:
        raise ValueError(
            "give output_stride or replace_stride_with_dilation, not both "
            f"(got output_stride={output_stride!r} and "
            f"replace_stride_with_dilation={replace_stride_with_dilation!r})"
        )
    if replace_stride_with_dilation is not None:
        flags = list(replace_stride_with_dilation)
        if len(flags) != n_strided or not all(isinstance(f, bool) for f in flags):
            raise ValueError(
                f"replace_stride_with_dilation must be {n_strided} bools, one per strided "
                f"stage (stages 2..{n_stages}) of this {n_stages}-stage network, got "
                f"{replace_stride_with_dilation!r}"
            )
        return flags
    if output_stride is None:
        return [False] * n_strided
    natural = (4 if stem == "imagenet" else 1) * 2**n_strided
    allowed = [natural // 2**k for k in range(min(2, n_strided) + 1)]
    if isinstance(output_stride, bool) or output_stride not in allowed:
        raise ValueError(
            f"output_stride={output_stride!r} is not available on this network: with the "
            f"{stem!r} stem and {n_stages} stages its natural output stride is {natural}, and "
            "dilating the last one or two stages gives half or a quarter of it; choose one of "
            f"{', '.join(map(str, allowed))} (or None)"
        )
    n_dilated = allowed.index(output_stride)
    return [False] * (n_strided - n_dilated) + [True] * n_dilated


def _check_input(x: Tensor, in_chans: int) -> None:
    # Shapes are static under torch.export/compile, so this costs nothing in their graphs.
    # Under torch.jit.trace the sizes are traced values and comparing them only emits a
    # TracerWarning, so the check is skipped there (a wrong input still fails in conv1).
    if torch.jit.is_tracing():
        return
    if x.dim() != 4 or x.shape[1] != in_chans:
        raise ValueError(
            f"expected input of shape (N, {in_chans}, H, W), got {tuple(x.shape)}; "
            f"convert the images to {in_chans} channel(s) or build the model with "
            f"in_chans={x.shape[1] if x.dim() == 4 else '...'}"
        )
