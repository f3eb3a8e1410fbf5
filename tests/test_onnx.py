"""ONNX export: every family exports and matches PyTorch in ONNX Runtime, BatchNorm folding is
exact, metadata round-trips, checkpoints export, bad options fail clearly, and the fp16/int8
paths keep accuracy on real Fashion-MNIST images."""

from __future__ import annotations

import copy
import gzip
import hashlib
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from torch import nn

import resnet_pl
from resnet_pl.data import preprocess_uint8
from resnet_pl.deploy import (
    CheckpointError,
    ExportError,
    ExportOptionError,
    ExportVerificationError,
    export_onnx,
    fold_batchnorm,
    read_metadata,
)
from resnet_pl.deploy import exporters as exporters_module
from resnet_pl.deploy import onnx_export as onnx_export_module

FASHION_CLASSES = [
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
]  # fmt: skip
FMNIST_CFG = {"input_size": (1, 28, 28), "mean": (0.2860,), "std": (0.3530,)}


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Iterator[None]:
    """One intra-op thread: the CI box has 2 cores shared with other jobs, where two OpenMP
    threads spin against each other and a tiny forward pass takes 100x longer."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def read_idx_gz(path: Path) -> np.ndarray:
    with gzip.open(path, "rb") as f:
        data = f.read()
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, np.uint8, offset=4 + 4 * ndim).reshape(dims)


@pytest.fixture(scope="module")
def fmnist(fashion_mnist_dir: Path) -> dict[str, np.ndarray]:
    """Real Fashion-MNIST slices: train[:256] (calibration), train[10000:12560] (fitting),
    test[:256] (evaluation). (``fashion_mnist_dir`` skips where the files are missing, and
    fails on CI.)"""
    train_x = read_idx_gz(fashion_mnist_dir / "train-images-idx3-ubyte.gz")
    train_y = read_idx_gz(fashion_mnist_dir / "train-labels-idx1-ubyte.gz")
    test_x = read_idx_gz(fashion_mnist_dir / "t10k-images-idx3-ubyte.gz")
    test_y = read_idx_gz(fashion_mnist_dir / "t10k-labels-idx1-ubyte.gz")
    return {
        "calib_x": train_x[:256].copy(),
        "fit_x": train_x[10000:12560].copy(),
        "fit_y": train_y[10000:12560].astype(np.int64),
        "test_x": test_x[:256].copy(),
        "test_y": test_y[:256].astype(np.int64),
    }


def randomize_bn(model: nn.Module, seed: int = 0) -> nn.Module:
    """Non-trivial BatchNorm statistics: freshly initialised ones are an identity map, which
    would let a wrong fold pass unnoticed."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                n = m.num_features
                m.running_mean.copy_(torch.rand(n, generator=g) - 0.5)
                m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
                m.weight.copy_(torch.rand(n, generator=g) + 0.5)
                m.bias.copy_((torch.rand(n, generator=g) - 0.5) * 0.4)
    return model.eval()


@pytest.fixture(scope="module")
def trained_fmnist(fmnist: dict[str, np.ndarray]) -> nn.Module:
    """A resnet20 (narrow widths, 1 channel) given 40 Adam steps on real Fashion-MNIST: a real
    classifier (well above the 10% of chance) in a few seconds of CPU."""
    torch.manual_seed(0)
    model = resnet_pl.create_model("resnet20", in_chans=1, widths=(8, 16, 32))
    x = preprocess_uint8(fmnist["fit_x"], FMNIST_CFG)
    y = torch.from_numpy(fmnist["fit_y"])
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for i in range(40):
        loss = nn.functional.cross_entropy(
            model(x[i * 64 : (i + 1) * 64]), y[i * 64 : (i + 1) * 64]
        )
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    model.pretrained_cfg.update(  # type: ignore[operator, union-attr]
        FMNIST_CFG, dataset="fashion_mnist", categories=FASHION_CLASSES
    )
    return model


def session(path: Path) -> ort.InferenceSession:
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def run(sess: ort.InferenceSession, x: torch.Tensor) -> np.ndarray:
    return np.asarray(sess.run(None, {sess.get_inputs()[0].name: x.numpy()})[0])


