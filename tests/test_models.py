"""Tests for the core model library: torchvision parity, paper sizes, options and export paths.

Everything runs on CPU with tiny inputs (32x32 for the small/CIFAR family, 64x64 for the
ImageNet family). Models too big to build quickly on 2 cores are either built on the meta device
(shape-only checks) or marked ``slow``.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch
import torchvision
from torch import Tensor, nn

from resnet_pl import ResNet, UnknownModelError, create_model, list_models, model_info
from resnet_pl.models import (
    BasicBlock,
    Bottleneck,
    PreActBasicBlock,
    PreActBottleneck,
    get_default_cfg,
)

IMAGENET_FAMILY = [
    "resnet18",
    "resnet34",
    "resnet50",
    "resnet101",
    "resnet152",
    "resnext50_32x4d",
    "resnext101_32x8d",
    "resnext101_64x4d",
    "wide_resnet50_2",
    "wide_resnet101_2",
]
# Building (random init) plus a forward of these takes more than ~2 s each on 2 CPU cores.
HEAVY = {
    "resnet101",
    "resnet152",
    "resnext101_32x8d",
    "resnext101_64x4d",
    "wide_resnet101_2",
    "wrn_28_10",
    "preact_resnet1001",
    "resnet1202",
}
# Too deep to run even as a slow test on CPU: checked on the meta device only.
GIANT = {"resnet1202", "preact_resnet1001"}

ALL_MODELS = list_models()


@pytest.fixture(scope="module", autouse=True)
def _one_cpu_thread() -> Iterator[None]:
    """These inputs are far too small to gain from intra-op threads, and on a small machine
    shared with another job, competing threads made this file ~5x slower (170 s vs 34 s)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def _maybe_slow(names: list[str] | set[str]) -> list[object]:
    return [
        pytest.param(n, marks=pytest.mark.slow) if n in HEAVY else pytest.param(n)
        for n in sorted(names)
    ]


def _input_for(name: str, batch: int = 1, in_chans: int = 3, device: str = "cpu") -> Tensor:
    """A small input of the right kind: 64x64 for ImageNet-family models, 32x32 otherwise."""
    size = 64 if get_default_cfg(name)["family"] == "imagenet" else 32
    return torch.randn(batch, in_chans, size, size, device=device)


def _randomise_bn(model: nn.Module, gen: torch.Generator) -> None:
    """Give every BatchNorm non-trivial statistics and affine parameters, so that an eval-mode
    comparison also checks the norms are wired to the right convolutions."""
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            n = m.num_features
            m.running_mean.copy_(torch.randn(n, generator=gen) * 0.1)
            m.running_var.copy_(torch.rand(n, generator=gen) + 0.5)
            with torch.no_grad():
                m.weight.copy_(torch.rand(n, generator=gen) + 0.5)
                m.bias.copy_(torch.randn(n, generator=gen) * 0.1)


def _blocks(model: nn.Module) -> Iterator[nn.Module]:
    block_types = (BasicBlock, Bottleneck, PreActBasicBlock, PreActBottleneck)
    return (m for m in model.modules() if isinstance(m, block_types))


# --------------------------------------------------------------------------------------------
# torchvision parity
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", _maybe_slow(IMAGENET_FAMILY))
def test_torchvision_parity(name: str) -> None:
    """Our ImageNet-family models load torchvision's state dict strictly and compute the same
    function, so torchvision's pretrained weights (and checkpoints) drop in unchanged."""
    torch.manual_seed(0)
    reference = getattr(torchvision.models, name)().eval()
    _randomise_bn(reference, torch.Generator().manual_seed(1))
    ours = create_model(name).eval()
    ours.load_state_dict(reference.state_dict(), strict=True)

    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        expected, got = reference(x), ours(x)
    assert got.shape == expected.shape == (2, 1000)
    assert (got - expected).abs().max().item() <= 1e-5


