"""Hostile inputs, third campaign (issue #27): untrusted ONNX metadata, Hugging Face folders
and checkpoints that would exhaust memory, NaN preprocessing, config values that slipped
through, and hostile file and class names.

Every case must end in one line naming the file (and key) and the fix: a documented
``ResNetPLError`` in Python, ``resnet-pl: error: ...`` / ``error: ...`` and no traceback on the
command line; nothing allocated beyond :mod:`resnet_pl.limits`; no NaN output; no partial
folder. The fuzz campaign at the end throws random types, sizes and nesting into every
metadata key; one of its tests runs under an address-space limit.
"""

from __future__ import annotations

import csv
import json
import math
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

import resnet_pl
from resnet_pl.cli import main
from resnet_pl.errors import ResNetPLError

REPO = Path(__file__).resolve().parents[1]
TINY = {"widths": [8, 16, 32]}
FAST = 5.0  # seconds: every refusal here is a check, not a build


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO)
    env.setdefault("OMP_NUM_THREADS", "1")
    return env


def one_line(err: BaseException | str, *must: str) -> str:
    text = str(err)
    assert "\n" not in text.strip(), text
    assert "Traceback" not in text
    for word in must:
        assert word in text, (word, text)
    return text


def cli(*argv: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def cli_one_line(capsys: pytest.CaptureFixture[str], *argv: str, code: int | None = None) -> str:
    rc, _, err = cli(*argv, capsys=capsys)
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert rc != 0 and (code is None or rc == code), (rc, err)
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


# ================================================================================================
# Fixtures: a tiny model as a checkpoint, an ONNX export and a save_pretrained folder
# ================================================================================================
def tiny_model() -> torch.nn.Module:
    torch.manual_seed(0)
    return resnet_pl.create_model("resnet20", in_chans=1, **TINY)


HPARAMS = {
    "arch": "resnet20",
    "num_classes": 10,
    "in_chans": 1,
    "model_kwargs": TINY,
    "class_names": [f"c{i}" for i in range(10)],
    "mean": [0.5],
    "std": [0.25],
    "input_size": [1, 28, 28],
    "dataset": "fake",
}


def write_ckpt(path: Path, **hp: Any) -> Path:
    import lightning

    model = tiny_model()
    state = {f"model.{k}": v for k, v in model.state_dict().items()}
    torch.save(
        {
            "hyper_parameters": {**HPARAMS, **hp},
            "state_dict": state,
            "pytorch-lightning_version": lightning.__version__,
        },
        path,
    )
    return path


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from resnet_pl.deploy import export_onnx
    from resnet_pl.hub import save_pretrained

    tmp = tmp_path_factory.mktemp("hostile")
    ckpt = write_ckpt(tmp / "tiny.ckpt")
    model = tiny_model()
    onnx_path = tmp / "tiny.onnx"
    export_onnx(ckpt, onnx_path, verify=False, exporter="torchscript")
    cfg = {
        **dict(getattr(model, "pretrained_cfg", {}) or {}),
        "input_size": [1, 28, 28],
        "mean": [0.5],
        "std": [0.25],
    }
    folder = save_pretrained(
        model, tmp / "hf", arch_kwargs=TINY, pretrained_cfg=cfg, model_card=False
    )
    images = tmp / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        Image.fromarray(rng.integers(0, 255, (28, 28), dtype=np.uint8)).save(images / f"{i}.png")
    return {"tmp": tmp, "ckpt": ckpt, "onnx": onnx_path, "hf": folder, "images": images}


def onnx_with(src: Path, dst: Path, **props: str | None) -> Path:
    """A copy of ``src`` with metadata keys replaced (None: removed), as raw strings."""
    import onnx

    model = onnx.load(str(src))
    current = {p.key: p.value for p in model.metadata_props}
    for key, value in props.items():
        if value is None:
            current.pop(key, None)
        else:
            current[key] = value
    del model.metadata_props[:]
    for key, value in current.items():
        prop = model.metadata_props.add()
        prop.key, prop.value = key, value
    onnx.save(model, str(dst))
    return dst


def tiny_graph(
    dst: Path,
    *,
    in_type: int | None = None,
    out_shape: list[Any] | None = None,
    op: str = "Flatten",
    then: str | None = None,
    meta: dict[str, str] | None = None,
) -> Path:
    """A hand-made graph ``(N, 1, 28, 28) -> op(x)``, optionally followed by ``then``:
    ``"nan"`` (multiply by NaN), ``"empty"`` (slice to zero classes) or ``"huge"`` (reshape
    to 10**9 classes, which ONNX Runtime's shape inference reports statically)."""
    import onnx
    from onnx import TensorProto, helper

    elem = TensorProto.FLOAT if in_type is None else in_type
    x = helper.make_tensor_value_info("input", elem, ["N", 1, 28, 28])
    y = helper.make_tensor_value_info("logits", elem, out_shape or ["N", 784])
    nodes = [helper.make_node(op, ["input"], ["flat" if then else "logits"])]
    inits = []
    if then == "nan":
        inits.append(helper.make_tensor("s", TensorProto.FLOAT, [], [math.nan]))
        nodes.append(helper.make_node("Mul", ["flat", "s"], ["logits"]))
    elif then == "empty":
        for name, value in (("st", 0), ("en", 0), ("ax", 1)):
            inits.append(helper.make_tensor(name, TensorProto.INT64, [1], [value]))
        nodes.append(helper.make_node("Slice", ["flat", "st", "en", "ax"], ["logits"]))
    elif then == "huge":
        inits.append(helper.make_tensor("sh", TensorProto.INT64, [2], [-1, 10**9]))
        nodes.append(helper.make_node("Reshape", ["flat", "sh"], ["logits"]))
    graph = helper.make_graph(nodes, "g", [x], [y], initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    for key, value in (meta or {}).items():
        prop = model.metadata_props.add()
        prop.key, prop.value = key, value
    onnx.save(model, str(dst))
    return dst


# ================================================================================================
# 1-2. ONNX metadata and graph
# ================================================================================================
DEEP = "[" * 5000 + "]" * 5000
ONNX_CASES: dict[str, dict[str, str]] = {
    "json_keys not a list": {"json_keys": '{"a": 1}'},
    "json_keys deeply nested": {"json_keys": DEEP},
    "json_keys not JSON": {"json_keys": "[oops"},
    "class_names a number": {"class_names": "5"},
    "class_names deeply nested": {"class_names": DEEP},
    "class_names nested lists": {"class_names": '[["a"], ["b"]]'},
    "class_names too many": {"class_names": json.dumps(["x"] * 100_001)},
    "input_size a string list": {"input_size": '"28"'},
    "input_size 40000 squared": {"input_size": "[1, 40000, 40000]"},
    "input_size huge int": {"input_size": "[1, " + "9" * 5000 + ", 2]"},
    "input_size overflow float": {"input_size": "[1, 1e999, 28]"},
    "input_size channels disagree with graph": {"input_size": "[3, 28, 28]"},
    "input_size height disagrees with graph": {"input_size": "[1, 32, 32]"},
    "crop_pct 0.001": {"crop_pct": "0.001"},
    "crop_pct nan": {"crop_pct": "NaN"},
    "mean NaN": {"mean": "[NaN]"},
    "std Infinity": {"std": "[Infinity]"},
    "std zero": {"std": "[0]"},
    "mean nested": {"mean": "[[0.5]]"},
    "output_names a number": {"output_names": "5"},
    "num_classes 1e999": {"num_classes": "1e999"},
    "features_only a string": {"features_only": '"yes"'},
}


@pytest.mark.parametrize("case", list(ONNX_CASES))
def test_onnx_metadata_is_checked_before_use(
    case: str, work: dict[str, Path], tmp_path: Path
) -> None:
    """Issue items 1-2: every metadata key is parsed with bounded size and nesting, typed,
    finite and bounded, and checked against the graph's input: one OnnxMetadataError naming
    the file (and key), fast; never a TypeError/RecursionError/OverflowError or an ORT
    traceback, never an allocation sized by the metadata."""
    import onnx

    from resnet_pl.deploy.runtime import OnnxClassifier
    from resnet_pl.deploy.untrusted import OnnxMetadataError

    values = dict(ONNX_CASES[case])
    keys = [k for k in values if k != "json_keys"]
    if keys:  # these values are JSON: keep them listed as such
        props = {p.key: p.value for p in onnx.load(str(work["onnx"])).metadata_props}
        values["json_keys"] = json.dumps(sorted({*keys, *json.loads(props["json_keys"])}))
    path = onnx_with(work["onnx"], tmp_path / "m.onnx", **values)
    start = time.perf_counter()
    with pytest.raises(OnnxMetadataError) as info:
        OnnxClassifier(path)
    assert time.perf_counter() - start < FAST
    text = one_line(info.value, str(path), "resnet-pl export")
    key = keys[0] if keys else "json_keys"
    assert key in text or "input" in text, text


def test_onnx_nan_and_huge_metadata_in_classify_cli(
    work: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`resnet-pl classify` with hostile metadata: exit 2, one line naming file and key, no
    NaN probability printed."""
    for name, props in (("nan", {"mean": "[NaN]"}), ("big", {"crop_pct": "0.001"})):
        path = onnx_with(work["onnx"], tmp_path / f"{name}.onnx", **props)
        line = cli_one_line(capsys, "classify", "--model", str(path), str(work["images"]), code=2)
        assert str(path) in line and ("mean" in line or "crop_pct" in line), line


@pytest.mark.parametrize(
    "case",
    ["int64 input", "rank-4 output", "zero classes", "1e9 classes", "nan outputs", "rank-3 input"],
)
def test_onnx_graph_signature_and_outputs(case: str, tmp_path: Path) -> None:
    """Issue item 1: a graph whose input is not a float image batch, whose output is not
    (N, classes) within the limit, or that outputs NaN: one line naming the file, before or
    instead of ONNX Runtime's own traceback."""
    from onnx import TensorProto

    from resnet_pl.deploy.runtime import OnnxClassifier

    path = tmp_path / "g.onnx"
    meta = {"input_size": "[1, 28, 28]", "json_keys": '["input_size"]'}
    if case == "int64 input":
        tiny_graph(path, in_type=TensorProto.INT64, meta=meta)
    elif case == "rank-4 output":
        tiny_graph(path, op="Identity", out_shape=["N", 1, 28, 28], meta=meta)
    elif case == "zero classes":
        tiny_graph(path, then="empty", out_shape=["N", 0], meta=meta)
    elif case == "1e9 classes":
        tiny_graph(path, then="huge", out_shape=["N", 10**9], meta=meta)
    elif case == "nan outputs":
        tiny_graph(path, then="nan", meta=meta)
    else:
        import onnx
        from onnx import helper

        x = helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 784])
        y = helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 784])
        graph = helper.make_graph(
            [helper.make_node("Identity", ["input"], ["logits"])], "g", [x], [y]
        )
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
        model.ir_version = 9
        onnx.save(model, str(path))
    image = Image.fromarray(np.zeros((28, 28), np.uint8))
    with pytest.raises(ResNetPLError) as info:
        OnnxClassifier(path).predict([image])
    one_line(info.value, str(path))
    assert isinstance(info.value, ValueError | RuntimeError)