def tol(ref: torch.Tensor | np.ndarray, rel: float = 1e-4) -> float:
    return rel * max(1.0, float(np.abs(np.asarray(ref)).max()))


def bn_nodes(path: Path) -> int:
    return sum(n.op_type == "BatchNormalization" for n in onnx.load(str(path)).graph.node)


# --------------------------------------------------------------------------------------------
# Every family
# --------------------------------------------------------------------------------------------
# (arch, input side, exporter). The default run covers each block type and stem; the default
# exporter ("auto" = dynamo + parity check) on preact_resnet20 and resnet18 (resnet20 gets it
# in the ``resnet20_onnx`` fixture), TorchScript on the others to keep the run short; the
# other combinations, resnet50 (its 100 MB file alone takes ~6 s here) and deeper nets are
# @slow.
ARCH_CASES = [
    ("resnet20", 32, "torchscript"),
    ("preact_resnet20", 32, "auto"),
    ("wrn_16_4", 32, "torchscript"),
    ("resnet18", 64, "auto"),
    ("resnext50_32x4d", 64, "torchscript"),  # bottleneck + grouped convs
    pytest.param("resnet50", 64, "torchscript", marks=pytest.mark.slow),  # ~6 s: 100 MB file
    pytest.param("wrn_16_4", 32, "dynamo", marks=pytest.mark.slow),
    pytest.param("resnet50", 64, "dynamo", marks=pytest.mark.slow),
    pytest.param("resnext50_32x4d", 64, "dynamo", marks=pytest.mark.slow),
    pytest.param("resnet34", 64, "auto", marks=pytest.mark.slow),
    pytest.param("resnet110", 32, "auto", marks=pytest.mark.slow),
    pytest.param("preact_resnet50", 64, "auto", marks=pytest.mark.slow),
    pytest.param("preact_resnet164", 32, "auto", marks=pytest.mark.slow),
    pytest.param("wide_resnet50_2", 64, "auto", marks=pytest.mark.slow),
    pytest.param("resnext101_32x8d", 64, "torchscript", marks=pytest.mark.slow),
]