# --------------------------------------------------------------------------------------------
# Size and cost against the papers
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("name", "paper_millions", "decimals"),
    [
        # He et al. 2015, Table 6 (CIFAR-10).
        ("resnet20", 0.27, 2),
        ("resnet32", 0.46, 2),
        ("resnet44", 0.66, 2),
        ("resnet56", 0.85, 2),
        ("resnet110", 1.7, 1),
        ("resnet1202", 19.4, 1),
        # Zagoruyko & Komodakis 2016, Table 1 / 4.
        ("wrn_28_10", 36.5, 1),
        ("wrn_40_4", 8.9, 1),
        # He et al. 2016, Table 2.
        ("preact_resnet164", 1.7, 1),
    ],
)
def test_param_count_matches_paper(name: str, paper_millions: float, decimals: int) -> None:
    """Parameter counts round to the paper's figure (at the paper's precision), which pins the
    depth, widths and the parameter-free option-A shortcuts of the CIFAR ResNets."""
    info = model_info(name, num_classes=10)
    assert round(info.params / 1e6, decimals) == pytest.approx(paper_millions)


@pytest.mark.parametrize(
    ("name", "input_size", "expected_gmacs"),
    [
        ("resnet50", (3, 224, 224), 4.1),  # torchvision / He et al. 2015: ~4.1 GMACs
        ("resnet20", (3, 32, 32), 0.0408),  # commonly quoted 40.8M MACs
    ],
)
def test_macs_match_reference(
    name: str, input_size: tuple[int, int, int], expected_gmacs: float
) -> None:
    info = model_info(name, input_size=input_size)
    assert info.input_size == input_size
    assert info.gmacs == pytest.approx(expected_gmacs, rel=0.03)
    assert info.gflops == pytest.approx(2 * info.gmacs)


def test_model_info_defaults_to_the_cfg_input_size() -> None:
    assert model_info("resnet18").input_size == (3, 224, 224)
    assert model_info("resnet20").input_size == (3, 32, 32)
    # FLOPs scale with the image area (the head is negligible): 4x the pixels, ~4x the cost.
    small, big = model_info("resnet20"), model_info("resnet20", input_size=(3, 64, 64))
    assert big.flops / small.flops == pytest.approx(4.0, rel=0.01)


# --------------------------------------------------------------------------------------------
# Every registered architecture
# --------------------------------------------------------------------------------------------
def test_list_models_covers_both_families() -> None:
    assert set(IMAGENET_FAMILY) <= set(ALL_MODELS)
    assert sorted(ALL_MODELS) == ALL_MODELS
    assert list_models("wrn_*") == ["wrn_16_2", "wrn_16_4", "wrn_16_8", "wrn_28_10", "wrn_40_4"]
    assert list_models("nothing*") == []


@pytest.mark.parametrize("name", ALL_MODELS)
def test_pretrained_cfg_and_meta_forward(name: str) -> None:
    """Every architecture wires up (shape checks run on the meta device, so even ResNet-1202
    is free) and describes its expected input in ``pretrained_cfg``."""
    cfg = get_default_cfg(name)
    with torch.device("meta"):
        model = create_model(name).eval()
        out = model(torch.empty(2, *cfg["input_size"]))
    default_classes = 1000 if cfg["family"] == "imagenet" else 10
    assert cfg["input_size"] == ((3, 224, 224) if cfg["family"] == "imagenet" else (3, 32, 32))
    assert out.shape == (2, default_classes)
    assert model.pretrained_cfg["architecture"] == name
    assert model.pretrained_cfg["num_classes"] == default_classes
    assert model.pretrained_cfg["input_size"] == cfg["input_size"]
    assert cfg["paper"].startswith("https://arxiv.org/abs/")


@pytest.mark.parametrize("name", _maybe_slow(set(ALL_MODELS) - GIANT))
def test_forward_shape(name: str) -> None:
    torch.manual_seed(0)
    model = create_model(name, num_classes=7).eval()
    with torch.no_grad():
        out = model(_input_for(name, batch=2))
    assert out.shape == (2, 7)
    assert torch.isfinite(out).all()


