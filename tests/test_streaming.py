"""LitData shards (issue 24): optimise a real image folder, stream it back, at scale.

Real Fashion-MNIST images are written as a PNG class folder (with one corrupt file), optimised
into shards in a temporary folder (2 worker processes), and checked against the folder path:
the stored bytes are the files' bytes, evaluation inputs are identical, a 2-process gloo DDP run
draws every training sample once per epoch and reports all-rank validation metrics, a run killed
mid-epoch resumes bit-identical, and bad input is one line. Nothing uses the network.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch
from PIL import Image

pytest.importorskip("litdata")

from resnet_pl.cli import cli_main, main
from resnet_pl.data.shards import (
    MANIFEST,
    ShardsError,
    optimize_dataset,
    read_manifest,
)
from resnet_pl.lightning import ImageDataModule, ResNetClassifier
from resnet_pl.lightning.streaming import StreamingDataModule
from tests.test_reliability import (
    FIT_ARGS,
    KILLER,
    STEPS,
    _assert_same_training_state,
    _env,
    _state,
)

REPO = Path(__file__).resolve().parents[1]
N_TRAIN, N_TEST = 190, 60  # + 1 corrupt file; 19 held out -> 171 train = 10 batches of 16


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory, fashion_mnist_dir: Path) -> Path:
    """``train/`` and ``test/`` class folders of real Fashion-MNIST PNGs (from the test split),
    plus one corrupt file in ``train/``."""
    from resnet_pl.data import load_idx_dataset

    x, y = load_idx_dataset("fashion_mnist", "test", fashion_mnist_dir)
    root = tmp_path_factory.mktemp("fmnist_folder")
    for split, indices in (("train", range(N_TRAIN)), ("test", range(5000, 5000 + N_TEST))):
        for i in indices:
            d = root / split / f"class_{int(y[i])}"
            d.mkdir(parents=True, exist_ok=True)
            Image.fromarray(x[i, 0].numpy(), "L").save(d / f"{i:05d}.png")
    (root / "train" / "class_3" / "torn.png").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00")
    return root


@pytest.fixture(scope="module")
def shards(folder: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("shards") / "out"
    optimize_dataset(folder, out, num_workers=2, chunk_bytes="8KB", progress=False)
    return out


def _stream(shards: Path, **kwargs: Any) -> Any:
    options: dict[str, Any] = {"in_chans": 1, "image_size": 28, "num_workers": 0, **kwargs}
    return ImageDataModule("streaming", data_dir=str(shards), **options)


# ---- optimise --------------------------------------------------------------------------------
def test_optimize_keeps_bytes_and_writes_manifest(folder: Path, shards: Path) -> None:
    """Manifest: classes, counts per split, the skipped corrupt file, the sources' sha256;
    every stored image is its source file byte for byte, each index once."""
    import litdata

    manifest = json.loads((shards / MANIFEST).read_text())
    assert manifest["classes"] == sorted(p.name for p in (folder / "train").iterdir())
    assert manifest["counts"] == {"train": 171, "val": 19, "test": N_TEST}
    assert len(manifest["skipped"]) == 1 and "torn.png" in manifest["skipped"][0]
    rows = (shards / "sources.csv").read_text().splitlines()[1:]
    assert len(rows) == 171 + 19 + N_TEST
    sources = {}
    for row in rows:
        split, index, label, name, sha = row.split(",")
        file = folder / name
        assert hashlib.sha256(file.read_bytes()).hexdigest() == sha
        assert manifest["classes"][int(label)] == file.parent.name
        sources[(split, int(index))] = file.read_bytes()
    assert len(list((shards / "train").glob("chunk-*.bin"))) > 2  # several chunks
    for split, count in manifest["counts"].items():
        raw = litdata.StreamingDataset(str(shards / split))
        items = [raw[i] for i in range(len(raw))]
        assert sorted(it["index"] for it in items) == list(range(count))
        for it in items:
            assert it["image"] == sources[(split, it["index"])]


# ---- the same evaluation inputs ----------------------------------------------------------------
@pytest.mark.parametrize("size", [28, 36])
def test_eval_inputs_identical_to_folder(folder: Path, shards: Path, size: int) -> None:
    """Validation and test batches from shards equal the folder path's, tensor for tensor (the
    same held-out images, one decoder, one eval transform), at the native size and resized."""
    common = {"in_chans": 1, "image_size": size, "num_workers": 0, "batch_size": 16}
    ref = ImageDataModule("imagefolder", data_dir=str(folder), **common)
    got = _stream(shards, image_size=size, batch_size=16)
    assert isinstance(got, StreamingDataModule)
    assert (got.num_classes, got.in_chans, got.class_names) == (
        ref.num_classes,
        ref.in_chans,
        ref.class_names,
    )
    assert got.data_cfg == ref.data_cfg
    ref.setup("fit")
    ref.setup("test")
    got.setup("validate")
    got.setup("test")
    for name in ("val_dataloader", "test_dataloader"):
        xs = [(ref.on_after_batch_transfer(b, 0)) for b in getattr(ref, name)()]
        ys = [(got.on_after_batch_transfer(b, 0)) for b in getattr(got, name)()]
        a, b = torch.cat([x for x, _ in xs]), torch.cat([x for x, _ in ys])
        assert a.shape == b.shape and a.dtype == torch.float32
        assert torch.equal(a, b), name
        assert torch.equal(torch.cat([y for _, y in xs]), torch.cat([y for _, y in ys]))


# ---- exact resume --------------------------------------------------------------------------------
def _stream_args(shards: Path) -> list[str]:
    """The reliability suite's run (tiny ResNet-20, 3 epochs of 10 steps, random erasing,
    stochastic depth, checkpoints every 4 steps) with its data read from the shards."""
    rest = list(FIT_ARGS)
    keep: list[str] = []
    for key, value in zip(rest[::2], rest[1::2], strict=True):
        if not key.startswith("--data."):
            keep += [key, value]
    data = ["--data.dataset", "streaming", "--data.data_dir", str(shards), "--data.in_chans", "1",
            "--data.image_size", "28", "--data.batch_size", "16", "--data.random_erasing", "0.5",
            "--data.num_workers", "1"]  # fmt: skip
    return data + keep


@pytest.mark.timeout(900)
def test_sigkill_mid_epoch_resumes_bit_identical(shards: Path, tmp_path: Path) -> None:
    """Killed (SIGKILL) as step 14 starts; the newest checkpoint (step 12, epoch 1) holds the
    StreamingDataLoader's state; ``--ckpt_path last`` ends at step 30 with weights, optimizer
    and scheduler bit-identical to an uninterrupted run (a loader worker decodes and augments:
    the draws are seeded per sample, so restarting the worker changes nothing)."""
    args = _stream_args(shards)
    ref = cli_main(["fit", *args, "--run_root", str(tmp_path), "--run_name", "ref"])
    assert ref.trainer.global_step == STEPS

    helper = tmp_path / "helpers"
    helper.mkdir()
    (helper / "killer.py").write_text(KILLER)
    config = tmp_path / "kill.yaml"
    config.write_text(
        "trainer:\n  callbacks:\n    - class_path: killer.KillAt\n"
        "      init_args:\n        step: 14\n"
    )
    cmd = [sys.executable, "-m", "resnet_pl.cli", "fit", "--config", str(config), *args]
    cmd += ["--run_root", str(tmp_path), "--run_name", "run"]
    killed = subprocess.run(
        cmd, cwd=REPO, env=_env(path=str(helper)), capture_output=True, text=True, timeout=600
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    ckpts = tmp_path / "run" / "version_0" / "checkpoints"
    mid = _state(ckpts / "last_step.ckpt")
    assert mid["global_step"] == 12 and mid["epoch"] == 1
    (loader,) = mid["loops"]["fit_loop"]["state_dict"]["combined_loader"]
    assert loader["current_epoch"] == 2 and loader["num_samples_yielded"] == 2 * 16

    resumed = cli_main(["fit", *args, "--run_root", str(tmp_path), "--run_name", "run",
                        "--ckpt_path", "last"])  # fmt: skip
    assert resumed.trainer.global_step == STEPS
    _assert_same_training_state(ref.trainer.checkpoint_callback.dirpath + "/last.ckpt",
                                ckpts / "last.ckpt")  # fmt: skip


# ---- DDP: exactly once, all-rank metrics ------------------------------------------------------
DDP_SCRIPT = """
import json
import sys

