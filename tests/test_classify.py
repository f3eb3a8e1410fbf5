"""``resnet-pl classify`` / ``export`` on real Fashion-MNIST images saved in every common PNG and
JPEG flavour, mixed with broken files: good files are classified (identically on PyTorch and
ONNX Runtime), bad ones get an error row and a non-zero exit, never a traceback."""

from __future__ import annotations

import csv
import gzip
import io
import json
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

import resnet_pl
from resnet_pl.cli.deploy import main
from resnet_pl.data import preprocess_uint8, resolve_data_cfg
from resnet_pl.deploy import ImageLoadError, eval_transform, load_image, read_metadata
from resnet_pl.deploy.sample_images import main as sample_main

FASHION_CLASSES = [
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
]  # fmt: skip
FMNIST_CFG = {"input_size": (1, 28, 28), "mean": (0.2860,), "std": (0.3530,)}
# Lossless variants: after conversion to grayscale they must give exactly the source pixels.
LOSSLESS = ["gray.png", "rgb.png", "rgba.png", "palette.png", "palette_trns.png", "gray16.png",
            "la.png", "nested/deep/gray.png"]  # fmt: skip
LOSSY = ["rgb.jpg", "gray.jpg", "cmyk.jpg"]
BAD = ["empty.png", "truncated.png", "notes.jpg", "bomb.png"]


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # 2 shared cores: one thread avoids OpenMP contention
    yield
    torch.set_num_threads(before)


def read_idx_gz(path: Path, n: int) -> np.ndarray:
    with gzip.open(path, "rb") as f:
        data = f.read()
    ndim = data[3]
    dims = struct.unpack(f">{ndim}I", data[4 : 4 + 4 * ndim])
    return np.frombuffer(data, np.uint8, offset=4 + 4 * ndim).reshape(dims)[:n].copy()


