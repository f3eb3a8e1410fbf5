"""The weights hub: registry, verified loading (hash, truncation, pickles), head/stem adaptation,
Hugging Face-style folders, checkpoint export/publish, the CLI, hubconf and torch.hub.

Everything runs offline: torchvision-style weights come from a local ``file://`` URL, the user
cache is a temporary folder, and tiny ResNet-20 entries are written to temporary folders.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import pickle
import subprocess
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import torch
from safetensors.torch import save_file

import resnet_pl
from resnet_pl import create_model, list_models, list_pretrained
from resnet_pl.cli.hub import main as hub_main
from resnet_pl.hub import (
    UnknownWeightsError,
    WeightsEntry,
    WeightsMismatchError,
    WeightsUnavailableError,
    WeightsVerificationError,
    default_tag,
    get_weights,
    register_weights,
    remove_weights,
)
from resnet_pl.hub.hf import fp32_state_dict
from resnet_pl.hub.pretrained import cache_path, check_safetensors, sidecar_path
from resnet_pl.hub.weights import REQUIRED_CFG_KEYS, SHIPPED_DIR, read_record, write_record

REPO = Path(__file__).resolve().parents[1]
FASHION = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)


# --------------------------------------------------------------------------------------------
# Helpers and fixtures
# --------------------------------------------------------------------------------------------
@pytest.fixture(autouse=True)
def isolated_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets an empty user cache; nothing touches ~/.cache."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("RESNET_PL_CACHE", str(cache))
    return cache


@pytest.fixture
def registered() -> Iterator[list[str]]:
    """Names registered by a test, removed afterwards."""
    names: list[str] = []
    yield names
    for name in names:
        remove_weights(name)


def small_cfg(in_chans: int = 1, **extra: Any) -> dict[str, Any]:
    cfg: dict[str, Any] = {
        "mean": (0.286,) * in_chans,
        "std": (0.353,) * in_chans,
        "input_size": (in_chans, 28, 28),
        "interpolation": "bilinear",
        "crop_pct": 1.0,
        "num_classes": 10,
        "categories": list(FASHION),
        "dataset": "fashion_mnist",
        "metrics": {},
        "num_params": 0,
        "gflops": 0.0,
        "recipe": "random initialisation (test)",
        "license": "BSD-3-Clause",
        "origin": "tests/test_hub.py",
        "resnet_pl_version": resnet_pl.__version__,
        "stem": "small",
    }
    cfg.update(extra)
    return cfg


def write_tiny_entry(
    folder: Path, tag: str, *, in_chans: int = 1, seed: int = 0, default: bool = False
) -> tuple[WeightsEntry, torch.nn.Module]:
    """A random-init ResNet-20 saved as ``resnet20.<tag>.safetensors`` + JSON record in
    ``folder`` (not registered). Returns the entry and the source model."""
    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    model = create_model("resnet20", num_classes=10, in_chans=in_chans).eval()
    path = folder / f"resnet20.{tag}.safetensors"
    save_file(fp32_state_dict(model), str(path))
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    cfg = small_cfg(in_chans, file=path.name, sha256=digest, file_size=path.stat().st_size)
    entry = WeightsEntry("resnet20", tag, {}, 10, in_chans, cfg, record_dir=folder)
    write_record(entry, folder / f"{entry.name}.json", default=default)
    return entry, model


def register(entry: WeightsEntry, names: list[str]) -> WeightsEntry:
    register_weights(entry, replace=True)
    names.append(entry.name)
    return entry


@pytest.fixture(scope="module")
def tv_resnet18(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, torch.nn.Module]:
    """torchvision's resnet18 (random init) saved like a torchvision release:
    ``resnet18-<sha256 prefix>.pth``. Returns (path, full sha256, the torchvision model)."""
    import torchvision

    torch.manual_seed(0)
    tv = torchvision.models.resnet18().eval()
    folder = tmp_path_factory.mktemp("tv")
    raw = folder / "resnet18.pth"
    torch.save(tv.state_dict(), raw)
    digest = hashlib.sha256(raw.read_bytes()).hexdigest()
    path = folder / f"resnet18-{digest[:8]}.pth"
    raw.rename(path)
    return path, digest, tv


def tv_entry(url: str, prefix: str, tag: str = "hubtest_tv") -> WeightsEntry:
    """A torchvision-style entry: URL plus only the published sha256 prefix."""
    cfg = {
        **get_weights("resnet18", "tv_in1k").cfg(),
        "url": url,
        "sha256_prefix": prefix,
        "sha256": None,
    }
    return WeightsEntry("resnet18", tag, {}, 1000, 3, cfg)


def evil_pickle(marker: Path) -> bytes:
    """A pickle that creates ``marker`` when unpickled (as a malicious weights file would run
    code)."""

    class Evil:
        def __reduce__(self) -> tuple[Any, ...]:
            return (open, (str(marker), "w"))

    return pickle.dumps(Evil())


# --------------------------------------------------------------------------------------------
# Registry
# --------------------------------------------------------------------------------------------
def test_registry_has_torchvision_entries_with_published_metadata() -> None:
    assert list_pretrained("resnet50.*") == ["resnet50.tv2_in1k", "resnet50.tv_in1k"]
    assert default_tag("resnet50") == "tv2_in1k"  # torchvision's DEFAULT
    assert default_tag("resnet18") == "tv_in1k"
    entry = get_weights("resnet50")
    cfg = entry.pretrained_cfg
    assert entry.name == "resnet50.tv2_in1k"
    assert set(REQUIRED_CFG_KEYS) <= set(cfg)
    assert cfg["url"].endswith(f"resnet50-{entry.sha256_prefix}.pth")
    assert cfg["metrics"]["top1"] == pytest.approx(80.858)
    assert cfg["metrics"]["top5"] == pytest.approx(95.434)
    assert len(cfg["categories"]) == 1000 and cfg["categories"][0] == "tench"
    assert "torchvision" in cfg["credit"].lower() and "IMAGENET1K_V2" in cfg["origin"]
    assert get_weights("resnet50", "tv_in1k").pretrained_cfg["crop_pct"] == 0.875


@pytest.mark.parametrize("arch", ["resnet18", "resnet50"])
def test_torchvision_entry_params_and_gflops_match_our_counts(arch: str) -> None:
    cfg = get_weights(arch, "tv_in1k").pretrained_cfg
    info = resnet_pl.model_info(arch)
    assert info.params == cfg["num_params"]
    assert info.gflops == pytest.approx(cfg["gflops"], rel=1e-3)


def test_transforms_resize_like_torchvision() -> None:
    """crop_pct 0.965 / 0.875 reproduce torchvision's resize 232 / 256 before the 224 crop."""
    from torchvision.transforms import v2

    for tag, size in (("tv2_in1k", 232), ("tv_in1k", 256)):
        t = resnet_pl.transforms(get_weights("resnet50", tag).pretrained_cfg)
        resize = next(m for m in t.transforms if isinstance(m, v2.Resize))
        assert list(resize.size) == [size]