# ================================================================================================
# 3. Hugging Face folders
# ================================================================================================
def hf_copy(work: dict[str, Path], tmp: Path, edit: Callable[[dict[str, Any]], None]) -> Path:
    folder = tmp / "hf"
    shutil.copytree(work["hf"], folder)
    config = json.loads((folder / "config.json").read_text())
    edit(config)
    (folder / "config.json").write_text(json.dumps(config))
    return folder


def _set(**values: Any) -> Callable[[dict[str, Any]], None]:
    def edit(config: dict[str, Any]) -> None:
        for key, value in values.items():
            if value is KeyError:
                config.pop(key, None)
            else:
                config[key] = value

    return edit


HF_CASES: dict[str, Callable[[dict[str, Any]], None]] = {
    "no sha256": _set(sha256=KeyError),
    "sha256 null": _set(sha256=None),
    "sha256 0": _set(sha256=0),
    "num_classes negative": _set(num_classes=-3),
    "num_classes 1e15": _set(num_classes=10**15),
    "num_classes Infinity": _set(num_classes=math.inf),
    "in_chans a list": _set(in_chans=[1]),
    "widths negative": _set(arch_kwargs={"widths": [-8, 16, 32]}),
    "widths 1e15": _set(arch_kwargs={"widths": [10**15, 16, 32]}),
    "layers 20000": _set(arch_kwargs={"widths": [8, 16, 32], "layers": [20000, 1, 1]}),
    "arch_kwargs nested": _set(arch_kwargs={"widths": [[[[8]]]]}),
    "pretrained_cfg mean NaN": lambda c: c["pretrained_cfg"].update(mean=[math.nan]),
    "pretrained_cfg input_size huge": lambda c: c["pretrained_cfg"].update(
        input_size=[1, 40000, 40000]
    ),
    "widths disagree with weights": _set(arch_kwargs={"widths": [16, 16, 32]}),
}