@pytest.mark.parametrize(("arch", "side", "exporter"), ARCH_CASES)
def test_export_matches_pytorch(arch: str, side: int, exporter: str, tmp_path: Path) -> None:
    model = randomize_bn(resnet_pl.create_model(arch))
    path = tmp_path / f"{arch}.onnx"
    report = export_onnx(model, path, input_shape=(3, side, side), exporter=exporter)  # type: ignore[arg-type]

    expected_exporter = "dynamo" if exporter == "auto" else exporter
    assert report.exporter == expected_exporter, report.notes  # no silent fallback
    assert report.passed and report.verified
    assert {c.name for c in report.checks} == {"random b=1", "random b=7"}
    assert report.bn_folded > 0
    assert report.bn_remaining == bn_nodes(path)
    # An independent check, at a batch size the export never saw.
    x = torch.randn(5, 3, side, side, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ref = model(x).numpy()
    got = run(session(path), x)
    assert np.abs(got - ref).max() <= tol(ref)
    assert (got.argmax(1) == ref.argmax(1)).all()
    assert report.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert report.file_size == path.stat().st_size
    meta = read_metadata(path)
    assert meta["arch"] == arch and meta["exporter"] == expected_exporter
    assert meta["input_size"] == [3, side, side]


@pytest.fixture(scope="module")
def resnet20_onnx(tmp_path_factory: pytest.TempPathFactory) -> tuple[nn.Module, Path, Any]:
    """One resnet20 export (default options, so the dynamo exporter) shared by several tests."""
    model = randomize_bn(resnet_pl.create_model("resnet20"), seed=3)
    path = tmp_path_factory.mktemp("onnx") / "resnet20.onnx"
    report = export_onnx(model, path, metadata={"owner": "tests", "run": {"id": 7}})
    return model, path, report


@pytest.mark.parametrize("batch", [1, 3, 16])
def test_dynamic_batch(resnet20_onnx: tuple[nn.Module, Path, Any], batch: int) -> None:
    model, path, _ = resnet20_onnx
    sess = session(path)
    assert sess.get_inputs()[0].shape == ["batch", 3, 32, 32]
    assert sess.get_outputs()[0].shape == ["batch", 10]
    x = torch.randn(batch, 3, 32, 32, generator=torch.Generator().manual_seed(batch))
    with torch.no_grad():
        ref = model(x).numpy()
    got = run(sess, x)
    assert got.shape == (batch, 10)
    assert np.abs(got - ref).max() <= tol(ref)


def test_static_batch_and_dynamic_hw(tmp_path: Path) -> None:
    model = randomize_bn(resnet_pl.create_model("resnet20"), seed=4)
    static = export_onnx(
        model,
        tmp_path / "s.onnx",
        input_shape=(2, 3, 32, 32),
        dynamic_batch=False,
        exporter="torchscript",
    )
    assert session(tmp_path / "s.onnx").get_inputs()[0].shape == [2, 3, 32, 32]
    assert [c.batch for c in static.checks] == [2]

    report = export_onnx(model, tmp_path / "hw.onnx", dynamic_hw=True, exporter="torchscript")
    sess = session(tmp_path / "hw.onnx")
    assert sess.get_inputs()[0].shape == ["batch", 3, "height", "width"]
    assert "random 40x36" in report.max_abs_diff
    x = torch.randn(2, 3, 48, 40)
    with torch.no_grad():
        ref = model(x).numpy()
    assert np.abs(run(sess, x) - ref).max() <= tol(ref)


def test_metadata_round_trip(resnet20_onnx: tuple[nn.Module, Path, Any]) -> None:
    _, path, report = resnet20_onnx
    meta = read_metadata(path)
    assert meta["arch"] == "resnet20"
    assert meta["class_names"] == [str(i) for i in range(10)]
    assert meta["num_classes"] == 10
    assert meta["input_size"] == [3, 32, 32]
    assert meta["mean"] == pytest.approx([0.485, 0.456, 0.406])
    assert meta["std"] == pytest.approx([0.229, 0.224, 0.225])
    assert meta["interpolation"] == "bilinear" and meta["crop_pct"] == 1.0
    assert meta["exporter"] == report.exporter == "dynamo"
    assert meta["opset"] == 18 == report.opset
    assert meta["dtype"] == "fp32"
    assert meta["resnet_pl_version"] == resnet_pl.__version__
    assert meta["dynamic_batch"] is True and meta["dynamic_hw"] is False
    assert meta["owner"] == "tests" and meta["run"] == {"id": 7}
    assert meta == report.metadata
    # Plain string values stay readable by any ONNX tool.
    raw = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    assert raw["arch"] == "resnet20" and raw["exporter"] == "dynamo"
    assert [o.version for o in onnx.load(str(path)).opset_import if o.domain == ""] == [18]


# --------------------------------------------------------------------------------------------
# BatchNorm folding
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("arch", "foldable", "left"),
    [("resnet20", 19, 0), ("preact_resnet20", 9, 10), ("resnet18", 20, 0)],
)
def test_fold_batchnorm_is_exact(arch: str, foldable: int, left: int) -> None:
    model = randomize_bn(resnet_pl.create_model(arch), seed=5)
    folded = copy.deepcopy(model)
    side = 64 if arch == "resnet18" else 32
    result = fold_batchnorm(folded, torch.randn(1, 3, side, side))
    # Post-activation blocks fold every norm; pre-activation ones keep those that follow a
    # ReLU or feed the shortcut too.
    assert result.num_folded == foldable and len(result.remaining) == left
    assert sum(isinstance(m, nn.BatchNorm2d) for m in folded.modules()) == left
    x = torch.randn(4, 3, side, side)
    with torch.no_grad():
        ref, got = model(x), folded(x)
    assert (ref - got).abs().max() <= 1e-5 * max(1.0, float(ref.abs().max()))


def test_folded_graph_has_no_batchnorm(resnet20_onnx: tuple[nn.Module, Path, Any]) -> None:
    _, path, report = resnet20_onnx
    assert report.bn_folded == 19
    assert bn_nodes(path) == 0 == report.bn_remaining
    assert report.fold_max_abs_diff is not None and report.fold_max_abs_diff < 1e-4


