"""Full disks, unwritable folders and Ctrl-C, everywhere resnet-pl writes.

Two kinds of disk fault: a real, small tmpfs mounted by the test (``mount -t tmpfs -o size=3m``;
needs root, skipped with the reason elsewhere) and an injected ``ENOSPC`` (the fsync before the
rename fails, as it does on a full disk) that always runs. Each checks the same contract: a
:class:`~resnet_pl.fileio.WriteError` (an ``OSError`` and a ``ResNetPLError``) naming the file
and the cause, or one ``resnet-pl: error:`` line with exit status 1 from the command line; no
partial or temporary file; every file that was there before byte-identical.
"""

from __future__ import annotations

import dataclasses
import errno
import hashlib
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image
from test_reliability import _env  # the same child-process environment

import resnet_pl
from resnet_pl import fileio
from resnet_pl.cli import main
from resnet_pl.errors import ResNetPLError
from resnet_pl.fileio import WriteError

REPO = Path(__file__).resolve().parents[1]
TINY = {"widths": [8, 16, 32]}
ENOSPC = os.strerror(errno.ENOSPC)  # "No space left on device"


def snapshot(folder: Path) -> dict[str, str]:
    """sha256 of every file under ``folder``, by relative path."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def leftovers(folder: Path) -> list[str]:
    """Temporary files or folders of any resnet-pl writer under ``folder``."""
    patterns = (".*.tmp", ".*.partial", ".resnet_pl_export_*")
    return sorted(str(p) for pat in patterns for p in folder.rglob(pat))


def one_error_line(stderr: str) -> str:
    """The stderr of a failed command holds no traceback; its last line is the error."""
    assert "Traceback" not in stderr, stderr[-3000:]
    return stderr.strip().splitlines()[-1]


# ------------------------------------------------------------------------------------------------
# A real small filesystem
# ------------------------------------------------------------------------------------------------
@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    """A 3 MB tmpfs mounted for this test (root only: skipped with the reason elsewhere)."""
    mount = tmp_path / "fs"
    mount.mkdir()
    if shutil.which("mount") is None:
        pytest.skip("no mount command on this machine")
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(fs: Path, leave: int) -> Path:
    """Fill ``fs`` up to ``leave`` free bytes with a filler file."""
    filler = fs / "filler.bin"
    free = shutil.disk_usage(fs).free
    with open(filler, "ab") as f:
        f.write(b"\0" * max(free - leave, 0))
    assert shutil.disk_usage(fs).free <= leave + 8192
    return filler


def tiny_model() -> torch.nn.Module:
    return resnet_pl.create_model("resnet20", in_chans=1, **TINY)


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A checkpoint in the Lightning contract (hyper_parameters + model.* state) of an
    untrained 1-channel resnet20 at widths 8/16/32 (the weights do not matter here)."""
    torch.manual_seed(0)
    model = tiny_model()
    hp = {
        "arch": "resnet20", "num_classes": 10, "in_chans": 1, "model_kwargs": TINY,
        "class_names": [str(i) for i in range(10)], "mean": [0.5], "std": [0.25],
        "input_size": [1, 28, 28], "dataset": "fake",
    }  # fmt: skip
    path = tmp_path_factory.mktemp("ckpt") / "tiny.ckpt"
    torch.save({"hyper_parameters": hp, "state_dict": {f"model.{k}": v for k, v in
                model.state_dict().items()}}, path)  # fmt: skip
    return path


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    for i in range(6):
        Image.fromarray(rng.integers(0, 255, (28, 28), dtype=np.uint8)).save(folder / f"{i}.png")
    return folder


def test_checkpoint_on_full_tmpfs_is_write_error_and_keeps_old(small_fs: Path) -> None:
    """torch.save of a 1 MiB checkpoint onto a tmpfs with ~300 KB free: a WriteError naming
    the file (not torch's 'RuntimeError: ... unexpected pos'), last.ckpt byte-identical, no
    temporary file."""
    from resnet_pl.lightning.checkpointing import AtomicCheckpointIO

    io_, target = AtomicCheckpointIO(), small_fs / "ckpts" / "last.ckpt"
    io_.save_checkpoint({"state_dict": {"w": torch.ones(1000)}, "global_step": 1}, target)
    before = snapshot(small_fs)
    fill(small_fs, leave=300_000)
    with pytest.raises(WriteError) as info:
        io_.save_checkpoint({"state_dict": {"w": torch.ones(1 << 18)}, "global_step": 2}, target)
    err = info.value
    assert isinstance(err, OSError) and isinstance(err, ResNetPLError)
    assert err.errno == errno.ENOSPC and err.filename == str(target)
    assert f"cannot write {target}: {ENOSPC}" in str(err)
    (small_fs / "filler.bin").unlink()
    assert snapshot(small_fs) == before and not leftovers(small_fs)
    assert io_.load_checkpoint(target)["global_step"] == 1