# --------------------------------------------------------------------------------------------
# features_only / forward_intermediates
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("name", "size", "strides"),
    [
        ("resnet18", 64, (4, 8, 16, 32)),
        ("resnext50_32x4d", 64, (4, 8, 16, 32)),
        ("preact_resnet18", 64, (4, 8, 16, 32)),
        ("resnet20", 32, (1, 2, 4)),
        ("preact_resnet20", 32, (1, 2, 4)),
        ("wrn_16_4", 32, (1, 2, 4)),
    ],
)
def test_features_only_strides_and_channels(name: str, size: int, strides: tuple[int, ...]) -> None:
    model = create_model(name, features_only=True).eval()
    assert [f["reduction"] for f in model.feature_info] == list(strides)
    with torch.no_grad():
        feats = model(torch.randn(1, 3, size, size))
    assert isinstance(feats, list)
    assert len(feats) == len(strides)
    for feat, info, stride in zip(feats, model.feature_info, strides, strict=True):
        assert feat.shape == (1, info["num_chs"], size // stride, size // stride)
    assert not hasattr(model, "fc")


@pytest.mark.parametrize(
    ("name", "out_indices"), [("resnet18", (2, 4)), ("resnet20", (1, 3)), ("resnet50", (3,))]
)
def test_features_only_out_indices_select_stages(name: str, out_indices: tuple[int, ...]) -> None:
    """The selected stages come back in order, and the last one equals ``forward_features`` of
    the classification model with the same weights (preact final norm included)."""
    torch.manual_seed(0)
    full = create_model(name).eval()
    feat_model = create_model(name, features_only=True, out_indices=out_indices).eval()
    result = feat_model.load_state_dict(full.state_dict(), strict=False)
    assert result.missing_keys == []
    assert sorted(result.unexpected_keys) == ["fc.bias", "fc.weight"]

    x = _input_for(name)
    with torch.no_grad():
        feats = feat_model(x)
        all_feats = create_model(name, features_only=True).eval()
        all_feats.load_state_dict(full.state_dict(), strict=False)
        every_stage = all_feats(x)
    assert len(feats) == len(out_indices)
    for feat, idx in zip(feats, out_indices, strict=True):
        assert feat.shape[1] == feat_model.feature_info[idx - 1]["num_chs"]
        torch.testing.assert_close(feat, every_stage[idx - 1])
    if out_indices[-1] == len(feat_model.feature_info):
        with torch.no_grad():
            torch.testing.assert_close(feats[-1], full.forward_features(x))


def test_preact_last_feature_is_normalised() -> None:
    """A pre-activation net's last stage ends in a bare conv; its features (and the pooled
    head input) must go through the final BN-ReLU, so they are non-negative."""
    model = create_model("preact_resnet20", features_only=True).eval()
    with torch.no_grad():
        feats = model(torch.randn(2, 3, 32, 32))
    assert feats[-1].min() >= 0
    assert feats[0].min() < 0  # earlier stages are raw block outputs


def test_small_stems() -> None:
    """The CIFAR stem is conv-BN-ReLU; the pre-activation CIFAR stem is the bare conv, since
    each pre-activation block normalises its own input (He et al. 2016)."""
    x = torch.randn(2, 3, 32, 32)
    plain = create_model("resnet20").eval()
    preact = create_model("preact_resnet20").eval()
    with torch.no_grad():
        torch.testing.assert_close(plain.forward_stem(x), torch.relu(plain.bn1(plain.conv1(x))))
        stem_out = preact.forward_stem(x)
        torch.testing.assert_close(stem_out, preact.conv1(x))
    assert stem_out.min() < 0


@pytest.mark.parametrize("out_indices", [(0,), (5,), (1, 4)])
def test_bad_out_indices(out_indices: tuple[int, ...]) -> None:
    with pytest.raises(ValueError, match="out_indices"):
        create_model("resnet20", features_only=True, out_indices=out_indices)


# --------------------------------------------------------------------------------------------
# Input channels
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["resnet18", "resnet20", "preact_resnet20", "wrn_16_4"])
def test_in_chans_one(name: str) -> None:
    model = create_model(name, in_chans=1, num_classes=3).eval()
    assert model.conv1.weight.shape[1] == 1
    assert model.in_chans == 1
    assert model.pretrained_cfg["input_size"][0] == 1
    with torch.no_grad():
        assert model(_input_for(name, batch=2, in_chans=1)).shape == (2, 3)


