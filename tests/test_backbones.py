"""resnet_pl.backbones: torchvision's detection and segmentation models on resnet-pl networks.

Parity with torchvision's own ResNet-50 builders (same keys, same outputs), the documented
eval outputs, a few training steps that lower the loss, and CIFAR-style backbones. Tiny inputs
(64 px ImageNet-family, 32 px CIFAR-family) keep each test to a few seconds on one core.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
import torch
import torchvision
from torch import Tensor, nn
from torchvision.models.detection.backbone_utils import BackboneWithFPN, resnet_fpn_backbone
from torchvision.ops.misc import FrozenBatchNorm2d

from resnet_pl import backbones, create_model


@pytest.fixture(scope="module", autouse=True)
def _one_cpu_thread() -> Iterator[None]:
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def _images(n: int, size: int, chans: int = 3, seed: int = 0) -> list[Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return [torch.rand(chans, size, size, generator=gen) for _ in range(n)]


def _targets(size: int, with_masks: bool = False) -> list[dict[str, Tensor]]:
    """Two images with one and two boxes (and their rectangle masks)."""
    boxes = [
        torch.tensor([[0.1, 0.2, 0.6, 0.7]]) * size,
        torch.tensor([[0.05, 0.05, 0.45, 0.5], [0.5, 0.4, 0.95, 0.9]]) * size,
    ]
    targets = []
    for b in boxes:
        t = {"boxes": b, "labels": torch.arange(1, len(b) + 1)}
        if with_masks:
            masks = torch.zeros(len(b), size, size, dtype=torch.uint8)
            for j, (x0, y0, x1, y1) in enumerate(b.round().long().tolist()):
                masks[j, y0:y1, x0:x1] = 1
            t["masks"] = masks
        targets.append(t)
    return targets


# --------------------------------------------------------------------------------------------
# Parity with torchvision's ResNet-50 builders
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("ours", "theirs"),
    [
        (backbones.fasterrcnn, torchvision.models.detection.fasterrcnn_resnet50_fpn),
        (backbones.retinanet, torchvision.models.detection.retinanet_resnet50_fpn),
    ],
)
def test_detector_matches_torchvision_resnet50(ours: Callable, theirs: Callable) -> None:
    """Same state-dict keys (strict load), same anchors, same FPN maps and detections."""
    torch.manual_seed(0)
    kw: dict[str, Any] = {"num_classes": 5, "min_size": 64, "max_size": 64}
    reference = theirs(weights=None, weights_backbone=None, **kw).eval()
    model = ours("resnet50", **kw).eval()
    model.load_state_dict(reference.state_dict(), strict=True)
    anchors = "rpn" if hasattr(reference, "rpn") else None
    ref_gen = reference.rpn.anchor_generator if anchors else reference.anchor_generator
    gen = model.rpn.anchor_generator if anchors else model.anchor_generator
    assert gen.sizes == ref_gen.sizes and gen.aspect_ratios == ref_gen.aspect_ratios
    images = _images(1, 64)
    with torch.no_grad():
        x = torch.stack(images)
        expected, got = reference.backbone(x), model.backbone(x)
        assert list(got) == list(expected)
        for k in expected:
            assert (got[k] - expected[k]).abs().max().item() <= 1e-5
        det_ref, det = reference(images)[0], model(images)[0]
    assert det["boxes"].shape == det_ref["boxes"].shape
    assert torch.allclose(det["boxes"], det_ref["boxes"], atol=1e-4)


@pytest.mark.parametrize(
    ("ours", "theirs"),
    [
        (backbones.deeplabv3, torchvision.models.segmentation.deeplabv3_resnet50),
        (backbones.fcn, torchvision.models.segmentation.fcn_resnet50),
    ],
)
def test_segmentation_matches_torchvision_resnet50(ours: Callable, theirs: Callable) -> None:
    torch.manual_seed(0)
    reference = theirs(weights=None, weights_backbone=None, num_classes=4, aux_loss=True).eval()
    model = ours("resnet50", num_classes=4, aux_loss=True).eval()
    assert model.backbone.output_stride == 8
    model.load_state_dict(reference.state_dict(), strict=True)
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected, got = reference(x), model(x)
    assert list(got) == list(expected) == ["out", "aux"]
    for k in expected:
        assert got[k].shape == (1, 4, 64, 64)
        assert (got[k] - expected[k]).abs().max().item() <= 1e-5


@pytest.mark.parametrize(
    "trainable_layers",
    [0, 2, 3, 5, *(pytest.param(k, marks=pytest.mark.slow) for k in (1, 4))],
)
def test_fpn_backbone_freezes_as_torchvision(trainable_layers: int) -> None:
    """Same frozen parameters and keys as torchvision's resnet_fpn_backbone (which uses
    FrozenBatchNorm2d by default)."""
    reference = resnet_fpn_backbone(
        backbone_name="resnet50", weights=None, trainable_layers=trainable_layers
    )
    ours = backbones.fpn_backbone(
        "resnet50", trainable_layers=trainable_layers, norm_layer=FrozenBatchNorm2d
    )
    assert isinstance(ours, BackboneWithFPN) and ours.out_channels == 256
    ours.load_state_dict(reference.state_dict(), strict=True)

    def trainable(m: nn.Module) -> list[str]:
        return [n for n, p in m.named_parameters() if p.requires_grad]

    assert trainable(ours) == trainable(reference)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in ours.body.modules())


def test_fpn_backbone_defaults_follow_torchvision_builders() -> None:
    """Random init: everything trainable, plain BatchNorm. Pretrained: FrozenBatchNorm2d,
    stem and first stage frozen (trainable_layers=3), the weights' own normalisation."""
    fresh = backbones.fpn_backbone("resnet20")
    assert all(p.requires_grad for p in fresh.parameters())
    assert any(isinstance(m, nn.BatchNorm2d) for m in fresh.body.modules())
    assert fresh.strides == [1, 2, 4, 8]  # layer1..3 of a CIFAR net, plus "pool"

    pre = backbones.fpn_backbone("resnet20.fashion_mnist", pretrained=True)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in pre.body.modules())
    frozen = {n.split(".")[0] for n, p in pre.body.named_parameters() if not p.requires_grad}
    assert frozen == {"conv1"}  # 3 trainable of (layer3, layer2, layer1, stem)
    assert pre.image_stats == ([0.286], [0.353])
    plain = create_model("resnet20.fashion_mnist", pretrained=True, features_only=True).eval()
    x = torch.rand(2, 1, 28, 28)
    with torch.no_grad():
        body = pre.body(x)
        assert torch.allclose(body["2"], plain(x)[-1], atol=1e-5)  # same weights, frozen BN