class SharedConvOutput(nn.Module):
    """A conv output read by a BatchNorm *and* a second branch: folding would change the
    second branch, so it must be left alone."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.conv2 = nn.Conv2d(8, 8, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(8)
        self.fc = nn.Linear(8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        z = self.bn(y) + y  # y used twice: not foldable
        z = self.bn2(self.conv2(torch.relu(z)))  # foldable
        return self.fc(z.mean((2, 3)))


def test_fold_skips_shared_outputs() -> None:
    model = randomize_bn(SharedConvOutput(), seed=6)
    folded = copy.deepcopy(model)
    result = fold_batchnorm(folded, torch.randn(1, 3, 8, 8))
    assert result.folded == [("conv2", "bn2")] and result.remaining == ["bn"]
    x = torch.randn(3, 3, 8, 8)
    with torch.no_grad():
        assert torch.allclose(model(x), folded(x), atol=1e-5)


# --------------------------------------------------------------------------------------------
# Lightning checkpoints
# --------------------------------------------------------------------------------------------
def make_checkpoint(path: Path, model: nn.Module, **hp_overrides: Any) -> Path:
    """A dict in the resnet-pl Lightning checkpoint contract, as Lightning would save it."""
    hp = {
        "arch": "resnet20",
        "num_classes": 10,
        "in_chans": 1,
        "model_kwargs": {"widths": [8, 16, 32]},
        "class_names": FASHION_CLASSES,
        "mean": [0.2860],
        "std": [0.3530],
        "input_size": [1, 28, 28],
        "dataset": "fashion_mnist",
        "lr": 0.1,
        **hp_overrides,
    }
    state = {f"model.{k}": v for k, v in model.state_dict().items()}
    state["train_acc.total"] = torch.tensor(0)  # other module state a Lightning ckpt carries
    torch.save({"hyper_parameters": hp, "state_dict": state, "epoch": 3}, path)
    return path


def test_export_from_checkpoint(tmp_path: Path, trained_fmnist: nn.Module) -> None:
    ckpt = make_checkpoint(tmp_path / "run.ckpt", trained_fmnist)
    report = export_onnx(ckpt, tmp_path / "run.onnx", exporter="torchscript", verify_samples=64)
    meta = read_metadata(tmp_path / "run.onnx")
    assert meta["class_names"] == FASHION_CLASSES
    assert meta["mean"] == pytest.approx([0.2860]) and meta["std"] == pytest.approx([0.3530])
    assert meta["input_size"] == [1, 28, 28] and meta["dataset"] == "fashion_mnist"
    assert meta["source_weights"] == "run.ckpt"
    assert meta["weights_sha256"] == hashlib.sha256(ckpt.read_bytes()).hexdigest()
    # A Fashion-MNIST model is verified on real test images, with accuracy.
    assert {"real b=1", "real b=7", "real all n=64"} <= set(report.max_abs_diff)
    assert report.accuracy["pytorch"] == report.accuracy["onnx_fp32"] > 0.3
    assert report.accuracy_samples == 64


_HP = {"arch": "resnet20", "num_classes": 10, "in_chans": 3}


@pytest.mark.parametrize(
    ("content", "match"),
    [
        ({"state_dict": {}}, "hyper_parameters"),
        ({"hyper_parameters": {**_HP, "arch": "custom"}, "state_dict": {}}, "custom"),
        ({"hyper_parameters": _HP, "state_dict": {"x": torch.zeros(1)}}, "model."),
        (
            {"hyper_parameters": _HP, "state_dict": {"model.fc.bias": torch.zeros(10)}},
            "disagree with the weights",
        ),
    ],
)
def test_bad_checkpoints(tmp_path: Path, content: dict[str, Any], match: str) -> None:
    torch.save(content, tmp_path / "bad.ckpt")
    with pytest.raises(CheckpointError, match=match):
        export_onnx(tmp_path / "bad.ckpt", tmp_path / "bad.onnx")


class Unsafe:
    pass


def test_checkpoint_with_pickled_objects_is_refused(tmp_path: Path) -> None:
    torch.save({"hyper_parameters": Unsafe(), "state_dict": {}}, tmp_path / "evil.ckpt")
    with pytest.raises(CheckpointError, match="weights_only"):
        export_onnx(tmp_path / "evil.ckpt", tmp_path / "evil.onnx")


# --------------------------------------------------------------------------------------------
# Options, errors, exporter fallback
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"dtype": "int8"}, "calibration_data"),
        ({"dtype": "bf16"}, "unknown dtype"),
        ({"opset": 9}, "too low"),
        ({"opset": 99}, "above"),
        ({"opset": 17, "exporter": "dynamo"}, "exporter='torchscript'"),
        ({"opset": 21, "exporter": "torchscript"}, "stops at opset 20"),
        ({"exporter": "jit"}, "unknown exporter"),
        ({"input_shape": (1, 32, 32)}, "in_chans=3"),
        ({"input_shape": (3, 32)}, "input_shape"),
        ({"metadata": {"arch": "x"}}, "reserved"),
        ({"verify_data": torch.randn(4, 3, 28, 28)}, "preprocess"),
        ({"verify_data": "imagenet"}, "fashion_mnist"),
    ],
)
def test_bad_options(tmp_path: Path, kwargs: dict[str, Any], match: str) -> None:
    kwargs = dict(kwargs)
    with pytest.raises(ExportOptionError, match=match):
        export_onnx(
            "resnet20",
            tmp_path / "x.onnx",
            exporter=kwargs.pop("exporter", "torchscript"),
            **kwargs,
        )
    assert not (tmp_path / "x.onnx").exists()


# --------------------------------------------------------------------------------------------
# features_only backbones: one named output per map, each verified
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("arch", "side", "out_indices", "exporter"),
    [
        ("resnet20", 32, None, "torchscript"),  # CIFAR stem, BasicBlock, 3 stages
        ("resnet18", 64, (2, 3, 4), "auto"),  # ImageNet stem, a subset of stages
        pytest.param("resnet50", 64, None, "auto", marks=pytest.mark.slow),  # Bottleneck
    ],
)
def test_features_only_export_map_by_map(
    arch: str, side: int, out_indices: tuple[int, ...] | None, exporter: str, tmp_path: Path
) -> None:
    model = randomize_bn(
        resnet_pl.create_model(arch, features_only=True, out_indices=out_indices), seed=3
    )
    path = tmp_path / "features.onnx"
    report = export_onnx(model, path, input_shape=(3, side, side), exporter=exporter)
    stages = out_indices or tuple(range(1, len(model.feature_info) + 1))
    names = [f"layer{i}" for i in stages]
    assert report.passed and report.features_only and report.output_names == names
    # Every map of every verification batch was checked and gated on its own.
    for batch in (1, 7):
        checked = {c.output for c in report.checks if c.batch == batch and c.gated and c.passed}
        assert checked == set(names)
    meta = read_metadata(path)
    assert meta["output_names"] == names and meta["features_only"] is True
    assert [f["reduction"] for f in meta["feature_info"]] == [
        model.feature_info[i - 1]["reduction"] for i in stages
    ]
    sess = session(path)
    assert [o.name for o in sess.get_outputs()] == names
    assert all(o.shape[0] == "batch" for o in sess.get_outputs())
    # Independently of the report: a batch size never traced, map by map against PyTorch.
    x = torch.randn(3, 3, side, side, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        refs = model(x)
    outs = sess.run(None, {"input": x.numpy()})
    assert len(outs) == len(refs) == len(names)
    for ref, got in zip(refs, outs, strict=True):
        assert got.shape == tuple(ref.shape)
        assert np.abs(got - ref.numpy()).max() <= tol(ref)


@pytest.mark.parametrize(
    ("arch", "side", "features_only"),
    [
        ("resnet18", 64, True),  # BasicBlock dilated: torchvision refuses this one
        ("resnet18", 64, False),
        pytest.param("resnet50", 64, True, marks=pytest.mark.slow),  # Bottleneck
    ],
)
def test_dilated_export(arch: str, side: int, features_only: bool, tmp_path: Path) -> None:
    """output_stride=8 (dilation in the last two stages) exports and verifies; a backbone's
    maps keep the stride-8 resolution, checked against PyTorch at a batch never traced."""
    model = randomize_bn(
        resnet_pl.create_model(arch, output_stride=8, features_only=features_only), seed=4
    )
    path = tmp_path / "dilated.onnx"
    report = export_onnx(model, path, input_shape=(3, side, side), exporter="torchscript")
    assert report.passed and report.features_only is features_only
    sess = session(path)
    x = torch.randn(3, 3, side, side, generator=torch.Generator().manual_seed(6))
    with torch.no_grad():
        refs = model(x)
    outs = sess.run(None, {"input": x.numpy()})
    refs = refs if isinstance(refs, list) else [refs]
    for ref, got in zip(refs, outs, strict=True):
        assert got.shape == tuple(ref.shape)
        assert np.abs(got - ref.numpy()).max() <= tol(ref)
    if features_only:
        info = read_metadata(path)["feature_info"]
        assert [f["reduction"] for f in info] == [4, 8, 8, 8]
        assert [tuple(f["shape"][1:]) for f in info][-1] == (side // 8, side // 8)


def test_features_only_wrong_map_fails_verification(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file whose deepest map is wrong (a constant added to it after export) fails on that
    map alone, and is not written."""
    real_finalize = onnx_export_module.finalize

    def corrupting(path: Path, *args: Any) -> int:
        count = real_finalize(path, *args)
        model = onnx.load(str(path))
        last = model.graph.output[-1].name
        for node in model.graph.node:  # rename the producer's output, add 1.0 after it
            node.output[:] = [f"{o}_raw" if o == last else o for o in node.output]
        one = onnx.numpy_helper.from_array(np.ones(1, np.float32), "one")
        model.graph.initializer.append(one)
        model.graph.node.append(onnx.helper.make_node("Add", [f"{last}_raw", "one"], [last]))
        onnx.save(model, str(path))
        return count

    monkeypatch.setattr(onnx_export_module, "finalize", corrupting)
    model = resnet_pl.create_model("resnet20", features_only=True)
    with pytest.raises(ExportVerificationError) as err:
        export_onnx(model, tmp_path / "f.onnx", exporter="torchscript")
    failed = {c.output for c in err.value.report.checks if not c.passed}
    assert failed == {"layer3"}
    assert "random b=1 layer3" in str(err.value)
    assert not (tmp_path / "f.onnx").exists()