@pytest.mark.parametrize(("in_chans", "given"), [(1, 3), (3, 1), (3, 4)])
def test_wrong_channel_count_is_explained(in_chans: int, given: int) -> None:
    model = create_model("resnet20", in_chans=in_chans)
    with pytest.raises(ValueError, match=rf"\(N, {in_chans}, H, W\).*in_chans={given}"):
        model(torch.randn(1, given, 32, 32))


def test_non_4d_input_is_explained() -> None:
    model = create_model("resnet20")
    with pytest.raises(ValueError, match=r"expected input of shape \(N, 3, H, W\), got \(3, 32"):
        model(torch.randn(3, 32, 32))


# --------------------------------------------------------------------------------------------
# Classifier head
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("name", "num_features"), [("resnet18", 512), ("resnet20", 64)])
def test_reset_classifier(name: str, num_features: int) -> None:
    model = create_model(name).eval()
    x = _input_for(name, batch=2)
    assert model.num_features == num_features

    model.reset_classifier(5)
    assert model.num_classes == 5
    assert model.pretrained_cfg["num_classes"] == 5
    assert isinstance(model.get_classifier(), nn.Linear)
    with torch.no_grad():
        assert model(x).shape == (2, 5)

    model.reset_classifier(0)
    assert model.num_classes == 0
    assert isinstance(model.get_classifier(), nn.Identity)
    with torch.no_grad():
        pooled = model(x)
        expected = model.forward_head(model.forward_features(x), pre_logits=True)
    assert pooled.shape == (2, num_features)
    torch.testing.assert_close(pooled, expected)

    with pytest.raises(ValueError, match="num_classes"):
        model.reset_classifier(-1)


def test_reset_classifier_keeps_dtype() -> None:
    model = create_model("resnet20").to(torch.float64)
    model.reset_classifier(4)
    assert model.fc.weight.dtype == torch.float64


@pytest.mark.parametrize("name", ["resnet18", "resnet20", "preact_resnet20"])
def test_num_classes_zero_gives_pooled_features(name: str) -> None:
    torch.manual_seed(0)
    headless = create_model(name, num_classes=0).eval()
    full = create_model(name).eval()
    full.load_state_dict(headless.state_dict(), strict=False)
    x = _input_for(name, batch=2)
    with torch.no_grad():
        pooled = headless(x)
        assert pooled.shape == (2, headless.num_features)
        expected = full.forward_head(full.forward_features(x), pre_logits=True)
    assert isinstance(headless.fc, nn.Identity)
    torch.testing.assert_close(pooled, expected)


# --------------------------------------------------------------------------------------------
# Stochastic depth
# --------------------------------------------------------------------------------------------
def test_drop_path_rate_rises_linearly_over_blocks() -> None:
    model = create_model("resnet20", drop_path_rate=0.4)
    blocks = list(_blocks(model))
    assert isinstance(blocks[0].drop_path, nn.Identity)  # the first block is never dropped
    rates = [b.drop_path.p for b in blocks[1:]]
    assert rates == pytest.approx([0.4 * i / (len(blocks) - 1) for i in range(1, len(blocks))])


@pytest.mark.parametrize("name", ["resnet20", "preact_resnet20", "resnet18", "resnet50"])
def test_drop_path_is_stochastic_in_train_and_off_in_eval(name: str) -> None:
    torch.manual_seed(0)
    model = create_model(name, drop_path_rate=0.5, num_classes=4)
    x = _input_for(name, batch=4)
    model.train()
    with torch.no_grad():
        first, second = model(x), model(x)
    assert not torch.allclose(first, second)

    # Same weights (and BN statistics) without stochastic depth: eval must match exactly.
    plain = create_model(name, num_classes=4)
    plain.load_state_dict(model.state_dict(), strict=True)
    model.eval()
    plain.eval()
    with torch.no_grad():
        a, b, reference = model(x), model(x), plain(x)
    assert torch.equal(a, b)
    assert (a - reference).abs().max().item() <= 1e-6


