"""``output_stride`` / ``replace_stride_with_dilation``: parity with torchvision's dilated
ResNets, the "a trous" identity for every block type, strides reported, weights unchanged."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch
import torchvision
from torch import nn

from resnet_pl import ResNet, create_model
from resnet_pl.models.resnet import PadShortcut


@pytest.fixture(scope="module", autouse=True)
def _one_cpu_thread() -> Iterator[None]:
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def _randomise_bn(model: nn.Module, seed: int) -> None:
    """Non-trivial BN statistics, so eval-mode comparisons check every norm's wiring."""
    gen = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            n = m.num_features
            m.running_mean.copy_(torch.randn(n, generator=gen) * 0.1)
            m.running_var.copy_(torch.rand(n, generator=gen) + 0.5)
            with torch.no_grad():
                m.weight.copy_(torch.rand(n, generator=gen) + 0.5)
                m.bias.copy_(torch.randn(n, generator=gen) * 0.1)


# --------------------------------------------------------------------------------------------
# torchvision parity
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("output_stride", "flags"),
    [(8, [False, True, True]), (16, [False, False, True]), (32, [False, False, False])],
)
def test_resnet50_output_stride_matches_torchvision(output_stride: int, flags: list[bool]) -> None:
    torch.manual_seed(0)
    reference = torchvision.models.resnet50(replace_stride_with_dilation=flags).eval()
    _randomise_bn(reference, 1)
    ours = create_model("resnet50", output_stride=output_stride).eval()
    ours.load_state_dict(reference.state_dict(), strict=True)
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(2))

    body = torchvision.models._utils.IntermediateLayerGetter(
        reference, {f"layer{i}": str(i) for i in range(1, 5)}
    )
    feats = create_model("resnet50", output_stride=output_stride, features_only=True).eval()
    feats.load_state_dict({k: v for k, v in reference.state_dict().items() if "fc." not in k})
    with torch.no_grad():
        assert (ours(x) - reference(x)).abs().max().item() <= 1e-5
        expected = list(body(x).values())
        got = feats(x)
    reductions = [f["reduction"] for f in feats.feature_info]
    assert reductions == [4, 8, min(16, output_stride), output_stride]
    assert feats.output_stride == output_stride
    for e, g, r in zip(expected, got, reductions, strict=True):
        assert g.shape == e.shape and g.shape[-1] == 64 // r
        assert (g - e).abs().max().item() <= 1e-5


@pytest.mark.parametrize("flags", [[True, False, True], [False, True, False], [True] * 3])
def test_any_torchvision_flag_combination_matches(flags: list[bool]) -> None:
    """torchvision's list spelling reaches combinations no output_stride names (e.g. output
    stride 4); the blocks must still follow its previous-dilation rule exactly."""
    torch.manual_seed(0)
    reference = torchvision.models.resnet50(replace_stride_with_dilation=flags).eval()
    _randomise_bn(reference, 3)
    ours = create_model("resnet50", replace_stride_with_dilation=flags).eval()
    ours.load_state_dict(reference.state_dict(), strict=True)
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        assert (ours(x) - reference(x)).abs().max().item() <= 1e-5


# --------------------------------------------------------------------------------------------
# Every block type: dilation computes the strided network's map, only denser
# --------------------------------------------------------------------------------------------
# Replacing a stride-2 conv by dilation and dilating every later conv is the "a trous"
# identity: the dilated map sampled every f pixels is the strided map exactly (even input
# sizes). It fails if any conv gets the wrong dilation or a shortcut still subsamples.
_SMALL_BOTTLENECK = {"layers": (1, 2, 2), "block": "bottleneck", "stem": "small"}
DENSE_CASES = [
    ("resnet18", {}, 64, (16, 8)),  # BasicBlock, which torchvision cannot dilate
    ("resnet50", {}, 64, (16, 8)),  # Bottleneck
    ("preact_resnet18", {}, 64, (16, 8)),  # PreActBasicBlock
    ("resnet20", {}, 32, (2, 1)),  # BasicBlock + option-A PadShortcut
    ("preact_resnet20", {}, 32, (2, 1)),
    ("wrn_16_4", {}, 32, (2, 1)),  # pre-activation with projection shortcuts
    ("small_bottleneck", {**_SMALL_BOTTLENECK, "preact": True, "widths": (8, 16, 32)}, 32, (2, 1)),
    ("small_bottleneck", {**_SMALL_BOTTLENECK, "widths": (8, 16, 32)}, 32, (2, 1)),
    ("resnet18", {"stem": "small"}, 32, (4, 2)),  # 4 stages on the small stem: natural 8
]


def _build(name: str, kwargs: dict[str, object], **extra: object) -> ResNet:
    if name == "small_bottleneck":
        return ResNet(num_classes=10, **{**kwargs, **extra}).eval()  # type: ignore[arg-type]
    return create_model(name, **{**kwargs, **extra}).eval()  # type: ignore[return-value]