import lightning as L
import torch

from resnet_pl.lightning import ResNetClassifier
from resnet_pl.lightning.streaming import StreamingDataModule


class IndexedData(StreamingDataModule):
    yield_index = True  # batches are (x, y, index in split)


class Recorder(ResNetClassifier):
    def on_fit_start(self):
        super().on_fit_start()
        self.seen = {"train": {}, "val": {}}

    def training_step(self, batch, batch_idx):
        x, y, idx = batch
        self.seen["train"].setdefault(self.current_epoch, []).extend(idx.tolist())
        return super().training_step((x, y), batch_idx)

    def validation_step(self, batch, batch_idx):
        x, y, idx = batch
        right = (self.eval_logits(x).argmax(1) == y).tolist()
        epoch = self.seen["val"].setdefault(self.current_epoch, [])
        epoch.extend(zip(idx.tolist(), right))
        return super().validation_step((x, y), batch_idx)


if __name__ == "__main__":
    shards, out, workers = sys.argv[1], sys.argv[2], int(sys.argv[3])
    L.seed_everything(3)
    data = IndexedData(data_dir=shards, batch_size=16, num_workers=workers, in_chans=1,
                       image_size=28)
    model = Recorder("resnet20", num_classes=data.num_classes, in_chans=1,
                     model_kwargs={"widths": [4, 8, 8]}, lr=0.05)
    trainer = L.Trainer(accelerator="cpu", devices=2, strategy="ddp", max_epochs=2,
                        logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, num_sanity_val_steps=0)
    trainer.fit(model, data)
    record = {"seen": model.seen, "rank": trainer.global_rank,
              "val_acc": float(trainer.callback_metrics["val_acc"])}
    with open(f"{out}/rank{trainer.global_rank}.json", "w") as f:
        json.dump(record, f)