# --------------------------------------------------------------------------------------------
# zero_init_residual
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("block", "preact", "shortcut"),
    [
        ("basic", False, "A"),
        ("basic", False, "B"),
        ("bottleneck", False, "B"),
        ("basic", True, "A"),
        ("basic", True, "B"),
        ("bottleneck", True, "B"),
    ],
)
@pytest.mark.parametrize("zero_init", [True, False])
def test_zero_init_residual_starts_each_block_at_its_shortcut(
    block: str, preact: bool, shortcut: str, zero_init: bool
) -> None:
    """With ``zero_init_residual`` every residual branch outputs zero, so each block computes
    only its shortcut path (followed by the ReLU for post-activation blocks). Without it the
    blocks do not, which shows the check can fail."""
    torch.manual_seed(0)
    model = ResNet(
        (2, 2, 2),
        block,  # type: ignore[arg-type]
        num_classes=10,
        stem="small",
        widths=(8, 16, 32),
        shortcut=shortcut,  # type: ignore[arg-type]
        preact=preact,
        zero_init_residual=zero_init,
    ).eval()
    seen: list[tuple[nn.Module, Tensor, Tensor]] = []
    hooks = [
        b.register_forward_hook(
            lambda mod, args, out: seen.append((mod, args[0].clone(), out.clone()))
        )
        for b in _blocks(model)
    ]
    with torch.no_grad():
        model(torch.randn(2, 3, 16, 16))
        for h in hooks:
            h.remove()
        assert len(seen) == 6
        matches = []
        for blk, x, y in seen:
            shortcut_in = torch.relu(blk.bn1(x)) if preact else x
            identity = x if blk.downsample is None else blk.downsample(shortcut_in)
            expected = identity if preact else torch.relu(identity)
            matches.append(torch.allclose(y, expected, atol=1e-6))
    assert all(matches) if zero_init else not any(matches)


# --------------------------------------------------------------------------------------------
# Memory format and graph capture
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["resnet18", "resnext50_32x4d", "resnet20", "preact_resnet20"])
def test_channels_last_matches(name: str) -> None:
    torch.manual_seed(0)
    model = create_model(name).eval()
    _randomise_bn(model, torch.Generator().manual_seed(1))
    x = _input_for(name, batch=2)
    with torch.no_grad():
        reference = model(x)
        model = model.to(memory_format=torch.channels_last)
        assert model.conv1.weight.is_contiguous(memory_format=torch.channels_last)
        out = model(x.contiguous(memory_format=torch.channels_last))
    assert (out - reference).abs().max().item() <= 1e-5


def test_torch_export_with_dynamic_batch() -> None:
    torch.manual_seed(0)
    model = create_model("resnet20").eval()
    batch = torch.export.Dim("batch", min=1, max=256)
    program = torch.export.export(model, (torch.randn(2, 3, 32, 32),), dynamic_shapes=({0: batch},))
    exported = program.module()
    for n in (1, 5):
        x = torch.randn(n, 3, 32, 32)
        with torch.no_grad():
            torch.testing.assert_close(exported(x), model(x))


@pytest.mark.filterwarnings("ignore:.*is deprecated:FutureWarning")
@pytest.mark.filterwarnings("error::torch.jit.TracerWarning")
@pytest.mark.parametrize("name", ["resnet20", "preact_resnet20"])
def test_jit_trace(name: str) -> None:
    """Tracing works without TracerWarnings, and the trace generalises to other batch sizes."""
    torch.manual_seed(0)
    model = create_model(name).eval()
    with torch.no_grad():
        # check_trace re-runs and diffs the graph; the comparison below is the real check.
        traced = torch.jit.trace(model, torch.randn(2, 3, 32, 32), check_trace=False)
        x = torch.randn(3, 3, 32, 32)
        torch.testing.assert_close(traced(x), model(x))