@pytest.mark.parametrize("case", list(HF_CASES))
def test_hf_config_is_checked_before_building(
    case: str, work: dict[str, Path], tmp_path: Path
) -> None:
    """Issue item 3: config.json without a usable sha256 is refused (not loaded unchecked);
    sizes are typed and bounded and compared with the safetensors header before any model is
    built: one documented error naming config.json, in well under a second of work."""
    from resnet_pl.hub import from_pretrained
    from resnet_pl.hub.weights import WeightsMismatchError, WeightsVerificationError

    folder = hf_copy(work, tmp_path, HF_CASES[case])
    start = time.perf_counter()
    with pytest.raises((WeightsVerificationError, WeightsMismatchError)) as info:
        from_pretrained(folder)
    assert time.perf_counter() - start < FAST
    text = one_line(info.value, "config.json")
    if "sha256" in case:
        assert "sha256" in text and "save_pretrained" in text


def test_hf_deep_json_in_config_and_safetensors_metadata(
    work: dict[str, Path], tmp_path: Path
) -> None:
    """Issue item 3: deeply nested JSON in config.json and in a safetensors __metadata__ is
    refused as one line (no RecursionError)."""
    import struct

    from resnet_pl.hub import from_pretrained
    from resnet_pl.hub.pretrained import read_state_dict
    from resnet_pl.hub.weights import WeightsVerificationError

    folder = tmp_path / "deep"
    shutil.copytree(work["hf"], folder)
    text = (folder / "config.json").read_text()
    (folder / "config.json").write_text(text[:-2] + ', "x": ' + DEEP + "}\n")
    with pytest.raises(ValueError) as info:
        from_pretrained(folder)
    one_line(info.value, "config.json", "nested")

    weights = work["hf"] / "model.safetensors"
    data = weights.read_bytes()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + n])
    for meta in ({"x": DEEP}, "not a mapping"):
        header["__metadata__"] = meta
        raw = json.dumps(header).replace(json.dumps(DEEP), DEEP).encode()
        raw += b" " * (-len(raw) % 8)
        bad = tmp_path / "bad.safetensors"
        bad.write_bytes(struct.pack("<Q", len(raw)) + raw + data[8 + n :])
        with pytest.raises(WeightsVerificationError) as err:
            read_state_dict(bad, "safetensors")
        one_line(err.value, str(bad))


def test_hf_sha256_refusal_is_documented() -> None:
    text = (REPO / "docs" / "hub.md").read_text()
    assert "no `sha256`" in text or "without a `sha256`" in text


