"""One run, one folder: ``<root>/<run_name>/version_N/`` holds a run's logs and checkpoints;
``--trainer.default_root_dir`` picks the root; ``--ckpt_path last`` resumes the newest run and
keeps logging into its folder; runs sharing a name never share checkpoint files."""

from __future__ import annotations

import csv
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from resnet_pl.cli import cli_main
from resnet_pl.lightning import runs

REPO = Path(__file__).resolve().parent.parent
FIT = [
    "fit",
    "--data.dataset", "fake",
    "--data.fake_size", "64",
    "--data.batch_size", "16",
    "--model.model_kwargs", '{"widths": [4, 8, 8]}',
    "--trainer.max_epochs", "1",
    "--trainer.enable_progress_bar", "false",
    "--trainer.enable_model_summary", "false",
    "--checkpoint_every_n_steps", "2",
]  # fmt: skip
STEPS_PER_EPOCH = 3  # 64 images, 10% held out, batches of 16, last partial batch dropped


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_reserve_version_is_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A process that saw a stale listing (another run took version_0 and version_1 since)
    does not reuse their folders: mkdir fails and it moves on."""
    (tmp_path / "version_0").mkdir()
    (tmp_path / "version_1").mkdir()
    monkeypatch.setattr(runs, "versions", lambda _run_dir: [])
    monkeypatch.delenv(runs.VERSION_ENV, raising=False)
    assert runs.reserve_version(tmp_path) == tmp_path / "version_2"
    assert os.environ[runs.VERSION_ENV] == str(tmp_path / "version_2")


def test_default_root_dir_holds_logs_and_checkpoints(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """--trainer.default_root_dir DIR: logs, config and checkpoints all go to
    DIR/<run_name>/version_0 (nothing to ./runs); --ckpt_path last then resumes that run,
    says which file it chose, and continues its metrics.csv in the same folder."""
    monkeypatch.chdir(tmp_path)
    root = tmp_path / "elsewhere"
    args = [*FIT, "--trainer.default_root_dir", str(root), "--run_name", "r"]
    first = cli_main(args)
    run = root / "r" / "version_0"
    assert Path(first.trainer.checkpoint_callback.dirpath) == run / "checkpoints"
    assert {"last.ckpt", "last_step.ckpt"} <= {p.name for p in (run / "checkpoints").iterdir()}
    assert (run / "metrics.csv").is_file() and (run / "config.yaml").is_file()
    assert not (tmp_path / "runs").exists()

    capsys.readouterr()
    resumed = cli_main([*args, "--trainer.max_epochs", "2", "--ckpt_path", "last"])
    err = capsys.readouterr().err
    assert f"resuming {run / 'checkpoints'}" in err
    assert resumed.trainer.global_step == 2 * STEPS_PER_EPOCH
    assert sorted(p.name for p in (root / "r").iterdir()) == ["version_0"]  # the same run
    epochs = {r["epoch"] for r in _rows(run / "metrics.csv") if r.get("val_acc")}
    assert epochs == {"0", "1"}  # the first run's rows kept, the resumed run's added
    assert torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["epoch"] == 1


def _env() -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    env.pop(runs.VERSION_ENV, None)
    env.pop(runs.CKPT_ENV, None)
    return env


START_STATE = """
import lightning as L


class StartState(L.Callback):
    \"\"\"The weights and step a (resumed) run starts training from.\"\"\"

    def on_train_start(self, trainer, pl_module):
        self.step = trainer.global_step
        self.state = {k: v.clone() for k, v in pl_module.state_dict().items()}
