"""The data layer: the one decoder's rules, train/serve parity (the evaluation data path and
``classify`` feed identical tensors; PyTorch and the exported ONNX file give identical labels),
the Fashion-MNIST tensors behind the shipped weights, downloads in ``prepare_data`` and
``to_onnx`` with the data module attached."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.transforms import v2

from resnet_pl.data import (
    ALPHA_BACKGROUND,
    ImageLoadError,
    eval_transform,
    load_idx_dataset,
    load_image,
    preprocess_uint8,
)
from resnet_pl.lightning import ConfigError, ImageDataModule, ResNetClassifier

TINY = {"widths": [4, 8, 8]}
W, H = 41, 37  # an odd, non-square size


def _pattern(seed: int) -> np.ndarray:
    """A (H, W, 3) uint8 image with structure (gradients + blocks), different per seed."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:H, 0:W]
    base = np.stack([xx * 255 // W, yy * 255 // H, (xx + yy) * 255 // (W + H)], axis=-1)
    blocks = rng.integers(0, 256, (H // 8 + 1, W // 8 + 1, 3)).repeat(8, 0).repeat(8, 1)
    return ((base + blocks[:H, :W]) // 2).astype(np.uint8)


def _encode(image: Image.Image, fmt: str, **kwargs: Any) -> bytes:
    buf = io.BytesIO()
    image.save(buf, fmt, **kwargs)
    return buf.getvalue()


def awkward_files(seed: int) -> dict[str, bytes]:
    """One file of each awkward kind, all showing variants of one pattern."""
    rgb = Image.fromarray(_pattern(seed))
    alpha = Image.fromarray(np.tile(np.linspace(0, 255, W, dtype=np.uint8), (H, 1)))
    rgba = rgb.copy()
    rgba.putalpha(alpha)
    palette = rgb.convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: stored sideways, shown rotated 90 degrees clockwise
    gray16 = Image.fromarray(np.asarray(rgb.convert("L")).astype(np.uint16) * 257)
    return {
        "rgba.png": _encode(rgba, "PNG"),
        "palette_trns.png": _encode(palette, "PNG", transparency=3),
        "exif_rotated.jpg": _encode(rgb, "JPEG", quality=95, exif=exif),
        "gray16.png": _encode(gray16, "PNG"),
        "cmyk.jpg": _encode(rgb.convert("CMYK"), "JPEG", quality=95),
        "odd_41x37.png": _encode(rgb, "PNG"),
        "gray.png": _encode(rgb.convert("L"), "PNG"),
        "la.png": _encode(rgba.convert("LA"), "PNG"),
    }


def _write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An image folder with two classes; its test split holds every awkward kind of file."""
    root = tmp_path_factory.mktemp("folder")
    for label, cls in enumerate(("a", "b")):
        for i in range(4):
            img = Image.fromarray(_pattern(10 * label + i))
            _write(root / "train" / cls / f"{i}.png", _encode(img, "PNG"))
        for name, data in awkward_files(100 + label).items():
            _write(root / "test" / cls / name, data)
    return root


# ---- the decoder's rules ------------------------------------------------------------------------
def test_alpha_is_composited_on_black(tmp_path: Path) -> None:
    """Transparent pixels become ALPHA_BACKGROUND (black) times (1 - alpha): a fully
    transparent pixel is black whatever colour is stored under it, half alpha halves it."""
    assert ALPHA_BACKGROUND == (0, 0, 0)
    arr = np.zeros((2, 3, 4), np.uint8)
    arr[..., :3] = (200, 100, 50)
    arr[0, :, 3] = 0
    arr[1, :, 3] = 128
    path = _write(tmp_path / "a.png", _encode(Image.fromarray(arr, "RGBA"), "PNG"))
    got = np.asarray(load_image(path, 3)).astype(int)
    assert (got[0] == 0).all()
    np.testing.assert_allclose(got[1], np.tile([100, 50, 25], (3, 1)), atol=1)
    # Palette transparency is alpha too: the transparent index turns black, others keep colour.
    pal = Image.new("P", (2, 1))
    pal.putpalette([255, 0, 0, 0, 255, 0])
    pal.putpixel((1, 0), 1)
    path = _write(tmp_path / "p.png", _encode(pal, "PNG", transparency=0))
    assert np.asarray(load_image(path, 3)).tolist() == [[[0, 0, 0], [0, 255, 0]]]
    # A 4-channel model keeps alpha as data.
    assert load_image(tmp_path / "a.png", 4).mode == "RGBA"


def test_exif_16bit_cmyk_and_channels(tmp_path: Path) -> None:
    files = {n: _write(tmp_path / n, d) for n, d in awkward_files(0).items()}
    src = _pattern(0)
    rotated = load_image(files["exif_rotated.jpg"], 3)
    assert rotated.size == (H, W)  # upright: the sideways-stored image turned 90 degrees
    expected = np.rot90(src, k=-1)  # orientation 6: rotate clockwise to display
    assert np.abs(np.asarray(rotated).astype(int) - expected).mean() < 6
    # 16-bit values scaled by 255/65535, not clipped: v * 257 comes back as v exactly.
    gray = np.asarray(Image.fromarray(src).convert("L"))
    assert np.array_equal(np.asarray(load_image(files["gray16.png"], 1)), gray)
    levels = Image.fromarray(np.array([[0, 32768, 65535]], np.uint16))
    path = _write(tmp_path / "levels.png", _encode(levels, "PNG"))
    assert np.asarray(load_image(path, 1)).tolist() == [[0, 128, 255]]
    # CMYK without a profile: Pillow's conversion, close to the source colours.
    cmyk = np.asarray(load_image(files["cmyk.jpg"], 3)).astype(int)
    assert np.abs(cmyk - src).mean() < 8
    # A broken embedded ICC profile falls back to the plain conversion instead of failing.
    broken = _encode(Image.fromarray(src).convert("CMYK"), "JPEG", icc_profile=b"not a profile")
    path = _write(tmp_path / "broken_icc.jpg", broken)
    assert np.abs(np.asarray(load_image(path, 3)).astype(int) - src).mean() < 8
    # Grayscale for an RGB model repeats the channel; RGB for a grayscale model uses luma.
    g3 = np.asarray(load_image(files["gray.png"], 3))
    assert g3.shape == (H, W, 3) and (g3 == gray[..., None]).all()
    assert np.array_equal(np.asarray(load_image(files["odd_41x37.png"], 1)), gray)
    with pytest.raises(ImageLoadError, match="not a readable image"):
        load_image(_write(tmp_path / "x.png", b"not an image"), 3)


# ---- train/serve parity ---------------------------------------------------------------------
def _fit_tiny(dm: ImageDataModule, in_chans: int, root: Path) -> tuple[L.Trainer, Path]:
    model = ResNetClassifier("resnet20", num_classes=2, in_chans=in_chans, model_kwargs=TINY)
    trainer = L.Trainer(
        accelerator="cpu",
        max_steps=2,
        limit_val_batches=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=root,
    )
    trainer.fit(model, dm)
    ckpt = root / "tiny.ckpt"
    trainer.save_checkpoint(ckpt)
    return trainer, ckpt


@pytest.mark.parametrize(
    ("in_chans", "crop_pct", "onnx"),
    [
        (3, 0.875, True),
        pytest.param(1, None, True, marks=pytest.mark.slow),
        pytest.param(3, None, False, marks=pytest.mark.slow),
        pytest.param(1, 0.875, False, marks=pytest.mark.slow),
    ],
)
def test_train_serve_parity(
    folder: Path, tmp_path: Path, in_chans: int, crop_pct: float | None, onnx: bool
) -> None:
    """The same awkward files (RGBA, palette with transparency, EXIF-rotated JPEG, 16-bit,
    CMYK, LA, 41x37, grayscale into RGB and RGB into grayscale models) reach the model as
    bit-identical tensors through Lightning's test/predict data path and through classify's
    preprocessing (configured from the checkpoint alone, which records the crop evaluation
    used); PyTorch and the exported ONNX file give the same labels."""
    from resnet_pl.deploy import export_onnx
    from resnet_pl.deploy.runtime import OnnxClassifier, TorchClassifier

    dm = ImageDataModule(
        "imagefolder", data_dir=str(folder), image_size=32, in_chans=in_chans,
        crop_pct=crop_pct, num_workers=0, batch_size=4, val_fraction=0.25,
    )  # fmt: skip
    trainer, ckpt = _fit_tiny(dm, in_chans, tmp_path)
    hp = torch.load(ckpt, weights_only=True)["hyper_parameters"]
    assert hp["data_info"]["crop_pct"] == dm.crop_pct == (crop_pct or 1.0)
    assert list(hp["data_info"]["input_size"]) == [in_chans, 32, 32]

    fed: list[torch.Tensor] = []
    model = trainer.lightning_module
    hook = model.model.register_forward_pre_hook(lambda _m, args: fed.append(args[0]))
    try:
        preds = trainer.predict(model, dm)
        trainer.test(model, dm, verbose=False)
    finally:
        hook.remove()
    n = len(dm.test_set)  # type: ignore[arg-type]
    assert n == 16
    predict_x, test_x = torch.cat(fed[: len(preds)]), torch.cat(fed[len(preds) :])
    paths = [p for p, _ in dm.test_set.samples]  # type: ignore[union-attr]

    clf = TorchClassifier(str(ckpt))
    served = clf.preprocess([load_image(p, in_chans) for p in paths])
    assert served.shape == (n, in_chans, 32, 32)
    assert torch.equal(predict_x, served) and torch.equal(test_x, served)

    labels = torch.cat([p["indices"] for p in preds]).tolist()
    torch_rows = list(clf.classify_files(paths, top_k=1))
    assert [r.prediction.indices[0] for r in torch_rows] == labels  # type: ignore[union-attr]
    if onnx:
        from resnet_pl.deploy import read_metadata

        report = export_onnx(str(ckpt), tmp_path / "tiny.onnx", verify_data=served)
        assert report.verified
        assert read_metadata(tmp_path / "tiny.onnx")["crop_pct"] == dm.crop_pct
        onnx_rows = list(OnnxClassifier(tmp_path / "tiny.onnx").classify_files(paths, top_k=1))
        assert [r.prediction.indices[0] for r in onnx_rows] == labels  # type: ignore[union-attr]
        probs = torch.cat([p["probs"] for p in preds]).max(1).values.tolist()
        got = [r.prediction.probs[0] for r in onnx_rows]  # type: ignore[union-attr]
        np.testing.assert_allclose(got, probs, atol=1e-4)


def test_fashion_mnist_tensors_unchanged(fashion_mnist_dir: Path) -> None:
    """The shipped resnet20.fashion_mnist was measured (94.76%) on torchvision's ToDtype +
    Normalize of the IDX pixels: the shared eval transform is bit-identical to that, and the
    Lightning test path now feeds exactly the same tensors."""
    from resnet_pl.hub import get_weights

    cfg = get_weights("resnet20", "fashion_mnist").pretrained_cfg
    x, _ = load_idx_dataset("fashion_mnist", "test", fashion_mnist_dir)
    x = x[:512]
    old = v2.Normalize(list(cfg["mean"]), list(cfg["std"]))(
        v2.ToDtype(torch.float32, scale=True)(x)
    )
    assert torch.equal(preprocess_uint8(x, cfg), old)
    dm = ImageDataModule("fashion_mnist", data_dir=str(fashion_mnist_dir), test_subset=512)
    dm.setup("test")
    batch = next(iter(dm.test_dataloader()))
    assert torch.equal(dm.on_after_batch_transfer(batch, 0)[0], old[: len(batch[0])])
    assert dm.data_cfg["crop_pct"] == cfg["crop_pct"] == 1.0
    one = eval_transform(cfg)(x[0])
    assert torch.equal(one, old[0])


# ---- Lightning conventions -------------------------------------------------------------------
def test_downloads_happen_in_prepare_data_only(
    tmp_path: Path, fashion_mnist_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """download=True: prepare_data (one process per node) fetches with torchvision into
    data_dir; setup only reads. The real torchvision class is replaced by one that 'downloads'
    by copying local files into torchvision's layout."""
    import shutil

    from torchvision import datasets

    calls: list[tuple[str, bool]] = []

    class FakeFashionMNIST:
        def __init__(self, root: str, train: bool, download: bool) -> None:
            calls.append((root, train))
            raw = Path(root) / "FashionMNIST" / "raw"
            raw.mkdir(parents=True, exist_ok=True)
            for f in fashion_mnist_dir.glob("*-ubyte.gz"):
                shutil.copy(f, raw / f.name)

    monkeypatch.setattr(datasets, "FashionMNIST", FakeFashionMNIST)
    monkeypatch.setattr("resnet_pl.data.datasets.DEBIAN_FASHION_MNIST", tmp_path / "none")
    dm = ImageDataModule("fashion_mnist", data_dir=str(tmp_path / "dl"), download=True)
    dm.prepare_data()
    assert [train for _, train in calls] == [True, False]
    assert calls[0][0] == str(tmp_path / "dl")
    calls.clear()
    dm.setup("fit")
    dm.setup("test")
    assert calls == []  # setup never downloads
    assert len(dm.test_set) == 10_000  # type: ignore[arg-type]
    dm.prepare_data()
    assert calls == []  # already there: nothing fetched again


@pytest.mark.parametrize("form", ["tensor", "tuple"])
def test_to_onnx_bare_tensor_and_tuple_after_fit(tmp_path: Path, form: str) -> None:
    """Lightning's own ``to_onnx(path, sample)`` works with a bare tensor (as Lightning
    documents) and a 1-tuple while the data module is still attached (its batch hook used to
    split the sample into two 'inputs')."""
    import onnxruntime as ort

    dm = ImageDataModule("fake", batch_size=8, fake_size=16)
    model = ResNetClassifier("resnet20", num_classes=10, in_chans=3, model_kwargs=TINY)
    L.Trainer(
        accelerator="cpu", max_steps=1, limit_val_batches=0, logger=False,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        default_root_dir=tmp_path,
    ).fit(model, dm)  # fmt: skip
    model.eval()
    x = torch.randn(2, 3, 32, 32)
    sample: Any = x if form == "tensor" else (x,)
    model.to_onnx(tmp_path / "m.onnx", sample)
    session = ort.InferenceSession(str(tmp_path / "m.onnx"))
    [out] = session.run(None, {session.get_inputs()[0].name: x.numpy()})
    with torch.no_grad():
        np.testing.assert_allclose(out, model(x).numpy(), atol=1e-4)


@pytest.mark.parametrize(
    ("hparams", "expected"),
    [
        # What training recorded wins over the dataset's spec.
        (
            {"dataset": "fashion_mnist", "mean": [0.5], "std": [0.25], "input_size": [1, 20, 20]},
            ((0.5,), (0.25,), (1, 20, 20)),
        ),
        # Nothing recorded: the dataset's spec.
        ({"dataset": "fashion_mnist"}, ((0.286,), (0.353,), (1, 28, 28))),
        # Neither: no statistics, and the caller's default side.
        ({"dataset": "my_folder"}, (None, None, (3, 40, 40))),
        ({}, (None, None, (3, 40, 40))),
    ],
)
def test_recorded_preprocessing(hparams: dict[str, Any], expected: tuple[Any, ...]) -> None:
    """The one rule that publishing (``hub publish``) and distillation (a checkpoint teacher)
    both use to find the normalisation and size a checkpoint's network expects."""
    from resnet_pl.data.specs import recorded_preprocessing

    in_chans = 1 if hparams.get("dataset") == "fashion_mnist" else 3
    assert recorded_preprocessing(hparams, in_chans, default_side=40) == expected


# ---- one data module per data path ------------------------------------------------------------
def test_front_door_picks_the_data_path(folder: Path) -> None:
    """``ImageDataModule(dataset=...)`` returns the registered module of that data path; an
    option of the other path warns instead of being silently dropped; a new path is one
    registry entry."""
    from resnet_pl.lightning import data as data_mod
    from resnet_pl.lightning.datamodules import FolderDataModule, TensorDataModule

    tensor = ImageDataModule("fake", fake_size=32, image_size=16, batch_size=8)
    assert type(tensor) is TensorDataModule and isinstance(tensor, ImageDataModule)
    assert tensor.num_classes == 10 and tensor.hparams["crop_padding"] == 4
    with pytest.warns(UserWarning, match="crop_padding=2 has no effect with dataset 'imagefolder'"):
        files = ImageDataModule("imagefolder", data_dir=str(folder), crop_padding=2)
    assert type(files) is FolderDataModule and isinstance(files, ImageDataModule)
    assert files.num_classes == 2 and files.image_size == 224

    data_mod.DATA_MODULES["tiny_stream"] = f"{__name__}:_StreamStub"
    try:
        stream = ImageDataModule("tiny_stream", data_dir="s3://bucket/x", batch_size=4)
    finally:
        del data_mod.DATA_MODULES["tiny_stream"]
    assert isinstance(stream, _StreamStub) and stream.options == {
        "dataset": "tiny_stream", "data_dir": "s3://bucket/x", "batch_size": 4,
    }  # fmt: skip
    with pytest.raises(ConfigError, match=r"unknown dataset 'fashion'.*fashion_mnist"):
        ImageDataModule("fashion")


class _StreamStub(L.LightningDataModule):
    """A stand-in for a streaming data module: takes only the options it names."""

    def __init__(self, dataset: str, data_dir: str | None = None, batch_size: int = 1) -> None:
        super().__init__()
        self.options = {"dataset": dataset, "data_dir": data_dir, "batch_size": batch_size}


def test_one_fashion_mnist_reader(fashion_mnist_dir: Path) -> None:
    """deploy's Fashion-MNIST helpers read through resnet_pl.data's reader."""
    from resnet_pl.data.datasets import load_idx_dataset
    from resnet_pl.deploy.datasets import fashion_mnist_available, load_fashion_mnist

    x, y = load_fashion_mnist("test", 5, start=3, data_dir=fashion_mnist_dir)
    ref_x, ref_y = load_idx_dataset("fashion_mnist", "test", fashion_mnist_dir)
    assert x.shape == (5, 28, 28) and (x == ref_x[3:8, 0].numpy()).all()
    assert (y == ref_y[3:8].numpy()).all() and fashion_mnist_available(fashion_mnist_dir)