@pytest.fixture(scope="module")
def fm_images(fashion_mnist_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    """The first 16 real Fashion-MNIST test images (uint8, 28x28) and labels, read from the IDX
    gz files with gzip + numpy."""
    images = read_idx_gz(fashion_mnist_dir / "t10k-images-idx3-ubyte.gz", 16)
    labels = read_idx_gz(fashion_mnist_dir / "t10k-labels-idx1-ubyte.gz", 16)
    return images, labels.astype(np.int64)


def forged_png(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims ``width x height`` pixels: a decompression bomb's shape
    without its payload."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + chunk(b"IEND", b"")
    )


@pytest.fixture(scope="module")
def image_dir(
    tmp_path_factory: pytest.TempPathFactory, fm_images: tuple[np.ndarray, np.ndarray]
) -> dict[str, Any]:
    """A folder of real images in many modes and formats, plus broken files. Returns the
    folder and, per good file, the index of its source image."""
    images, _ = fm_images
    root = tmp_path_factory.mktemp("classify")
    (root / "nested" / "deep").mkdir(parents=True)
    source: dict[str, int] = {}

    def gray(i: int) -> Image.Image:
        return Image.fromarray(images[i], "L")

    def save(name: str, image: Image.Image, i: int, **kwargs: Any) -> None:
        image.save(root / name, **kwargs)
        source[name] = i

    save("gray.png", gray(0), 0)
    save("rgb.png", gray(1).convert("RGB"), 1)
    rgba = gray(2).convert("RGBA")
    rgba.putalpha(255)  # opaque: lossless (partial alpha is composited, see test_data.py)
    save("rgba.png", rgba, 2)
    pal = Image.fromarray(images[3], "P")
    pal.putpalette([v for i in range(256) for v in (i, i, i)])
    save("palette.png", pal, 3)
    pal_t = Image.fromarray(images[4], "P")
    pal_t.putpalette([v for i in range(256) for v in (i, i, i)])
    save("palette_trns.png", pal_t, 4, transparency=0)
    gray16 = Image.fromarray(images[5].astype(np.uint16) * 257)
    assert gray16.mode == "I;16"
    save("gray16.png", gray16, 5)
    save("la.png", gray(6).convert("LA"), 6)
    save("nested/deep/gray.png", gray(7), 7)
    save("rgb.jpg", gray(8).convert("RGB"), 8, quality=95)
    save("gray.jpg", gray(9), 9, quality=95)
    save("cmyk.jpg", gray(10).convert("RGB").convert("CMYK"), 10, quality=95)

    (root / "empty.png").write_bytes(b"")
    buf = io.BytesIO()
    gray(11).save(buf, format="PNG")
    (root / "truncated.png").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    (root / "notes.jpg").write_text("this is not a JPEG\n")
    (root / "bomb.png").write_bytes(forged_png(30_000, 30_000))
    (root / "README.txt").write_text("not an image suffix: skipped in folder scans\n")
    gray(12).save(root / ".hidden.png")  # hidden: skipped in folder scans
    assert sorted(source) == sorted(LOSSLESS + LOSSY)
    return {"root": root, "source": source}


@torch.no_grad()
def fit_quickly(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> nn.Module:
    """Make a random network a (weak) real classifier in about a second, without backprop:
    BatchNorm statistics from real images, then a ridge-regression classifier head. Its
    predictions then vary from image to image, so "both backends agree" means something."""
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.momentum = None  # cumulative average over the batches below
    model.train()
    for i in range(0, len(x), 128):
        model(x[i : i + 128])
    model.eval()
    feats = model.forward_head(model.forward_features(x), pre_logits=True).double()
    a = torch.cat([feats, torch.ones(len(feats), 1, dtype=torch.float64)], 1)
    target = nn.functional.one_hot(y, 10).double() * 10 - 5
    w = torch.linalg.solve(a.T @ a + torch.eye(a.shape[1], dtype=torch.float64), a.T @ target)
    model.fc.weight.copy_(w[:-1].T.float())
    model.fc.bias.copy_(w[-1].float())
    return model


@pytest.fixture(scope="module")
def model_files(
    tmp_path_factory: pytest.TempPathFactory, fashion_mnist_dir: Path
) -> dict[str, Any]:
    """A small 1-channel resnet20 made a weak real classifier (see :func:`fit_quickly`) on 512
    real training images, saved as a checkpoint in the Lightning contract, and its ONNX
    export."""
    from resnet_pl.deploy import export_onnx

    torch.manual_seed(0)
    model = resnet_pl.create_model("resnet20", in_chans=1, widths=(8, 16, 32))
    x = preprocess_uint8(
        read_idx_gz(fashion_mnist_dir / "train-images-idx3-ubyte.gz", 512), FMNIST_CFG
    )
    y = torch.from_numpy(
        read_idx_gz(fashion_mnist_dir / "train-labels-idx1-ubyte.gz", 512).astype(np.int64)
    )
    fit_quickly(model, x, y)
    folder = tmp_path_factory.mktemp("model")
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
    }
    state = {f"model.{k}": v for k, v in model.state_dict().items()}
    ckpt = folder / "tiny.ckpt"
    torch.save({"hyper_parameters": hp, "state_dict": state}, ckpt)
    onnx_path = folder / "tiny.onnx"
    export_onnx(ckpt, onnx_path, exporter="torchscript", verify_samples=32)
    return {"model": model, "ckpt": ckpt, "onnx": onnx_path}


def classify(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(["classify", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def rows_by_rel(path: Path, root: Path) -> dict[str, dict[str, str]]:
    with path.open(newline="") as f:
        return {Path(r["path"]).relative_to(root).as_posix(): r for r in csv.DictReader(f)}


# --------------------------------------------------------------------------------------------
# The command on a mixed folder
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("backend_model", ["ckpt", "onnx"])
def test_classify_mixed_folder(
    image_dir: dict[str, Any],
    model_files: dict[str, Any],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    backend_model: str,
) -> None:
    root = image_dir["root"]
    out = tmp_path / "preds.csv"
    args = ["--model", str(model_files[backend_model]), "--output", str(out)]
    code, _, err = classify([str(root), *args, "--top_k", "3", "--batch_size", "4"], capsys)
    assert code == 1  # some files were bad
    assert "Traceback" not in err
    rows = rows_by_rel(out, root)
    assert sorted(rows) == sorted(LOSSLESS + LOSSY + BAD)  # README.txt / .hidden.png skipped
    for name in LOSSLESS + LOSSY:
        row = rows[name]
        assert row["error"] == "" and row["label"] in FASHION_CLASSES
        assert FASHION_CLASSES[int(row["index"])] == row["label"]
        labels, probs = json.loads(row["top_k_labels"]), json.loads(row["top_k_probs"])
        assert (
            len(labels) == 3 and labels[0] == row["label"] and probs == sorted(probs, reverse=True)
        )
    for name in BAD:
        assert rows[name]["label"] == "" and rows[name]["error"], name
        assert sum(f"{root / name}:" in line for line in err.splitlines()) == 1  # one line each
    assert "empty file" in rows["empty.png"]["error"]
    assert "decompression bomb" in rows["bomb.png"]["error"]
    assert "not a readable image" in rows["notes.jpg"]["error"]
    assert "truncated" in rows["truncated.png"]["error"]
    assert f"classified {len(LOSSLESS + LOSSY)} of {len(rows)} files" in err


def test_pytorch_and_onnx_give_identical_labels(
    image_dir: dict[str, Any],
    model_files: dict[str, Any],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    root = image_dir["root"]
    results = {}
    for key, extra in [("ckpt", []), ("onnx", []), ("ckpt", ["--backend", "onnx"])]:
        out = tmp_path / f"{key}{len(results)}.csv"
        code, _, err = classify(
            [str(root), "--model", str(model_files[key]), "--output", str(out), *extra], capsys
        )
        assert code == 1 and "Traceback" not in err
        results[(key, *extra)] = rows_by_rel(out, root)
    torch_rows = results[("ckpt",)]
    assert len({r["label"] for r in torch_rows.values()} - {""}) >= 3  # not one constant answer
    for other in (results[("onnx",)], results[("ckpt", "--backend", "onnx")]):
        for name, row in torch_rows.items():
            assert other[name]["label"] == row["label"], name
            assert other[name]["error"] == row["error"]
            if row["prob"]:
                assert float(other[name]["prob"]) == pytest.approx(float(row["prob"]), abs=1e-5)


def test_lossless_variants_reproduce_source_pixels(
    image_dir: dict[str, Any],
    model_files: dict[str, Any],
    fm_images: tuple[np.ndarray, np.ndarray],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """RGB, RGBA, palette (with and without transparency), 16-bit and LA files of a real image
    are classified exactly like the raw IDX pixels of that image."""
    root = image_dir["root"]
    files = [str(root / n) for n in LOSSLESS]
    out = tmp_path / "p.csv"
    code, _, _ = classify(
        [*files, "--model", str(model_files["onnx"]), "--output", str(out)], capsys
    )
    assert code == 0
    rows = rows_by_rel(out, root)
    images, _ = fm_images
    idx = [image_dir["source"][n] for n in LOSSLESS]
    x = preprocess_uint8(images[idx], FMNIST_CFG)
    with torch.no_grad():
        probs = torch.softmax(model_files["model"](x).double(), 1)
    for name, p in zip(LOSSLESS, probs, strict=True):
        assert rows[name]["label"] == FASHION_CLASSES[int(p.argmax())], name
        assert float(rows[name]["prob"]) == pytest.approx(float(p.max()), abs=1e-5), name
    for name in LOSSLESS:  # and the pixels themselves
        got = np.asarray(load_image(root / name, 1))
        assert np.array_equal(got, images[image_dir["source"][name]]), name


def test_runtime_api(model_files: dict[str, Any], fm_images: tuple[np.ndarray, np.ndarray]) -> None:
    """OnnxClassifier configures itself from the file's metadata alone and agrees with
    TorchClassifier on PIL images in any mode."""
    from resnet_pl.deploy.runtime import OnnxClassifier, TorchClassifier

    onnx_clf = OnnxClassifier(model_files["onnx"])
    torch_clf = TorchClassifier(model_files["ckpt"])
    assert onnx_clf.class_names == FASHION_CLASSES == torch_clf.class_names
    assert onnx_clf.cfg["input_size"] == (1, 28, 28) and onnx_clf.cfg["mean"] == (0.286,)
    images, _ = fm_images
    pil = [Image.fromarray(im, "L").convert("RGB") for im in images]  # converted back to L
    a, b = onnx_clf.predict(pil, top_k=2), torch_clf.predict(pil, top_k=2)
    assert [p.labels for p in a] == [p.labels for p in b]
    assert all(len(p.indices) == 2 and p.probs[0] >= p.probs[1] for p in a)
    assert np.allclose([p.prob for p in a], [p.prob for p in b], atol=1e-5)


def test_all_good_files_exit_zero_csv_on_stdout(
    image_dir: dict[str, Any], model_files: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    root = image_dir["root"]
    code, out, err = classify(
        [str(root / "nested"), str(root / "gray.png"), "--model", str(model_files["onnx"])], capsys
    )
    assert code == 0 and "error:" not in err
    rows = list(csv.DictReader(io.StringIO(out)))
    assert [Path(r["path"]).name for r in rows] == ["gray.png", "gray.png"]
    assert all(r["label"] in FASHION_CLASSES and r["error"] == "" for r in rows)


def test_max_pixels_guard(
    image_dir: dict[str, Any],
    model_files: dict[str, Any],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    root = image_dir["root"]
    out = tmp_path / "p.csv"
    args = ["--model", str(model_files["onnx"]), "--output", str(out)]
    code, _, err = classify([str(root / "gray.png"), *args, "--max_pixels", "100"], capsys)
    assert code == 1 and "Traceback" not in err
    (row,) = rows_by_rel(out, root).values()
    assert "decompression bomb" in row["error"] and "100 pixels" in row["error"]


def test_missing_inputs_and_models_are_usage_errors(
    model_files: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = classify([str(tmp_path), "--model", str(model_files["onnx"])], capsys)
    assert code == 2 and "no image files" in err
    code, _, err = classify(["x.png", "--model", str(tmp_path / "nope.ckpt")], capsys)
    assert code == 2 and "does not exist" in err and "Traceback" not in err
    code, _, err = classify(["x.png", "--model", "resnet2O"], capsys)
    assert code == 2 and "unknown model" in err
    code, _, err = classify(["x.png", "--model", str(model_files["onnx"]), "--top_k", "0"], capsys)
    assert code == 2 and "--top_k" in err


# --------------------------------------------------------------------------------------------
# Image loading and preprocessing
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("name", "match"),
    [
        ("empty.png", "empty file"),
        ("truncated.png", "truncated"),
        ("notes.jpg", "not a readable image"),
        ("bomb.png", "decompression bomb"),
        ("missing.png", "not found"),
    ],
)
def test_load_image_errors(image_dir: dict[str, Any], name: str, match: str) -> None:
    with pytest.raises(ImageLoadError, match=match):
        load_image(image_dir["root"] / name, 1)


def test_load_image_modes(image_dir: dict[str, Any]) -> None:
    root = image_dir["root"]
    assert load_image(root / "gray.png", 3).mode == "RGB"
    assert load_image(root / "cmyk.jpg", 1).mode == "L"
    assert load_image(root / "gray16.png", 3).getpixel((14, 14))[0] == load_image(
        root / "gray16.png", 1
    ).getpixel((14, 14))


def test_eval_transform_defaults_and_values() -> None:
    small = resolve_data_cfg({"input_size": (3, 32, 32)})
    assert small["crop_pct"] == 1.0 and small["interpolation"] == "bilinear"
    assert small["mean"] == (0.485, 0.456, 0.406)
    assert resolve_data_cfg({"input_size": (3, 224, 224)})["crop_pct"] == 0.875
    # A white 1-channel image maps to (1 - mean) / std everywhere.
    t = eval_transform(FMNIST_CFG)
    out = t(Image.new("L", (28, 28), 255))
    assert out.shape == (1, 28, 28)
    assert torch.allclose(out, torch.full_like(out, (1 - 0.2860) / 0.3530))
    # 256x320 -> shorter side 256 (= 224 / 0.875) -> centre crop 224x224; tensor and PIL agree.
    rgb = Image.fromarray(np.random.default_rng(0).integers(0, 256, (256, 320, 3), dtype=np.uint8))
    big = eval_transform({"input_size": (3, 224, 224)})
    from_pil = big(rgb)
    from_tensor = big(torch.from_numpy(np.array(rgb)).permute(2, 0, 1).contiguous())
    assert from_pil.shape == (3, 224, 224) and torch.equal(from_pil, torch.as_tensor(from_tensor))
    with pytest.raises(ValueError, match="one value per input channel"):
        resolve_data_cfg({"input_size": (3, 32, 32), "mean": (0.5,), "std": (0.5,)})
    with pytest.raises(ValueError, match="interpolation"):
        resolve_data_cfg({"input_size": (1, 28, 28), "interpolation": "cubic-ish"})
    with pytest.raises(ValueError, match="input_size"):
        resolve_data_cfg({"mean": (0.5,)})


def test_sample_images_writes_real_pngs(
    tmp_path: Path, fm_images: tuple[np.ndarray, np.ndarray], capsys: pytest.CaptureFixture[str]
) -> None:
    images, labels = fm_images
    assert sample_main(["--dataset", "fashion_mnist", "--out", str(tmp_path), "-n", "3"]) == 0
    files = sorted(tmp_path.glob("*.png"))
    assert len(files) == 3
    for i, f in enumerate(files):
        assert np.array_equal(np.asarray(Image.open(f)), images[i])
        slug = (
            FASHION_CLASSES[labels[i]].lower().replace("-", "_").replace("/", "_").replace(" ", "_")
        )
        assert f.name == f"{i:05d}_{slug}.png"
    assert len(capsys.readouterr().out.splitlines()) == 3


# --------------------------------------------------------------------------------------------
# resnet-pl export
# --------------------------------------------------------------------------------------------
def test_export_command(
    model_files: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out, report = tmp_path / "cli.onnx", tmp_path / "report.json"
    code = main(["export", str(model_files["ckpt"]), "-o", str(out), "--exporter", "torchscript",
                 "--verify_samples", "16", "--metadata", "owner=ci",
                 "--report_json", str(report)])  # fmt: skip
    stdout, _ = capsys.readouterr()
    assert code == 0 and "verified" in stdout and "real b=7" in stdout
    data = json.loads(report.read_text())
    assert data["passed"] and data["exporter"] == "torchscript" and data["path"] == str(out)
    meta = read_metadata(out)
    assert meta["owner"] == "ci" and meta["class_names"] == FASHION_CLASSES


@pytest.mark.parametrize(
    ("argv", "match"),
    [
        (["resnet20", "--dtype", "int8"], "calibration_data"),
        (["resnet20", "--opset", "9"], "too low"),
        (["resnet2O"], "unknown model"),
        (["missing.ckpt"], "does not exist"),
        (["resnet20", "--input_size", "3,32"], "C,H,W"),
    ],
)
def test_export_command_errors(
    argv: list[str], match: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["export", *argv, "-o", str(tmp_path / "x.onnx")])
    _, err = capsys.readouterr()
    assert code == 2 and match in err and "Traceback" not in err
    assert not (tmp_path / "x.onnx").exists()


def test_old_dashed_spellings_still_work_with_a_deprecation_notice(
    model_files: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The argparse spellings of earlier releases (``--top-k``) are accepted for one release,
    each with a DeprecationWarning line on stderr naming the new spelling."""
    root = tmp_path / "imgs"
    root.mkdir()
    Image.new("L", (28, 28), 128).save(root / "a.png")
    args = ["--model", str(model_files["onnx"]), "--no-progress"]
    old_code, old_out, old_err = classify(
        [str(root), *args, "--top-k=2", "--batch-size", "1"], capsys
    )
    new_code, new_out, new_err = classify(
        [str(root), *args[:2], "--top_k=2", "--batch_size", "1"], capsys
    )
    assert old_code == new_code == 0 and old_out == new_out
    for old, new in (("--top-k", "--top_k"), ("--batch-size", "--batch_size")):
        assert f"DeprecationWarning: {old} is deprecated, use {new}" in old_err
    assert "DeprecationWarning" not in new_err


@pytest.mark.parametrize("command", ["export", "classify"])
def test_help_explains_the_command(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([command, "--help"]) == 0
    out = capsys.readouterr().out
    summary = "Export to ONNX" if command == "export" else "Classify image files"
    assert summary in out and ("--top_k" in out or "--input_shape" in out)


def test_export_options_are_export_onnx_parameters() -> None:
    """``resnet-pl export``'s options are read from ``export_onnx``'s signature: same names, same
    defaults; only the model/output and the (tensor-typed) real-image sources are declared by
    the command itself."""
    import inspect

    from resnet_pl.cli.deploy import EXPORT_NOT_FROM_SIGNATURE, build_parsers, export_kwargs
    from resnet_pl.deploy import export_onnx

    _, subs = build_parsers()
    ns = subs["export"].parse_args(["resnet20"])
    kwargs = export_kwargs(ns)
    for name, param in inspect.signature(export_onnx).parameters.items():
        if name in EXPORT_NOT_FROM_SIGNATURE - {"verify_data", "calibration_data"}:
            assert name not in kwargs
            continue
        assert kwargs[name] == param.default, name


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        (["--static_batch"], "--dynamic_batch false", {"dynamic_batch": False}),
        (["--no_fold_bn"], "--fold_batchnorm false", {"fold_batchnorm": False}),
        (["--no-verify"], "--verify false", {"verify": False}),
        (["--input_size", "1,28,28"], "--input_shape", {"input_shape": [1, 28, 28]}),
        (["--input-size=1x28x28"], "--input_shape", {"input_shape": [1, 28, 28]}),
        (["--metadata", "owner=ci"], "--metadata.owner", {"metadata": {"owner": "ci"}}),
        (["--verify-samples", "16"], "--verify_samples", {"verify_samples": 16}),
        (["--benchmark_runs", "3"], "nothing", {}),
    ],
)
def test_old_export_spellings_go_through_the_one_shim(
    old: list[str], new: str, expected: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    from resnet_pl.cli.deploy import EXPORT_RENAMED, build_parsers, export_kwargs
    from resnet_pl.cli.util import accept_dashed

    _, subs = build_parsers()
    argv = accept_dashed(["resnet20", *old], subs["export"], "resnet-pl export", EXPORT_RENAMED)
    kwargs = export_kwargs(subs["export"].parse_args(argv))
    defaults = export_kwargs(subs["export"].parse_args(["resnet20"]))
    assert {k: v for k, v in kwargs.items() if defaults[k] != v} == expected
    err = capsys.readouterr().err
    assert f"DeprecationWarning: {old[0].partition('=')[0]} is deprecated, use {new}" in err


def test_bare_boolean_option_means_true_without_a_notice(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from resnet_pl.cli.deploy import EXPORT_RENAMED, build_parsers
    from resnet_pl.cli.util import accept_dashed

    _, subs = build_parsers()
    argv = accept_dashed(
        ["resnet20", "--dynamic_hw", "--pretrained", "--verify", "false"],
        subs["export"],
        "resnet-pl export",
        EXPORT_RENAMED,
    )
    ns = subs["export"].parse_args(argv)
    assert ns.dynamic_hw is True and ns.pretrained is True and ns.verify is False
    assert "Deprecation" not in capsys.readouterr().err


def test_every_option_of_every_command_has_help() -> None:
    """``resnet-pl X --help`` explains every option (export's come from export_onnx's
    docstring, so a parameter documented there is documented here)."""
    from resnet_pl.bench.run import build_parser as bench_parser
    from resnet_pl.cli import deploy, hub

    parsers = {"benchmark": bench_parser()}
    for module in (deploy, hub):
        parsers.update(module.build_parsers()[1])
    assert {"export", "classify", "list", "verify", "publish", "benchmark"} <= set(parsers)
    for command, parser in parsers.items():
        for action in parser._actions:
            if action.dest == "help" or action.dest.endswith(".help"):
                continue
            name = action.option_strings[0] if action.option_strings else action.dest
            assert len((action.help or "").strip()) > 10, f"{command} {name} has no help"


def test_unknown_option_is_one_line_naming_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["export", "resnet20", "--bogus"]) == 2
    err = capsys.readouterr().err
    assert "--bogus" in err and "resnet-pl export --help" in err and "Traceback" not in err
