"""Detection and segmentation models on resnet-pl backbones, built from torchvision's own classes.

Every helper takes a registered architecture name (``"resnet50"``, ``"resnet20"``, ...) or an
``"arch.tag"`` weights name, builds the network through :func:`resnet_pl.create_model` and wraps
it in torchvision's modules, so what comes out is what torchvision users already know:

- :func:`fpn_backbone`: a :class:`~torchvision.models.detection.backbone_utils.BackboneWithFPN`
  (freezing and ``FrozenBatchNorm2d`` as torchvision's ``resnet_fpn_backbone``), for
  ``FasterRCNN``, ``MaskRCNN``, ``RetinaNet``, ``FCOS`` or ``KeypointRCNN``;
- :func:`fasterrcnn`, :func:`maskrcnn`, :func:`retinanet`, :func:`fcos`: those detectors with
  anchors sized to the backbone's real strides (torchvision's defaults on ResNet-50);
- :func:`deeplabv3`, :func:`fcn`: ``torchvision.models.segmentation`` models on a dilated
  backbone (``output_stride`` 8 by default, as ``deeplabv3_resnet50``), with ``{"out", "aux"}``
  outputs of the input's size.

On ResNet-50 the state-dict keys are torchvision's (``backbone.body.layer1...``,
``backbone.layer4...``), so a torchvision detection or segmentation checkpoint loads strictly.
Unlike torchvision, BasicBlock networks (ResNet-18/34, every CIFAR-style net) dilate too.
See docs/backbones.md.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models._utils import IntermediateLayerGetter
from torchvision.models.detection import FCOS, FasterRCNN, MaskRCNN, RetinaNet
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.backbone_utils import BackboneWithFPN
from torchvision.models.segmentation import FCN, DeepLabV3
from torchvision.models.segmentation.deeplabv3 import DeepLabHead
from torchvision.models.segmentation.fcn import FCNHead
from torchvision.ops import MultiScaleRoIAlign
from torchvision.ops.feature_pyramid_network import (
    ExtraFPNBlock,
    LastLevelMaxPool,
    LastLevelP6P7,
)
from torchvision.ops.misc import FrozenBatchNorm2d

from resnet_pl.factory import create_model
from resnet_pl.models import ResNet

__all__ = [
    "anchor_generator",
    "create_backbone",
    "deeplabv3",
    "detection_from_hparams",
    "fasterrcnn",
    "fcn",
    "fcos",
    "fpn_backbone",
    "maskrcnn",
    "retinanet",
    "segmentation_from_hparams",
]

# torchvision's GeneralizedRCNNTransform defaults, used for 3-channel inputs without a cfg.
_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)
# fpn_backbone's own options (the rest of its keyword arguments go to the ResNet).
_FPN_OPTIONS = ("out_channels", "norm_layer")


# --------------------------------------------------------------------------------------------
# Backbones
# --------------------------------------------------------------------------------------------
def create_backbone(
    arch: str,
    *,
    pretrained: bool = False,
    norm_layer: type[nn.Module] | None = None,
    **kwargs: Any,
) -> ResNet:
    """A ``features_only`` ResNet, optionally with pretrained weights and frozen BatchNorms.

    Args:
        arch: a registered architecture (``"resnet50"``) or weights name
            (``"resnet20.fashion_mnist"``).
        pretrained: load the verified weights named by ``arch`` (the classifier is dropped).
        norm_layer: ``torchvision.ops.misc.FrozenBatchNorm2d`` turns every BatchNorm into a
            frozen one (statistics and affine parameters fixed, as torchvision does for
            pretrained detection backbones); ``None`` or ``nn.BatchNorm2d`` keeps them.
        **kwargs: other :class:`~resnet_pl.models.ResNet` options, e.g. ``output_stride``,
            ``in_chans``, ``drop_path_rate``.
    """
    if norm_layer not in (None, nn.BatchNorm2d, FrozenBatchNorm2d):
        raise ValueError(
            "norm_layer must be None, torch.nn.BatchNorm2d or "
            f"torchvision.ops.misc.FrozenBatchNorm2d, got {norm_layer!r}; for SyncBatchNorm "
            "call torch.nn.SyncBatchNorm.convert_sync_batchnorm on the built model"
        )
    for key in ("features_only", "num_classes"):
        if key in kwargs:
            raise ValueError(f"{key} is set by the backbone helpers; drop {key}={kwargs[key]!r}")
    model = create_model(arch, pretrained=pretrained, features_only=True, **kwargs)
    if not isinstance(model, ResNet):
        raise TypeError(f"{arch!r} builds a {type(model).__name__}, not a resnet_pl ResNet")
    if norm_layer is FrozenBatchNorm2d:
        freeze_batchnorm(model)
    return model


def freeze_batchnorm(module: nn.Module) -> nn.Module:
    """Replace every ``nn.BatchNorm2d`` in ``module`` (in place) by a ``FrozenBatchNorm2d``
    holding the same statistics and affine parameters; returns ``module``."""
    for name, child in module.named_children():
        if isinstance(child, nn.BatchNorm2d):
            frozen = FrozenBatchNorm2d(child.num_features, eps=child.eps)
            if child.running_mean is not None:
                frozen.to(child.running_mean.device)
            with torch.no_grad():
                if child.affine:
                    frozen.weight.copy_(child.weight)
                    frozen.bias.copy_(child.bias)
                if child.running_mean is not None and child.running_var is not None:
                    frozen.running_mean.copy_(child.running_mean)
                    frozen.running_var.copy_(child.running_var)
            setattr(module, name, frozen)
        else:
            freeze_batchnorm(child)
    return module


def _relu_after(_module: nn.Module, _inputs: Any, output: Tensor) -> Tensor:
    return F.relu(output)


def _stage_layers(model: ResNet) -> list[str]:
    """Module names whose outputs are the stage feature maps, for ``IntermediateLayerGetter``.

    A pre-activation net's last map is only complete after its final BN-ReLU (what
    ``forward_intermediates`` returns), so there the last name is ``final_norm``, with a hook
    adding the functional ReLU; parameter names stay those of the classifier network.
    """
    names = list(model.stage_names)
    if model.preact:
        model.final_norm.register_forward_hook(_relu_after)
        names[-1] = "final_norm"
    return names


def _layers_to_train(model: ResNet, trainable_layers: int) -> list[str]:
    """torchvision's rule: the last ``trainable_layers`` of (stem, stage 1, ..., stage N)."""
    n = len(model.stage_names)
    if not 0 <= trainable_layers <= n + 1:
        raise ValueError(
            f"trainable_layers must be in 0..{n + 1} (stem plus {n} stages) for this network, "
            f"got {trainable_layers}"
        )
    order = [*reversed(model.stage_names), "conv1"]
    layers = order[:trainable_layers]
    if model.preact and model.stage_names[-1] in layers:
        layers.append("final_norm")  # it belongs to the last stage's output
    if trainable_layers == n + 1:
        layers.append("bn1")
    return layers