def test_features_only_reduced_precision_is_refused(tmp_path: Path) -> None:
    model = resnet_pl.create_model("resnet20", features_only=True)
    with pytest.raises(ExportOptionError, match=r"features_only.*fp32"):
        export_onnx(model, tmp_path / "f.onnx", dtype="fp16")


def test_non_classifier_tensor_output_is_refused(tmp_path: Path) -> None:
    model = nn.Sequential(nn.Conv2d(3, 4, 3))  # (N, 4, H, W): neither logits nor a map list
    with pytest.raises(ExportOptionError, match="classifiers"):
        export_onnx(model, tmp_path / "c.onnx", input_shape=(3, 8, 8))


def test_export_is_a_pipeline_of_named_stages_behind_the_same_signature() -> None:
    import inspect

    from resnet_pl.deploy import onnx_export

    names = [stage.__name__ for stage in onnx_export.STAGES]
    assert names == ["prepare", "fold", "export", "precision", "verify", "finalise"]
    params = inspect.signature(export_onnx).parameters
    assert list(params) == [
        "model_or_name_or_ckpt", "path", "input_shape", "opset", "dynamic_batch", "dynamic_hw",
        "fold_batchnorm", "dtype", "verify", "calibration_data", "metadata", "exporter",
        "verify_data", "pretrained", "calibration_samples", "verify_samples", "benchmark_runs",
        "tta",
    ]  # fmt: skip
    assert all(p.kind is p.KEYWORD_ONLY for p in list(params.values())[2:])
    # Each stage is short: the orchestration is the list, not one long function.
    for stage in onnx_export.STAGES:
        assert len(inspect.getsource(stage).splitlines()) <= 70, stage.__name__


