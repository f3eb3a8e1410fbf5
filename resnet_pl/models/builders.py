"""Named builders, one per registered architecture: ``resnet50(*, pretrained=False, **kwargs)``.

Each is a plain, typed, documented function (``help(resnet_pl.models.resnet50)`` shows its paper,
parameters and FLOPs), registered under its own name by :func:`register_model`, as torchvision
and timm do. ``resnet_pl.create_model("resnet50")`` is the same call by name. The registry is the
one list of architecture names: this module's ``__all__``, ``resnet_pl.models.__all__`` and the
top-level ``resnet_pl`` names are read from it.

Every builder takes the same arguments, written once here (and appended to each builder's
``__doc__`` by :func:`_builder`, so ``help()`` shows them):

Args:
    pretrained: load this architecture's default weights, sha256-checked (see
        ``resnet_pl.list_pretrained("<name>.*")``).
    **kwargs: :class:`~resnet_pl.models.ResNet` options (``num_classes``, ``in_chans``,
        ``drop_path_rate``, ``features_only`` ...), overriding the builder's defaults.

The parameter and FLOP figures in the docstrings were counted with ``resnet_pl.model_info``
(on the meta device, ``torch.utils.flop_counter``, 2 FLOPs per multiply-accumulate) at each
net's default input size and class count; ``tests/test_models.py`` re-counts them, so they
cannot drift.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from resnet_pl.models.hub_hooks import load_pretrained
from resnet_pl.models.registry import default_model_cfg, get_builder, list_models, register_model
from resnet_pl.models.resnet import ResNet

_IMAGENET: dict[str, Any] = {"input_size": (3, 224, 224), "family": "imagenet"}
_SMALL: dict[str, Any] = {"input_size": (3, 32, 32), "family": "small"}
# ResNet options shared by the CIFAR-style nets: 10 classes, the 3x3 stem, and the shortcut kind.
_CIFAR: dict[str, Any] = {"num_classes": 10, "stem": "small"}
_CIFAR_A: dict[str, Any] = {**_CIFAR, "shortcut": "A"}
_CIFAR_B: dict[str, Any] = {**_CIFAR, "shortcut": "B"}

_BuilderT = TypeVar("_BuilderT", bound=Callable[..., ResNet])

# The arguments every builder takes, appended to each docstring (indented as the docstring
# bodies are, so inspect.getdoc() and help() show one block).
_ARGS_DOC = """
    Args:
        pretrained: load this architecture's default weights, sha256-checked (see
            ``resnet_pl.list_pretrained("{name}.*")``).
        **kwargs: :class:`~resnet_pl.models.ResNet` options (``num_classes``, ``in_chans``,
            ``drop_path_rate``, ``features_only`` ...), overriding the defaults above.