# ================================================================================================
# 4. Checkpoints
# ================================================================================================
CKPT_CASES: dict[str, dict[str, Any]] = {
    "num_classes 1e9": {"num_classes": 10**9},
    "in_chans 1e9": {"in_chans": 10**9},
    "huge widths": {"model_kwargs": {"widths": [2**20, 16, 32]}},
    "widths disagree with weights": {"model_kwargs": {"widths": [16, 16, 32]}},
    "num_classes disagrees with weights": {"num_classes": 1000},
    "num_classes a string": {"num_classes": "ten"},
    "class_names 5": {"class_names": 5},
    "mean NaN": {"mean": [math.nan]},
    "std Infinity": {"std": [math.inf]},
    "input_size huge": {"input_size": [1, 40000, 40000]},
    "crop_pct tiny": {"crop_pct": 0.001},
}


@pytest.mark.parametrize("case", list(CKPT_CASES))
def test_checkpoint_hparams_checked_before_building(case: str, tmp_path: Path) -> None:
    """Issue item 4: hparams are bounded and compared with the state dict's shapes (on the
    meta device) before anything is built, in the one checkpoint reader (classify, export,
    hub export-checkpoint, distillation teachers)."""
    from resnet_pl.deploy.source import load_checkpoint
    from resnet_pl.hub.checkpoint import CheckpointError

    path = write_ckpt(tmp_path / "bad.ckpt", **CKPT_CASES[case])
    start = time.perf_counter()
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    assert time.perf_counter() - start < FAST
    one_line(info.value, str(path))