def fpn_backbone(
    arch: str,
    *,
    pretrained: bool = False,
    trainable_layers: int | None = None,
    returned_layers: Sequence[int] | None = None,
    extra_blocks: ExtraFPNBlock | None = None,
    out_channels: int = 256,
    norm_layer: type[nn.Module] | None = None,
    **kwargs: Any,
) -> BackboneWithFPN:
    """A torchvision ``BackboneWithFPN`` on a resnet-pl network (torchvision's
    ``resnet_fpn_backbone`` for any registered architecture, 3-stage CIFAR nets included).

    Args:
        arch: architecture or ``"arch.tag"`` weights name.
        pretrained: load the verified weights of ``arch``.
        trainable_layers: how many of (last stage, ..., first stage, stem) keep
            ``requires_grad``, counted from the top as torchvision does (5 = all for a 4-stage
            net). ``None``: 3 with pretrained weights, all without (torchvision's detection
            builders' rule; an explicit value is always honoured).
        returned_layers: 1-based stages fed to the FPN; default all of them (torchvision:
            ``[1, 2, 3, 4]``). Their maps are named ``"0"``, ``"1"``, ... in the output.
        extra_blocks: torchvision's extra FPN levels; default ``LastLevelMaxPool()`` (a
            ``"pool"`` map at twice the last stride).
        out_channels: FPN channels (256 in torchvision).
        norm_layer: ``None`` uses ``FrozenBatchNorm2d`` with pretrained weights and
            ``nn.BatchNorm2d`` without, as torchvision's detection builders do.
        **kwargs: other ResNet options (``output_stride``, ``in_chans``, ...).

    Returns:
        The ``BackboneWithFPN``; it also carries ``strides``: the reduction of each output map
        in order (used by :func:`anchor_generator`).
    """
    if norm_layer is None:
        norm_layer = FrozenBatchNorm2d if pretrained else nn.BatchNorm2d
    model = create_backbone(arch, pretrained=pretrained, norm_layer=norm_layer, **kwargs)
    n = len(model.stage_names)
    if trainable_layers is None:
        trainable_layers = 3 if pretrained else n + 1
    train = _layers_to_train(model, trainable_layers)
    for name, param in model.named_parameters():
        if not any(name.startswith(prefix) for prefix in train):
            param.requires_grad_(False)

    returned = list(range(1, n + 1)) if returned_layers is None else list(returned_layers)
    if not returned or any(not 1 <= i <= n for i in returned) or returned != sorted(set(returned)):
        raise ValueError(
            f"returned_layers must be increasing stage numbers in 1..{n}, got {returned_layers!r}"
        )
    names = _stage_layers(model)
    return_layers = {names[i - 1]: str(k) for k, i in enumerate(returned)}
    in_channels = [model.feature_info[i - 1]["num_chs"] for i in returned]
    strides = [int(model.feature_info[i - 1]["reduction"]) for i in returned]
    if extra_blocks is None:
        extra_blocks = LastLevelMaxPool()
    if isinstance(extra_blocks, LastLevelMaxPool):
        strides.append(strides[-1] * 2)
    elif isinstance(extra_blocks, LastLevelP6P7):
        strides += [strides[-1] * 2, strides[-1] * 4]
    backbone = BackboneWithFPN(
        model, return_layers, in_channels, out_channels, extra_blocks=extra_blocks
    )
    # Known only for torchvision's two extra blocks; anchor_generator asks otherwise.
    known = extra_blocks is None or isinstance(extra_blocks, LastLevelMaxPool | LastLevelP6P7)
    backbone.strides = strides if known else None  # type: ignore[assignment]
    backbone.image_stats = _image_stats(model)  # type: ignore[assignment]
    return backbone