@pytest.mark.slow
def test_torch_compile() -> None:
    """torch.compile (inductor, CPU) matches eager; ~30 s of compilation on 2 cores."""
    torch.manual_seed(0)
    model = create_model("resnet20").eval()
    compiled = torch.compile(model)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert (compiled(x) - model(x)).abs().max().item() <= 1e-5


# --------------------------------------------------------------------------------------------
# Bad names and options
# --------------------------------------------------------------------------------------------
def test_unknown_name_suggests_close_matches() -> None:
    with pytest.raises(UnknownModelError) as excinfo:
        create_model("resnet5")
    message = str(excinfo.value)
    assert "'resnet5'" in message
    assert "resnet50" in message and "resnet56" in message
    assert "list_models()" in message
    assert isinstance(excinfo.value, ValueError)  # callers catching ValueError still work


@pytest.mark.parametrize("call", [model_info, get_default_cfg])
def test_unknown_name_everywhere(call: object) -> None:
    with pytest.raises(UnknownModelError, match="wide_resnet50_2"):
        call("wide_resnet50")  # type: ignore[operator]


def test_unknown_name_without_close_match_still_points_to_list_models() -> None:
    with pytest.raises(UnknownModelError, match=r"'vgg16'\. See resnet_pl\.list_models\(\)"):
        create_model("vgg16")


@pytest.mark.parametrize(
    ("kwargs", "option"),
    [
        ({"stem": "x"}, "stem"),
        ({"shortcut": "C"}, "shortcut"),
        ({"drop_path_rate": 1.5}, "drop_path_rate"),
        ({"drop_path_rate": -0.1}, "drop_path_rate"),
        ({"drop_rate": 1.0}, "drop_rate"),
        ({"num_classes": -1}, "num_classes"),
        ({"in_chans": 0}, "in_chans"),
        ({"stem_width": 0}, "stem_width"),
        ({"groups": 32, "width_per_group": 4}, "width_per_group"),
        ({"widths": (16, 32)}, "layers"),
    ],
)
def test_bad_option_names_the_option(kwargs: dict[str, object], option: str) -> None:
    with pytest.raises(ValueError, match=option):
        create_model("resnet20", **kwargs)


# --------------------------------------------------------------------------------------------
# Named builders
# --------------------------------------------------------------------------------------------
def _docstring_figures(doc: str) -> tuple[int, float, str]:
    """``(parameters, FLOPs figure, unit)`` as written in a builder's docstring."""
    import re

    found = re.search(r"([\d,]+) parameters, ([\d.]+) ([MG])FLOPs per", " ".join(doc.split()))
    assert found, doc
    return int(found[1].replace(",", "")), float(found[2]), found[3]


@pytest.mark.parametrize("name", ALL_MODELS)
def test_named_builder_is_registered_documented_and_exported(name: str) -> None:
    import inspect

    import resnet_pl
    import resnet_pl.models as models
    from resnet_pl.models.registry import get_builder

    builder = getattr(models, name)
    assert builder is get_builder(name) is getattr(resnet_pl, name)
    assert builder.__name__ == name and name in models.__all__ and name in resnet_pl.__all__
    signature = inspect.signature(builder)
    assert signature.parameters["pretrained"].kind is inspect.Parameter.KEYWORD_ONLY
    assert signature.parameters["pretrained"].default is False
    assert signature.return_annotation in (ResNet, "ResNet")
    doc = inspect.getdoc(builder) or ""
    assert get_default_cfg(name)["paper"] in doc and "Args:" in doc
    # The figures written in the docstring are what model_info counts today.
    params, flops, unit = _docstring_figures(doc)
    info = model_info(name)
    assert params == info.params
    scale, digits = (1e6, 1) if unit == "M" else (1e9, 2)
    assert flops == round(info.flops / scale, digits)