def test_transforms_pil_and_tensor_agree() -> None:
    from PIL import Image

    img = torch.randint(0, 256, (1, 28, 28), dtype=torch.uint8)
    t = resnet_pl.transforms(small_cfg())
    from_tensor = t(img)
    from_pil = t(Image.fromarray(img[0].numpy(), mode="L"))
    assert from_tensor.shape == (1, 28, 28)
    assert torch.allclose(from_tensor, from_pil)
    assert torch.allclose(from_tensor, (img.float() / 255 - 0.286) / 0.353, atol=1e-6)


def test_unknown_weights_errors_name_the_choices() -> None:
    with pytest.raises(UnknownWeightsError, match=r"resnet50\.tv2_in1k"):
        get_weights("resnet50", "nope")
    with pytest.raises(UnknownWeightsError, match="no pretrained weights are registered"):
        create_model("resnet1202", pretrained=True)


def test_tag_without_pretrained_builds_the_tagged_architecture(
    tmp_path: Path, registered: list[str]
) -> None:
    entry, _ = write_tiny_entry(tmp_path, "hubtest_arch")
    register(entry, registered)
    model = create_model("resnet20.hubtest_arch")  # random weights, the entry's shape
    assert model.in_chans == 1 and model.num_classes == 10


def test_records_load_from_extra_folder_env(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_tiny_entry(tmp_path / "extra", "hubtest_env")
    (tmp_path / "extra" / "resnet20.broken.json").write_text("{not json")
    monkeypatch.setenv("RESNET_PL_EXTRA_WEIGHTS", str(tmp_path / "extra"))
    try:
        with pytest.warns(UserWarning, match="resnet20.broken.json"):
            resnet_pl.hub.reload_registry()
        assert "resnet20.hubtest_env" in list_pretrained("resnet20.*")
    finally:
        monkeypatch.delenv("RESNET_PL_EXTRA_WEIGHTS")
        resnet_pl.hub.reload_registry()
    assert "resnet20.hubtest_env" not in list_pretrained()


def test_shipped_records_are_complete_and_verify() -> None:
    """Every record in resnet_pl/weights reads back, and its file passes verification."""
    from resnet_pl.hub.pretrained import verify_file

    for record in sorted(SHIPPED_DIR.glob("*.json")):
        entry, _ = read_record(record)
        assert set(REQUIRED_CFG_KEYS) <= set(entry.pretrained_cfg), record
        assert entry.shipped_path is not None and entry.shipped_path.is_file(), record
        assert verify_file(entry.shipped_path, entry) == entry.sha256
        assert entry.shipped_path.stat().st_size < 20 * 2**20  # weights only, kept small
        assert (SHIPPED_DIR / f"{entry.name}.md").is_file()
        assert entry.pretrained_cfg["metrics"]["top1"] > 0


# --------------------------------------------------------------------------------------------
# Safe loading
# --------------------------------------------------------------------------------------------
def test_torchvision_style_pth_via_file_url_prefix_then_full_hash(
    tv_resnet18: tuple[Path, str, torch.nn.Module], registered: list[str]
) -> None:
    path, digest, tv = tv_resnet18
    entry = register(tv_entry(path.as_uri(), digest[:8]), registered)
    model = create_model(entry.name, pretrained=True).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(model(x), tv(x))
    cached = cache_path(entry)
    assert cached.is_file() and cached.name == path.name
    # Only a prefix was published: the full digest is recorded for later uses.
    assert json.loads(sidecar_path(cached).read_text())["sha256"] == digest
    assert model.pretrained_cfg["weights"] == entry.name
    assert model.pretrained_cfg["num_classes"] == 1000

    # A cached file changed after download fails the *full* hash, is quarantined, and the
    # next load fetches a good copy again.
    data = bytearray(cached.read_bytes())
    data[-100] ^= 0xFF
    cached.write_bytes(bytes(data))
    with pytest.raises(WeightsVerificationError, match=f"expected {digest}") as err:
        create_model(entry.name, pretrained=True)
    assert "quarantine" in str(err.value)
    assert not cached.exists()
    assert len(list((cached.parent / "quarantine").iterdir())) == 2  # file + sidecar
    create_model(entry.name, pretrained=True)
    assert cached.is_file()


def test_tampered_download_is_refused_and_not_cached(
    tv_resnet18: tuple[Path, str, torch.nn.Module], registered: list[str], tmp_path: Path
) -> None:
    path, digest, _ = tv_resnet18
    tampered = tmp_path / path.name
    state = torch.load(path, weights_only=True)
    state["fc.bias"] = state["fc.bias"] + 1.0  # a backdoored head, same shapes
    torch.save(state, tampered)
    entry = register(tv_entry(tampered.as_uri(), digest[:8]), registered)
    with pytest.raises(WeightsVerificationError, match=r"sha256 mismatch.*discarded"):
        create_model(entry.name, pretrained=True)
    folder = cache_path(entry).parent
    assert not cache_path(entry).exists()
    assert not [p for p in folder.iterdir() if p.is_file()]  # no partial download left


def test_truncated_files_are_refused(tmp_path: Path, registered: list[str]) -> None:
    entry, _ = write_tiny_entry(tmp_path / "w", "hubtest_trunc")
    register(entry, registered)
    shipped = entry.shipped_path
    assert shipped is not None
    full = shipped.read_bytes()
    shipped.write_bytes(full[: len(full) // 2])
    with pytest.raises(WeightsVerificationError, match="truncated") as err:
        create_model(entry.name, pretrained=True)
    assert "reinstall" in str(err.value)
    assert shipped.exists()  # a package file is reported, never deleted

    # The safetensors layout check catches truncation on its own, too.
    with pytest.raises(WeightsVerificationError, match="truncated"):
        check_safetensors(shipped)

    # In the cache, a truncated file is quarantined.
    shipped.unlink()
    cached = cache_path(entry)
    cached.parent.mkdir(parents=True)
    cached.write_bytes(full[:-10])
    with pytest.raises(WeightsVerificationError, match="truncated"):
        create_model(entry.name, pretrained=True)
    assert not cached.exists()


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_pickle_where_safetensors_expected_is_never_unpickled(
    tmp_path: Path, registered: list[str]
) -> None:
    marker = tmp_path / "pwned"
    payload = evil_pickle(marker)
    bad = tmp_path / "resnet20.hubtest_evil.safetensors"
    bad.write_bytes(payload)
    # Even with a matching hash (a compromised record), the format check refuses it.
    cfg = small_cfg(file=bad.name, sha256=hashlib.sha256(payload).hexdigest())
    entry = register(WeightsEntry("resnet20", "hubtest_evil", {}, 10, 1, cfg, tmp_path), registered)
    with pytest.raises(WeightsVerificationError, match=r"pickle.*NOT unpickled"):
        create_model(entry.name, pretrained=True)
    assert not marker.exists()

    # As a .pth (where pickles are expected) torch.load(weights_only=True) refuses it.
    pth = tmp_path / "evil.pth"
    pth.write_bytes(payload)
    cfg_pth = {**cfg, "file": None, "url": pth.as_uri()}
    entry_pth = register(
        WeightsEntry("resnet20", "hubtest_evilpth", {}, 10, 1, cfg_pth), registered
    )
    with pytest.raises(WeightsVerificationError, match="weights_only"):
        create_model(entry_pth.name, pretrained=True)
    assert not marker.exists()

    # The payload is real: a plain unpickle would have run it.
    pickle.loads(payload)  # demonstrating the attack
    assert marker.exists()


def test_offline_without_file_says_where_to_put_it(
    registered: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    entry = register(
        tv_entry("https://example.invalid/resnet18-0123abcd.pth", "0123abcd"), registered
    )
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(WeightsUnavailableError, match=str(cache_path(entry))):
        create_model(entry.name, pretrained=True)


def test_hf_hub_source_is_downloaded_verified_and_cached(
    tmp_path: Path, registered: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import huggingface_hub

    entry, source = write_tiny_entry(tmp_path / "remote", "hubtest_hfsrc")
    remote = entry.shipped_path
    assert remote is not None
    hosted = WeightsEntry(
        entry.arch, entry.tag, {}, 10, 1, {**entry.cfg(), "hf_hub_id": "someone/resnet20-hubtest"}
    )
    register(hosted, registered)
    # A stand-in for the Hugging Face cache: hf_hub_download returns the cached file's path
    # (fetching it first unless local_files_only), and resnet-pl uses that file in place.
    hf_cache = tmp_path / "hf_cache" / remote.name
    fetched: list[tuple[str, str, bool]] = []

    def fake_download(repo_id: str, filename: str, **kwargs: Any) -> str:
        local_only = bool(kwargs.get("local_files_only"))
        fetched.append((repo_id, filename, local_only))
        if not hf_cache.is_file():
            if local_only:
                raise huggingface_hub.errors.LocalEntryNotFoundError("not in the cache")
            hf_cache.parent.mkdir(parents=True, exist_ok=True)
            hf_cache.write_bytes(remote.read_bytes())
        return str(hf_cache)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake_download)
    model = create_model(hosted.name, pretrained=True).eval()
    assert fetched == [("someone/resnet20-hubtest", remote.name, False)]
    assert not cache_path(hosted).exists()  # no second copy outside the Hugging Face cache
    x = torch.randn(1, 1, 28, 28)
    with torch.no_grad():
        assert torch.equal(model(x), source(x))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    create_model(hosted.name, pretrained=True)  # offline: from the HF cache, re-verified
    assert fetched[-1][2] is True

    hf_cache.write_bytes(b"\0" + hf_cache.read_bytes()[1:])  # a damaged cached file ...
    with pytest.raises(WeightsVerificationError, match="deleted from the Hugging Face cache"):
        create_model(hosted.name, pretrained=True)
    assert not hf_cache.exists()  # ... is discarded, never used again
    with pytest.raises(WeightsUnavailableError, match="HF_HUB_OFFLINE"):
        create_model(hosted.name, pretrained=True)


# --------------------------------------------------------------------------------------------
# Adaptation: head and stem
# --------------------------------------------------------------------------------------------
def test_num_classes_change_reinitialises_head_with_warning(
    tmp_path: Path, registered: list[str]
) -> None:
    entry, source = write_tiny_entry(tmp_path, "hubtest_head")
    register(entry, registered)
    with pytest.warns(UserWarning, match=r"10-class classifier.*num_classes=4.*fc\.\*"):
        model = create_model(entry.name, pretrained=True, num_classes=4).eval()
    assert model.fc.out_features == 4
    x = torch.randn(2, 1, 28, 28)
    with torch.no_grad():  # the backbone is loaded exactly
        assert torch.equal(
            model.forward_head(model.forward_features(x), pre_logits=True),
            source.forward_head(source.forward_features(x), pre_logits=True),
        )
    cfg = model.pretrained_cfg
    assert cfg["num_classes"] == 4 and cfg["categories"] is None and cfg["metrics"] == {}
    assert cfg["adapted_from"]["num_classes"] == 10


@pytest.mark.parametrize(("src", "dst"), [(1, 3), (3, 1), (3, 4)])
def test_in_chans_change_adapts_stem_with_warning(
    tmp_path: Path, registered: list[str], src: int, dst: int
) -> None:
    entry, source = write_tiny_entry(tmp_path, f"hubtest_c{src}", in_chans=src)
    register(entry, registered)
    with pytest.warns(UserWarning, match=f"{src}-channel input.*in_chans={dst}"):
        model = create_model(entry.name, pretrained=True, in_chans=dst).eval()
    assert model.conv1.weight.shape[1] == dst
    assert model.pretrained_cfg["input_size"][0] == dst
    assert len(model.pretrained_cfg["mean"]) == dst
    if dst == 1 or src == 1:
        # Sum (to 1) or repeat / C (from 1): a gray image copied to every channel gives the
        # source model's output exactly.
        gray = torch.rand(2, 1, 28, 28)
        with torch.no_grad():
            expected = source(gray.expand(-1, src, -1, -1))
            assert torch.allclose(model(gray.expand(-1, dst, -1, -1)), expected, atol=1e-5)
    else:
        # Otherwise channels are cycled and scaled by src / dst.
        w, w0 = model.conv1.weight.detach(), source.conv1.weight.detach()
        cycled = torch.cat([w0, w0], dim=1)[:, :dst]
        assert torch.allclose(w, cycled * src / dst)


def test_features_only_drops_head_without_warning(tmp_path: Path, registered: list[str]) -> None:
    entry, _ = write_tiny_entry(tmp_path, "hubtest_feat")
    register(entry, registered)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model = create_model(entry.name, pretrained=True, features_only=True)
    shapes = [tuple(f.shape) for f in model(torch.zeros(1, 1, 28, 28))]
    assert shapes == [(1, 16, 28, 28), (1, 32, 14, 14), (1, 64, 7, 7)]


def test_other_structural_options_are_a_clear_mismatch(
    tmp_path: Path, registered: list[str]
) -> None:
    entry, _ = write_tiny_entry(tmp_path, "hubtest_mismatch")
    register(entry, registered)
    with pytest.raises(WeightsMismatchError, match="do not fit"):
        create_model(entry.name, pretrained=True, stem="imagenet")


# --------------------------------------------------------------------------------------------
# Hugging Face-style folders
# --------------------------------------------------------------------------------------------
def test_save_and_from_pretrained_round_trip(tmp_path: Path, registered: list[str]) -> None:
    entry, _ = write_tiny_entry(tmp_path / "w", "hubtest_hf")
    register(entry, registered)
    model = create_model(entry.name, pretrained=True).eval()
    folder = model.save_pretrained(tmp_path / "folder")
    assert sorted(p.name for p in folder.iterdir()) == [
        "README.md",
        "config.json",
        "model.safetensors",
    ]
    config = json.loads((folder / "config.json").read_text())
    assert config["architecture"] == "resnet20" and config["in_chans"] == 1
    assert config["pretrained_cfg"]["categories"] == list(FASHION)
    assert (
        config["sha256"] == hashlib.sha256((folder / "model.safetensors").read_bytes()).hexdigest()
    )

    loaded = resnet_pl.ResNet.from_pretrained(folder).eval()
    x = torch.randn(3, 1, 28, 28)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))
    assert loaded.pretrained_cfg["mean"] == (0.286,)

    with pytest.warns(UserWarning, match="num_classes=4"):
        assert resnet_pl.ResNet.from_pretrained(folder, num_classes=4).fc.out_features == 4

    card = (folder / "README.md").read_text()
    for text in (
        "library_name: resnet-pl",
        "fashion_mnist",
        "Preprocessing",
        "(0.286)",
        "from_pretrained",
        "torch.onnx.export",
        config["sha256"],
        "Ankle boot",
    ):
        assert text in card, text

    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-4] + b"\0\0\0\0")
    with pytest.raises(WeightsVerificationError, match="sha256 mismatch"):
        resnet_pl.ResNet.from_pretrained(folder)