def _image_stats(model: ResNet) -> tuple[list[float], list[float]]:
    """Normalisation for the detectors' transform: the weights' own, else ImageNet's."""
    cfg = getattr(model, "pretrained_cfg", None) or {}
    mean, std = cfg.get("mean"), cfg.get("std")
    if mean is not None and std is not None and len(mean) == model.in_chans:
        return list(mean), list(std)
    if model.in_chans == 3:
        return list(_IMAGENET_MEAN), list(_IMAGENET_STD)
    return [0.5] * model.in_chans, [0.5] * model.in_chans


def anchor_generator(
    backbone: BackboneWithFPN,
    *,
    size_per_stride: float = 8.0,
    scales_per_octave: int = 1,
    aspect_ratios: Sequence[float] = (0.5, 1.0, 2.0),
) -> AnchorGenerator:
    """Anchors matched to the backbone's real strides: on each map of stride ``s``,
    ``scales_per_octave`` sizes from ``size_per_stride * s`` up one octave.

    The defaults give torchvision's Faster/Mask R-CNN anchors on ResNet-50-FPN (32 ... 512 on
    strides 4 ... 64); ``size_per_stride=4, scales_per_octave=3`` gives RetinaNet's, and
    ``size_per_stride=1, aspect_ratios=(1.0,)`` FCOS's. On a CIFAR net (strides 1, 2, 4, 8)
    the same rule gives 8 ... 64 px anchors, sized for its small images.
    """
    strides = getattr(backbone, "strides", None)
    if strides is None:
        raise ValueError(
            "this backbone's output strides are unknown (custom extra_blocks); build "
            "torchvision.models.detection.anchor_utils.AnchorGenerator yourself, one size "
            "tuple per output map"
        )
    sizes = tuple(
        tuple(
            int(size_per_stride * s * 2 ** (i / scales_per_octave))
            for i in range(scales_per_octave)
        )
        for s in strides
    )
    return AnchorGenerator(sizes, (tuple(aspect_ratios),) * len(sizes))