@pytest.mark.parametrize(("name", "kwargs", "size", "strides"), DENSE_CASES)
def test_dilated_map_subsampled_is_the_strided_map(
    name: str, kwargs: dict[str, object], size: int, strides: tuple[int, int]
) -> None:
    torch.manual_seed(0)
    plain = _build(name, kwargs)
    _randomise_bn(plain, 5)
    natural = plain.output_stride
    x = torch.randn(2, plain.in_chans, size, size, generator=torch.Generator().manual_seed(6))
    with torch.no_grad():
        expected = plain.forward_features(x)
        for output_stride in strides:
            dense = _build(name, kwargs, output_stride=output_stride)
            dense.load_state_dict(plain.state_dict(), strict=True)  # no new parameters
            got = dense.forward_features(x)
            f = natural // output_stride
            assert dense.output_stride == output_stride
            assert got.shape[-1] == size // output_stride == expected.shape[-1] * f
            # Relative: the deep random-BN stacks reach values ~1e3, where float32 sums
            # taken in another order differ by ~1e-4 absolute.
            scale = max(1.0, expected.abs().max().item())
            assert (got[..., ::f, ::f] - expected).abs().max().item() <= 1e-5 * scale
            # The classifier sees the same features, only pooled from a denser map.
            assert dense(x).shape == plain(x).shape


def test_pad_shortcut_stops_subsampling_when_dilated() -> None:
    model = create_model("resnet20", output_stride=1)
    shortcuts = [m for m in model.modules() if isinstance(m, PadShortcut)]
    assert len(shortcuts) == 2 and all(m.stride == 1 for m in shortcuts)
    out = model.forward_features(torch.randn(1, 3, 32, 32))
    assert out.shape == (1, 64, 32, 32)
    dilations = [m.dilation[0] for m in model.layer3.modules() if isinstance(m, nn.Conv2d)]
    # First block: conv1 at the previous dilation (2), then 4 everywhere, as in torchvision.
    assert dilations == [2, 4, 4, 4, 4, 4]


@pytest.mark.parametrize(
    ("name", "output_stride", "reductions"),
    [
        ("resnet18", 16, [4, 8, 16, 16]),
        ("resnet18", 8, [4, 8, 8, 8]),
        ("resnet20", 4, [1, 2, 4]),
        ("resnet20", 2, [1, 2, 2]),
        ("resnet20", 1, [1, 1, 1]),
    ],
)
def test_feature_info_reports_real_strides(
    name: str, output_stride: int, reductions: list[int]
) -> None:
    model = create_model(name, features_only=True, output_stride=output_stride)
    assert [f["reduction"] for f in model.feature_info] == reductions
    size = 64 if name == "resnet18" else 32
    feats = model(torch.randn(1, 3, size, size))
    assert [size // t.shape[-1] for t in feats] == reductions


def test_pretrained_weights_load_unchanged_into_a_dilated_model() -> None:
    plain = create_model("resnet20.fashion_mnist", pretrained=True).eval()
    dense = create_model("resnet20.fashion_mnist", pretrained=True, output_stride=1).eval()
    assert dense.output_stride == 1 and dense.pretrained_cfg["arch_kwargs"]["output_stride"] == 1
    for (k1, v1), (k2, v2) in zip(
        plain.state_dict().items(), dense.state_dict().items(), strict=True
    ):
        assert k1 == k2 and torch.equal(v1, v2)
    x = torch.randn(2, 1, 28, 28, generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        expected = plain.forward_features(x)
        assert (dense.forward_features(x)[..., ::4, ::4] - expected).abs().max() <= 1e-5


# --------------------------------------------------------------------------------------------
# Bad values
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("name", "kwargs", "match"),
    [
        ("resnet50", {"output_stride": 4}, "choose one of 32, 16, 8"),
        ("resnet50", {"output_stride": 12}, "natural output stride is 32"),
        ("resnet50", {"output_stride": 64}, "output_stride=64"),
        ("resnet50", {"output_stride": True}, "output_stride=True"),
        ("resnet20", {"output_stride": 8}, "choose one of 4, 2, 1"),
        ("resnet20", {"output_stride": 32}, "natural output stride is 4"),
        (
            "resnet50",
            {"output_stride": 8, "replace_stride_with_dilation": [False, True, True]},
            "not both",
        ),
        ("resnet50", {"replace_stride_with_dilation": [True, True]}, "must be 3 bools"),
        ("resnet20", {"replace_stride_with_dilation": [False, True, True]}, "must be 2 bools"),
        ("resnet50", {"replace_stride_with_dilation": [0, 1, 1]}, "must be 3 bools"),
    ],
)
def test_bad_output_stride_is_explained(name: str, kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        create_model(name, **kwargs)


def test_one_stage_network_has_nothing_to_dilate() -> None:
    with pytest.raises(ValueError, match="choose one of 1"):
        ResNet((2,), widths=(16,), stem="small", output_stride=2)
    assert ResNet((2,), widths=(16,), stem="small", output_stride=1).output_stride == 1