"""


def _ddp_run(shards: Path, tmp_path: Path, workers: int) -> list[dict[str, Any]]:
    script = tmp_path / "ddp_streaming.py"
    script.write_text(DDP_SCRIPT)
    proc = subprocess.run(
        [sys.executable, str(script), str(shards), str(tmp_path), str(workers)],
        cwd=REPO, env=_env(), capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-4000:]
    return [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]


@pytest.mark.timeout(900)
def test_ddp_every_training_sample_once_per_epoch(shards: Path, tmp_path: Path) -> None:
    """Two gloo processes, 2 epochs: each epoch the ranks' training samples are disjoint, equal
    in number (full batches of 16: 171 // 32 = 5 per rank), and leave out only
    ``drop_last``'s 171 - 160 = 11; the validation samples are each seen exactly once over the
    ranks, and the reported val_acc is the all-rank accuracy, not rank 0's."""
    ranks = _ddp_run(shards, tmp_path, workers=0)
    for epoch in ("0", "1"):
        train = [r["seen"]["train"][epoch] for r in ranks]
        assert len(train[0]) == len(train[1]) == 5 * 16
        both = train[0] + train[1]
        assert len(set(both)) == len(both) == 160  # no duplicates across ranks
        assert set(both) <= set(range(171))
    for epoch in ("0", "1"):
        drawn = set(ranks[0]["seen"]["train"][epoch] + ranks[1]["seen"]["train"][epoch])
        assert len(set(range(171)) - drawn) == 11
    last = [r["seen"]["val"]["1"] for r in ranks]
    indices = [i for rank in last for i, _ in rank]
    assert sorted(indices) == list(range(19))  # every validation image once over both ranks
    assert len(last[0]) != 19 and len(last[1]) != 19  # really split between the ranks
    right = sum(ok for rank in last for _, ok in rank)
    for r in ranks:
        assert r["val_acc"] == pytest.approx(right / 19, abs=1e-6)


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_ddp_exactly_once_with_loader_workers(shards: Path, tmp_path: Path) -> None:
    """The same with 2 loader workers per rank (4 readers share the chunks)."""
    ranks = _ddp_run(shards, tmp_path, workers=2)
    for epoch in ("0", "1"):
        both = ranks[0]["seen"]["train"][epoch] + ranks[1]["seen"]["train"][epoch]
        assert len(set(both)) == len(both)
        assert len(ranks[0]["seen"]["train"][epoch]) == len(ranks[1]["seen"]["train"][epoch])
    indices = sorted(i for r in ranks for i, _ in r["seen"]["val"]["1"])
    assert indices == list(range(19))


# ---- bad input: one line naming the problem and the fix --------------------------------------
def _one_line_error(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    code = main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2, err
    assert err and err[-1].startswith("resnet-pl: error: "), err
    assert "Traceback" not in "\n".join(err)
    return err[-1]


def test_not_a_shard_folder(shards: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    (tmp_path / "empty").mkdir()
    for where, words in (
        (tmp_path / "missing", "does not exist"),
        (tmp_path / "empty", "not a LitData dataset"),
        (shards / "train", "LitData dataset but not one written by resnet-pl"),
    ):
        line = _one_line_error(
            ["fit", "--data.dataset", "streaming", "--data.data_dir", str(where)], capsys
        )
        assert words in line and "resnet-pl data optimize" in line, line
    with pytest.raises(ShardsError, match="ftp://x"):
        read_manifest("ftp://x/shards")


def test_missing_or_truncated_chunk(shards: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    shutil.copytree(shards, broken)
    chunk = sorted((broken / "train").glob("chunk-*.bin"))[1]
    chunk.write_bytes(chunk.read_bytes()[:-7])
    with pytest.raises(ShardsError, match=r"truncated .* re-copy"):
        read_manifest(broken)
    chunk.unlink()
    with pytest.raises(ShardsError, match=rf"chunk .*{chunk.name} is missing"):
        _stream(broken)


def test_manifest_classes_differ_from_model(shards: Path, tmp_path: Path) -> None:
    """A model trained on other classes (fine-tuning, evaluating a checkpoint) is refused before
    any step, naming both class lists; a class-count mismatch likewise."""
    import lightning as L

    data = _stream(shards)
    names = [f"other_{i}" for i in range(10)]
    model = ResNetClassifier(
        "resnet8", num_classes=10, in_chans=1, data_info={"class_names": names}
    )
    trainer = L.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False)
    with pytest.raises(ShardsError, match=r"hold classes \['class_0'.* trained on \['other_0'"):
        trainer.validate(model, data)
    model = ResNetClassifier("resnet8", num_classes=7, in_chans=1)
    with pytest.raises(ValueError, match="num_classes=7 but the dataset 'streaming' has 10"):
        trainer.validate(model, _stream(shards))


def test_unreachable_url_is_time_limited(monkeypatch: pytest.MonkeyPatch) -> None:
    """A bucket that does not answer: one line within the time limit, not a hang."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://10.255.255.1:9")  # unroutable
    start = time.monotonic()
    with pytest.raises(ShardsError) as err:
        read_manifest("s3://resnet-pl-no-such-bucket/shards", timeout=3)
    assert time.monotonic() - start < 30
    line = str(err.value)
    assert "\n" not in line and "s3://resnet-pl-no-such-bucket/shards" in line
    assert "check the URL" in line


def test_optimize_cli_bad_input(folder: Path, shards: Path, tmp_path: Path, capsys: Any) -> None:
    """``--bad_files error`` stops at the corrupt file before writing anything; a non-empty OUT
    is refused; a source that is neither folder nor dataset is named."""
    out = tmp_path / "out"
    line = _one_line_error(
        ["data", "optimize", str(folder), str(out), "--bad_files", "error", "--quiet", "true"],
        capsys,
    )
    assert "torn.png" in line and "--bad_files skip" in line
    assert not out.exists()
    line = _one_line_error(
        ["data", "optimize", str(folder), str(shards), "--quiet", "true"], capsys
    )
    assert "--overwrite true" in line
    line = _one_line_error(["data", "optimize", "no_such_thing", str(out)], capsys)
    assert "neither an image folder nor a built-in dataset" in line


def test_hanging_bucket_is_cut_at_the_time_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    """A bucket that accepts the connection and never answers: stopped at ``timeout``."""
    import litdata.streaming.fs_provider as fs

    class Hanging:
        def download_file(self, remote: str, local: str) -> None:
            time.sleep(60)

    monkeypatch.setattr(fs, "_get_fs_provider", lambda url, options=None: Hanging())
    start = time.monotonic()
    with pytest.raises(ShardsError, match=r"no answer from s3://b/shards/manifest.json within 1 s"):
        read_manifest("s3://b/shards", timeout=1)
    assert time.monotonic() - start < 10