# --------------------------------------------------------------------------------------------
# Detectors (torchvision's classes; only the backbone, anchors and pooling names are ours)
# --------------------------------------------------------------------------------------------
def _detection_backbone(
    arch: str,
    pretrained_backbone: bool,
    trainable_layers: int | None,
    returned_layers: Sequence[int] | None,
    p6p7: bool,
    backbone_kwargs: dict[str, Any] | None,
) -> BackboneWithFPN:
    extra_blocks = None
    if p6p7:
        # P6 comes from the FPN's P5 (torchvision's v1 RetinaNet/FCOS), so has its channels.
        chs = int((backbone_kwargs or {}).get("out_channels", 256))
        extra_blocks = LastLevelP6P7(chs, chs)
    return fpn_backbone(
        arch,
        pretrained=pretrained_backbone,
        trainable_layers=trainable_layers,
        returned_layers=returned_layers,
        extra_blocks=extra_blocks,
        **(backbone_kwargs or {}),
    )


def _transform_defaults(backbone: BackboneWithFPN, kwargs: dict[str, Any]) -> dict[str, Any]:
    mean, std = backbone.image_stats  # type: ignore[misc]
    return {"image_mean": mean, "image_std": std, **kwargs}


def _roi_pool(backbone: BackboneWithFPN, output_size: int) -> MultiScaleRoIAlign:
    names = [k for k in backbone.body.return_layers.values()]
    return MultiScaleRoIAlign(featmap_names=names, output_size=output_size, sampling_ratio=2)


def _last_stages(arch: str, backbone_kwargs: dict[str, Any] | None, count: int) -> list[int]:
    resnet_kwargs = {k: v for k, v in (backbone_kwargs or {}).items() if k not in _FPN_OPTIONS}
    with torch.device("meta"):
        probe = create_model(arch, features_only=True, **resnet_kwargs)
    n = len(probe.stage_names)  # type: ignore[arg-type]
    return list(range(max(1, n - count + 1), n + 1))