def test_prepare_refuses_before_any_file_is_touched(tmp_path: Path) -> None:
    """Options are refused in the first stage, before the output folder is even created."""
    from resnet_pl.deploy.onnx_export import ExportJob, prepare

    out = tmp_path / "new_folder" / "x.onnx"
    with pytest.raises(ExportOptionError, match="calibration_data"):
        prepare(ExportJob(source="resnet20", path=out, dtype="int8"))
    with pytest.raises(ExportOptionError, match="reserved"):
        prepare(ExportJob(source="resnet20", path=out, metadata={"opset": 1}))
    assert not out.parent.exists()


def test_benchmark_runs_is_deprecated(tmp_path: Path) -> None:
    with pytest.warns(DeprecationWarning, match="benchmarks.run --suite deploy"):
        report = export_onnx(
            "resnet20", tmp_path / "d.onnx", exporter="torchscript", verify=False,
            benchmark_runs=5,
        )  # fmt: skip
    assert not hasattr(report, "latency_ms")


def test_unknown_model_names_close_matches(tmp_path: Path) -> None:
    with pytest.raises(resnet_pl.UnknownModelError, match="resnet20"):
        export_onnx("resnet2O", tmp_path / "x.onnx")


def test_low_opset_uses_torchscript(tmp_path: Path) -> None:
    report = export_onnx("resnet20", tmp_path / "o17.onnx", opset=17)
    assert report.exporter == "torchscript" and report.passed
    assert any("opset 17" in n for n in report.notes)
    assert read_metadata(tmp_path / "o17.onnx")["opset"] == 17