def test_save_pretrained_on_full_tmpfs(small_fs: Path) -> None:
    """save_pretrained onto a full disk: WriteError (not a bare SafetensorError); a new folder
    is not left behind empty, an earlier save in the same folder stays byte-identical."""
    from resnet_pl.hub import save_pretrained

    model = resnet_pl.create_model("resnet20")  # ~1.1 MB of fp32 weights
    earlier = save_pretrained(tiny_model(), small_fs / "earlier", arch_kwargs=TINY)
    before = snapshot(small_fs)
    fill(small_fs, leave=200_000)
    for folder in (small_fs / "new", earlier):
        with pytest.raises(WriteError, match=ENOSPC) as info:
            save_pretrained(model, folder)
        assert str(folder) in str(info.value)
    assert not (small_fs / "new").exists()
    (small_fs / "filler.bin").unlink()
    assert snapshot(small_fs) == before and not leftovers(small_fs)


def test_classify_output_on_full_tmpfs(
    small_fs: Path, tiny_ckpt: Path, images: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """classify --output on a full disk: exit 1, one line naming the file and the cause; the
    previous predictions file is byte-identical."""
    out = small_fs / "preds.csv"
    assert main(["classify", str(images), "--model", str(tiny_ckpt), "--output", str(out)]) == 0
    before = snapshot(small_fs)
    fill(small_fs, leave=0)
    capsys.readouterr()
    code = main(["classify", str(images), "--model", str(tiny_ckpt), "--output", str(out)])
    line = one_error_line(capsys.readouterr().err)
    assert code == 1
    assert line.startswith(f"resnet-pl: error: cannot write {out}: {ENOSPC}")
    (small_fs / "filler.bin").unlink()
    assert snapshot(small_fs) == before and not leftovers(small_fs)


@pytest.fixture
def unwritable(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """A folder this process cannot write to, and the cause the kernel will give: a 0555
    folder for a normal user (Permission denied); for root, whom permissions do not bind, a
    read-only tmpfs (Read-only file system)."""
    folder = tmp_path / "ro"
    folder.mkdir()
    if os.geteuid() != 0:
        folder.chmod(0o555)
        try:
            yield folder, os.strerror(errno.EACCES)
        finally:
            folder.chmod(0o755)
        return
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(folder)],
                          capture_output=True, text=True)  # fmt: skip
    if done.returncode != 0:
        pytest.skip(f"cannot mount a read-only tmpfs: {done.stderr.strip()}")
    try:
        yield folder, os.strerror(errno.EROFS)
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def test_unwritable_folder_is_one_line_everywhere(
    unwritable: tuple[Path, str],
    tiny_ckpt: Path,
    images: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """An output folder that cannot be written: save_pretrained, the checkpoint writer, export
    and classify --output name the path and the cause; nothing is created there."""
    from resnet_pl.deploy import export_onnx
    from resnet_pl.hub import save_pretrained
    from resnet_pl.lightning.checkpointing import AtomicCheckpointIO

    folder, cause = unwritable
    with pytest.raises(WriteError, match=cause) as info:
        save_pretrained(tiny_model(), folder / "hf", arch_kwargs=TINY)
    assert str(folder / "hf") in str(info.value)
    with pytest.raises(WriteError, match=cause):
        AtomicCheckpointIO().save_checkpoint({"global_step": 1}, folder / "last.ckpt")
    with pytest.raises(WriteError, match=cause):
        export_onnx(tiny_ckpt, folder / "m.onnx", exporter="torchscript", verify=False)
    out = folder / "p.csv"
    code = main(["classify", str(images), "--model", str(tiny_ckpt), "--output", str(out)])
    line = one_error_line(capsys.readouterr().err)
    assert code == 1 and line.startswith(f"resnet-pl: error: cannot write {out}: {cause}")
    assert list(folder.iterdir()) == []


# ------------------------------------------------------------------------------------------------
# Injected ENOSPC (always runs): the fsync before the rename fails, as on a full disk
# ------------------------------------------------------------------------------------------------
@pytest.fixture
def disk_full(monkeypatch: pytest.MonkeyPatch) -> Any:
    """Call ``disk_full()`` to make every later atomic write fail with ENOSPC."""

    def arm() -> None:
        def no_space(path: Path) -> None:
            raise OSError(errno.ENOSPC, ENOSPC)

        monkeypatch.setattr(fileio, "_fsync_file", no_space)

    return arm


def _writers(tmp: Path, ckpt: Path) -> dict[str, Any]:
    """Each writer of resnet-pl, as a function writing its file(s) under ``tmp``."""
    from resnet_pl.hub import save_pretrained
    from resnet_pl.hub.checkpoint import export_checkpoint
    from resnet_pl.lightning.checkpointing import AtomicCheckpointIO
    from resnet_pl.lightning.loggers import AtomicExperimentWriter
    from resnet_pl.lightning.plots import plot_training_curves

    metrics = tmp / "logs" / "metrics.csv"
    writers: list[AtomicExperimentWriter] = []

    def log_metrics() -> Path:
        if not writers:  # one writer for the run, as CSVLogger keeps one
            writers.append(AtomicExperimentWriter(str(tmp / "logs")))
        writer = writers[0]
        writer.log_metrics({"train_loss": 1.0, "epoch": len(writer.metrics)}, step=1)
        writer.save()
        writer.log_hparams({"lr": 0.1 * len(writers)})
        return metrics

    def plot() -> Path:
        if not metrics.exists():
            log_metrics()
        return plot_training_curves(metrics, tmp / "curves.png")

    return {
        "checkpoint": lambda: AtomicCheckpointIO().save_checkpoint(
            {"state_dict": {"w": torch.ones(10)}, "global_step": 1}, tmp / "c" / "last.ckpt"
        ),
        "save_pretrained": lambda: save_pretrained(tiny_model(), tmp / "hf", arch_kwargs=TINY),
        "export_checkpoint": lambda: export_checkpoint(ckpt, tmp / "hub", measure_metrics=False),
        "metrics_csv": log_metrics,
        "plot": plot,
    }


@pytest.mark.parametrize(
    "writer", ["checkpoint", "save_pretrained", "export_checkpoint", "metrics_csv", "plot"]
)
def test_injected_enospc_keeps_every_earlier_file(
    tmp_path: Path, tiny_ckpt: Path, disk_full: Any, writer: str
) -> None:
    """Each writer once with room, then with the disk full: WriteError (OSError, ResNetPLError)
    with the file's path and the cause; every earlier file byte-identical; nothing new, no
    temporary file."""
    write = _writers(tmp_path, tiny_ckpt)[writer]
    write()
    before = snapshot(tmp_path)
    disk_full()
    with pytest.raises(WriteError) as info:
        write()
    err = info.value
    assert isinstance(err, OSError) and isinstance(err, ResNetPLError)
    assert err.errno == errno.ENOSPC and str(tmp_path) in str(err) and ENOSPC in str(err)
    assert snapshot(tmp_path) == before
    assert not leftovers(tmp_path)


def test_injected_enospc_weights_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, disk_full: Any
) -> None:
    """Filling an empty weights cache from a file:// URL on a full disk: WriteError naming the
    cache file and RESNET_PL_CACHE; the cache holds no file afterwards (a later load
    downloads again)."""
    from resnet_pl.hub.pretrained import resolve_file
    from resnet_pl.hub.weights import get_weights

    shipped = get_weights("resnet20.fashion_mnist")
    assert shipped.shipped_path is not None
    cfg = {**shipped.pretrained_cfg, "url": shipped.shipped_path.as_uri()}
    entry = dataclasses.replace(shipped, record_dir=tmp_path / "nowhere", pretrained_cfg=cfg)
    monkeypatch.setenv("RESNET_PL_CACHE", str(tmp_path / "cache"))

    def no_space(url: str, dst: str, **kwargs: Any) -> None:
        Path(dst).write_bytes(b"\0" * 100)  # part of the file, then the disk is full
        raise OSError(errno.ENOSPC, ENOSPC)

    monkeypatch.setattr(torch.hub, "download_url_to_file", no_space)
    with pytest.raises(WriteError, match=ENOSPC) as info:
        resolve_file(entry)
    assert "RESNET_PL_CACHE" in str(info.value) and str(tmp_path / "cache") in str(info.value)
    assert not [p for p in (tmp_path / "cache").rglob("*") if p.is_file()]