def fasterrcnn(
    arch: str,
    *,
    num_classes: int,
    pretrained_backbone: bool = False,
    trainable_layers: int | None = None,
    returned_layers: Sequence[int] | None = None,
    backbone_kwargs: dict[str, Any] | None = None,
    **kwargs: Any,
) -> FasterRCNN:
    """torchvision's ``FasterRCNN`` on :func:`fpn_backbone` (``fasterrcnn_resnet50_fpn`` for
    any architecture).

    Args:
        arch: architecture or ``"arch.tag"`` weights name.
        num_classes: including the background class (torchvision's convention).
        pretrained_backbone: load the verified weights of ``arch`` into the backbone.
        trainable_layers, returned_layers: as in :func:`fpn_backbone`.
        backbone_kwargs: options of :func:`fpn_backbone` (``out_channels``, ``norm_layer``)
            and of the ResNet (``output_stride``, ``in_chans`` ...).
        **kwargs: ``FasterRCNN`` options. Note ``min_size=800, max_size=1333``: torchvision
            resizes every image to that scale unless told otherwise. ``image_mean`` and
            ``image_std`` default to the weights' normalisation (ImageNet's for 3 channels).

    Returns:
        The model; in eval mode ``model(images)`` gives one ``{"boxes", "labels", "scores"}``
        dict per image, in train mode ``model(images, targets)`` a dict of losses.
    """
    backbone = _detection_backbone(
        arch, pretrained_backbone, trainable_layers, returned_layers, False, backbone_kwargs
    )
    kwargs.setdefault("rpn_anchor_generator", anchor_generator(backbone))
    kwargs.setdefault("box_roi_pool", _roi_pool(backbone, 7))
    return FasterRCNN(backbone, num_classes=num_classes, **_transform_defaults(backbone, kwargs))


def maskrcnn(
    arch: str,
    *,
    num_classes: int,
    pretrained_backbone: bool = False,
    trainable_layers: int | None = None,
    returned_layers: Sequence[int] | None = None,
    backbone_kwargs: dict[str, Any] | None = None,
    **kwargs: Any,
) -> MaskRCNN:
    """torchvision's ``MaskRCNN`` on :func:`fpn_backbone`; arguments as :func:`fasterrcnn`.
    Eval outputs add ``"masks"`` (``(K, 1, H, W)`` probabilities) to each box dict."""
    backbone = _detection_backbone(
        arch, pretrained_backbone, trainable_layers, returned_layers, False, backbone_kwargs
    )
    kwargs.setdefault("rpn_anchor_generator", anchor_generator(backbone))
    kwargs.setdefault("box_roi_pool", _roi_pool(backbone, 7))
    kwargs.setdefault("mask_roi_pool", _roi_pool(backbone, 14))
    return MaskRCNN(backbone, num_classes=num_classes, **_transform_defaults(backbone, kwargs))


def retinanet(
    arch: str,
    *,
    num_classes: int,
    pretrained_backbone: bool = False,
    trainable_layers: int | None = None,
    returned_layers: Sequence[int] | None = None,
    backbone_kwargs: dict[str, Any] | None = None,
    **kwargs: Any,
) -> RetinaNet:
    """torchvision's ``RetinaNet`` as ``retinanet_resnet50_fpn`` builds it: the last three
    stages (P3-P5) plus ``LastLevelP6P7``, three anchor scales per octave. ``num_classes``
    has no background class here (torchvision's convention); other arguments as
    :func:`fasterrcnn`."""
    if returned_layers is None:
        returned_layers = _last_stages(arch, backbone_kwargs, 3)
    backbone = _detection_backbone(
        arch, pretrained_backbone, trainable_layers, returned_layers, True, backbone_kwargs
    )
    kwargs.setdefault(
        "anchor_generator", anchor_generator(backbone, size_per_stride=4, scales_per_octave=3)
    )
    return RetinaNet(backbone, num_classes=num_classes, **_transform_defaults(backbone, kwargs))


def fcos(
    arch: str,
    *,
    num_classes: int,
    pretrained_backbone: bool = False,
    trainable_layers: int | None = None,
    returned_layers: Sequence[int] | None = None,
    backbone_kwargs: dict[str, Any] | None = None,
    **kwargs: Any,
) -> FCOS:
    """torchvision's ``FCOS`` as ``fcos_resnet50_fpn`` builds it (last three stages plus
    ``LastLevelP6P7``, one anchor per location of the map's stride); arguments as
    :func:`retinanet`."""
    if returned_layers is None:
        returned_layers = _last_stages(arch, backbone_kwargs, 3)
    backbone = _detection_backbone(
        arch, pretrained_backbone, trainable_layers, returned_layers, True, backbone_kwargs
    )
    kwargs.setdefault(
        "anchor_generator", anchor_generator(backbone, size_per_stride=1, aspect_ratios=(1.0,))
    )
    return FCOS(backbone, num_classes=num_classes, **_transform_defaults(backbone, kwargs))