def test_save_pretrained_refuses_a_model_it_cannot_rebuild(tmp_path: Path) -> None:
    model = create_model("resnet20", stem="imagenet")  # options not recorded on the model
    with pytest.raises(ValueError, match="arch_kwargs"):
        model.save_pretrained(tmp_path / "x")
    model.save_pretrained(tmp_path / "x", arch_kwargs={"stem": "imagenet"})
    assert resnet_pl.ResNet.from_pretrained(tmp_path / "x").conv1.kernel_size == (7, 7)


def test_model_card_metadata_parses_back_with_a_model_index(
    tmp_path: Path, registered: list[str]
) -> None:
    """The README.md is a huggingface_hub.ModelCard: its YAML header (library, tags, dataset,
    metrics) and the recorded accuracies as a model-index are what the Hub reads."""
    from huggingface_hub import ModelCard, ModelHubMixin

    from resnet_pl.hub.hf import HubAdapter

    assert issubclass(HubAdapter, ModelHubMixin)
    model = create_model("resnet20.fashion_mnist", pretrained=True)
    folder = model.save_pretrained(tmp_path / "folder")
    card = ModelCard.load(folder / "README.md")
    data = card.data.to_dict()
    assert data["library_name"] == "resnet-pl" and data["pipeline_tag"] == "image-classification"
    assert {"resnet", "image-classification"} <= set(data["tags"])
    assert data["datasets"] == ["fashion_mnist"] and data["license"] == "bsd-3-clause"
    (index,) = data["model-index"]
    metrics = {m["name"]: m["value"] for r in index["results"] for m in r["metrics"]}
    recorded = model.pretrained_cfg["metrics"]
    assert metrics == {"top-1 accuracy": recorded["top1"], "top-5 accuracy": recorded["top5"]}
    assert index["results"][0]["dataset"] == {
        "name": "fashion_mnist",
        "type": "fashion_mnist",
        "split": "test",
    }
    assert "## Preprocessing" in card.text and "from_pretrained" in card.text
    # A model without metrics still gets a valid card (no model-index to claim).
    bare = create_model("resnet20", in_chans=1).save_pretrained(tmp_path / "bare")
    assert "model-index" not in ModelCard.load(bare / "README.md").data.to_dict()
    # The shipped entry's card (written by `resnet-pl hub publish`) carries the same header.
    shipped = ModelCard.load(SHIPPED_DIR / "resnet20.fashion_mnist.md").data.to_dict()
    assert shipped["model-index"][0]["name"] == "resnet20.fashion_mnist"
    assert "model_hub_mixin" not in shipped["tags"]


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        ({"num_classes": 1_000_000_000}, r"num_classes is 1000000000, more than the limit"),
        ({"num_classes": 1000}, r"num_classes=1000.*fc\.weight: config implies"),
        ({"in_chans": 3}, r"in_chans=3.*conv1\.weight"),
        ({"arch_kwargs": {"widths": [32, 64, 128]}}, "disagrees with model.safetensors"),
    ],
)
def test_config_that_disagrees_with_the_weights_is_refused_before_allocating(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, edit: dict[str, Any], match: str
) -> None:
    """A config.json edited to describe another network (``num_classes: 1000000000`` used to
    end in the allocator's "can't allocate 256000000000 bytes") is refused by comparing with the
    safetensors header: no builder runs outside the meta device, no tensor is read."""
    from resnet_pl.errors import ResNetPLError
    from resnet_pl.hub import hf
    from resnet_pl.hub.weights import WeightsMismatchError

    folder = create_model("resnet20", in_chans=1).save_pretrained(tmp_path / "f")
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, **edit}))

    def no_reading(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("weights were read before the config was checked")

    monkeypatch.setattr(hf, "read_state_dict", no_reading)
    with pytest.raises(WeightsMismatchError, match=match) as err:
        resnet_pl.ResNet.from_pretrained(folder)
    assert isinstance(err.value, ResNetPLError) and "save_pretrained" in str(err.value)


def test_push_to_hub_uploads_the_saved_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import huggingface_hub

    calls: dict[str, Any] = {}

    def create_repo(self: Any, repo_id: str, **kwargs: Any) -> Any:
        calls["repo"] = repo_id
        return type("RepoUrl", (), {"repo_id": repo_id})()  # what HfApi.create_repo returns

    def upload_folder(self: Any, *, repo_id: str, folder_path: str, **kwargs: Any) -> Any:
        calls["files"] = sorted(os.listdir(folder_path))
        calls["config"] = json.loads(Path(folder_path, "config.json").read_text())
        return type("Info", (), {"commit_url": "https://hf.co/commit/1"})()

    monkeypatch.setattr(huggingface_hub.HfApi, "create_repo", create_repo)
    monkeypatch.setattr(huggingface_hub.HfApi, "upload_folder", upload_folder)
    model = create_model("resnet20", in_chans=1)
    assert model.push_to_hub("someone/resnet20-test") == "https://hf.co/commit/1"
    assert calls["repo"] == "someone/resnet20-test"
    assert calls["files"] == ["README.md", "config.json", "model.safetensors"]
    assert calls["config"]["pretrained_cfg"]["hf_hub_id"] == "someone/resnet20-test"


# --------------------------------------------------------------------------------------------
# Checkpoint -> folder / shipped entry, and the CLI
# --------------------------------------------------------------------------------------------
@pytest.fixture
def fake_checkpoint(tmp_path: Path) -> Path:
    """A checkpoint following the resnet-pl contract (random-init ResNet-20, 1 channel), with a
    run folder holding metrics.csv and config.yaml like LightningCLI writes."""
    torch.manual_seed(1)
    model = create_model("resnet20", num_classes=10, in_chans=1)
    run = tmp_path / "run" / "version_0"
    (run / "checkpoints").mkdir(parents=True)
    (run / "metrics.csv").write_text("epoch,step,val_acc\n0,9,0.1\n1,19,0.2\n")
    (run / "config.yaml").write_text("model:\n  arch: resnet20\n")
    # Another run with the same name (version_1), whose files must not be picked up.
    (tmp_path / "run" / "version_1").mkdir()
    (tmp_path / "run" / "version_1" / "metrics.csv").write_text("epoch,step,val_acc\n0,9,0.9\n")
    ckpt = {
        "epoch": 1,
        "global_step": 20,
        "state_dict": {f"model.{k}": v for k, v in model.state_dict().items()},
        "optimizer_states": [{"state": {}, "param_groups": []}],
        "hyper_parameters": {
            "arch": "resnet20",
            "num_classes": 10,
            "in_chans": 1,
            "model_kwargs": None,
            "class_names": list(FASHION),
            "mean": [0.286],
            "std": [0.353],
            "input_size": [1, 28, 28],
            "dataset": "fashion_mnist",
            "lr": 0.1,
        },
    }
    path = run / "checkpoints" / "last.ckpt"
    torch.save(ckpt, path)
    return path


def test_publish_measures_and_writes_a_shipped_entry(
    fake_checkpoint: Path, tmp_path: Path, registered: list[str], fashion_mnist_dir: Path
) -> None:
    out = tmp_path / "weights"
    code = hub_main(
        [
            "publish",
            str(fake_checkpoint),
            "--tag",
            "hubtest_pub",
            "--out_dir",
            str(out),
            "--limit",
            "300",
            "--not_default",
            "--recipe",
            "resnet-pl fit x",
        ]
    )
    registered.append("resnet20.hubtest_pub")
    assert code == 0
    name = "resnet20.hubtest_pub"
    files = sorted(p.name for p in out.iterdir())
    assert files == [f"{name}.{ext}" for ext in ("json", "md", "metrics.csv", "safetensors")]
    entry, default = read_record(out / f"{name}.json")
    cfg = entry.pretrained_cfg
    assert not default
    assert cfg["metrics"]["n"] == 300 and 0 <= cfg["metrics"]["top1"] <= 100
    assert cfg["recipe"]["command"] == "resnet-pl fit x"
    assert cfg["recipe"]["config"] == {"model": {"arch": "resnet20"}}
    assert cfg["recipe"]["epoch"] == 1 and cfg["recipe"]["global_step"] == 20
    assert cfg["training"] == {"epochs_logged": 2, "best_val_top1": 20.0}
    assert cfg["categories"] == list(FASHION) and cfg["stem"] == "small"
    assert cfg["num_params"] == 269_434 and cfg["sha256"] == entry.sha256
    # Network weights only, fp32: no optimizer state went in.
    from safetensors import safe_open

    with safe_open(str(out / f"{name}.safetensors"), "pt") as f:
        keys = list(f.keys())
        assert all(not k.startswith(("model.", "optimizer")) for k in keys)
        assert f.get_tensor("conv1.weight").dtype == torch.float32

    # The CLI re-measures the same 300 images and agrees; a doctored record fails.
    assert hub_main(["verify", name, "--limit", "300"]) == 0
    record = json.loads((out / f"{name}.json").read_text())
    record["pretrained_cfg"]["metrics"]["top1"] += 5.0
    (out / f"{name}.json").write_text(json.dumps(record))
    register_weights(read_record(out / f"{name}.json")[0], replace=True)
    assert hub_main(["verify", name, "--limit", "300"]) == 1


def test_export_checkpoint_writes_a_loadable_folder(
    fake_checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "folder"
    assert hub_main(["export-checkpoint", str(fake_checkpoint), str(out), "--no_measure"]) == 0
    assert "model.safetensors" in capsys.readouterr().out
    model = resnet_pl.ResNet.from_pretrained(out)
    ckpt = torch.load(fake_checkpoint, weights_only=True)
    assert torch.equal(model.state_dict()["conv1.weight"], ckpt["state_dict"]["model.conv1.weight"])
    assert "Ankle boot" in (out / "README.md").read_text()


def test_cli_list_info_and_errors(capsys: pytest.CaptureFixture[str]) -> None:
    assert hub_main(["list", "resnet50.*"]) == 0
    out = capsys.readouterr().out
    assert "resnet50.tv2_in1k" in out and "80.86" in out
    assert hub_main(["info", "resnet50.tv_in1k"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["metrics"]["top1"] == pytest.approx(76.13)
    assert info["sha256"].startswith("0676ba61")
    assert hub_main(["info", "resnet50.nope"]) == 2
    assert "tv2_in1k" in capsys.readouterr().err
    assert hub_main(["verify", "--help"]) == 0
    assert "tolerance" in capsys.readouterr().out


def test_cli_verify_imagenet_entry_without_data_checks_hash_only(
    tv_resnet18: tuple[Path, str, torch.nn.Module],
    registered: list[str],
    capsys: pytest.CaptureFixture[str],
) -> None:
    path, digest, _ = tv_resnet18
    entry = register(tv_entry(path.as_uri(), digest[:8], tag="hubtest_verify"), registered)
    assert hub_main(["verify", entry.name]) == 1  # not downloaded, and no --download
    assert hub_main(["verify", entry.name, "--download"]) == 0
    out = capsys.readouterr().out
    assert "ok   hash" in out and "--data_dir" in out


def test_measure_folder_reads_an_imagenet_style_folder(tmp_path: Path) -> None:
    """The ImageNet verification path on a tiny class-per-folder set: labels follow the sorted
    folder names and accuracy matches a direct computation."""
    from PIL import Image

    from resnet_pl.hub.evaluate import measure_folder

    torch.manual_seed(0)
    model = create_model("resnet20", num_classes=3, in_chans=3).eval()
    cfg = {"input_size": (3, 32, 32), "mean": (0.5,) * 3, "std": (0.25,) * 3, "num_classes": 3}
    images, labels = [], []
    for label, name in enumerate(["n01", "n02", "n03"]):
        (tmp_path / name).mkdir()
        for i in range(2):
            arr = torch.randint(0, 256, (40, 48, 3), dtype=torch.uint8).numpy()
            Image.fromarray(arr).save(tmp_path / name / f"{i}.png")
            images.append(resnet_pl.transforms(cfg)(Image.fromarray(arr)))
            labels.append(label)
    got = measure_folder(model, cfg, tmp_path)
    with torch.no_grad():
        pred = model(torch.stack(images)).argmax(1)
    expected = 100.0 * (pred == torch.tensor(labels)).float().mean().item()
    assert got["n"] == 6 and got["top1"] == pytest.approx(expected, abs=1e-3)


# --------------------------------------------------------------------------------------------
# hubconf and torch.hub
# --------------------------------------------------------------------------------------------
def _import_hubconf() -> ModuleType:
    spec = importlib.util.spec_from_file_location("hubconf_under_test", REPO / "hubconf.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_hubconf_lists_every_architecture_with_help() -> None:
    """The local equivalent of torch.hub.list/help (which only read GitHub repos)."""
    hub = _import_hubconf()
    assert hub.dependencies[:3] == ["torch", "torchvision", "safetensors"]
    public = sorted(n for n in dir(hub) if callable(getattr(hub, n)) and not n.startswith("_"))
    assert public == list_models()
    for name in public:
        doc = getattr(hub, name).__doc__
        assert "trust_repo=True" in doc and "Weights:" in doc and "transforms" in doc, name
    assert "80.86%" in hub.resnet50.__doc__ and "crop_pct 0.965" in hub.resnet50.__doc__
    with pytest.raises(ValueError, match="weights must be a tag"):
        hub.resnet20(weights="a.b")


_HUB_SCRIPT = """
import json, sys, torch
model = torch.hub.load(sys.argv[1], "resnet20", source="local", pretrained=True)
tagged = torch.hub.load(sys.argv[1], "resnet20", source="local", weights=sys.argv[2])
torch.manual_seed(0)
x = torch.rand(2, 1, 28, 28)
heavy = [m for m in ("lightning", "onnx", "onnxruntime", "huggingface_hub") if m in sys.modules]
print(json.dumps({"default": model.pretrained_cfg["weights"], "tagged": tagged.eval()(x).tolist(),
                  "heavy": heavy}))
"""


def test_torch_hub_load_local_offline_in_fresh_process(tmp_path: Path) -> None:
    extra = tmp_path / "extra"
    entry, source = write_tiny_entry(extra, "hubtest_sub")
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "RESNET_PL_OFFLINE": "1",
        "RESNET_PL_EXTRA_WEIGHTS": str(extra),
        "RESNET_PL_CACHE": str(tmp_path / "cache"),
        "OMP_NUM_THREADS": "1",
    }
    result = subprocess.run(
        [sys.executable, "-c", _HUB_SCRIPT, str(REPO), entry.tag],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])
    shipped = (SHIPPED_DIR / "resnet20.fashion_mnist.json").is_file()
    assert out["default"] == ("resnet20.fashion_mnist" if shipped else "resnet20.hubtest_sub")
    torch.manual_seed(0)
    x = torch.rand(2, 1, 28, 28)
    with torch.no_grad():
        assert torch.allclose(torch.tensor(out["tagged"]), source(x), atol=1e-5)
    assert out["heavy"] == []


# --------------------------------------------------------------------------------------------
# The real, shipped Fashion-MNIST weights
# --------------------------------------------------------------------------------------------
SHIPPED_FMNIST = sorted(SHIPPED_DIR.glob("*.fashion_mnist.json"))


def test_resnet20_fashion_mnist_stays_shipped() -> None:
    """The first shipped weights stay (their record must stay valid when newer ones ship)."""
    assert SHIPPED_DIR / "resnet20.fashion_mnist.json" in SHIPPED_FMNIST


@pytest.mark.parametrize("record", SHIPPED_FMNIST, ids=lambda p: p.name.removesuffix(".json"))
def test_shipped_fashion_mnist_weights_reach_recorded_accuracy(
    record: Path, fashion_mnist_test: tuple[torch.Tensor, torch.Tensor]
) -> None:
    """The first 2000 real test images, the record's own preprocessing (and TTA views): the
    recorded accuracy is reproduced (same images, so within 0.1 percentage points), and each
    entry is its architecture's default."""
    from resnet_pl.hub.evaluate import measure_small

    arch = record.name.split(".")[0]
    entry = get_weights(arch, "fashion_mnist")
    assert entry.record_dir == SHIPPED_DIR and default_tag(arch) == "fashion_mnist"
    model = create_model(arch, pretrained=True)
    assert model.pretrained_cfg["weights"] == f"{arch}.fashion_mnist"
    metrics = entry.pretrained_cfg["metrics"]
    got = measure_small(model, entry.pretrained_cfg, "fashion_mnist", limit=2000)
    assert got["top1"] == pytest.approx(metrics["first_2000"]["top1"], abs=0.1)
    assert got["top5"] == pytest.approx(metrics["first_2000"]["top5"], abs=0.1)
    assert metrics["n"] == 10_000 and metrics["top1"] > 85.0  # properly trained, all 10,000


def test_hub_cli_help_and_old_spellings(capsys: pytest.CaptureFixture[str]) -> None:
    assert hub_main(["--help"]) == 0
    out = capsys.readouterr().out
    for command in ("list", "info", "verify", "export-checkpoint", "publish"):
        assert command in out
    assert hub_main(["verify", "--help"]) == 0
    assert "--data_dir" in capsys.readouterr().out
    # The dashed spelling of earlier releases still parses, with a deprecation notice.
    assert hub_main(["info", "resnet20.fashion_mnist", "--all-categories"]) == 0
    captured = capsys.readouterr()
    assert "Ankle boot" in captured.out
    assert "--all-categories is deprecated, use --all_categories" in captured.err
    assert hub_main(["info", "resnet20.fashion_mnist", "--nope"]) == 2
    assert "resnet-pl hub --help" in capsys.readouterr().err


def test_publish_and_verify_record_the_plain_forward_beside_tta(
    fake_checkpoint: Path,
    tmp_path: Path,
    registered: list[str],
    fashion_mnist_dir: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Weights evaluated with test-time augmentation also record what ``create_model`` users
    get (a plain forward); ``hub verify`` re-measures both and fails on either."""
    ckpt = torch.load(fake_checkpoint, weights_only=True)
    ckpt["hyper_parameters"]["tta"] = "flip"
    torch.save(ckpt, fake_checkpoint)
    out = tmp_path / "weights"
    args = ["publish", str(fake_checkpoint), "--tag", "hubtest_tta", "--out_dir", str(out),
            "--limit", "300", "--not_default", "--recipe", "x"]  # fmt: skip
    assert hub_main(args) == 0
    name = "resnet20.hubtest_tta"
    registered.append(name)
    metrics = read_record(out / f"{name}.json")[0].pretrained_cfg["metrics"]
    plain = metrics["plain_forward"]
    assert metrics["tta"] == "flip" and plain["n"] == 300 and 0 <= plain["top1"] <= 100
    model = create_model(name, pretrained=True).eval()
    from resnet_pl.hub.evaluate import measure_small

    cfg = {**read_record(out / f"{name}.json")[0].pretrained_cfg, "tta": None}
    assert measure_small(model, cfg, "fashion_mnist", limit=300)["top1"] == plain["top1"]
    card = (out / f"{name}.md").read_text()
    assert "| plain |" in card and "| with flip TTA |" in card

    capsys.readouterr()
    assert hub_main(["verify", name, "--limit", "300"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[1].startswith("ok   accuracy: ")
    assert lines[2].startswith("ok   accuracy (plain forward, no TTA): ")
    record = json.loads((out / f"{name}.json").read_text())
    record["pretrained_cfg"]["metrics"]["plain_forward"]["top1"] += 5.0
    (out / f"{name}.json").write_text(json.dumps(record))
    register_weights(read_record(out / f"{name}.json")[0], replace=True)
    assert hub_main(["verify", name, "--limit", "300"]) == 1
    assert "FAIL accuracy (plain forward, no TTA)" in capsys.readouterr().err


def test_measure_records_the_plain_forward_of_a_folder_model(tmp_path: Path) -> None:
    """A fine-tuned folder model with TTA: its record gets the plain forward too."""
    import numpy as np
    from PIL import Image

    from resnet_pl.hub.publish import measure

    rng = np.random.default_rng(0)
    for name in ("cat", "dog"):
        (tmp_path / "test" / name).mkdir(parents=True)
        for i in range(3):
            pixels = rng.integers(0, 256, (30, 26), dtype=np.uint8)
            Image.fromarray(pixels).save(tmp_path / "test" / name / f"{i}.png")
    torch.manual_seed(0)
    model = create_model("resnet20", num_classes=2, in_chans=1).eval()
    cfg = {"dataset": "imagefolder", "input_size": [1, 28, 28], "mean": [0.5], "std": [0.25],
           "interpolation": "bilinear", "crop_pct": 1.0, "num_classes": 2,
           "tta": "flip"}  # fmt: skip
    got = measure(model, cfg, data_dir=tmp_path)
    assert got["split"] == "test" and got["n"] == 6 and got["tta"] == "flip"
    assert got["plain_forward"]["n"] == 6 and 0 <= got["plain_forward"]["top1"] <= 100
    assert "plain_forward" not in measure(model, {**cfg, "tta": None}, data_dir=tmp_path)