def test_one_list_of_architecture_names() -> None:
    """The registry is the one list: every other place that names the architectures reads it."""
    import resnet_pl
    import resnet_pl.models as models
    from resnet_pl.models import builders

    names = list_models()
    assert len(names) >= 32 and "wrn_16_2" in names
    assert sorted(builders.__all__) == names
    core = {"ResNet", "BasicBlock", "register_model", "list_models", "get_builder"}
    assert core <= set(models.__all__)
    assert sorted(set(models.__all__) & set(names)) == names
    assert sorted(n for n in resnet_pl.__all__ if n in names) == names
    assert {"create_model", "export_onnx", "__version__"} <= set(resnet_pl.__all__)
    assert len(resnet_pl.__all__) == len(set(resnet_pl.__all__))
    assert set(names) <= set(dir(resnet_pl))
    with pytest.raises(AttributeError, match="no attribute 'resnet21'"):
        resnet_pl.resnet21  # noqa: B018


def test_builder_docstrings_share_one_args_block() -> None:
    """The shared ``Args:`` block is written once (in builders.py) and appended to each builder's
    ``__doc__``; the source holds each builder's own text only."""
    import inspect

    from resnet_pl.models import builders

    source = inspect.getsource(builders)
    assert source.count("pretrained: load this architecture's default weights") == 2
    doc = inspect.getdoc(builders.wrn_16_2) or ""
    assert doc.count("Args:") == 1 and 'list_pretrained("wrn_16_2.*")' in doc


def test_named_builder_equals_create_model() -> None:
    import resnet_pl.models as models

    torch.manual_seed(0)
    a = models.resnet20(num_classes=7, in_chans=1)
    torch.manual_seed(0)
    b = create_model("resnet20", num_classes=7, in_chans=1)
    assert a.pretrained_cfg == b.pretrained_cfg
    assert a.pretrained_cfg["architecture"] == "resnet20"
    assert a.pretrained_cfg["input_size"] == (1, 32, 32)
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_named_builder_pretrained_loads_the_default_weights() -> None:
    import resnet_pl.models as models

    a = models.resnet20(pretrained=True)
    b = create_model("resnet20.fashion_mnist", pretrained=True)
    assert a.pretrained_cfg["weights"] == "resnet20.fashion_mnist"
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def _crd_param_count(
    depth: int, stem: int, widths: tuple[int, int, int], num_classes: int, in_chans: int = 3
) -> int:
    """Parameters of a CIFAR ResNet of basic blocks with projection shortcuts, counted by hand
    from the CRD definition (HobbitLong/RepDistiller models/resnet.py): 3x3 stem conv + BN,
    (depth - 2) / 6 blocks per stage, 1x1 conv + BN where the shape changes, linear head."""
    n = (depth - 2) // 6
    total = in_chans * stem * 9 + 2 * stem
    c_in = stem
    for stage, w in enumerate(widths):
        for i in range(n):
            total += c_in * w * 9 + 2 * w + w * w * 9 + 2 * w
            if i == 0 and (stage > 0 or c_in != w):
                total += c_in * w + 2 * w
            c_in = w
    return total + c_in * num_classes + num_classes


@pytest.mark.parametrize(
    ("name", "depth", "stem", "widths", "params_cifar100"),
    [
        # The CIFAR-100 (100-class) setting of the distillation papers.
        ("resnet8", 8, 16, (16, 32, 64), 83_892),
        ("resnet14", 14, 16, (16, 32, 64), 181_108),
        ("resnet8x4", 8, 32, (64, 128, 256), 1_233_540),
        ("resnet32x4", 32, 32, (64, 128, 256), 7_433_860),
    ],
)
def test_distillation_nets_match_the_crd_definition(
    name: str, depth: int, stem: int, widths: tuple[int, int, int], params_cifar100: int
) -> None:
    info = model_info(name, num_classes=100)
    assert info.params == _crd_param_count(depth, stem, widths, 100) == params_cifar100
    model = create_model(name, num_classes=100)
    assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 100)
    assert model.layer1[0].conv1.in_channels == stem
    assert [s[0].conv1.out_channels for s in model.stages] == list(widths)