# --------------------------------------------------------------------------------------------
# Segmentation (torchvision.models.segmentation heads on a dilated backbone)
# --------------------------------------------------------------------------------------------
def _segmentation_body(
    arch: str,
    output_stride: int | None,
    aux_loss: bool,
    pretrained_backbone: bool,
    kwargs: dict[str, Any],
) -> tuple[IntermediateLayerGetter, int, int | None]:
    if output_stride is None:
        # torchvision's deeplabv3_resnet50 / fcn_resnet50 dilate the last two stages (8 on
        # ImageNet nets); the same rule gives 1 on a 3-stage CIFAR net.
        with torch.device("meta"):
            probe = create_model(arch, features_only=True, **kwargs)
        natural = int(probe.output_stride)  # type: ignore[arg-type]
        output_stride = natural // 4 if len(probe.stage_names) >= 3 else natural // 2  # type: ignore[arg-type]
    model = create_backbone(
        arch, pretrained=pretrained_backbone, output_stride=output_stride, **kwargs
    )
    names = _stage_layers(model)
    return_layers = {names[-1]: "out"}
    aux_chs = None
    if aux_loss:
        if len(names) < 2:
            raise ValueError("aux_loss=True needs a network with at least two stages")
        return_layers[names[-2]] = "aux"
        aux_chs = int(model.feature_info[-2]["num_chs"])
    body = IntermediateLayerGetter(model, return_layers=return_layers)
    body.output_stride = model.output_stride  # type: ignore[assignment]
    return body, int(model.num_features), aux_chs


def deeplabv3(
    arch: str,
    *,
    num_classes: int,
    output_stride: int | None = None,
    aux_loss: bool = False,
    pretrained_backbone: bool = False,
    atrous_rates: Sequence[int] = (12, 24, 36),
    **kwargs: Any,
) -> DeepLabV3:
    """torchvision's ``DeepLabV3`` (``DeepLabHead``, optional ``FCNHead`` auxiliary head) on a
    dilated resnet-pl backbone: ``deeplabv3_resnet50`` for any architecture.

    Args:
        arch: architecture or ``"arch.tag"`` weights name.
        num_classes: output channels of the head.
        output_stride: of the backbone (see :class:`~resnet_pl.models.ResNet`). ``None``
            dilates the last two stages as torchvision does: 8 on ImageNet-stem nets, 1 on
            3-stage CIFAR nets.
        aux_loss: add torchvision's ``FCNHead`` on the second-to-last stage (``"aux"``).
        pretrained_backbone: load the verified weights of ``arch`` into the backbone.
        atrous_rates: of the ASPP; torchvision's default (12, 24, 36) suits output stride 8 on
            ~500 px crops (the DeepLabv3 paper uses 6, 12, 18 at stride 16). Scale them to the
            feature map: e.g. (2, 4, 6) for 32-64 px inputs.
        **kwargs: other ResNet options (``in_chans``, ``drop_path_rate`` ...).

    Returns:
        The model; ``model(x)`` gives ``{"out": (N, num_classes, H, W)}`` (plus ``"aux"``),
        upsampled to the input's size. ``model.backbone.output_stride`` is the real stride.
    """
    body, chs, aux_chs = _segmentation_body(
        arch, output_stride, aux_loss, pretrained_backbone, kwargs
    )
    head = DeepLabHead(chs, num_classes, atrous_rates=tuple(atrous_rates))
    aux = FCNHead(aux_chs, num_classes) if aux_chs is not None else None
    return DeepLabV3(body, head, aux)