def test_preact_last_map_is_normalised_as_forward_intermediates() -> None:
    model = create_model("preact_resnet20", features_only=True).eval()
    fpn = backbones.fpn_backbone("preact_resnet20").eval()
    fpn.body.load_state_dict(model.state_dict(), strict=True)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        expected, got = model(x), list(fpn.body(x).values())
    for e, g in zip(expected, got, strict=True):
        assert torch.allclose(e, g, atol=1e-6)
    assert got[-1].min() >= 0  # the final BN-ReLU was applied


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"trainable_layers": 5}, "trainable_layers must be in 0..4"),
        ({"trainable_layers": -1}, "trainable_layers"),
        ({"returned_layers": [0, 1]}, "returned_layers"),
        ({"returned_layers": [3, 2]}, "returned_layers"),
        ({"returned_layers": [4]}, "returned_layers"),
        ({"norm_layer": nn.GroupNorm}, "norm_layer"),
        ({"features_only": False}, "features_only"),
        ({"output_stride": 8}, "choose one of 4, 2, 1"),
    ],
)
def test_bad_backbone_options_are_explained(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        backbones.fpn_backbone("resnet20", **kwargs)


# --------------------------------------------------------------------------------------------
# Detectors: documented outputs, training, small and CIFAR-style backbones
# --------------------------------------------------------------------------------------------
DETECTORS = [backbones.fasterrcnn, backbones.maskrcnn, backbones.retinanet, backbones.fcos]


@pytest.mark.parametrize("build", DETECTORS, ids=lambda f: f.__name__)
@pytest.mark.parametrize(("arch", "size"), [("resnet18", 64), ("resnet20", 32)])
def test_detector_eval_outputs(build: Callable, arch: str, size: int) -> None:
    torch.manual_seed(0)
    # Few detections: pasting 100 random masks per image would dominate the test's time.
    limit = "detections_per_img" if build in (backbones.retinanet, backbones.fcos) else None
    kw = {limit or "box_detections_per_img": 10}
    model = build(arch, num_classes=3, min_size=size, max_size=size, **kw).eval()
    with torch.no_grad():
        out = model(_images(2, size))
    keys = {"boxes", "labels", "scores"} | ({"masks"} if build is backbones.maskrcnn else set())
    assert len(out) == 2
    for det in out:
        assert set(det) == keys
        k = len(det["scores"])
        assert k <= 10
        assert det["boxes"].shape == (k, 4) and det["labels"].shape == (k,)
        assert ((det["boxes"] >= 0) & (det["boxes"] <= size)).all()
        if "masks" in det:
            assert det["masks"].shape == (k, 1, size, size)


_RCNN_LOSSES = {"loss_objectness", "loss_rpn_box_reg", "loss_classifier", "loss_box_reg"}
EXPECTED_LOSSES = {
    "fasterrcnn": _RCNN_LOSSES,
    "maskrcnn": _RCNN_LOSSES | {"loss_mask"},
    "retinanet": {"classification", "bbox_regression"},
    "fcos": {"classification", "bbox_regression", "bbox_ctrness"},
}


@pytest.mark.parametrize("build", DETECTORS, ids=lambda f: f.__name__)
@pytest.mark.parametrize(("arch", "size"), [("resnet18", 64), ("resnet20", 32)])
def test_detector_training_lowers_the_loss(build: Callable, arch: str, size: int) -> None:
    torch.manual_seed(0)
    masks = build is backbones.maskrcnn
    # Fewer proposals and FPN channels than torchvision's defaults keep this to seconds.
    kw: dict[str, Any] = {"backbone_kwargs": {"out_channels": 64}}
    if build in (backbones.fasterrcnn, backbones.maskrcnn):
        kw |= {
            "rpn_pre_nms_top_n_train": 200,
            "rpn_post_nms_top_n_train": 50,
            "rpn_batch_size_per_image": 64,
            "box_batch_size_per_image": 32,
        }
    model = build(arch, num_classes=3, min_size=size, max_size=size, **kw).train()
    assert model.backbone.out_channels == 64
    images, targets = _images(2, size, seed=1), _targets(size, with_masks=masks)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.SGD(params, lr=0.005, momentum=0.9)

    def loss() -> Tensor:
        # Proposal sampling is random: the same seed before every measurement compares the
        # losses of one fixed sample.
        torch.manual_seed(2)
        losses = model(images, targets)
        assert set(losses) == EXPECTED_LOSSES[build.__name__]
        return sum(losses.values())  # type: ignore[return-value]

    first = loss()
    for _ in range(6):
        opt.zero_grad()
        loss().backward()
        opt.step()
    with torch.no_grad():
        last = loss()
    assert last.item() < first.item()


def test_detector_on_pretrained_grayscale_backbone() -> None:
    """resnet20.fashion_mnist: 1-channel input, normalised with the weights' own statistics."""
    model = backbones.fasterrcnn(
        "resnet20.fashion_mnist", num_classes=2, pretrained_backbone=True, min_size=28, max_size=28
    ).eval()
    assert model.transform.image_mean == [0.286]
    with torch.no_grad():
        out = model(_images(1, 28, chans=1))
    assert set(out[0]) == {"boxes", "labels", "scores"}


# --------------------------------------------------------------------------------------------
# Segmentation
# --------------------------------------------------------------------------------------------
SEGMENTERS = [backbones.deeplabv3, backbones.fcn]


@pytest.mark.parametrize("build", SEGMENTERS, ids=lambda f: f.__name__)
@pytest.mark.parametrize(
    ("arch", "size", "output_stride", "expected_stride"),
    [
        ("resnet18", 64, None, 8),
        ("resnet18", 64, 16, 16),
        ("resnet20", 32, None, 1),
        ("resnet20", 32, 4, 4),
        ("wrn_16_4", 32, 2, 2),
    ],
)
def test_segmentation_eval_outputs(
    build: Callable, arch: str, size: int, output_stride: int | None, expected_stride: int
) -> None:
    extra = {"atrous_rates": (2, 4, 6)} if build is backbones.deeplabv3 else {}
    model = build(arch, num_classes=5, output_stride=output_stride, aux_loss=True, **extra)
    model.eval()
    assert model.backbone.output_stride == expected_stride
    with torch.no_grad():
        out = model(torch.randn(1, 3, size, size))
        assert list(out) == ["out", "aux"]
        assert out["out"].shape == out["aux"].shape == (1, 5, size, size)
        # An odd size too: the head upsamples to the input's size, whatever the stride.
        assert model(torch.randn(1, 3, size + 3, size - 5))["out"].shape[-2:] == (
            size + 3,
            size - 5,
        )
    no_aux = build(arch, num_classes=5, output_stride=output_stride, **extra).eval()
    with torch.no_grad():
        assert list(no_aux(torch.randn(1, 3, size, size))) == ["out"]


@pytest.mark.parametrize("build", SEGMENTERS, ids=lambda f: f.__name__)
@pytest.mark.parametrize(("arch", "size"), [("resnet18", 64), ("resnet20", 32)])
def test_segmentation_training_lowers_the_loss(build: Callable, arch: str, size: int) -> None:
    torch.manual_seed(0)
    extra = {"atrous_rates": (2, 4, 6)} if build is backbones.deeplabv3 else {}
    model = build(arch, num_classes=3, aux_loss=True, **extra).train()
    x = torch.rand(2, 3, size, size, generator=torch.Generator().manual_seed(1))
    target = torch.zeros(2, size, size, dtype=torch.long)
    target[:, : size // 2] = 1
    target[:, size // 2 :, size // 2 :] = 2
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)

    def loss() -> Tensor:
        out = model(x)
        ce = nn.functional.cross_entropy
        return ce(out["out"], target) + 0.5 * ce(out["aux"], target)  # torchvision's recipe

    first = loss().item()
    for _ in range(5):
        opt.zero_grad()
        loss().backward()
        opt.step()
    assert loss().item() < first


def test_segmentation_on_pretrained_backbone_keeps_the_weights() -> None:
    plain = create_model("resnet20.fashion_mnist", pretrained=True)
    model = backbones.deeplabv3(
        "resnet20.fashion_mnist", num_classes=3, pretrained_backbone=True, output_stride=2
    )
    body = model.backbone.state_dict()
    for k, v in plain.state_dict().items():
        if not k.startswith("fc."):
            assert torch.equal(body[k], v), k
    model.eval()
    with torch.no_grad():
        assert model(torch.rand(1, 1, 28, 28))["out"].shape == (1, 3, 28, 28)