def test_injected_enospc_fit_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """resnet-pl fit whose third checkpoint save hits a full disk: exit 1, one line naming
    the checkpoint and the cause (no traceback); the checkpoints written before are
    byte-identical and no temporary file is left."""
    saves = {"n": 0}
    real = fileio._fsync_file

    def third_fails(path: Path) -> None:
        if path.name.startswith((".last", ".best")):
            saves["n"] += 1
            if saves["n"] >= 3:
                raise OSError(errno.ENOSPC, ENOSPC)
        real(path)

    monkeypatch.setattr(fileio, "_fsync_file", third_fails)
    args = ["fit", "--data.dataset", "fake", "--data.fake_size", "80", "--data.batch_size", "16",
            "--model.model_kwargs", '{"widths": [8, 16, 32]}', "--trainer.max_epochs", "2",
            "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
            "--checkpoint_every_n_steps", "2",
            "--run_root", str(tmp_path), "--run_name", "r"]  # fmt: skip
    ckpts = tmp_path / "r" / "version_0" / "checkpoints"
    kept: dict[str, bytes] = {}
    real_replace = fileio.os.replace

    def remember(src: Any, dst: Any) -> None:
        real_replace(src, dst)
        kept[str(dst)] = Path(dst).read_bytes()

    monkeypatch.setattr(fileio.os, "replace", remember)
    code = main(args)
    line = one_error_line(capsys.readouterr().err)
    assert code == 1, line
    assert line.startswith(f"resnet-pl: error: cannot write {ckpts}")
    assert ENOSPC in line and "--ckpt_path last" in line
    written = [k for k in kept if k.endswith(".ckpt")]
    assert written  # the checkpoints saved before the fault ...
    for name in written:  # ... are on disk exactly as written
        assert Path(name).read_bytes() == kept[name], name
    assert not leftovers(tmp_path)


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_fit_on_full_tmpfs_is_one_line(small_fs: Path) -> None:
    """The issue's case, as a user meets it: resnet-pl fit resumed on a 3 MB tmpfs that fills
    up. Exit 1, one line naming the file and 'No space left on device', no temporary file;
    every checkpoint of the first run byte-identical; the run's logs and config.yaml, which the
    resumed run continues in the same version folder, are complete files (whole YAML,
    rectangular CSV), and metrics.csv still holds every row the first run logged."""
    import csv

    import yaml

    args = [sys.executable, "-m", "resnet_pl.cli", "fit", "--data.dataset", "fake",
            "--data.fake_size", "192", "--data.batch_size", "16",
            "--model.model_kwargs", '{"widths": [8, 16, 32]}',
            "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
            "--trainer.log_every_n_steps", "2", "--checkpoint_every_n_steps", "4",
            "--run_root", str(small_fs), "--run_name", "r"]  # fmt: skip
    first = subprocess.run([*args, "--trainer.max_epochs", "1"], cwd=REPO, env=_env(),
                           capture_output=True, text=True, timeout=600)  # fmt: skip
    assert first.returncode == 0, first.stderr[-3000:]
    before = snapshot(small_fs)
    [metrics] = small_fs.glob("r/version_*/metrics.csv")
    first_rows = list(csv.DictReader(metrics.open(newline="")))
    fill(small_fs, leave=400_000)  # room for logs, not for another ~620 KB checkpoint
    second = subprocess.run(
        [*args, "--trainer.max_epochs", "3", "--ckpt_path", "last"],
        cwd=REPO, env=_env(), capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    line = one_error_line(second.stderr)
    assert second.returncode == 1, second.stderr[-3000:]
    assert line.startswith(f"resnet-pl: error: cannot write {small_fs}") and ENOSPC in line
    after = snapshot(small_fs)
    assert not leftovers(small_fs)
    checkpoints = [k for k in before if k.endswith(".ckpt")]
    assert len(checkpoints) >= 2
    assert {k: after[k] for k in checkpoints} == {k: before[k] for k in checkpoints}
    for name in set(after) - {"filler.bin"}:
        path = small_fs / name
        if path.suffix == ".yaml":
            assert isinstance(yaml.safe_load(path.read_text()), dict), name
        elif path.suffix == ".csv":
            rows = list(csv.reader(path.open(newline="")))
            assert rows and all(len(r) == len(rows[0]) for r in rows), name
    rows = list(csv.DictReader(metrics.open(newline="")))
    assert [r["step"] for r in rows[: len(first_rows)]] == [r["step"] for r in first_rows]


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_export_on_full_tmpfs_blames_the_disk(small_fs: Path, tiny_ckpt: Path) -> None:
    """resnet-pl export onto a full disk: exit 1, 'cannot write <out>.onnx: No space left on
    device' (not 'the exporter failed'), an earlier export byte-identical, no temp folder."""
    out = small_fs / "m.onnx"
    cmd = [sys.executable, "-m", "resnet_pl.cli", "export", str(tiny_ckpt), "-o", str(out),
           "--exporter", "torchscript", "--no-verify"]  # fmt: skip
    done = subprocess.run(cmd, cwd=REPO, env=_env(), capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    before = snapshot(small_fs)
    fill(small_fs, leave=0)
    done = subprocess.run(cmd, cwd=REPO, env=_env(), capture_output=True, text=True)
    line = one_error_line(done.stderr)
    assert done.returncode == 1
    assert line.startswith(f"resnet-pl: error: cannot write {out}: {ENOSPC}")
    (small_fs / "filler.bin").unlink()
    assert snapshot(small_fs) == before and not leftovers(small_fs)


def test_injected_enospc_export_blames_the_disk(
    tmp_path: Path, tiny_ckpt: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The exporter's own write failing with ENOSPC is a WriteError naming the output, not an
    ExportError; an earlier file at the output path is byte-identical."""
    from resnet_pl.deploy import export_onnx

    out = tmp_path / "m.onnx"
    out.write_bytes(b"earlier export")
    import onnx

    def no_space(*args: Any, **kwargs: Any) -> None:
        raise OSError(errno.ENOSPC, ENOSPC)

    monkeypatch.setattr(onnx, "save", no_space)
    with pytest.raises(WriteError, match=ENOSPC) as info:
        export_onnx(tiny_ckpt, out, exporter="torchscript", verify=False)
    assert info.value.filename == str(out)
    assert out.read_bytes() == b"earlier export" and not leftovers(tmp_path)


# ------------------------------------------------------------------------------------------------
# Ctrl-C during export and classify: real processes, SIGINT once they report progress
# ------------------------------------------------------------------------------------------------
HOOKS = """
import signal, sys, time
# A process started in the background by a non-interactive shell inherits SIGINT ignored, and
# Python then installs no KeyboardInterrupt handler: restore it, as an interactive shell has it.
signal.signal(signal.SIGINT, signal.default_int_handler)
import resnet_pl.deploy.onnx_export as onnx_export
import resnet_pl.cli.deploy as deploy_cli
from resnet_pl.cli import main

# Report that the work is under way, then give the test time to press Ctrl-C.
real_finalize = onnx_export.finalize
def finalize(*args, **kwargs):
    result = real_finalize(*args, **kwargs)
    print("EXPORTING", flush=True)
    time.sleep(120)
    return result
onnx_export.finalize = finalize

real_into = deploy_cli._classify_into
def classify_into(out, clf, files, args):
    real_write = out.write
    def write(text):
        n = real_write(text)
        if text.count("\\n") and "path,label" not in text:
            print("CLASSIFIED", flush=True)
            time.sleep(120)
        return n
    out.write = write
    return real_into(out, clf, files, args)
deploy_cli._classify_into = classify_into
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.timeout(600)
@pytest.mark.parametrize("command", ["export", "classify"])
def test_ctrl_c_leaves_no_partial_output(
    tmp_path: Path, tiny_ckpt: Path, images: Path, command: str
) -> None:
    """SIGINT once the process has written part of its output (export: the ONNX file is
    written and being checked; classify: one row is written): exit 130, one line, the earlier
    output file byte-identical, no partial or temporary file."""
    hooks = tmp_path / "hooks.py"
    hooks.write_text(HOOKS)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    if command == "export":
        out = out_dir / "m.onnx"
        argv = ["export", str(tiny_ckpt), "-o", str(out), "--exporter", "torchscript",
                "--no-verify"]  # fmt: skip
        marker = "EXPORTING"
    else:
        out = out_dir / "preds.csv"
        argv = ["classify", str(images), "--model", str(tiny_ckpt), "--output", str(out),
                "--batch-size", "1"]  # fmt: skip
        marker = "CLASSIFIED"
    out.write_bytes(b"the earlier output\n")
    proc = subprocess.Popen(
        [sys.executable, str(hooks), *argv], cwd=REPO, env=_env(), stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.strip() == marker:
                proc.send_signal(signal.SIGINT)
                break
        _, stderr = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 130, stderr[-3000:]
    assert one_error_line(stderr).startswith("resnet-pl: interrupted (Ctrl-C)")
    assert out.read_bytes() == b"the earlier output\n"
    assert sorted(p.name for p in out_dir.iterdir()) == [out.name]