def fcn(
    arch: str,
    *,
    num_classes: int,
    output_stride: int | None = None,
    aux_loss: bool = False,
    pretrained_backbone: bool = False,
    **kwargs: Any,
) -> FCN:
    """torchvision's ``FCN`` (``FCNHead``, optional auxiliary ``FCNHead``) on a dilated
    backbone: ``fcn_resnet50`` for any architecture; arguments as :func:`deeplabv3`."""
    body, chs, aux_chs = _segmentation_body(
        arch, output_stride, aux_loss, pretrained_backbone, kwargs
    )
    aux = FCNHead(aux_chs, num_classes) if aux_chs is not None else None
    return FCN(body, FCNHead(chs, num_classes), aux)


# --------------------------------------------------------------------------------------------
# From the plain hyperparameters of the Lightning tasks (training, checkpoints, deployment)
# --------------------------------------------------------------------------------------------
def segmentation_from_hparams(hp: Mapping[str, Any]) -> DeepLabV3 | FCN:
    """The model :class:`~resnet_pl.lightning.segmentation.SegmentationTask` trains, from its
    hyperparameters (``arch``, ``num_classes``, ``in_chans``, ``pretrained``, ``head``,
    ``output_stride``, ``atrous_rates``, ``aux_loss``, ``model_kwargs``). Training and
    deployment (``resnet-pl export`` / ``segment``) both build it here."""
    common: dict[str, Any] = {
        "num_classes": int(hp["num_classes"]),
        "output_stride": hp.get("output_stride"),
        "aux_loss": bool(hp.get("aux_loss", False)),
        "pretrained_backbone": bool(hp.get("pretrained", False)),
        "in_chans": int(hp.get("in_chans", 3)),
        **dict(hp.get("model_kwargs") or {}),
    }
    if hp.get("head", "deeplabv3") == "deeplabv3":
        rates = tuple(hp.get("atrous_rates") or (12, 24, 36))
        return deeplabv3(str(hp["arch"]), atrous_rates=rates, **common)
    return fcn(str(hp["arch"]), **common)


def detection_from_hparams(hp: Mapping[str, Any]) -> FasterRCNN | RetinaNet | FCOS:
    """The detector :class:`~resnet_pl.lightning.detection.DetectionTask` trains, from its
    hyperparameters (``num_classes`` counts object categories; one more output is added for
    the background). Training and ``resnet-pl detect`` both build it here."""
    detector = hp.get("detector", "fasterrcnn")
    builders = {"fasterrcnn": fasterrcnn, "retinanet": retinanet, "fcos": fcos}
    if detector not in builders:
        raise ValueError(f"detector must be one of {sorted(builders)}, got {detector!r}")
    kwargs: dict[str, Any] = {
        "num_classes": int(hp["num_classes"]) + 1,
        "pretrained_backbone": bool(hp.get("pretrained", False)),
        "trainable_layers": hp.get("trainable_layers"),
        "returned_layers": hp.get("returned_layers"),
        "backbone_kwargs": {
            "out_channels": int(hp.get("fpn_channels", 256)),
            "in_chans": int(hp.get("in_chans", 3)),
            **dict(hp.get("model_kwargs") or {}),
        },
    }
    thresh, per_img = hp.get("box_score_thresh", 0.05), hp.get("box_detections_per_img", 100)
    if detector == "fasterrcnn":
        kwargs.update(box_score_thresh=thresh, box_detections_per_img=per_img)
    else:
        kwargs.update(score_thresh=thresh, detections_per_img=per_img)
    if hp.get("image_size") is not None:
        kwargs["min_size"] = kwargs["max_size"] = int(hp["image_size"])
    if hp.get("mean") is not None and hp.get("std") is not None:
        kwargs["image_mean"], kwargs["image_std"] = list(hp["mean"]), list(hp["std"])
    kwargs.update(dict(hp.get("detector_kwargs") or {}))
    return builders[detector](str(hp["arch"]), **kwargs)  # type: ignore[no-any-return]
