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


# ---- the groups themselves ---------------------------------------------------------------------
def test_groups_are_plain_values_and_one_field_each() -> None:
    """Every group is stored as a plain dict (weights_only-safe), no field name is in two
    groups (so an old flat name has one home), and the top level stays Lightning-sized."""
    import dataclasses
    import inspect

    from resnet_pl.lightning.hparams import ALL_GROUPS, legacy_names

    seen: dict[str, str] = {}
    for group, cls in ALL_GROUPS.items():
        for f in dataclasses.fields(cls):
            assert f.name not in seen, f"{f.name} in {seen.get(f.name)} and {group}"
            seen[f.name] = group
    assert legacy_names(ALL_GROUPS)["lr"] == "optim"
    params = [p for p in inspect.signature(ResNetClassifier.__init__).parameters if p != "self"]
    top = {*params, *inspect.signature(DistillationClassifier.__init__).parameters}
    assert not top & seen.keys(), "a field named like a top-level argument would be moved"
    # 13 of issue 20's grouping, plus the fine-tuning start weights (``weights`` and the
    # ``weights_sha256`` it records, issue 21).
    assert len([p for p in params if p != "legacy"]) <= 15
    model = ResNetClassifier("resnet8", model_kwargs={"widths": [4, 8, 16]}, optim={"lr": 0.3})
    for group in ALL_GROUPS.keys() - {"distill"}:
        assert type(model.hparams[group]) is dict
    assert model.hparams["optim"]["lr"] == 0.3 and model.hparams["optim"]["momentum"] == 0.9
    assert model.group("optim").lr == 0.3


def test_flat_python_kwargs_warn_and_land_in_their_group() -> None:
    with pytest.warns(FutureWarning, match=r"lr -> optim\.lr.*tta -> evaluation\.tta"):
        model = ResNetClassifier("resnet8", model_kwargs={"widths": [4, 8, 16]}, lr=0.3, tta="flip")
    assert model.hparams["optim"]["lr"] == 0.3 and model.hparams["evaluation"]["tta"] == "flip"
    assert "lr" not in model.hparams and "tta" not in model.hparams


def test_bad_group_options_are_one_line_errors() -> None:
    from resnet_pl.lightning import ConfigError

    with pytest.raises(
        ConfigError, match=r"unknown optim option\(s\): lrr \(did you mean optim\.lr"
    ):
        ResNetClassifier("resnet8", optim={"lrr": 0.1})
    with pytest.raises(ConfigError, match="unknown argument"):
        ResNetClassifier("resnet8", not_an_option=1)
    with pytest.raises(ConfigError, match="lr must be a positive number"):
        ResNetClassifier("resnet8", optim={"lr": 0})


def test_new_checkpoint_round_trip(tmp_path: Path, recorded: dict) -> None:
    """A legacy checkpoint re-saved by today's code holds groups, loads with weights_only and
    predicts the same; the checkpoint reader flattens it for deploy/hub."""
    import lightning as L

    from resnet_pl.hub.checkpoint import read_checkpoint

    model = ResNetClassifier.load_from_checkpoint(HERE / "python.ckpt", map_location="cpu")
    trainer = L.Trainer(logger=False, enable_checkpointing=False, enable_progress_bar=False)
    trainer.strategy.connect(model)
    path = tmp_path / "new.ckpt"
    trainer.save_checkpoint(path)
    hp = torch.load(path, weights_only=True)["hyper_parameters"]
    assert hp["optim"]["optimizer"] == "adamw" and "lr" not in hp
    assert hp["evaluation"]["tta"] == "shift" and hp["data_info"]["dataset"] == "fake"
    again = ResNetClassifier.load_from_checkpoint(path).eval()
    with torch.no_grad():
        out = again.predict_step(recorded["python"]["x"], 0)["probs"]
    torch.testing.assert_close(out, recorded["python"]["probs"], rtol=0, atol=0)
    flat = read_checkpoint(path).hparams
    assert flat["tta"] == "shift" and flat["mean"] == [0.5, 0.5, 0.5]


# ---- the command line ----------------------------------------------------------------------------
def test_old_flags_and_old_yaml_get_one_line_each(tmp_path: Path, capsys) -> None:
    """``--model.lr`` and a YAML config with flat model options still parse, each with one
    deprecation line naming the new spelling; a legacy ``--ckpt_path`` parses too."""
    from resnet_pl.cli import cli_main

    # configs/fashion_mnist_fast.yaml as committed before the grouping (flat model options).
    config = HERE / "fashion_mnist_fast.yaml"
    cli = cli_main(
        ["--config", str(config), "--model.lr", "0.3", "--data.dataset", "fake",
         "--run_root", str(tmp_path)],
        run=False,
    )  # fmt: skip
    err = capsys.readouterr().err
    assert "--model.lr is deprecated; use --model.optim.lr" in err
    assert "flat model options are deprecated" in err and "ema_decay -> evaluation.ema_decay" in err
    hp = cli.model.hparams
    assert hp["optim"]["lr"] == 0.3 and hp["evaluation"]["ema_decay"] == 0.99
    assert hp["evaluation"]["tta"] == "flip" and hp["recipe"]["label_smoothing"] == 0.1


@pytest.mark.slow
def test_cli_validates_a_legacy_distillation_checkpoint(
    tmp_path: Path, fashion_mnist_dir: Path
) -> None:
    """``resnet-pl validate --ckpt_path`` on a KD checkpoint of before: its flat hparams are
    parsed into groups, the DistillationClassifier is rebuilt (teacher sha256-checked) and
    evaluates the recorded weights."""
    from resnet_pl.cli import cli_main

    cli = cli_main(
        ["validate", "--ckpt_path", str(HERE / "kd.ckpt"),
         "--data.data_dir", str(fashion_mnist_dir), "--data.val_subset", "64",
         "--trainer.limit_val_batches", "1",
         "--trainer.enable_progress_bar", "false", "--run_root", str(tmp_path)],
    )  # fmt: skip
    hp = cli.model.hparams
    assert type(cli.model).__name__ == "DistillationClassifier"
    assert hp["distill"]["feature_weight"] == 0.5 and hp["optim"]["lr"] == 0.2
    assert "val_acc" in cli.trainer.callback_metrics