"""


@pytest.mark.timeout(600)
def test_two_runs_one_name_side_by_side_each_resume_their_own(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two `resnet-pl fit` processes with one run name, started together (different learning
    rates and seeds), get a version folder each with only their own checkpoints; resuming a
    run's own last.ckpt continues that run (its weights, its folder), and --ckpt_path last
    picks the newest run and says so."""
    common = [*FIT, "--run_root", str(tmp_path), "--run_name", "same"]
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "resnet_pl.cli",
                *common,
                "--model.optim.lr",
                lr,
                "--seed_everything",
                seed,
            ],
            cwd=REPO,
            env=_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for lr, seed in (("0.05", "1"), ("0.02", "2"))
    ]
    for p in procs:
        _, err = p.communicate(timeout=600)
        assert p.returncode == 0, err[-3000:]
    folders = sorted((tmp_path / "same").iterdir())
    assert [f.name for f in folders] == ["version_0", "version_1"]
    assert not (tmp_path / "same" / "checkpoints").exists()
    lrs = set()
    for folder in folders:
        config = yaml.safe_load((folder / "config.yaml").read_text())
        lr = config["model"]["lr"]
        lrs.add(lr)
        names = {p.name for p in (folder / "checkpoints").iterdir()}
        assert {"last.ckpt", "last_step.ckpt"} <= names
        assert sum(n.startswith("best-") for n in names) == 1  # one run's top-1, not two
        assert not [n for n in names if re.search(r"-v\d+\.ckpt$", n)]  # no last-v1.ckpt
        for ckpt in (folder / "checkpoints").glob("*.ckpt"):  # every file is this run's
            assert torch.load(ckpt, weights_only=True)["hyper_parameters"]["optim"]["lr"] == lr
    assert lrs == {0.05, 0.02}

    helpers = tmp_path / "helpers"
    helpers.mkdir()
    (helpers / "start_state.py").write_text(START_STATE)
    monkeypatch.syspath_prepend(str(helpers))
    config = tmp_path / "capture.yaml"
    config.write_text("trainer:\n  callbacks:\n    - class_path: start_state.StartState\n")
    for folder in folders:  # each resumes its own state, in its own folder
        lr = str(yaml.safe_load((folder / "config.yaml").read_text())["model"]["lr"])
        last = folder / "checkpoints" / "last.ckpt"
        saved = torch.load(last, weights_only=True)
        cli = cli_main(
            [*common, "--config", str(config), "--model.optim.lr", lr, "--trainer.max_epochs", "2",
             "--ckpt_path", str(last)]
        )  # fmt: skip
        start = next(c for c in cli.trainer.callbacks if type(c).__name__ == "StartState")
        assert start.step == saved["global_step"] == STEPS_PER_EPOCH
        for key, value in saved["state_dict"].items():
            assert torch.equal(start.state[key], value), key
        assert Path(cli.trainer.checkpoint_callback.dirpath) == folder / "checkpoints"
        assert torch.load(last, weights_only=True)["global_step"] == 2 * STEPS_PER_EPOCH
    assert len(list((tmp_path / "same").iterdir())) == 2  # no third folder appeared

    capsys.readouterr()
    cli = cli_main([*common, "--trainer.max_epochs", "3", "--ckpt_path", "last"])
    newest = folders[1] / "checkpoints"
    assert f"resuming {newest}" in capsys.readouterr().err
    assert Path(cli.trainer.checkpoint_callback.dirpath) == newest
    assert cli.trainer.global_step == 3 * STEPS_PER_EPOCH


def test_publish_sees_only_its_own_run(tmp_path: Path) -> None:
    """hub's run-file lookup takes config.yaml / metrics.csv from the checkpoint's own version
    folder, never from a newer run with the same name."""
    from resnet_pl.hub.checkpoint import find_run_file

    for v in (0, 1):
        (tmp_path / "x" / f"version_{v}" / "checkpoints").mkdir(parents=True)
        (tmp_path / "x" / f"version_{v}" / "metrics.csv").write_text(f"run {v}\n")
    ckpt: Any = tmp_path / "x" / "version_0" / "checkpoints" / "last.ckpt"
    assert find_run_file(ckpt, "metrics.csv") == tmp_path / "x" / "version_0" / "metrics.csv"
    assert find_run_file(ckpt, "config.yaml") is None