def test_dynamo_failure_falls_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: Any) -> None:
        raise RuntimeError("simulated torch.export failure")

    monkeypatch.setattr(exporters_module, "_export_dynamo", broken)
    report = export_onnx("resnet20", tmp_path / "fb.onnx")
    assert report.exporter == "torchscript" and report.passed
    assert any("simulated torch.export failure" in n for n in report.notes)
    with pytest.raises(ExportError, match="dynamo exporter failed"):
        export_onnx("resnet20", tmp_path / "fb2.onnx", exporter="dynamo")


def test_wrong_dynamo_graph_falls_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A dynamo export that runs but computes the wrong thing (as in some torch releases) must
    be caught by the ONNX Runtime parity check, not shipped."""
    real_export = exporters_module._export_torchscript

    def silently_wrong(model: nn.Module, *args: Any) -> None:
        bad = copy.deepcopy(model)
        with torch.no_grad():
            bad.fc.bias.add_(0.5)  # type: ignore[union-attr, operator]
        real_export(bad, *args)

    monkeypatch.setattr(exporters_module, "_export_dynamo", silently_wrong)
    model = randomize_bn(resnet_pl.create_model("resnet20"), seed=8)
    report = export_onnx(model, tmp_path / "w.onnx")
    assert report.exporter == "torchscript" and report.passed
    assert any("misses parity" in n for n in report.notes)


def test_verification_failure_reports_table(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file that differs from PyTorch after the parity check (here: corrupted while the
    metadata is written) fails verification with the table, and nothing is written."""
    real_finalize = onnx_export_module.finalize

    def corrupting(path: Path, *args: Any) -> int:
        count = real_finalize(path, *args)
        model = onnx.load(str(path))
        init = next(i for i in model.graph.initializer if len(i.dims) == 1 and i.dims[0] == 10)
        arr = onnx.numpy_helper.to_array(init) + 1.0  # shift the classifier bias
        init.CopyFrom(onnx.numpy_helper.from_array(arr.astype(np.float32), init.name))
        onnx.save(model, str(path))
        return count

    monkeypatch.setattr(onnx_export_module, "finalize", corrupting)
    with pytest.raises(ExportVerificationError) as err:
        export_onnx("resnet20", tmp_path / "v.onnx", exporter="torchscript")
    message = str(err.value)
    assert "random b=1" in message and "FAIL" in message and "tolerance" in message
    assert not err.value.report.passed
    assert not (tmp_path / "v.onnx").exists()