def test_checkpoint_cli_classify_and_test_are_one_line(
    work: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue item 4 as a user meets it: `classify` and `resnet-pl test --ckpt_path` with
    num_classes 10**9 / class_names 5: one line, exit 2, no allocation (the test would need
    hundreds of GB otherwise)."""
    big = write_ckpt(tmp_path / "big.ckpt", num_classes=10**9)
    names = write_ckpt(tmp_path / "names.ckpt", class_names=5)
    for path in (big, names):
        line = cli_one_line(capsys, "classify", "--model", str(path), str(work["images"]), code=2)
        assert str(path) in line
    wide = write_ckpt(tmp_path / "wide.ckpt", model_kwargs={"widths": [2**20, 16, 32]})
    for path in (big, wide):
        rc, _, err = cli(
            "test",
            "--ckpt_path",
            str(path),
            "--data.dataset",
            "fake",
            "--data.fake_size",
            "32",
            "--run_root",
            str(tmp_path / "runs"),
            capsys=capsys,
        )
        assert rc == 2 and "Traceback" not in err, err
        assert err.strip().splitlines()[-1].startswith("resnet-pl: error:"), err
        assert str(path) in err.strip().splitlines()[-1]


# ================================================================================================
# 5. Configuration and command line
# ================================================================================================
FIT = [
    "fit",
    "--data.dataset",
    "fake",
    "--data.fake_size",
    "32",
    "--data.batch_size",
    "16",
    "--model.model_kwargs",
    json.dumps(TINY),
    "--trainer.enable_progress_bar",
    "false",
]
BAD_OPTIONS = {
    "max_epochs -5": (["--trainer.max_epochs", "-5"], "max_epochs"),
    "momentum -1": (["--model.optim.momentum", "-1"], "momentum"),
    "betas 2,3": (["--model.optim.betas", "[2.0,3.0]"], "betas"),
    "min_lr_ratio -1": (["--model.optim.min_lr_ratio", "-1"], "min_lr_ratio"),
    "warmup_epochs -3": (["--model.optim.warmup_epochs", "-3"], "warmup_epochs"),
    "step_gamma 0": (["--model.optim.step_gamma", "0"], "step_gamma"),
}
BAD_CONFIGS: dict[str, tuple[bytes, str]] = {
    "binary": (b"\x00\x01\x02\x03binary\x00", "binary"),
    "non-UTF-8": (b"\xff\xfe\x00model: 1\n", "not UTF-8"),
    "model a list": (b"model: [1, 2]\n", "`model`"),
    "trainer a number": (b"trainer: 5\n", "`trainer`"),
    "empty": (b"", "is empty"),
    "comments only": (b"# nothing here\n", "is empty"),
    "a list": (b"- 1\n- 2\n", "not a mapping"),
    "invalid YAML": (b"model:\n  lr: [\n", "not valid YAML"),
    "fit.data a string": (b"fit:\n  data: imagefolder\n", "`fit.data`"),
}


@pytest.mark.parametrize("case", list(BAD_OPTIONS))
def test_bad_option_values_are_one_line(
    case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue item 5: values that gave tracebacks (max_epochs, momentum, betas) or were
    silently accepted (min_lr_ratio < 0: gradient ascent; warmup_epochs < 0): one line naming
    the option, exit 2, before any data is read or run folder written."""
    extra, name = BAD_OPTIONS[case]
    line = cli_one_line(capsys, *FIT, "--run_root", str(tmp_path), *extra, code=2)
    assert line.startswith("resnet-pl: error:") and name in line, line
    assert not list(tmp_path.rglob("*.ckpt"))


@pytest.mark.parametrize("case", list(BAD_CONFIGS))
def test_bad_config_files_are_one_line(
    case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue item 5: a --config that is binary, not UTF-8, empty, not a mapping, or has a
    section of the wrong type: one line naming the file, exit 2."""
    data, expect = BAD_CONFIGS[case]
    config = tmp_path / "config.yaml"
    config.write_bytes(data)
    line = cli_one_line(capsys, "fit", "--config", str(config), *FIT[1:], code=2)
    assert str(config) in line and expect in line, line


def test_module_validators_in_python() -> None:
    """The same checks from Python (ResNetClassifier's optim group), as ConfigError."""
    from resnet_pl.lightning import ConfigError, ResNetClassifier
    from resnet_pl.lightning.hparams import OptimConfig

    for kwargs in (
        {"momentum": -1},
        {"betas": (2.0, 3.0)},
        {"betas": (0.9,)},
        {"min_lr_ratio": -1},
        {"min_lr_ratio": math.nan},
        {"warmup_epochs": -3},
        {"step_milestones": [-1]},
    ):
        with pytest.raises(ConfigError) as info:
            ResNetClassifier(model_kwargs=TINY, optim=kwargs)  # type: ignore[arg-type]
        one_line(info.value, next(iter(kwargs)))
    ok = OptimConfig(momentum=0.0, min_lr_ratio=1.0, warmup_epochs=0)
    ResNetClassifier(model_kwargs=TINY, optim=ok)


# ================================================================================================
# 6. Image folders and names
# ================================================================================================
@pytest.fixture(scope="module")
def train_only(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("train_only")
    rng = np.random.default_rng(1)
    for name in ("a", "b"):
        (root / "train" / name).mkdir(parents=True)
        for i in range(4):
            pixels = rng.integers(0, 255, (28, 28), dtype=np.uint8)
            Image.fromarray(pixels).save(root / "train" / name / f"{i}.png")
    return root


@pytest.mark.parametrize("command", ["test", "predict", "fit"])
def test_missing_split_is_one_line(
    command: str, train_only: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue item 6: test/predict on a folder without test/, fit with val_fraction 0 and no
    val/: one line naming the missing folder and the fix, exit 2 (was a RuntimeError
    traceback)."""
    argv = [
        command,
        "--data.dataset",
        "imagefolder",
        "--data.data_dir",
        str(train_only),
        "--data.image_size",
        "28",
        "--data.num_workers",
        "0",
        "--model.model_kwargs",
        json.dumps(TINY),
        "--run_root",
        str(tmp_path),
        "--trainer.enable_progress_bar",
        "false",
        "--trainer.max_epochs",
        "1",
    ]
    if command == "fit":
        argv += ["--data.val_fraction", "0"]
    line = cli_one_line(capsys, *argv, code=2)
    folder = "val" if command == "fit" else "test"
    assert str(train_only / folder) in line, line
    assert ("val_fraction" if command == "fit" else "test/") in line


HOSTILE_NAME = "=HYPERLINK(1)\n\x1b[31mred"


@pytest.fixture(scope="module")
def hostile_files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Images named with bytes that are not UTF-8, a newline and an ANSI escape, plus a file
    that is not an image."""
    root = tmp_path_factory.mktemp("names")
    image = Image.fromarray(np.full((28, 28), 128, np.uint8))
    image.save(root / "ok.png")
    image.save(os.fsdecode(bytes(root) + b"/bad\xff\xfe.png"))
    image.save(root / f"{HOSTILE_NAME}.png")
    (root / "broken\x1b[2J.png").write_bytes(b"not a png")
    return root


def _assert_escaped(text: str) -> None:
    assert "\x1b" not in text and "\udcff" not in text, text
    text.encode("utf-8")  # no lone surrogates


def test_classify_hostile_file_names(
    hostile_files: Path,
    work: dict[str, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Issue item 6: a non-UTF-8 file name no longer stops the batch (exit 2, no CSV): every
    file gets its row, the unreadable one is named (escaped); no raw newline or ANSI escape
    reaches the terminal; cells starting with = + - @ are escaped against formula injection."""
    out = tmp_path / "out.csv"
    model = write_ckpt(
        tmp_path / "named.ckpt",
        class_names=["=cmd|' /C calc'!A0", "+1", "-2", "@SUM(1)", *"abcdef"],
    )
    code, stdout, stderr = cli(
        "classify",
        "--model",
        str(model),
        str(hostile_files),
        "--output",
        str(out),
        "--top_k",
        "10",
        capsys=capsys,
    )
    assert code == 1, stderr  # one unreadable file
    _assert_escaped(stderr)
    assert "Traceback" not in stderr
    errors = [ln for ln in stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and "broken\\x1b[2J.png" in errors[0], stderr
    rows = list(csv.DictReader(out.open(encoding="utf-8")))
    assert len(rows) == 4
    paths = {r["path"] for r in rows}
    assert any(p.endswith("bad\\xff\\xfe.png") for p in paths), paths
    assert any("\\n\\x1b[31mred" in p for p in paths), paths
    for row in rows:
        for cell in row.values():
            _assert_escaped(cell)
            assert not cell.startswith(("=", "+", "-", "@")), row
        if row["label"]:
            assert row["label"][0] == "'" or row["label"] in "abcdef", row
    # ... and to stdout, as a terminal would show it
    code, stdout, stderr = cli("classify", "--model", str(model), str(hostile_files), capsys=capsys)
    _assert_escaped(stdout + stderr)


def test_hub_export_checkpoint_non_utf8_class_names_no_partial_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue item 6: class names holding undecodable bytes (from folder names that are not
    UTF-8) made `hub export-checkpoint` fail after writing part of its folder; now they are
    written as \\xNN escapes, and a failure leaves no partial folder."""
    from resnet_pl.hub import checkpoint as hub_checkpoint

    names = ["a\udcffb", *[str(i) for i in range(9)]]
    ckpt = write_ckpt(tmp_path / "sur.ckpt", class_names=names)
    out = tmp_path / "exported"
    code, _, stderr = cli(
        "hub", "export-checkpoint", str(ckpt), str(out), "--no_measure", capsys=capsys
    )
    assert code == 0, stderr
    assert sorted(p.name for p in out.iterdir()) == [
        "README.md",
        "config.json",
        "model.safetensors",
    ]
    config = json.loads((out / "config.json").read_text(encoding="utf-8"))
    assert config["pretrained_cfg"]["categories"][0] == "a\\xffb"
    # a failure while measuring (after the first save): nothing of the new folder stays
    failed = tmp_path / "failed"

    def boom(*args: Any, **kwargs: Any) -> Any:
        raise ValueError("measuring failed")

    from resnet_pl.hub import publish as hub_publish  # the publish workflow measures

    original = hub_publish.measure
    hub_publish.measure = boom  # type: ignore[assignment]
    try:
        with pytest.raises(ValueError, match="measuring failed"):
            hub_checkpoint.export_checkpoint(ckpt, failed)
    finally:
        hub_publish.measure = original  # type: ignore[assignment]
    assert not failed.exists()


def test_folder_class_names_that_are_not_utf8(tmp_path: Path) -> None:
    """A class folder whose name is not UTF-8 gets a \\xNN class name (valid text), the same
    in train/ and val/."""
    from resnet_pl.data.folder import scan_image_folder

    for split in ("train", "val"):
        for name in (b"ok", b"caf\xe9"):
            folder = Path(os.fsdecode(bytes(tmp_path / split) + b"/" + name))
            folder.mkdir(parents=True)
            Image.fromarray(np.zeros((8, 8), np.uint8)).save(folder / "0.png")
    info = scan_image_folder(tmp_path)
    assert info["classes"] == ["caf\\xe9", "ok"]


# ================================================================================================
# The one bound: documented, overridable
# ================================================================================================
def test_limits_are_overridable(work: dict[str, Path], tmp_path: Path, monkeypatch: Any) -> None:
    """The bound can be raised for users who need more: in Python (raised_limits) and with
    $RESNET_PL_LIMITS; a malformed variable is one line."""
    from resnet_pl.deploy.runtime import OnnxClassifier
    from resnet_pl.deploy.untrusted import OnnxMetadataError
    from resnet_pl.limits import UntrustedValueError, limits, raised_limits

    path = onnx_with(work["onnx"], tmp_path / "m.onnx", crop_pct="0.1")  # 280 x 280 resize
    OnnxClassifier(path)
    with raised_limits(pixels=200 * 200), pytest.raises(OnnxMetadataError, match="pixels"):
        OnnxClassifier(path)
    OnnxClassifier(path)  # restored
    monkeypatch.setenv("RESNET_PL_LIMITS", "pixels=40000")
    assert limits().pixels == 40000
    with pytest.raises(OnnxMetadataError, match="RESNET_PL_LIMITS"):
        OnnxClassifier(path)
    monkeypatch.setenv("RESNET_PL_LIMITS", "pixels=lots")
    with pytest.raises(UntrustedValueError, match="RESNET_PL_LIMITS"):
        limits()
    docs = (REPO / "docs" / "reliability.md").read_text()
    assert "RESNET_PL_LIMITS" in docs and "set_limits" in docs


# ================================================================================================
# Fuzz campaign: random types, sizes and nesting in every metadata key
# ================================================================================================
# Default run: FUZZ_CASES examples per target; `pytest -m slow -k fuzz` runs FUZZ_CASES_SLOW.
# Each example must load (and then give finite probabilities) or raise the loader's documented
# error, one line naming the file; a deadline catches slow paths (a 20,000-block build took
# 36 s), the peak RSS catches allocations sized by the metadata.
FUZZ_CASES, FUZZ_CASES_SLOW = 100, 2000
SIZES = [0, 1, 2, 3, 28, 10**3, 10**9, 10**15, 2**63, 10**400, -1, -(10**9)]
json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.sampled_from(SIZES),
    st.integers(-100, 100),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=6) | st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=24,
)


@st.composite
def metadata_value(draw: st.DrawFn) -> str:
    """One metadata string: random JSON of any type and nesting, a huge sequence, a deeply
    nested one, or raw text that is not JSON."""
    kind = draw(st.sampled_from(["json", "json", "json", "sizes", "deep", "raw"]))
    if kind == "json":
        return json.dumps(draw(json_values))
    if kind == "sizes":
        n = draw(st.sampled_from([1, 3, 4, 1000, 100_001]))
        return json.dumps([draw(st.sampled_from(SIZES))] * min(n, 100_001))
    if kind == "deep":
        n = draw(st.integers(20, 20_000))
        return "[" * n + "]" * draw(st.sampled_from([0, n]))
    return draw(st.text(max_size=40))


ONNX_KEYS = [
    "json_keys",
    "class_names",
    "input_size",
    "mean",
    "std",
    "crop_pct",
    "interpolation",
    "output_names",
    "num_classes",
    "features_only",
    "tta",
    "arch",
]


def fuzz_settings(n: int) -> Any:
    return settings(
        max_examples=n,
        deadline=timedelta(seconds=10),
        database=None,
        derandomize=True,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


def _peak_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


class Outcomes:
    def __init__(self, name: str) -> None:
        self.name, self.n = name, 0
        self.counts: dict[str, int] = {}
        try:
            Path("/proc/self/clear_refs").write_text("5")
            self.base = _peak_kib()
        except OSError:
            self.base = -1

    def __call__(self, outcome: str) -> None:
        self.n += 1
        self.counts[outcome] = self.counts.get(outcome, 0) + 1

    def finish(self, limit_mib: int = 512) -> None:
        growth = (_peak_kib() - self.base) // 1024 if self.base >= 0 else -1
        print(f"fuzz {self.name}: {self.n} cases, peak RSS +{growth} MiB, outcomes {self.counts}")
        assert self.n >= 50 and growth < limit_mib, (self.n, growth, self.counts)


def _fuzz_onnx(work: dict[str, Path], n: int) -> None:
    """Random values in every metadata key of a real export: read_onnx_metadata, the check
    against the graph, the preprocessing it configures and one prediction."""
    import onnx

    from resnet_pl.deploy.runtime import OnnxClassifier
    from resnet_pl.deploy.untrusted import OnnxMetadataError, read_onnx_metadata

    clf = OnnxClassifier(work["onnx"])
    base = {p.key: p.value for p in onnx.load(str(work["onnx"])).metadata_props}
    image = Image.fromarray(np.full((28, 28), 100, np.uint8))
    stats = Outcomes("onnx metadata")

    @fuzz_settings(n)
    @given(
        changes=st.dictionaries(
            st.sampled_from(ONNX_KEYS), metadata_value(), min_size=1, max_size=5
        )
    )
    def run(changes: dict[str, str]) -> None:
        props = {**base, **changes}
        if "json_keys" not in changes:  # mostly keep the values JSON-typed
            props["json_keys"] = json.dumps(sorted({*json.loads(base["json_keys"]), *changes}))
        try:
            meta = read_onnx_metadata(props, work["onnx"])
            clf._configure(meta, ["N", 1, 28, 28], "tensor(float)", ["N", 10])
        except OnnxMetadataError as err:
            one_line(err, str(work["onnx"]))
            stats("OnnxMetadataError")
            return
        except (ValueError, ResNetPLError) as err:  # e.g. resolve_data_cfg: a ValueError
            one_line(err)
            stats(type(err).__name__)
            return
        [pred] = clf.predict([image], top_k=3)
        assert all(math.isfinite(p) for p in pred.probs)
        stats("ok")

    run()
    stats.finish()


def _fuzz_hf(work: dict[str, Path], tmp: Path, n: int) -> None:
    """Random values in every config.json key (and in pretrained_cfg) of a real folder."""
    from resnet_pl.hub import from_pretrained
    from resnet_pl.hub.weights import WeightsMismatchError, WeightsVerificationError

    folder = tmp / "fuzz_hf"
    shutil.copytree(work["hf"], folder)
    base = json.loads((work["hf"] / "config.json").read_text())
    keys = ["num_classes", "in_chans", "arch_kwargs", "architecture", "sha256", "format"]
    cfg_keys = ["input_size", "mean", "std", "crop_pct", "categories", "num_classes"]
    stats = Outcomes("hf config.json")

    @fuzz_settings(n)
    @given(
        top=st.dictionaries(st.sampled_from(keys), json_values, max_size=3),
        cfg=st.dictionaries(st.sampled_from(cfg_keys), json_values, max_size=3),
        widths=st.one_of(st.none(), st.lists(st.sampled_from(SIZES), min_size=1, max_size=4)),
        layers=st.one_of(st.none(), st.lists(st.sampled_from(SIZES), min_size=1, max_size=4)),
    )
    def run(top: dict[str, Any], cfg: dict[str, Any], widths: Any, layers: Any) -> None:
        config = json.loads(json.dumps(base))
        config.update(top)
        if isinstance(config.get("pretrained_cfg"), dict):
            config["pretrained_cfg"].update(cfg)
        kwargs = {k: v for k, v in (("widths", widths), ("layers", layers)) if v is not None}
        if kwargs:
            config["arch_kwargs"] = kwargs
        (folder / "config.json").write_text(json.dumps(config))
        try:
            from_pretrained(folder)
            stats("ok")
        except (WeightsVerificationError, WeightsMismatchError) as err:
            one_line(err, "config.json")
            stats(type(err).__name__)
        except ValueError as err:  # read_config / UnknownModelError: not a resnet-pl config
            one_line(err)
            stats(type(err).__name__)

    run()
    stats.finish()


def _fuzz_checkpoint(tmp: Path, n: int) -> None:
    """Random values in every hyper_parameters key of a real checkpoint, into the one
    checkpoint reader and the model it rebuilds."""
    from resnet_pl.deploy.source import load_checkpoint
    from resnet_pl.hub.checkpoint import CheckpointError

    path = write_ckpt(tmp / "fuzz.ckpt")
    base = torch.load(path, weights_only=True)
    keys = [
        "num_classes",
        "in_chans",
        "model_kwargs",
        "class_names",
        "mean",
        "std",
        "input_size",
        "crop_pct",
        "arch",
        "tta",
    ]
    stats = Outcomes("checkpoint hparams")

    @fuzz_settings(n)
    @given(
        hp=st.dictionaries(st.sampled_from(keys), json_values, min_size=1, max_size=4),
        widths=st.one_of(st.none(), st.lists(st.sampled_from(SIZES), min_size=1, max_size=4)),
    )
    def run(hp: dict[str, Any], widths: Any) -> None:
        ckpt = {**base, "hyper_parameters": {**base["hyper_parameters"], **hp}}
        if widths is not None:
            ckpt["hyper_parameters"]["model_kwargs"] = {"widths": widths}
        torch.save(ckpt, path)
        try:
            load_checkpoint(path)
            stats("ok")
        except CheckpointError as err:
            one_line(err, str(path))
            stats("CheckpointError")
        except ValueError as err:  # UnknownModelError for a fuzzed arch name
            one_line(err)
            stats(type(err).__name__)

    run()
    stats.finish()


@pytest.mark.timeout(900)
def test_fuzz_untrusted_metadata(work: dict[str, Path], tmp_path: Path) -> None:
    """Random types, sizes and nesting in every ONNX metadata key, config.json key and
    checkpoint hyperparameter: only the documented one-line errors, each case within the
    10 s deadline, peak RSS growth < 512 MiB."""
    _fuzz_onnx(work, FUZZ_CASES)
    _fuzz_hf(work, tmp_path, FUZZ_CASES)
    _fuzz_checkpoint(tmp_path, FUZZ_CASES)


@pytest.mark.slow
@pytest.mark.timeout(7200)
def test_fuzz_untrusted_metadata_long(work: dict[str, Path], tmp_path: Path) -> None:
    _fuzz_onnx(work, FUZZ_CASES_SLOW)
    _fuzz_hf(work, tmp_path, FUZZ_CASES_SLOW)
    _fuzz_checkpoint(tmp_path, FUZZ_CASES_SLOW)


MEMORY_CHILD = r"""
import json, resource, sys
from pathlib import Path

import resnet_pl
from resnet_pl.deploy.runtime import OnnxClassifier
from resnet_pl.deploy.source import load_checkpoint
from resnet_pl.hub import from_pretrained

size = int(next(l.split()[1] for l in open("/proc/self/status") if l.startswith("VmSize:")))
limit = size * 1024 + 512 * 2**20  # what the imports use, plus 512 MiB
resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
results = {"limit": resource.getrlimit(resource.RLIMIT_AS)[0], "expected": limit}
for kind, path in json.loads(sys.argv[1]).items():
    try:
        if kind.startswith("onnx"):
            OnnxClassifier(path)
        elif kind.startswith("hf"):
            from_pretrained(path)
        else:
            load_checkpoint(path)
        results[kind] = "loaded"
    except MemoryError:
        results[kind] = "MemoryError"
    except resnet_pl.ResNetPLError as err:
        results[kind] = "ok: " + str(err)
print(json.dumps(results))
"""


@pytest.mark.timeout(300)
def test_hostile_files_under_a_memory_limit(work: dict[str, Path], tmp_path: Path) -> None:
    """Under RLIMIT_AS (the imports' address space plus 512 MiB), the files the issue found
    allocating gigabytes -- crop_pct 0.001, input_size 40000x40000, num_classes 10**15,
    layers [20000, 1, 1], checkpoint num_classes/in_chans 10**9, huge widths -- each end in
    one clean error, not a MemoryError, a kill or a traceback."""
    cases: dict[str, str] = {
        "onnx crop": str(onnx_with(work["onnx"], tmp_path / "c.onnx", crop_pct="0.001")),
        "onnx size": str(
            onnx_with(work["onnx"], tmp_path / "s.onnx", input_size="[1, 40000, 40000]")
        ),
    }
    for name, edit in (
        ("classes", _set(num_classes=10**15)),
        ("layers", _set(arch_kwargs={**TINY, "layers": [20000, 1, 1]})),
    ):
        target = tmp_path / f"hf_{name}"
        target.mkdir()
        cases[f"hf {name}"] = str(hf_copy(work, target, edit))
    for name, hp in (
        ("classes", {"num_classes": 10**9}),
        ("chans", {"in_chans": 10**9}),
        ("widths", {"model_kwargs": {"widths": [2**20, 2**20, 2**20]}}),
    ):
        cases[f"ckpt {name}"] = str(write_ckpt(tmp_path / f"{name}.ckpt", **hp))
    proc = subprocess.run(
        [sys.executable, "-c", MEMORY_CHILD, json.dumps(cases)],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=240,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads(proc.stdout.strip().splitlines()[-1])
    assert results.pop("limit") == results.pop("expected")
    assert set(results) == set(cases)
    for kind, outcome in results.items():
        assert outcome.startswith("ok: "), (kind, outcome)
        one_line(outcome)


def test_load_from_checkpoint_checks_sizes_first(tmp_path: Path) -> None:
    """Issue item 4 in Python: ResNetClassifier.load_from_checkpoint refuses hparams that
    would allocate beyond the bound or disagree with the stored weights, before building."""
    from resnet_pl.lightning import ConfigError, ResNetClassifier

    for name, hp in (("classes", {"num_classes": 10**9}),
                     ("widths", {"model_kwargs": {"widths": [2**20, 16, 32]}}),
                     ("mismatch", {"num_classes": 7}), ("names", {"class_names": 5})):  # fmt: skip
        path = write_ckpt(tmp_path / f"{name}.ckpt", **hp)
        with pytest.raises(ConfigError) as info:
            ResNetClassifier.load_from_checkpoint(path)
        one_line(info.value, str(path))
    good = ResNetClassifier.load_from_checkpoint(write_ckpt(tmp_path / "good.ckpt"))
    assert good.hparams["num_classes"] == 10