"""


def _builder(default_cfg: Mapping[str, Any]) -> Callable[[_BuilderT], _BuilderT]:
    """:func:`register_model` plus the shared ``Args:`` block appended to the docstring."""

    def decorator(builder: _BuilderT) -> _BuilderT:
        doc = (builder.__doc__ or "").rstrip()
        builder.__doc__ = doc + "\n" + _ARGS_DOC.format(name=builder.__name__)
        return register_model(default_cfg)(builder)

    return decorator


def _build(name: str, pretrained: bool, kwargs: dict[str, Any], **arch: Any) -> ResNet:
    """``ResNet(**arch)`` with the caller's ``kwargs`` overriding, and its ``pretrained_cfg``
    set; or, with ``pretrained``, the registered default weights loaded into it."""
    if pretrained:
        model = load_pretrained(name, **kwargs)
        assert isinstance(model, ResNet)
        return model
    model = ResNet(**{**arch, **kwargs})
    model.pretrained_cfg = default_model_cfg(name, model)  # type: ignore[assignment]
    return model


@_builder({**_IMAGENET, "paper": "https://arxiv.org/abs/1512.03385"})
def resnet18(*, pretrained: bool = False, **kwargs: Any) -> ResNet:
    """ResNet-18: basic blocks (2, 2, 2, 2), ImageNet stem.

    Paper: "Deep Residual Learning for Image Recognition", He et al. 2015,
    https://arxiv.org/abs/1512.03385.

    11,689,512 parameters, 3.63 GFLOPs per 3x224x224 image (1000 classes).
    """
    return _build("resnet18", pretrained, kwargs, layers=(2, 2, 2, 2), block="basic")


@_builder({**_IMAGENET, "paper": "https://arxiv.org/abs/1512.03385"})
def resnet34(*, pretrained: bool = False, **kwargs: Any) -> ResNet:
    """ResNet-34: basic blocks (3, 4, 6, 3), ImageNet stem.

    Paper: "Deep Residual Learning for Image Recognition", He et al. 2015,
    https://arxiv.org/abs/1512.03385.

    21,797,672 parameters, 7.33 GFLOPs per 3x224x224 image (1000 classes).
    """
    return _build("resnet34", pretrained, kwargs, layers=(3, 4, 6, 3), block="basic")


@_builder({**_IMAGENET, "paper": "https://arxiv.org/abs/1512.03385"})
def resnet50(*, pretrained: bool = False, **kwargs: Any) -> ResNet:
    """ResNet-50: bottleneck blocks (stride on the 3x3, "v1.5") (3, 4, 6, 3), ImageNet stem.

    Paper: "Deep Residual Learning for Image Recognition", He et al. 2015,
    https://arxiv.org/abs/1512.03385.

    25,557,032 parameters, 8.18 GFLOPs per 3x224x224 image (1000 classes).
    """
    return _build("resnet50", pretrained, kwargs, layers=(3, 4, 6, 3), block="bottleneck")


@_builder({**_IMAGENET, "paper": "https://arxiv.org/abs/1512.03385"})
def resnet101(*, pretrained: bool = False, **kwargs: Any) -> ResNet:
    """ResNet-101: bottleneck blocks (stride on the 3x3, "v1.5") (3, 4, 23, 3), ImageNet stem.

    Paper: "Deep Residual Learning for Image Recognition", He et al. 2015,
    https://arxiv.org/abs/1512.03385.

    44,549,160 parameters, 15.60 GFLOPs per 3x224x224 image (1000 classes).
    """
    return _build("resnet101", pretrained, kwargs, layers=(3, 4, 23, 3), block="bottleneck")


@_builder({**_IMAGENET, "paper": "https://arxiv.org/abs/1512.03385"})
def resnet152(*, pretrained: bool = False, **kwargs: Any) -> ResNet:
    """ResNet-152: bottleneck blocks (stride on the 3x3, "v1.5") (3, 8, 36, 3), ImageNet stem.

    Paper: "Deep Residual Learning for Image Recognition", He et al. 2015,
    https://arxiv.org/abs/1512.03385.

    60,192,808 parameters, 23.03 GFLOPs per 3x224x224 image (1000 classes).
    """
    return _build("resnet152", pretrained, kwargs, layers=(3, 8, 36, 3), block="bottleneck")


@_builder({**_IMAGENET, "paper": "https://arxiv.org/abs/1611.05431"})
def resnext50_32x4d(*, pretrained: bool = False, **kwargs: Any) -> ResNet:
    """ResNeXt-50 32x4d: bottleneck blocks (3, 4, 6, 3) with 32 groups of width 4, ImageNet
    stem.

    Paper: "Aggregated Residual Transformations for Deep Neural Networks", Xie et al. 2016,
    https://arxiv.org/abs/1611.05431.

    25,028,904 parameters, 8.46 GFLOPs per 3x224x224 image (1000 classes).
    """
    return _build(
        "resnext50_32x4d",
        pretrained,
        kwargs,
        layers=(3, 4, 6, 3),
        block="bottleneck",
        groups=32,
        width_per_group=4,
    )


@_builder({**_IMAGENET, "paper": "https://arxiv.org/abs/1611.05431"})
def resnext101_32x8d(*, pretrained: bool = False, **kwargs: Any) -> ResNet:
    """ResNeXt-101 32x8d: bottleneck blocks (3, 4, 23, 3) with 32 groups of width 8, ImageNet
    stem.

    Paper: "Aggregated Residual Transformations for Deep Neural Networks", Xie et al. 2016,
    https://arxiv.org/abs/1611.05431.

    88,791,336 parameters, 32.83 GFLOPs per 3x224x224 image (1000 classes).
    """
    return _build(
        "resnext101_32x8d",
        pretrained,
        kwargs,
        layers=(3, 4, 23, 3),
        block="bottleneck",
        groups=32,
        width_per_group=8,
    )


@_builder({**_IMAGENET, "paper": "https://arxiv.org/abs/1611.05431"})
def resnext101_64x4d(*, pretrained: bool = False, **kwargs: Any) -> ResNet:
    """ResNeXt-101 64x4d: bottleneck blocks (3, 4, 23, 3) with 64 groups of width 4, ImageNet
    stem.

    Paper: "Aggregated Residual Transformations for Deep Neural Networks", Xie et al. 2016,
    https://arxiv.org/abs/1611.05431.

    83,455,272 parameters, 30.92 GFLOPs per 3x224x224 image (1000 classes).
    """
    return _build(
        "resnext101_64x4d",
        pretrained,
        kwargs,
        layers=(3, 4, 23, 3),
        block="bottleneck",
        groups=64,
        width_per_group=4,
    )


@_builder({**_IMAGENET, "paper": "https://arxiv.org/abs/1605.07146"})
def wide_resnet50_2(*, pretrained: bool = False, **kwargs: Any) -> ResNet:
    """Wide ResNet-50-2: bottleneck blocks (3, 4, 6, 3) with twice the inner width
    (torchvision's definition), ImageNet stem.

    Paper: "Wide Residual Networks", Zagoruyko & Komodakis 2016,
    https://arxiv.org/abs/1605.07146.

    68,883,240 parameters, 22.80 GFLOPs per 3x224x224 image (1000 classes).
    """
    return _build(
        "wide_resnet50_2",
        pretrained,
        kwargs,
        layers=(3, 4, 6, 3),
        block="bottleneck",
        width_per_group=128,
    )


@_builder({**_IMAGENET, "paper": "https://arxiv.org/abs/1605.07146"})
def wide_resnet101_2(*, pretrained: bool = False, **kwargs: Any) -> ResNet:
    """Wide ResNet-101-2: bottleneck blocks (3, 4, 23, 3) with twice the inner width
    (torchvision's definition), ImageNet stem.

    Paper: "Wide Residual Networks", Zagoruyko & Komodakis 2016,
    https://arxiv.org/abs/1605.07146.

    126,886,696 parameters, 45.51 GFLOPs per 3x224x224 image (1000 classes).
    """
    return _build(
        "wide_resnet101_2",
        pretrained,
        kwargs,
        layers=(3, 4, 23, 3),
        block="bottleneck",
        width_per_group=128,
    )


@_builder({**_IMAGENET, "paper": "https://arxiv.org/abs/1603.05027"})
def preact_resnet18(*, pretrained: bool = False, **kwargs: Any) -> ResNet:
    """PreAct-ResNet-18: pre-activation basic blocks (2, 2, 2, 2), ImageNet stem.

    Paper: "Identity Mappings in Deep Residual Networks", He et al. 2016,
    https://arxiv.org/abs/1603.05027.

    11,687,848 parameters, 3.63 GFLOPs per 3x224x224 image (1000 classes).
    """
    return _build(
        "preact_resnet18", pretrained, kwargs, layers=(2, 2, 2, 2), block="basic", preact=True
    )


@_builder({**_IMAGENET, "paper": "https://arxiv.org/abs/1603.05027"})
def preact_resnet34(*, pretrained: bool = False, **kwargs: Any) -> ResNet:
    """PreAct-ResNet-34: pre-activation basic blocks (3, 4, 6, 3), ImageNet stem.

    Paper: "Identity Mappings in Deep Residual Networks", He et al. 2016,
    https://arxiv.org/abs/1603.05027.

    21,796,008 parameters, 7.33 GFLOPs per 3x224x224 image (1000 classes).
    """
    return _build(
        "preact_resnet34", pretrained, kwargs, layers=(3, 4, 6, 3), block="basic", preact=True
    )


@_builder({**_IMAGENET, "paper": "https://arxiv.org/abs/1603.05027"})
def preact_resnet50(*, pretrained: bool = False, **kwargs: Any) -> ResNet:
    """PreAct-ResNet-50: pre-activation bottleneck blocks (3, 4, 6, 3), ImageNet stem.

    Paper: "Identity Mappings in Deep Residual Networks", He et al. 2016,
    https://arxiv.org/abs/1603.05027.

    25,549,480 parameters, 8.18 GFLOPs per 3x224x224 image (1000 classes).
    """
    return _build(
        "preact_resnet50", pretrained, kwargs, layers=(3, 4, 6, 3), block="bottleneck", preact=True
    )


@_builder({**_SMALL, "paper": "https://arxiv.org/abs/1512.03385"})
def resnet20(*, pretrained: bool = False, **kwargs: Any) -> ResNet:
    """CIFAR ResNet-20: the paper's section 4.2 net: 3 basic blocks per stage, 16/32/64 planes,
    zero-padding (option A) shortcuts, small stem.

    Paper: "Deep Residual Learning for Image Recognition", He et al. 2015,
    https://arxiv.org/abs/1512.03385.

    269,722 parameters, 81.1 MFLOPs per 3x32x32 image (10 classes).
    """
    return _build("resnet20", pretrained, kwargs, layers=(3, 3, 3), widths=(16, 32, 64), **_CIFAR_A)


@_builder({**_SMALL, "paper": "https://arxiv.org/abs/1512.03385"})
def resnet32(*, pretrained: bool = False, **kwargs: Any) -> ResNet:
    """CIFAR ResNet-32: the paper's section 4.2 net: 5 basic blocks per stage, 16/32/64 planes,
    zero-padding (option A) shortcuts, small stem.

    Paper: "Deep Residual Learning for Image Recognition", He et al. 2015,
    https://arxiv.org/abs/1512.03385.

    464,154 parameters, 137.7 MFLOPs per 3x32x32 image (10 classes).
    """
    return _build("resnet32", pretrained, kwargs, layers=(5, 5, 5), widths=(16, 32, 64), **_CIFAR_A)


@_builder({**_SMALL, "paper": "https://arxiv.org/abs/1512.03385"})
def resnet44(*, pretrained: bool = False, **kwargs: Any) -> ResNet:
    """CIFAR ResNet-44: the paper's section 4.2 net: 7 basic blocks per stage, 16/32/64 planes,
    zero-padding (option A) shortcuts, small stem.

    Paper: "Deep Residual Learning for Image Recognition", He et al. 2015,
    https://arxiv.org/abs/1512.03385.

    658,586 parameters, 194.3 MFLOPs per 3x32x32 image (10 classes).
    """
    return _build("resnet44", pretrained, kwargs, layers=(7, 7, 7), widths=(16, 32, 64), **_CIFAR_A)


@_builder({**_SMALL, "paper": "https://arxiv.org/abs/1512.03385"})
def resnet56(*, pretrained: bool = False, **kwargs: Any) -> ResNet:
    """CIFAR ResNet-56: the paper's section 4.2 net: 9 basic blocks per stage, 16/32/64 planes,
    zero-padding (option A) shortcuts, small stem.

    Paper: "Deep Residual Learning for Image Recognition", He et al. 2015,
    https://arxiv.org/abs/1512.03385.

    853,018 parameters, 251.0 MFLOPs per 3x32x32 image (10 classes).
    """
    return _build("resnet56", pretrained, kwargs, layers=(9, 9, 9), widths=(16, 32, 64), **_CIFAR_A)


@_builder({**_SMALL, "paper": "https://arxiv.org/abs/1512.03385"})
def resnet110(*, pretrained: bool = False, **kwargs: Any) -> ResNet:
    """CIFAR ResNet-110: the paper's section 4.2 net: 18 basic blocks per stage, 16/32/64
    planes, zero-padding (option A) shortcuts, small stem.

    Paper: "Deep Residual Learning for Image Recognition", He et al. 2015,
    https://arxiv.org/abs/1512.03385.

    1,727,962 parameters, 505.8 MFLOPs per 3x32x32 image (10 classes).
    """
    return _build(
        "resnet110", pretrained, kwargs, layers=(18, 18, 18), widths=(16, 32, 64), **_CIFAR_A
    )


@_builder({**_SMALL, "paper": "https://arxiv.org/abs/1512.03385"})
def resnet1202(*, pretrained: bool = False, **kwargs: Any) -> ResNet:
    """CIFAR ResNet-1202: the paper's section 4.2 net: 200 basic blocks per stage, 16/32/64
    planes, zero-padding (option A) shortcuts, small stem.

    Paper: "Deep Residual Learning for Image Recognition", He et al. 2015,
    https://arxiv.org/abs/1512.03385.

    19,421,274 parameters, 5.66 GFLOPs per 3x32x32 image (10 classes).
    """
    return _build(
        "resnet1202", pretrained, kwargs, layers=(200, 200, 200), widths=(16, 32, 64), **_CIFAR_A
    )


@_builder({**_SMALL, "paper": "https://arxiv.org/abs/1603.05027"})
def preact_resnet20(*, pretrained: bool = False, **kwargs: Any) -> ResNet:
    """CIFAR PreAct-ResNet-20: 3 pre-activation basic blocks per stage, 16/32/64 planes,
    option-A shortcuts, small stem.

    Paper: "Identity Mappings in Deep Residual Networks", He et al. 2016,
    https://arxiv.org/abs/1603.05027.

    269,722 parameters, 81.1 MFLOPs per 3x32x32 image (10 classes).
    """
    return _build(
        "preact_resnet20",
        pretrained,
        kwargs,
        layers=(3, 3, 3),
        widths=(16, 32, 64),
        preact=True,
        **_CIFAR_A,
    )


@_builder({**_SMALL, "paper": "https://arxiv.org/abs/1603.05027"})
def preact_resnet110(*, pretrained: bool = False, **kwargs: Any) -> ResNet:
    """CIFAR PreAct-ResNet-110: 18 pre-activation basic blocks per stage, 16/32/64 planes,
    option-A shortcuts, small stem.

    Paper: "Identity Mappings in Deep Residual Networks", He et al. 2016,
    https://arxiv.org/abs/1603.05027.

    1,727,962 parameters, 505.8 MFLOPs per 3x32x32 image (10 classes).
    """
    return _build(
        "preact_resnet110",
        pretrained,
        kwargs,
        layers=(18, 18, 18),
        widths=(16, 32, 64),
        preact=True,
        **_CIFAR_A,
    )


@_builder({**_SMALL, "paper": "https://arxiv.org/abs/1603.05027"})
def preact_resnet164(*, pretrained: bool = False, **kwargs: Any) -> ResNet:
    """CIFAR PreAct-ResNet-164: 18 pre-activation bottleneck blocks per stage, 16/32/64 planes
    (x4 out), projection shortcuts, small stem.

    Paper: "Identity Mappings in Deep Residual Networks", He et al. 2016,
    https://arxiv.org/abs/1603.05027.

    1,703,258 parameters, 495.3 MFLOPs per 3x32x32 image (10 classes).
    """
    return _build(
        "preact_resnet164",
        pretrained,
        kwargs,
        layers=(18, 18, 18),
        block="bottleneck",
        widths=(16, 32, 64),
        preact=True,
        **_CIFAR_B,
    )


@_builder({**_SMALL, "paper": "https://arxiv.org/abs/1603.05027"})
def preact_resnet1001(*, pretrained: bool = False, **kwargs: Any) -> ResNet:
    """CIFAR PreAct-ResNet-1001: 111 pre-activation bottleneck blocks per stage, 16/32/64
    planes (x4 out), projection shortcuts, small stem.

    Paper: "Identity Mappings in Deep Residual Networks", He et al. 2016,
    https://arxiv.org/abs/1603.05027.

    10,327,706 parameters, 2.98 GFLOPs per 3x32x32 image (10 classes).
    """
    return _build(
        "preact_resnet1001",
        pretrained,
        kwargs,
        layers=(111, 111, 111),
        block="bottleneck",
        widths=(16, 32, 64),
        preact=True,
        **_CIFAR_B,
    )


@_builder({**_SMALL, "paper": "https://arxiv.org/abs/1605.07146"})
def wrn_16_2(*, pretrained: bool = False, **kwargs: Any) -> ResNet:
    """WRN-16-2: 2 pre-activation basic blocks per stage, widths 32/64/128 after a 16-channel
    small stem, projection shortcuts. The widest of the WRN family under a million parameters,
    and on a CPU it runs faster per parameter than the deeper, narrower ResNet-56.

    Paper: "Wide Residual Networks", Zagoruyko & Komodakis 2016,
    https://arxiv.org/abs/1605.07146.

    691,674 parameters, 202.2 MFLOPs per 3x32x32 image (10 classes).
    """
    return _build(
        "wrn_16_2",
        pretrained,
        kwargs,
        layers=(2, 2, 2),
        widths=(32, 64, 128),
        stem_width=16,
        preact=True,
        **_CIFAR_B,
    )


@_builder({**_SMALL, "paper": "https://arxiv.org/abs/1605.07146"})
def wrn_16_4(*, pretrained: bool = False, **kwargs: Any) -> ResNet:
    """WRN-16-4: 2 pre-activation basic blocks per stage, widths 64/128/256 after a 16-channel
    small stem, projection shortcuts.

    Paper: "Wide Residual Networks", Zagoruyko & Komodakis 2016,
    https://arxiv.org/abs/1605.07146.

    2,748,890 parameters, 785.2 MFLOPs per 3x32x32 image (10 classes).
    """
    return _build(
        "wrn_16_4",
        pretrained,
        kwargs,
        layers=(2, 2, 2),
        widths=(64, 128, 256),
        stem_width=16,
        preact=True,
        **_CIFAR_B,
    )


@_builder({**_SMALL, "paper": "https://arxiv.org/abs/1605.07146"})
def wrn_16_8(*, pretrained: bool = False, **kwargs: Any) -> ResNet:
    """WRN-16-8: 2 pre-activation basic blocks per stage, widths 128/256/512 after a 16-channel
    small stem, projection shortcuts.

    Paper: "Wide Residual Networks", Zagoruyko & Komodakis 2016,
    https://arxiv.org/abs/1605.07146.

    10,961,370 parameters, 3.10 GFLOPs per 3x32x32 image (10 classes).
    """
    return _build(
        "wrn_16_8",
        pretrained,
        kwargs,
        layers=(2, 2, 2),
        widths=(128, 256, 512),
        stem_width=16,
        preact=True,
        **_CIFAR_B,
    )


@_builder({**_SMALL, "paper": "https://arxiv.org/abs/1605.07146"})
def wrn_28_10(*, pretrained: bool = False, **kwargs: Any) -> ResNet:
    """WRN-28-10: 4 pre-activation basic blocks per stage, widths 160/320/640 after a
    16-channel small stem, projection shortcuts.

    Paper: "Wide Residual Networks", Zagoruyko & Komodakis 2016,
    https://arxiv.org/abs/1605.07146.

    36,479,194 parameters, 10.49 GFLOPs per 3x32x32 image (10 classes).
    """
    return _build(
        "wrn_28_10",
        pretrained,
        kwargs,
        layers=(4, 4, 4),
        widths=(160, 320, 640),
        stem_width=16,
        preact=True,
        **_CIFAR_B,
    )


@_builder({**_SMALL, "paper": "https://arxiv.org/abs/1605.07146"})
def wrn_40_4(*, pretrained: bool = False, **kwargs: Any) -> ResNet:
    """WRN-40-4: 6 pre-activation basic blocks per stage, widths 64/128/256 after a 16-channel
    small stem, projection shortcuts.

    Paper: "Wide Residual Networks", Zagoruyko & Komodakis 2016,
    https://arxiv.org/abs/1605.07146.

    8,949,210 parameters, 2.60 GFLOPs per 3x32x32 image (10 classes).
    """
    return _build(
        "wrn_40_4",
        pretrained,
        kwargs,
        layers=(6, 6, 6),
        widths=(64, 128, 256),
        stem_width=16,
        preact=True,
        **_CIFAR_B,
    )


@_builder({**_SMALL, "paper": "https://arxiv.org/abs/1910.10699"})
def resnet8(*, pretrained: bool = False, **kwargs: Any) -> ResNet:
    """ResNet-8 of the distillation benchmarks: 1 basic block per stage, a 16-channel small
    stem then 16/32/64 planes, projection (option B) shortcuts.

    Paper: "Contrastive Representation Distillation", Tian et al. 2019,
    https://arxiv.org/abs/1910.10699.

    78,042 parameters, 25.0 MFLOPs per 3x32x32 image (10 classes).

    As defined in the CRD repository (HobbitLong/RepDistiller, ``models/resnet.py``),
    used as teacher/student by the CIFAR-100 distillation literature (pass
    ``num_classes=100``). Unlike :func:`resnet20` (option-A shortcuts, as in He et al.
    2015) it projects with a 1x1 conv + BN wherever the shape changes.
    """
    return _build("resnet8", pretrained, kwargs, layers=(1, 1, 1), widths=(16, 32, 64), **_CIFAR_B)


@_builder({**_SMALL, "paper": "https://arxiv.org/abs/1910.10699"})
def resnet14(*, pretrained: bool = False, **kwargs: Any) -> ResNet:
    """ResNet-14 of the distillation benchmarks: 2 basic blocks per stage, a 16-channel small
    stem then 16/32/64 planes, projection (option B) shortcuts.

    Paper: "Contrastive Representation Distillation", Tian et al. 2019,
    https://arxiv.org/abs/1910.10699.

    175,258 parameters, 53.3 MFLOPs per 3x32x32 image (10 classes).

    As defined in the CRD repository (HobbitLong/RepDistiller, ``models/resnet.py``),
    used as teacher/student by the CIFAR-100 distillation literature (pass
    ``num_classes=100``). Unlike :func:`resnet20` (option-A shortcuts, as in He et al.
    2015) it projects with a 1x1 conv + BN wherever the shape changes.
    """
    return _build("resnet14", pretrained, kwargs, layers=(2, 2, 2), widths=(16, 32, 64), **_CIFAR_B)


@_builder({**_SMALL, "paper": "https://arxiv.org/abs/1910.10699"})
def resnet8x4(*, pretrained: bool = False, **kwargs: Any) -> ResNet:
    """ResNet-8x4 of the distillation benchmarks: 1 basic block per stage, a 32-channel small
    stem then 64/128/256 planes, projection (option B) shortcuts.

    Paper: "Contrastive Representation Distillation", Tian et al. 2019,
    https://arxiv.org/abs/1910.10699.

    1,210,410 parameters, 354.1 MFLOPs per 3x32x32 image (10 classes).

    As defined in the CRD repository (HobbitLong/RepDistiller, ``models/resnet.py``),
    used as teacher/student by the CIFAR-100 distillation literature (pass
    ``num_classes=100``). Unlike :func:`resnet20` (option-A shortcuts, as in He et al.
    2015) it projects with a 1x1 conv + BN wherever the shape changes.
    """
    return _build(
        "resnet8x4",
        pretrained,
        kwargs,
        layers=(1, 1, 1),
        widths=(64, 128, 256),
        stem_width=32,
        **_CIFAR_B,
    )


@_builder({**_SMALL, "paper": "https://arxiv.org/abs/1910.10699"})
def resnet32x4(*, pretrained: bool = False, **kwargs: Any) -> ResNet:
    """ResNet-32x4 of the distillation benchmarks: 5 basic blocks per stage, a 32-channel small
    stem then 64/128/256 planes, projection (option B) shortcuts.

    Paper: "Contrastive Representation Distillation", Tian et al. 2019,
    https://arxiv.org/abs/1910.10699.

    7,410,730 parameters, 2.17 GFLOPs per 3x32x32 image (10 classes).

    As defined in the CRD repository (HobbitLong/RepDistiller, ``models/resnet.py``),
    used as teacher/student by the CIFAR-100 distillation literature (pass
    ``num_classes=100``). Unlike :func:`resnet20` (option-A shortcuts, as in He et al.
    2015) it projects with a 1x1 conv + BN wherever the shape changes.
    """
    return _build(
        "resnet32x4",
        pretrained,
        kwargs,
        layers=(5, 5, 5),
        widths=(64, 128, 256),
        stem_width=32,
        **_CIFAR_B,
    )


# Derived from the registry (every builder above registered itself), never written out by hand.
__all__ = [name for name in list_models() if get_builder(name).__module__ == __name__]