# --------------------------------------------------------------------------------------------
# Reduced precision on real data
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("converter", ["onnxconverter-common", "onnxruntime.transformers.float16"])
def test_fp16_export(
    tmp_path: Path, trained_fmnist: nn.Module, converter: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if converter == "onnxconverter-common":
        pytest.importorskip("onnxconverter_common")
    else:  # the fallback that ships inside onnxruntime
        monkeypatch.setitem(sys.modules, "onnxconverter_common", None)
    path = tmp_path / "fp16.onnx"
    report = export_onnx(
        trained_fmnist, path, dtype="fp16", verify_data="fashion_mnist", exporter="torchscript",
    )  # fmt: skip
    assert report.passed and report.dtype == "fp16" and report.converter == converter
    model = onnx.load(str(path))
    conv_weights = [i for i in model.graph.initializer if len(i.dims) == 4]
    assert conv_weights and all(i.data_type == onnx.TensorProto.FLOAT16 for i in conv_weights)
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT  # fp32 I/O
    assert read_metadata(path)["dtype"] == "fp16"
    gate = next(c for c in report.checks if c.gated)
    assert gate.name == "real all n=256" and gate.top1_agreement >= 0.98
    assert abs(report.accuracy["onnx_fp16"] - report.accuracy["pytorch"]) <= 0.01
    assert set(report.accuracy) == {"pytorch", "onnx_fp32", "onnx_fp16"}


def test_int8_export(
    tmp_path: Path, trained_fmnist: nn.Module, fmnist: dict[str, np.ndarray]
) -> None:
    path = tmp_path / "int8.onnx"
    test = (fmnist["test_x"], fmnist["test_y"])  # uint8 images: preprocessed with the model cfg
    report = export_onnx(
        trained_fmnist, path, dtype="int8", calibration_data=fmnist["calib_x"],
        verify_data=test, exporter="torchscript",
    )  # fmt: skip
    assert report.passed and report.dtype == "int8"
    ops = {n.op_type for n in onnx.load(str(path)).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    fp32 = export_onnx(trained_fmnist, tmp_path / "fp32.onnx", exporter="torchscript", verify=False)
    assert report.file_size < 0.5 * fp32.file_size
    gate = next(c for c in report.checks if c.gated)
    assert gate.top1_agreement >= 0.95
    assert report.accuracy["pytorch"] - report.accuracy["onnx_int8"] <= 0.02
    assert report.accuracy["pytorch"] > 0.3  # a real classifier, not chance
    assert set(report.accuracy) == {"pytorch", "onnx_fp32", "onnx_int8"}


SHIPPED_RECORD = Path(resnet_pl.__file__).parent / "weights" / "resnet20.fashion_mnist.json"


def test_shipped_fashion_mnist_model(tmp_path: Path, fmnist: dict[str, np.ndarray]) -> None:
    """The shipped weights: ONNX Runtime gives PyTorch's predictions (and so its accuracy) on a
    real test slice, preprocessed from the ONNX file's own metadata."""
    if not SHIPPED_RECORD.is_file():
        pytest.skip(
            "resnet20.fashion_mnist weights are not shipped yet "
            f"({SHIPPED_RECORD.relative_to(Path(resnet_pl.__file__).parent.parent)} missing)"
        )
    model = resnet_pl.create_model("resnet20.fashion_mnist", pretrained=True).eval()
    path = tmp_path / "shipped.onnx"
    report = export_onnx("resnet20.fashion_mnist", path)
    assert report.passed and report.exporter == "dynamo"
    assert report.accuracy["pytorch"] == report.accuracy["onnx_fp32"]  # the export's own check
    meta = read_metadata(path)
    assert meta["class_names"] == FASHION_CLASSES and meta["dataset"] == "fashion_mnist"
    assert meta["weights_sha256"] == model.pretrained_cfg["sha256"]  # type: ignore[index]
    x = preprocess_uint8(fmnist["test_x"], meta)
    with torch.no_grad():
        ref = model(x).numpy()
    got = run(session(path), x)
    assert (got.argmax(1) == ref.argmax(1)).all()
    acc_torch = float((ref.argmax(1) == fmnist["test_y"]).mean())
    acc_onnx = float((got.argmax(1) == fmnist["test_y"]).mean())
    assert acc_onnx == acc_torch > 0.8  # the record says > 85 % on the full test split
