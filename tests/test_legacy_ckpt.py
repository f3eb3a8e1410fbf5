"""Checkpoints written by resnet-pl before the hyperparameters were grouped (main at 0eb64dd,
flat ``lr``, ``ema_decay``, ``mean``... hyperparameters) still load and predict identically.

The files in tests/data/legacy_ckpt/ were made by that code (``make_legacy.py`` there): four
LightningCLI runs from the committed configs (the fast recipe, ResNet-20 with mixup and a
backbone learning-rate scale, the distillation config with a feature loss, the image-folder
config) and one checkpoint written from Python. ``predictions.pt`` holds what that code
predicted for a fixed input.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from resnet_pl.lightning import DistillationClassifier, ResNetClassifier

HERE = Path(__file__).parent / "data" / "legacy_ckpt"
NAMES = ("fast", "resnet20", "kd", "imagefolder", "python")


@pytest.fixture(scope="module")
def recorded() -> dict[str, dict[str, torch.Tensor]]:
    return torch.load(HERE / "predictions.pt", weights_only=True)


@pytest.mark.parametrize("name", NAMES)
def test_legacy_checkpoint_predicts_identically(name: str, recorded: dict) -> None:
    """``load_from_checkpoint`` (weights_only) rebuilds the module; ``model(x)`` and
    ``predict_step`` (with the checkpoint's TTA) give exactly the recorded outputs."""
    cls = DistillationClassifier if name == "kd" else ResNetClassifier
    path = HERE / f"{name}.ckpt"
    assert path.stat().st_size < 1_000_000
    model = cls.load_from_checkpoint(path, map_location="cpu").eval()
    rec = recorded[name]
    with torch.no_grad():
        logits = model(rec["x"])
        probs = model.predict_step(rec["x"], 0)["probs"]
    torch.testing.assert_close(logits, rec["logits"], rtol=0, atol=0)
    torch.testing.assert_close(probs, rec["probs"], rtol=0, atol=0)


@pytest.mark.parametrize("name", NAMES)
def test_legacy_checkpoint_through_the_reader(name: str, recorded: dict) -> None:
    """The checkpoint reader used by deploy, hub publish and distillation teachers rebuilds the
    same network and finds the preprocessing the run recorded."""
    from resnet_pl.deploy.source import load_checkpoint

    loaded = load_checkpoint(HERE / f"{name}.ckpt")
    rec = recorded[name]
    with torch.no_grad():
        logits = loaded.model(rec["x"])
    torch.testing.assert_close(logits, rec["logits"], rtol=1e-5, atol=1e-5)
    assert list(loaded.cfg["input_size"]) == list(rec["x"].shape[1:])
    assert loaded.cfg["mean"] and loaded.cfg["std"] and loaded.cfg["dataset"]
