"""Reliability and security, tested adversarially: crashes and resume, determinism, numerical
faults, bad data, bad configuration, untrusted files and fuzzed inputs.

Runs are tiny (ResNet-20 layout at widths 8/16/32, a few hundred images, tens of steps) so the
whole file stays near a minute on two busy cores; the bigger fuzzing and kill campaigns are
marked slow. Figures quoted in .notes/readme_reliability.md come from these tests.
"""

from __future__ import annotations

import io
import json
import os
import re
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import lightning as L
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from resnet_pl.cli import cli_main, main
from resnet_pl.lightning import (
    BadCheckpointError,
    ConfigError,
    ImageDataModule,
    NonFiniteLossError,
    NonFiniteWeightsError,
    ResNetClassifier,
    UntrustedCheckpointError,
)
from resnet_pl.lightning.checkpointing import AtomicCheckpointIO, StepCheckpoint
from resnet_pl.lightning.sampling import EpochShuffleSampler, ResumableDataLoader

REPO = Path(__file__).resolve().parents[1]
TINY = '{"widths": [8, 16, 32], "drop_path_rate": 0.1}'


def _env(**extra: str) -> dict[str, str]:
    """Environment of a child process: the same thread count as this one (float results of
    conv kernels can depend on it), the repository importable, extra modules on the path."""
    env = dict(os.environ)
    threads = str(torch.get_num_threads())
    env.update(OMP_NUM_THREADS=threads, MKL_NUM_THREADS=threads, RESNET_PL_TEST_THREADS=threads)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (extra.pop("path", ""), str(REPO)) if p)
    env.update(extra)
    return env


def _peak_rss_reset() -> bool:
    """Reset this process's peak RSS (Linux ``clear_refs``); False where unsupported."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _peak_rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise RuntimeError("no VmHWM in /proc/self/status")


def _rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS in /proc/self/status")


def _state(path: Path) -> dict[str, Any]:
    return torch.load(path, map_location="cpu", weights_only=True)


# ================================================================================================
# 1. Crash and resume
# ================================================================================================
KILLER = '''
import os
import re
import signal

import lightning as L


class KillAt(L.Callback):
    """SIGKILLs its own process as optimizer step ``step`` starts: no handler runs, no file is
    flushed or closed, exactly as with an out-of-memory kill or a pre-empted machine."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step == self.step:
            os.kill(os.getpid(), signal.SIGKILL)
'''

# 173 training images / batch 16 (drop_last) = 10 steps per epoch, 3 epochs = 30 steps.
# Crop, flip, random erasing and stochastic depth all draw random numbers.
FIT_ARGS = [
    "--data.dataset", "fake",
    "--data.fake_size", "192",
    "--data.batch_size", "16",
    "--data.random_erasing", "0.5",
    "--model.model_kwargs", TINY,
    "--model.optim.lr", "0.05",
    "--trainer.max_epochs", "3",
    "--trainer.deterministic", "true",
    "--trainer.enable_progress_bar", "false",
    "--trainer.enable_model_summary", "false",
    "--trainer.log_every_n_steps", "5",
    "--checkpoint_every_n_steps", "4",
    "--seed_everything", "7",
]  # fmt: skip
STEPS = 30


def _fit(root: Path, name: str, *extra: str) -> Any:
    return cli_main(["fit", *FIT_ARGS, "--run_root", str(root), "--run_name", name, *extra])


def _kill_run(root: Path, name: str, step: int, *extra: str) -> subprocess.CompletedProcess[str]:
    """A real ``python -m resnet_pl.cli fit`` process, SIGKILLed as step ``step`` starts."""
    helper = root / "helpers"
    helper.mkdir(exist_ok=True)
    (helper / "killer.py").write_text(KILLER)
    config = root / f"kill_{step}.yaml"
    config.write_text(
        "trainer:\n  callbacks:\n    - class_path: killer.KillAt\n"
        f"      init_args:\n        step: {step}\n"
    )
    cmd = [sys.executable, "-m", "resnet_pl.cli", "fit", "--config", str(config), *FIT_ARGS]
    cmd += ["--run_root", str(root), "--run_name", name, *extra]
    return subprocess.run(
        cmd, cwd=REPO, env=_env(path=str(helper)), capture_output=True, text=True, timeout=600
    )


def _assert_same_training_state(a: Path, b: Path) -> None:
    """Two checkpoints hold bit-identical weights, optimizer and scheduler states, step."""
    ca, cb = _state(a), _state(b)
    assert ca["global_step"] == cb["global_step"] == STEPS
    assert ca["state_dict"].keys() == cb["state_dict"].keys()
    for key, value in ca["state_dict"].items():
        assert torch.equal(value, cb["state_dict"][key]), key
    for oa, ob in zip(ca["optimizer_states"], cb["optimizer_states"], strict=True):
        for pid, buffers in oa["state"].items():
            for name, value in buffers.items():
                assert torch.equal(value, ob["state"][pid][name]), (pid, name)
    assert ca["lr_schedulers"] == cb["lr_schedulers"]
    for extra in ("current_model_state", "averaging_state"):  # the EMA's raw weights and count
        assert (extra in ca) == (extra in cb), extra
        for key, value in ca.get(extra, {}).items():
            assert torch.equal(value, cb[extra][key]), (extra, key)


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An uninterrupted 30-step run (in this process); returns its checkpoint folder."""
    root = tmp_path_factory.mktemp("reference")
    cli = _fit(root, "ref")
    assert cli.trainer.global_step == STEPS
    return root / "ref" / "version_0" / "checkpoints"


@pytest.mark.timeout(600)
def test_sigkill_mid_epoch_then_resume_matches_uninterrupted(
    reference_run: Path, tmp_path: Path
) -> None:
    """Kill -9 at step 14 (epoch 1, batch 4); the newest checkpoint is last_step.ckpt at step
    12, mid-epoch. Resuming with --ckpt_path last ends at step 30 with weights, optimizer and
    scheduler states bit-identical to the uninterrupted run: data order, augmentation and
    stochastic-depth draws continue exactly."""
    killed = _kill_run(tmp_path, "run", step=14)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    ckpts = tmp_path / "run" / "version_0" / "checkpoints"  # the killed run's own folder
    mid = _state(ckpts / "last_step.ckpt")
    assert mid["global_step"] == 12 and mid["epoch"] == 1
    assert mid["loops"]["fit_loop"]["state_dict"]["combined_loader"] == [
        {"epoch": 1, "batches": 2, "world_size": 1}
    ]
    assert not list(ckpts.glob(".*.tmp"))  # the kill did not land in a save

    resumed = _fit(tmp_path, "run", "--ckpt_path", "last")
    assert resumed.trainer.global_step == STEPS
    assert Path(resumed.trainer.checkpoint_callback.dirpath) == ckpts  # same run, same folder
    _assert_same_training_state(reference_run / "last.ckpt", ckpts / "last.ckpt")


# Every fast-training option on (issue #10): the EMA, TTA in validation, patch whitening (data
# dependent, before the first step), fast BN biases and the linear schedule.
RECIPE_ARGS = [
    "--model.evaluation.ema_decay", "0.9",
    "--model.evaluation.tta", "flip_shift",
    "--model.recipe.whiten_stem", "true",
    "--model.optim.norm_bias_lr_scale", "8",
    "--model.optim.scheduler", "linear",
    "--model.channels_last", "true",
]  # fmt: skip


@pytest.mark.timeout(900)
def test_sigkill_resume_with_fast_recipe_options(tmp_path: Path) -> None:
    """The same kill at step 14 with every fast-training option on: the resumed run ends
    bit-identical to an uninterrupted one, including the EMA's average and raw weights."""
    ref = _fit(tmp_path / "ref", "ref", *RECIPE_ARGS)
    assert ref.trainer.global_step == STEPS
    killed = _kill_run(tmp_path, "run", 14, *RECIPE_ARGS)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    resumed = _fit(tmp_path, "run", "--ckpt_path", "last", *RECIPE_ARGS)
    assert resumed.trainer.global_step == STEPS
    ref_last = next((tmp_path / "ref").glob("**/last.ckpt"))
    run_last = max((tmp_path / "run").glob("**/last.ckpt"), key=lambda p: p.stat().st_mtime)
    assert "current_model_state" in _state(run_last)  # the EMA was on
    _assert_same_training_state(ref_last, run_last)


@pytest.mark.slow
@pytest.mark.timeout(1800)
@pytest.mark.parametrize("step", [3, 10, 11, 21, 29])
def test_sigkill_anywhere_then_resume_matches(
    reference_run: Path, tmp_path: Path, step: int
) -> None:
    """More kill points: before the first checkpoint (3: resume finds none and starts over),
    at an epoch boundary (10, 11: resume from the end-of-epoch last.ckpt), late (21, 29)."""
    killed = _kill_run(tmp_path, "run", step=step)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    resumed = _fit(tmp_path, "run", "--ckpt_path", "last")
    assert resumed.trainer.global_step == STEPS
    # Resumed in the killed run's folder; killed before any checkpoint (3): a new run.
    ckpts = Path(resumed.trainer.checkpoint_callback.dirpath)
    assert ckpts.parent.name == ("version_1" if step == 3 else "version_0")
    _assert_same_training_state(reference_run / "last.ckpt", ckpts / "last.ckpt")


# ---- Ctrl-C ------------------------------------------------------------------------------------
REPORTER = """
import lightning as L


class ReportSteps(L.Callback):
    # Prints each optimizer step as it starts, so a test knows when to press Ctrl-C.
    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        print(f"STEP {trainer.global_step}", flush=True)
"""


@pytest.mark.timeout(600)
def test_ctrl_c_mid_epoch_saves_checkpoint_and_resumes_exactly(
    reference_run: Path, tmp_path: Path
) -> None:
    """SIGINT while step 13 runs (epoch 1, no periodic checkpoint due): the process finishes
    that step, writes last_step.ckpt at it, prints one line and exits 130; resuming with
    --ckpt_path last ends bit-identical to the uninterrupted run."""
    helper = tmp_path / "helpers"
    helper.mkdir()
    (helper / "reporter.py").write_text(REPORTER)
    config = tmp_path / "report.yaml"
    config.write_text("trainer:\n  callbacks:\n    - class_path: reporter.ReportSteps\n")
    cmd = [sys.executable, "-m", "resnet_pl.cli", "fit", "--config", str(config), *FIT_ARGS]
    cmd += ["--run_root", str(tmp_path), "--run_name", "run"]
    proc = subprocess.Popen(
        cmd, cwd=REPO, env=_env(path=str(helper)), stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.strip() == "STEP 13":
                proc.send_signal(signal.SIGINT)
                break
        _, stderr = proc.communicate(timeout=300)
    finally:
        proc.kill()
    assert proc.returncode == 130, stderr[-3000:]
    assert "Traceback" not in stderr
    last_line = stderr.strip().splitlines()[-1]
    assert last_line.startswith("resnet-pl: interrupted (Ctrl-C) after global step 14")
    assert "--ckpt_path last" in last_line
    ckpts = tmp_path / "run" / "version_0" / "checkpoints"
    saved = _state(ckpts / "last_step.ckpt")
    assert saved["global_step"] == 14 and saved["epoch"] == 1
    assert not list(ckpts.glob(".*.tmp"))
    resumed = _fit(tmp_path, "run", "--ckpt_path", "last")
    assert resumed.trainer.global_step == STEPS
    _assert_same_training_state(reference_run / "last.ckpt", ckpts / "last.ckpt")


# ---- DDP ---------------------------------------------------------------------------------------
DDP_KILLER = """
import os
import signal

import lightning as L


class KillGroupAt(L.Callback):
    # SIGKILLs every process of the run (both DDP ranks) as optimizer step `step` starts.
    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step == self.step and trainer.is_global_zero:
            os.killpg(os.getpgid(0), signal.SIGKILL)
"""
# Two gloo ranks: 173 training images, each rank its 87, batch 8 (drop_last) = 10 steps per
# epoch, 3 epochs = 30 steps, as in the single-process runs.
DDP_ARGS = [
    "--trainer.accelerator", "cpu", "--trainer.devices", "2", "--trainer.strategy", "ddp",
    "--data.batch_size", "8",
]  # fmt: skip


def _ddp_fit(root: Path, name: str, *extra: str, kill_at: int | None = None) -> Any:
    """A real 2-process ``resnet-pl fit`` (its own process group, so a kill takes both ranks)."""
    helper = root / "helpers"
    helper.mkdir(exist_ok=True)
    (helper / "ddp_killer.py").write_text(DDP_KILLER)
    cmd = [sys.executable, "-m", "resnet_pl.cli", "fit", *FIT_ARGS, *DDP_ARGS]
    if kill_at is not None:
        config = root / f"kill_{kill_at}.yaml"
        config.write_text(
            "trainer:\n  callbacks:\n    - class_path: ddp_killer.KillGroupAt\n"
            f"      init_args:\n        step: {kill_at}\n"
        )
        cmd[4:4] = ["--config", str(config)]
    cmd += ["--run_root", str(root), "--run_name", name, *extra]
    return subprocess.run(
        cmd, cwd=REPO, env=_env(path=str(helper)), capture_output=True, text=True,
        timeout=1200, start_new_session=True,
    )  # fmt: skip


@pytest.mark.slow
@pytest.mark.timeout(3600)
def test_ddp_sigkill_mid_epoch_then_resume_matches_uninterrupted(tmp_path: Path) -> None:
    """Two gloo processes SIGKILLed together at step 14 (epoch 1, mid-epoch; newest checkpoint
    last_step.ckpt at step 12) resume with --ckpt_path last and end bit-identical (weights,
    optimizer, scheduler) to an uninterrupted 2-process run: each rank continues its own share
    of the epoch's order from the saved position, with the saved random states."""
    ref = _ddp_fit(tmp_path, "ref")
    assert ref.returncode == 0, ref.stderr[-3000:]
    killed = _ddp_fit(tmp_path, "run", kill_at=14)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    ckpts = tmp_path / "run" / "version_0" / "checkpoints"
    mid = _state(ckpts / "last_step.ckpt")
    assert mid["global_step"] == 12 and mid["epoch"] == 1
    loader = mid["loops"]["fit_loop"]["state_dict"]["combined_loader"]
    assert loader == [{"epoch": 1, "batches": 2, "world_size": 2}]
    resumed = _ddp_fit(tmp_path, "run", "--ckpt_path", "last")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    ref_last = tmp_path / "ref" / "version_0" / "checkpoints" / "last.ckpt"
    _assert_same_training_state(ref_last, ckpts / "last.ckpt")


def test_per_rank_sampler_state_resumes_each_rank_exactly() -> None:
    """No processes: two ranks' samplers and loaders as DDP would build them. Each rank gets a
    disjoint share of the (seed, epoch) order, all ranks together the whole order (padded by
    wrapping); a state saved after k batches resumes every rank at its own next batch; resumed
    on 1 rank instead of 2, the remaining samples are exactly the ones not yet drawn."""
    from resnet_pl.lightning.datamodules.tensor import TensorImageDataset, collate_batch

    n, batch = 101, 8
    ds = TensorImageDataset(torch.zeros(n, 1, 1, 1), torch.arange(n))

    def loader(rank: int, ranks: int = 2) -> ResumableDataLoader:
        return ResumableDataLoader(
            ds, batch, seed=5, drop_last=True, num_replicas=ranks, rank=rank,
            collate_fn=collate_batch,
        )  # fmt: skip

    order = EpochShuffleSampler(n, 5).permutation(3)
    full = {}
    for rank in (0, 1):
        dl = loader(rank)
        dl.epoch_sampler.set_epoch(3)
        assert len(dl.epoch_sampler) == 51  # ceil(101 / 2)
        full[rank] = [y.tolist() for _, y in dl]
        assert len(full[rank]) == 6  # 51 // 8, drop_last
    shares = {r: list(EpochShuffleSampler(n, 5, num_replicas=2, rank=r).shard(3)) for r in (0, 1)}
    assert shares[0] == order[0::2] and shares[1] == order[1::2] + order[:1]  # padded
    assert sorted(shares[0] + shares[1]) == sorted([*range(n), order[0]])
    assert [i for b in full[0] for i in b] == shares[0][:48]

    # Interrupted after 4 batches on each rank: the state is the same on every rank.
    states = []
    for rank in (0, 1):
        dl = loader(rank)
        dl.epoch_sampler.set_epoch(3)
        it = iter(dl)
        for _ in range(4):
            next(it)
        states.append(dl.state_dict())
    assert states[0] == states[1] == {"epoch": 3, "batches": 4, "world_size": 2}
    for rank in (0, 1):
        dl = loader(rank)
        dl.load_state_dict(states[rank])
        dl.epoch_sampler.set_epoch(3)  # Lightning calls this after loading: keeps the position
        assert [y.tolist() for _, y in dl] == full[rank][4:]
        assert dl.state_dict()["batches"] == 6

    # The same state on one process: the samples neither rank had drawn, in order.
    single = loader(0, ranks=1)
    single.load_state_dict(states[0])
    single.epoch_sampler.set_epoch(3)
    rest = [i for _, y in single for i in y.tolist()]
    drawn = set(shares[0][:32]) | set(shares[1][:32])
    assert rest == order[64:96] and drawn == set(order[:64])
    # A rank outside the world is refused by torch's DistributedSampler checks.
    with pytest.raises(ValueError):
        EpochShuffleSampler(n, 5, num_replicas=2, rank=2)


# ---- atomic checkpoint writes ------------------------------------------------------------------
def _ckpt(version: int, numel: int = 1000) -> dict[str, Any]:
    return {"state_dict": {"w": torch.full((numel,), float(version))}, "global_step": version}


@pytest.mark.parametrize("fault", [OSError(28, "No space left on device"), KeyboardInterrupt()])
def test_failed_save_keeps_previous_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fault: BaseException
) -> None:
    """torch.save dies after writing part of the file (disk full, Ctrl-C): the previous
    last.ckpt is untouched and loads, and no temporary file is left behind."""
    io_ = AtomicCheckpointIO()
    target = tmp_path / "last.ckpt"
    io_.save_checkpoint(_ckpt(1), target)
    before = target.read_bytes()

    def partial_save(obj: Any, f: Any) -> None:
        f.write(b"PK\x03\x04" + b"\0" * 4096)
        raise fault

    monkeypatch.setattr(torch, "save", partial_save)
    with pytest.raises(type(fault)):
        io_.save_checkpoint(_ckpt(2), target)
    monkeypatch.undo()
    assert target.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.ckpt"]
    assert io_.load_checkpoint(target)["global_step"] == 1


WRITER = """
import os, sys, time
from pathlib import Path
import torch
from resnet_pl import fileio
from resnet_pl.lightning import checkpointing

target, where = Path(sys.argv[1]), sys.argv[2]
io_ = checkpointing.AtomicCheckpointIO()
io_.save_checkpoint({"state_dict": {"w": torch.ones(1000)}, "global_step": 1}, target)
big = {"state_dict": {f"w{i}": torch.full((1 << 20,), 2.0) for i in range(16)}, "global_step": 2}


def stall() -> None:
    print("STALLED", flush=True)
    time.sleep(600)


class StallHalfway:
    # A file that stops (forever) once 16 MiB of the 64 MiB checkpoint are on disk.
    def __init__(self, f):
        self.f, self.n = f, 0

    def write(self, data):
        self.f.write(data)
        self.n += memoryview(data).nbytes
        if self.n > 16 << 20:
            self.f.flush()
            os.fsync(self.f.fileno())
            stall()
        return len(data)

    def flush(self):
        self.f.flush()


if where == "mid-write":
    real_save = torch.save
    torch.save = lambda obj, f: real_save(obj, StallHalfway(f))
else:  # written and fsynced, not yet renamed
    fileio.os.replace = lambda a, b: stall()
io_.save_checkpoint(big, target)
"""


@pytest.mark.timeout(300)
@pytest.mark.parametrize("where", ["mid-write", "before-rename"])
def test_sigkill_during_save_never_corrupts_last_ckpt(tmp_path: Path, where: str) -> None:
    """A process SIGKILLed while writing a 64 MiB checkpoint (half written, or written but not
    yet renamed) leaves the old last.ckpt intact; the next save removes the orphan temp file."""
    target = tmp_path / "last.ckpt"
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    proc = subprocess.Popen(
        [sys.executable, str(script), str(target), where],
        stdout=subprocess.PIPE,
        text=True,
        env=_env(),
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "STALLED"
        orphans = list(tmp_path.glob(".last.ckpt.*.tmp"))
        assert len(orphans) == 1 and orphans[0].stat().st_size > 16 << 20
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(timeout=60) == -signal.SIGKILL
    finally:
        proc.kill()
    io_ = AtomicCheckpointIO()
    old = io_.load_checkpoint(target)
    assert old["global_step"] == 1 and torch.equal(old["state_dict"]["w"], torch.ones(1000))
    io_.save_checkpoint(_ckpt(3), target)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.ckpt", "writer.py"]
    assert io_.load_checkpoint(target)["global_step"] == 3


LOOP_WRITER = """
import sys
from pathlib import Path
import torch
from resnet_pl.lightning.checkpointing import AtomicCheckpointIO

io_, target = AtomicCheckpointIO(), Path(sys.argv[1])
for version in range(1, 10_000):
    io_.save_checkpoint({"state_dict": {"w": torch.full((8 << 20,), float(version))},
                         "global_step": version}, target)
    print(version, flush=True)
"""


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_sigkill_at_random_moments_while_saving(tmp_path: Path) -> None:
    """30 kills at random moments of a loop that rewrites a 32 MiB last.ckpt: every time the
    file loads and holds a complete version (the last one reported written, or the next)."""
    import random

    rng = random.Random(0)
    target = tmp_path / "last.ckpt"
    script = tmp_path / "loop.py"
    script.write_text(LOOP_WRITER)
    mid_save = 0
    for _ in range(30):
        proc = subprocess.Popen(
            [sys.executable, str(script), str(target)],
            stdout=subprocess.PIPE,
            text=True,
            env=_env(),
        )
        assert proc.stdout is not None
        assert proc.stdout.readline()  # at least one complete save before the kill window
        time.sleep(rng.uniform(0.0, 1.5))
        proc.send_signal(signal.SIGKILL)
        out, _ = proc.communicate(timeout=60)
        written = [int(v) for v in out.split()]
        last = max(written, default=1)
        mid_save += bool(list(tmp_path.glob(".last.ckpt.*.tmp")))  # the kill hit a save
        ckpt = AtomicCheckpointIO().load_checkpoint(target)
        assert ckpt["global_step"] in (last, last + 1)
        expected = torch.full((8 << 20,), float(ckpt["global_step"]))
        assert torch.equal(ckpt["state_dict"]["w"], expected)
    print(f"random kills: 30, of which {mid_save} landed inside a save; last.ckpt always loaded")
    assert mid_save > 0  # the campaign really exercised kills during writes


# ---- the recipe records its seed ---------------------------------------------------------------
def test_run_records_seed_for_recipes(reference_run: Path) -> None:
    """The saved config of a run (what `resnet-pl hub publish` copies into a weights recipe)
    records the seed, and the shipped Fashion-MNIST config sets one."""
    import yaml

    config = yaml.safe_load((reference_run.parent / "config.yaml").read_text())
    assert config["seed_everything"] == 7
    shipped = yaml.safe_load((REPO / "configs/fashion_mnist_resnet20.yaml").read_text())
    assert shipped["seed_everything"] == 0
    from resnet_pl.hub.checkpoint import make_recipe, read_checkpoint

    recipe = make_recipe(read_checkpoint(reference_run / "last.ckpt"))
    assert recipe["config"]["seed_everything"] == 7


# ================================================================================================
# 2. Determinism
# ================================================================================================
@pytest.mark.timeout(600)
def test_two_seeded_real_runs_are_identical(tmp_path: Path, fashion_mnist_dir: Path) -> None:
    """Two seeded, deterministic CPU runs on 1,280 real Fashion-MNIST images log identical
    metrics and end with bit-identical weights."""
    args = [
        "fit",
        "--config", str(REPO / "configs/fashion_mnist_resnet20.yaml"),
        "--run_root", str(tmp_path),
        "--trainer.max_epochs", "1",
        "--trainer.precision", "32",
        "--trainer.deterministic", "true",
        "--trainer.enable_progress_bar", "false",
        "--trainer.log_every_n_steps", "5",
        "--model.model_kwargs", '{"widths": [8, 16, 32]}',
        "--model.optim.lr", "0.05",
        "--model.optim.warmup_epochs", "0.1",
        "--data.data_dir", str(fashion_mnist_dir),
        "--data.batch_size", "64",
        "--data.train_subset", "1280",
        "--data.val_subset", "500",
        "--checkpoint_every_n_steps", "0",
    ]  # fmt: skip
    runs = [cli_main([*args, "--run_name", name]) for name in ("a", "b")]
    assert runs[0].trainer.global_step == runs[1].trainer.global_step == 20
    for (ka, va), (kb, vb) in zip(
        runs[0].model.state_dict().items(), runs[1].model.state_dict().items(), strict=True
    ):
        assert ka == kb and torch.equal(va, vb), ka
    metrics = [next((tmp_path / n).glob("version_*/metrics.csv")).read_text() for n in "ab"]
    assert metrics[0] == metrics[1] and "val_acc" in metrics[0]
    assert float(runs[0].trainer.callback_metrics["val_acc"]) > 0.2  # it learned (chance: 0.1)


# ================================================================================================
# 3. Numerical faults
# ================================================================================================
class InjectFault(L.Callback):
    """At optimizer step ``step``: NaN input (``nan_input``) or an infinite gradient that
    turns the weights NaN while that step's loss is still finite (``inf_grad``). Records the
    checkpoint file's bytes and mtime just before."""

    def __init__(self, step: int, fault: str, ckpt: Path) -> None:
        self.step, self.fault, self.ckpt = step, fault, ckpt
        self.before: tuple[bytes, int] | None = None

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        if trainer.global_step == self.step:
            self.before = (self.ckpt.read_bytes(), self.ckpt.stat().st_mtime_ns)
            if self.fault == "nan_input":
                batch[0][0].fill_(float("nan"))

    def on_before_optimizer_step(
        self, trainer: L.Trainer, pl_module: L.LightningModule, optimizer: Any
    ) -> None:
        if self.fault == "inf_grad" and trainer.global_step == self.step:
            grad = pl_module.model.fc.weight.grad
            assert grad is not None
            grad.fill_(float("inf"))


@pytest.mark.parametrize(
    ("fault", "error", "match"),
    [
        ("nan_input", NonFiniteLossError, r"loss is nan at global step 5 \(epoch 0, batch 5\)"),
        ("inf_grad", NonFiniteWeightsError, r"not finite .* at global step 6 .*not written"),
    ],
    ids=["nan-input", "inf-gradient"],
)
def test_non_finite_training_stops_and_keeps_last_good_checkpoint(
    tmp_path: Path, fault: str, error: type[Exception], match: str
) -> None:
    """A NaN loss, or NaN weights from an infinite gradient, stops training with an error
    naming the step; last_step.ckpt (saved after every step) keeps the last good state: same
    bytes, same mtime, finite weights; no temporary file is left."""
    ckpts = tmp_path / "ckpts"
    inject = InjectFault(5, fault, ckpts / "last_step.ckpt")
    trainer = L.Trainer(
        accelerator="cpu",
        max_steps=10,
        limit_val_batches=0,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        plugins=[AtomicCheckpointIO()],
        callbacks=[StepCheckpoint(ckpts, every_n_train_steps=1), inject],
    )
    model = ResNetClassifier("resnet20", num_classes=10, model_kwargs={"widths": [8, 16, 32]})
    with pytest.raises(error, match=match):
        trainer.fit(model, ImageDataModule("fake", batch_size=16, fake_size=192))
    assert inject.before is not None
    ckpt = ckpts / "last_step.ckpt"
    assert (ckpt.read_bytes(), ckpt.stat().st_mtime_ns) == inject.before
    kept = _state(ckpt)
    assert kept["global_step"] == 5
    weights = [v for v in kept["state_dict"].values() if v.is_floating_point()]
    assert all(torch.isfinite(v).all() for v in weights)
    assert sorted(p.name for p in ckpts.iterdir()) == ["last_step.ckpt"]


def test_cli_huge_learning_rate_is_one_line_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """lr=1e10 diverges within a few steps: `resnet-pl fit` exits 1 with one line naming the
    step, and every checkpoint on disk holds finite weights."""
    code = main(
        ["fit", "--data.dataset", "fake", "--data.fake_size", "192", "--data.batch_size", "16",
         "--model.model_kwargs", TINY, "--model.optim.lr", "1e10",
         "--model.optim.scheduler", "none",
         "--trainer.max_epochs", "2", "--trainer.enable_progress_bar", "false",
         "--checkpoint_every_n_steps", "1", "--run_root", str(tmp_path)]
    )  # fmt: skip
    err = capsys.readouterr().err
    assert code == 1, err
    line = next(ln for ln in err.splitlines() if ln.startswith("resnet-pl: error:"))
    assert "global step" in line and ("loss is" in line or "not finite" in line)
    assert "Traceback" not in err
    saved = list(tmp_path.rglob("*.ckpt"))
    assert saved  # the steps before the blow-up were checkpointed
    for path in saved:
        for value in _state(path)["state_dict"].values():
            assert not value.is_floating_point() or torch.isfinite(value).all(), path


# ================================================================================================
# 4. Bad data in an image folder
# ================================================================================================
def _encode(img: Image.Image, fmt: str, **kwargs: Any) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kwargs)
    return buf.getvalue()


def png_bomb(width: int, height: int) -> bytes:
    """A valid 1-bit PNG of ``width`` x ``height`` zeros, compressed row by row (a 20000 x
    20000 one is ~50 KB on disk and 400 MB as an 8-bit image in memory)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    comp = zlib.compressobj(9)
    row = b"\0" * (1 + (width + 7) // 8)  # filter byte + packed bits
    idat = b"".join(comp.compress(row) for _ in range(height)) + comp.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


@pytest.fixture(scope="module")
def fmnist_images(fashion_mnist_dir: Path) -> list[Image.Image]:
    """Twelve real Fashion-MNIST test images as 28x28 grayscale PIL images."""
    from resnet_pl.data import load_idx_dataset

    x, _ = load_idx_dataset("fashion_mnist", "test", fashion_mnist_dir)
    return [Image.fromarray(x[i, 0].numpy()) for i in range(12)]


def odd_mode_files(img: Image.Image) -> dict[str, bytes]:
    """Readable images in every awkward mode: each must be converted, not refused."""
    import numpy as np

    arr = np.asarray(img)
    rgba = img.convert("RGBA")
    p_alpha = img.convert("P", palette=Image.Palette.ADAPTIVE)
    return {
        "cmyk.jpg": _encode(img.convert("CMYK"), "JPEG", quality=95),
        "rgba.png": _encode(rgba, "PNG"),
        "la.png": _encode(img.convert("LA"), "PNG"),
        "gray16.png": _encode(Image.fromarray(arr.astype(np.uint16) * 257), "PNG"),
        "palette.gif": _encode(img.convert("P", palette=Image.Palette.ADAPTIVE), "GIF"),
        "palette_alpha.png": _encode(p_alpha, "PNG", transparency=0),
        "bilevel.bmp": _encode(img.convert("1"), "BMP"),
        "cmyk.tif": _encode(img.convert("CMYK"), "TIFF"),
    }


def bad_files(img: Image.Image) -> dict[str, bytes]:
    """Files no policy can use: truncated, garbage, empty, renamed text, a decompression bomb."""
    png = _encode(img, "PNG")
    return {
        "truncated.png": png[: len(png) // 2],
        "truncated.jpg": _encode(img, "JPEG")[:200],
        "garbage.jpg": bytes(range(256)) * 4,
        "empty.png": b"",
        "text.png": b"this is not an image\n",
        "bomb.png": png_bomb(20_000, 20_000),
    }


def make_folder(root: Path, images: list[Image.Image], extra: dict[str, bytes]) -> None:
    """train/{bag,coat,dress} with 3 good PNGs each, ``extra`` files in train/bag, a notes file
    and an empty class folder; val/ with one image per class."""
    for c, cls in enumerate(("bag", "coat", "dress")):
        for split, count in (("train", 3), ("val", 1)):
            folder = root / split / cls
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                images[c * 4 + i].save(folder / f"{i}.png")
    for name, data in extra.items():
        (root / "train" / "bag" / name).write_bytes(data)
    (root / "train" / "bag" / "notes.txt").write_text("labels checked by hand")
    (root / "train" / "empty_class").mkdir()


def test_imagefolder_skip_policy_counts_and_lists_bad_files(
    tmp_path: Path, fmnist_images: list[Image.Image], caplog: pytest.LogCaptureFixture
) -> None:
    """bad_files='skip': odd modes are converted and used; truncated, garbage, empty and bomb
    files and the empty class folder are left out, counted and listed in one warning; the
    empty folder is not a class; training batches come out as uint8 RGB."""
    odd, bad = odd_mode_files(fmnist_images[0]), bad_files(fmnist_images[0])
    make_folder(tmp_path, fmnist_images, {**odd, **bad})
    dm = ImageDataModule(
        "imagefolder", data_dir=str(tmp_path), image_size=32, batch_size=4, num_workers=0
    )
    assert dm.class_names == ["bag", "coat", "dress"] and dm.num_classes == 3
    with caplog.at_level("WARNING"):
        dm.setup("fit")
    assert len(dm.train_set) == 9 + len(odd)  # type: ignore[arg-type]
    assert dm._scan_folder()["ignored"] == 1  # notes.txt: not an image extension, counted
    skipped = dm._scan_folder()["skipped_files"]
    assert len(skipped) == len(bad) + 1
    for name in bad:
        assert sum(name in s for s in skipped) == 1, name
    assert any("empty_class is empty" in s for s in skipped)
    warning = " ".join(r.getMessage() for r in caplog.records if r.levelname == "WARNING")
    assert f"skipped {len(bad) + 1} bad image file(s)" in warning
    assert all(name in warning for name in bad)
    x, y = next(iter(dm.train_dataloader()))
    assert x.dtype == torch.uint8 and x.shape == (4, 3, 32, 32) and int(y.max()) < 3


def test_odd_modes_convert_to_the_same_pixels(
    tmp_path: Path, fmnist_images: list[Image.Image]
) -> None:
    """Lossless odd modes decode to the source image's pixels (16-bit scaled, not clipped;
    alpha composited on black; palette kept), lossy ones to the right size and mode."""
    import numpy as np

    from resnet_pl.data.folder import read_image

    src = np.asarray(fmnist_images[0].convert("RGB"))
    for name, data in odd_mode_files(fmnist_images[0]).items():
        path = tmp_path / name
        path.write_bytes(data)
        out = read_image(path, 3)
        assert out.mode == "RGB" and out.size == (28, 28), name
        if name.endswith((".png", ".gif")) and name != "palette_alpha.png":
            assert np.array_equal(np.asarray(out), src), name
        if name.startswith("cmyk"):
            assert np.abs(np.asarray(out).astype(int) - src).mean() < 8, name


@pytest.mark.parametrize("name", [*bad_files(Image.new("L", (28, 28))), "empty_class"])
def test_imagefolder_error_policy_names_the_file(
    tmp_path: Path, fmnist_images: list[Image.Image], name: str
) -> None:
    """bad_files='error': setup stops at the bad file (or empty class folder), naming it and
    the way out, before any training."""
    from resnet_pl.data import BadDataError

    extra = {} if name == "empty_class" else {name: bad_files(fmnist_images[0])[name]}
    make_folder(tmp_path, fmnist_images, extra)
    if name != "empty_class":
        (tmp_path / "train" / "empty_class").rmdir()
    dm = ImageDataModule(
        "imagefolder", data_dir=str(tmp_path), image_size=32, bad_files="error", num_workers=0
    )
    with pytest.raises(BadDataError, match=rf"{name}.*bad_files skip"):
        dm.setup("fit")


@pytest.mark.parametrize("side", [10_000, 20_000], ids=["warn-zone", "over-2x-limit"])
def test_decompression_bomb_refused_with_bounded_memory(tmp_path: Path, side: int) -> None:
    """A ~50 KB PNG declaring side x side pixels (100 M / 400 M; Pillow's limit is ~89.5 M and
    it only *warns* below twice that) is refused by the training and the classify loaders
    without decoding it: the peak RSS grows by less than 32 MiB (decoding would take 100-400
    MiB, 3x that as RGB)."""
    from resnet_pl.data import ImageLoadError, load_image
    from resnet_pl.data.folder import read_image

    path = tmp_path / "bomb.png"
    path.write_bytes(png_bomb(side, side))
    assert path.stat().st_size < 200_000
    if not _peak_rss_reset():
        pytest.skip("needs Linux /proc/self/clear_refs to measure the peak")
    base = _rss_kib()
    with pytest.raises(ImageLoadError, match=r"bomb\.png.*decompression bomb"):
        read_image(path, 3)
    with pytest.raises(ImageLoadError, match="decompression bomb"):
        load_image(path, 1)
    assert _peak_rss_kib() - base < 32 * 1024


# ================================================================================================
# 5. Bad configuration: one line, exit 2, nothing trained or written
# ================================================================================================
FAKE = ["--data.dataset", "fake", "--data.fake_size", "64", "--data.batch_size", "16",
        "--model.model_kwargs", '{"widths": [8, 16, 32]}', "--trainer.max_steps", "2",
        "--trainer.enable_progress_bar", "false"]  # fmt: skip

BAD_OPTIONS = {
    "unknown-arch": (["--model.arch", "resnet21"], r"unknown model 'resnet21'.*Did you mean"),
    "unknown-dataset": (["--data.dataset", "fashion-mnist"], r"Did you mean fashion_mnist"),
    "unknown-optimizer": (["--model.optim.optimizer", "lamb"], r"model\.optim\.optimizer.*lamb"),
    "unknown-scheduler": (["--model.optim.scheduler", "poly"], r"model\.optim\.scheduler.*poly"),
    "zero-batch": (["--data.batch_size", "0"], r"batch_size must be a positive integer, got 0"),
    "negative-batch": (["--data.batch_size", "-8"], r"batch_size must be a positive integer"),
    "text-batch": (["--data.batch_size", "lots"], r"data\.batch_size.*lots"),
    "zero-lr": (["--model.optim.lr", "0"], r"lr must be a positive number, got 0\.0"),
    "negative-lr": (["--model.optim.lr", "-0.1"], r"lr must be a positive number"),
    "nan-lr": (["--model.optim.lr", "nan"], r"model\.optim\.lr.*nan|lr must be a positive number"),
    "missing-ckpt": (["--ckpt_path", "/nonexistent/last.ckpt"], r"ckpt_path .* does not exist"),
    "negative-wd": (["--model.optim.weight_decay", "-1"], r"weight_decay must be a finite number"),
    "num-classes": (["--model.num_classes", "7"], r"num_classes"),
    "bad-model-kwargs": (["--model.model_kwargs", '{"wdths": [8]}'], r"bad model_kwargs"),
    "no-weights": (["--model.arch", "resnet32", "--model.pretrained", "true"], r"resnet32"),
    "missing-folder": (
        ["--data.dataset", "imagefolder", "--data.data_dir", "/nonexistent/images"],
        r"image folder /nonexistent/images does not exist",
    ),
    "run-root-is-file": (["--run_root", "/etc/hostname"], r"cannot write to /etc/hostname"),
}


@pytest.mark.parametrize("case", list(BAD_OPTIONS))
def test_bad_configuration_is_one_line_before_training(
    case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    extra, match = BAD_OPTIONS[case]
    code = main(["fit", *FAKE, "--run_root", str(tmp_path), *extra])
    err = capsys.readouterr().err
    errors = [ln for ln in err.splitlines() if "error" in ln.lower()]
    assert code == 2, err
    assert len(errors) == 1 and errors[0].startswith("resnet-pl: error: "), err
    assert re.search(match, errors[0]), errors[0]
    assert "Traceback" not in err and len(err.splitlines()) <= 3, err
    assert not list(tmp_path.rglob("*.ckpt")) and not list(tmp_path.rglob("metrics.csv"))


def test_read_only_run_root(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    if os.access(ro, os.W_OK):  # root ignores permission bits; a read-only mount does not
        ro = Path("/sys/resnet_pl_probe")
        if os.access("/sys", os.W_OK) and not _cannot_mkdir(ro):
            pytest.skip("no read-only folder available to this (root) user")
    code = main(["fit", *FAKE, "--run_root", str(ro)])
    err = capsys.readouterr().err
    assert code == 2 and f"resnet-pl: error: cannot write to {ro}" in err, err


def _cannot_mkdir(path: Path) -> bool:
    try:
        path.mkdir()
    except OSError:
        return True
    path.rmdir()
    return False


def test_cli_subprocess_prints_one_line_not_a_traceback(tmp_path: Path) -> None:
    """The real console entry point: exit status 2, the message last, no traceback, no usage
    page."""
    out = subprocess.run(
        [sys.executable, "-m", "resnet_pl.cli", "fit", *FAKE, "--model.optim.lr", "-1",
         "--run_root", str(tmp_path)],
        capture_output=True, text=True, cwd=REPO, env=_env(), timeout=300,
    )  # fmt: skip
    assert out.returncode == 2, out.stderr
    assert out.stderr.strip().splitlines()[-1] == (
        "resnet-pl: error: lr must be a positive number, got -1.0"
    )
    assert "Traceback" not in out.stderr and len(out.stderr.splitlines()) <= 3, out.stderr


def test_api_num_classes_mismatch_fails_before_any_step(tmp_path: Path) -> None:
    model = ResNetClassifier("resnet20", num_classes=7, model_kwargs={"widths": [8, 16, 32]})
    before = {k: v.clone() for k, v in model.state_dict().items()}
    trainer = L.Trainer(
        accelerator="cpu", max_steps=3, logger=False, enable_progress_bar=False,
        default_root_dir=tmp_path, plugins=[AtomicCheckpointIO()],
    )  # fmt: skip
    with pytest.raises(ConfigError, match="num_classes=7 but the dataset 'fake' has 10"):
        trainer.fit(model, ImageDataModule("fake", batch_size=16, fake_size=64))
    assert trainer.global_step == 0 and not list(tmp_path.rglob("*.ckpt"))
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())


# ================================================================================================
# 6. Untrusted files: nothing is ever unpickled without an explicit opt-in
# ================================================================================================
class PlantMarker:
    """Unpickling this calls open(marker, "w"): a stand-in for arbitrary code execution."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self) -> tuple[Any, ...]:
        return (open, (self.marker, "w"))


@pytest.fixture(scope="module")
def real_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A genuine resnet-pl checkpoint: 2 steps of a tiny model on fake data."""
    root = tmp_path_factory.mktemp("real_ckpt")
    trainer = L.Trainer(
        accelerator="cpu", max_steps=2, limit_val_batches=0, logger=False,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        default_root_dir=root,
    )  # fmt: skip
    model = ResNetClassifier("resnet20", model_kwargs={"widths": [8, 16, 32]})
    trainer.fit(model, ImageDataModule("fake", batch_size=16, fake_size=64))
    trainer.save_checkpoint(root / "real.ckpt")
    return root / "real.ckpt"


def plant(real: Path, out: Path, marker: Path) -> Path:
    """``real`` with one extra entry whose unpickling would create ``marker``."""
    ckpt = torch.load(real, weights_only=True)
    ckpt["callbacks"] = {"Innocent": {"state": PlantMarker(marker)}}
    torch.save(ckpt, out)
    return out


def test_malicious_checkpoint_is_refused_everywhere(
    tmp_path: Path, real_ckpt: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    """A tampered checkpoint is refused, with the reason and the opt-in, by every loader:
    ResNetClassifier.load_from_checkpoint, `resnet-pl fit/validate --ckpt_path`, the export /
    classify and hub readers -- even with TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1, which flips
    torch's own default. Control: a plain unpickle of the same file does run the payload."""
    from resnet_pl.deploy.source import CheckpointError, load_checkpoint
    from resnet_pl.hub.checkpoint import CheckpointFormatError, read_checkpoint

    marker = tmp_path / "PWNED"
    evil = plant(real_ckpt, tmp_path / "evil.ckpt", marker)
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    with pytest.raises(UntrustedCheckpointError, match="weights_only=False"):
        ResNetClassifier.load_from_checkpoint(evil)
    with pytest.raises(UntrustedCheckpointError, match=r"GLOBAL io\.open"):
        AtomicCheckpointIO().load_checkpoint(evil)
    for command in ("fit", "validate"):
        code = main([command, *FAKE, "--run_root", str(tmp_path), "--ckpt_path", str(evil)])
        err = capsys.readouterr().err
        assert code == 2, err
        assert (
            "resnet-pl: error: refused to load checkpoint" in err and "--weights_only false" in err
        )
    with pytest.raises(CheckpointError):
        load_checkpoint(evil)
    with pytest.raises(CheckpointFormatError):
        read_checkpoint(evil)
    assert not marker.exists()
    torch.load(evil, weights_only=False)  # the control: the payload is live
    assert marker.exists()


def test_trusted_checkpoint_opt_in(tmp_path: Path, real_ckpt: Path) -> None:
    """`--weights_only false` (and weights_only=False in Python) is the explicit opt-in for a
    file the user trusts: then it is fully unpickled (here: the payload runs)."""
    marker = tmp_path / "RAN"
    evil = plant(real_ckpt, tmp_path / "trusted.ckpt", marker)
    code = main(["validate", *FAKE, "--run_root", str(tmp_path), "--ckpt_path", str(evil),
                 "--weights_only", "false"])  # fmt: skip
    assert code == 0 and marker.exists()
    marker.unlink()
    ResNetClassifier.load_from_checkpoint(evil, weights_only=False)
    assert marker.exists()


def test_truncated_checkpoint_is_a_clear_error(tmp_path: Path, real_ckpt: Path) -> None:
    cut = tmp_path / "cut.ckpt"
    cut.write_bytes(real_ckpt.read_bytes()[:5000])
    with pytest.raises(BadCheckpointError, match="truncated, corrupt or not a PyTorch checkpoint"):
        AtomicCheckpointIO().load_checkpoint(cut)


def test_malicious_weights_files_are_never_unpickled(tmp_path: Path, real_ckpt: Path) -> None:
    """Weights files: a pickle registered with a *matching* sha256 (an attacker controls both
    the record and the file), a pickle renamed .safetensors, and a Hugging Face-style folder
    whose model.safetensors is a pickle. All refused by the registry, torch.hub entry points
    and from_pretrained; the payload never runs."""
    import shutil

    from resnet_pl import create_model
    from resnet_pl.hub import from_pretrained
    from resnet_pl.hub.pretrained import sha256_file
    from resnet_pl.hub.weights import (
        REQUIRED_CFG_KEYS,
        WeightsEntry,
        WeightsVerificationError,
        register_weights,
        remove_weights,
    )

    marker = tmp_path / "PWNED"
    payload = {"conv1.weight": torch.zeros(8, 1, 3, 3), "x": PlantMarker(marker)}
    torch.save(payload, tmp_path / "evil.pth")
    shutil.copy(tmp_path / "evil.pth", tmp_path / "evil.safetensors")
    for tag, file in (("evilpth", "evil.pth"), ("evilst", "evil.safetensors")):
        entry = WeightsEntry(
            arch="resnet20", tag=tag, arch_kwargs={}, num_classes=10, in_chans=1,
            pretrained_cfg={
                **dict.fromkeys(REQUIRED_CFG_KEYS),
                "input_size": (1, 28, 28), "mean": (0.5,), "std": (0.5,), "crop_pct": 1.0,
                "interpolation": "bilinear", "num_classes": 10, "dataset": "fashion_mnist",
                "metrics": {}, "file": file,
                "sha256": sha256_file(tmp_path / file),  # the attacker's file, matching
            },
            record_dir=tmp_path,
        )  # fmt: skip
        register_weights(entry, replace=True)
        try:
            with pytest.raises(WeightsVerificationError, match=r"NOT unpickled|refused"):
                create_model(f"resnet20.{tag}", pretrained=True)
            with pytest.raises(WeightsVerificationError):  # the torch.hub entry point
                torch.hub.load(str(REPO), "resnet20", source="local", weights=tag)
        finally:
            remove_weights(f"resnet20.{tag}")
    from resnet_pl.hub import save_pretrained

    folder = save_pretrained(create_model("resnet20"), tmp_path / "hf")
    weights = next(folder.glob("*.safetensors"))
    config = (folder / "config.json").read_text()
    shutil.copy(tmp_path / "evil.pth", weights)  # swapped after publishing
    with pytest.raises(WeightsVerificationError, match=r"sha256 mismatch"):
        from_pretrained(folder)
    # ... and with config.json's hashes forged to match the swapped file
    old, new = json.loads(config)["sha256"], sha256_file(weights)
    (folder / "config.json").write_text(config.replace(old, new))
    with pytest.raises(WeightsVerificationError, match=r"pickle"):
        from_pretrained(folder)
    assert not marker.exists()


# ================================================================================================
# 7. Fuzzing: mutated real files into every loader
# ================================================================================================
# Default run: FUZZ_CASES examples per target (hypothesis stops early only if it exhausts the
# strategy). `pytest -m slow -k fuzz` runs FUZZ_CASES_SLOW. Each example must either load or
# raise the loader's documented error; a deadline catches hangs, the peak RSS catches blow-ups.
FUZZ_CASES, FUZZ_CASES_SLOW = 200, 5000
MUTATIONS = ("flip", "set", "truncate", "insert", "delete", "splice")


@st.composite
def mutated(draw: st.DrawFn, seeds: list[bytes]) -> bytes:
    """A real file with 1-8 mutations: bit flips, boundary bytes, truncation, inserted or
    deleted runs, and a splice of another seed (which crosses headers between files)."""
    data = bytearray(draw(st.sampled_from(seeds)))
    for _ in range(draw(st.integers(1, 8))):
        if not data:
            break
        op = draw(st.sampled_from(MUTATIONS))
        i = draw(st.integers(0, len(data) - 1))
        if op == "flip":
            data[i] ^= 1 << draw(st.integers(0, 7))
        elif op == "set":
            data[i] = draw(st.sampled_from([0x00, 0x01, 0x7F, 0x80, 0xFF]))
        elif op == "truncate":
            del data[i:]
        elif op == "insert":
            data[i:i] = draw(st.binary(min_size=1, max_size=32))
        elif op == "delete":
            del data[i : i + draw(st.integers(1, 64))]
        else:
            other = draw(st.sampled_from(seeds))
            data[i:] = other[draw(st.integers(0, len(other) - 1)) :]
    return bytes(data)


def fuzz_inputs(seeds: list[bytes]) -> st.SearchStrategy[bytes]:
    return st.one_of(mutated(seeds), st.binary(max_size=1024), st.sampled_from(seeds))


class FuzzStats:
    """Counts examples and outcomes for the report; checks the peak RSS growth."""

    def __init__(self, name: str, record: Any) -> None:
        self.name, self.record = name, record
        self.outcomes: dict[str, int] = {}
        self.examples = 0
        self.measured = _peak_rss_reset()
        self.base = _rss_kib()

    def example(self) -> None:
        self.examples += 1

    def __call__(self, outcome: str) -> None:
        self.outcomes[outcome] = self.outcomes.get(outcome, 0) + 1

    def finish(self, limit_mib: int) -> None:
        n = self.examples
        growth = max(_peak_rss_kib() - self.base, 0) // 1024 if self.measured else -1
        report = f"fuzz {self.name}: {n} cases, peak RSS +{growth} MiB, outcomes {self.outcomes}"
        print(report)
        self.record("fuzz", report)
        assert n >= 50, report
        assert growth < limit_mib, report


def fuzz_settings(n: int) -> Any:
    return settings(
        max_examples=n,
        deadline=timedelta(seconds=10),
        database=None,
        derandomize=True,  # the same cases every run: CI failures reproduce
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


@pytest.fixture(scope="module")
def image_seeds(fmnist_images: list[Image.Image]) -> list[bytes]:
    """Real Fashion-MNIST images as PNG (gray, RGB, palette), JPEG, GIF and BMP files."""
    img = fmnist_images[1]
    return [
        _encode(img, "PNG"),
        _encode(img.convert("RGB"), "PNG"),
        _encode(img.convert("P", palette=Image.Palette.ADAPTIVE), "PNG"),
        _encode(img, "JPEG", quality=90),
        _encode(img.convert("RGB"), "JPEG", quality=75, progressive=True),
        _encode(img, "GIF"),
        _encode(img, "BMP"),
    ]


def _fuzz_images(seeds: list[bytes], n: int, tmp: Path, record: Any) -> None:
    from resnet_pl import create_model
    from resnet_pl.data import ImageLoadError, load_image
    from resnet_pl.data.folder import read_image
    from resnet_pl.deploy.runtime import TorchClassifier

    clf = TorchClassifier(create_model("resnet20", widths=[8, 16, 32], in_chans=1))
    stats = FuzzStats("images", record)
    path = tmp / "fuzzed.img"

    @fuzz_settings(n)
    @given(data=fuzz_inputs(seeds))
    def run(data: bytes) -> None:
        stats.example()
        path.write_bytes(data)
        try:  # the training loader
            img = read_image(path, 3)
            assert img.mode == "RGB" and img.width * img.height <= Image.MAX_IMAGE_PIXELS
            stats("train:ok")
        except ImageLoadError as err:
            assert str(path) in str(err)
            stats("train:ImageLoadError")
        try:  # the classify loader
            load_image(path, 1)
            stats("classify:ok")
        except ImageLoadError:
            stats("classify:ImageLoadError")
        [result] = clf.classify_files([path], top_k=3)  # never raises: errors are per file
        assert (result.prediction is None) == (result.error is not None)

    run()
    stats.finish(limit_mib=1024)


@pytest.mark.timeout(900)
def test_fuzz_image_loaders(image_seeds: list[bytes], tmp_path: Path, record_property: Any) -> None:
    """Mutated PNG/JPEG/GIF/BMP bytes into the training loader (read_image), the classify
    loader (load_image) and classify_files: only ImageLoadError / per-file
    errors, no hang, peak RSS growth < 1 GiB (Pillow's pixel limit bounds any decode)."""
    _fuzz_images(image_seeds, FUZZ_CASES, tmp_path, record_property)


@pytest.fixture(scope="module")
def weight_seeds(real_ckpt: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    """A real safetensors file, a real Lightning checkpoint and a real ONNX export of the same
    tiny network."""
    from safetensors.torch import save_file

    from resnet_pl.deploy import export_onnx

    model = ResNetClassifier.load_from_checkpoint(real_ckpt).model
    tmp = tmp_path_factory.mktemp("weight_seeds")
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, tmp / "w.safetensors")
    export_onnx(model, tmp / "m.onnx", input_shape=(3, 32, 32), verify=False)
    return {
        "safetensors": (tmp / "w.safetensors").read_bytes(),
        "ckpt": real_ckpt.read_bytes(),
        "onnx": (tmp / "m.onnx").read_bytes(),
    }


# Two open bugs in resnet_pl/deploy, reported to its owner. (1) source.py load_checkpoint
# catches UnpicklingError, RuntimeError, EOFError and OSError from torch.load(weights_only=True),
# but torch's restricted unpickler raises other types on malformed legacy pickles (b"J" alone:
# struct.error; b"\x80\x02R.": IndexError; b"\x80\x02h\x00.": KeyError). (2) runtime.py
# OnnxClassifier lets onnxruntime's own exceptions (InvalidProtobuf ..., subclasses of Exception
# only) escape, so `resnet-pl classify` prints a traceback for a corrupt .onnx. Until fixed,
# such escapes make the weights fuzz test xfail with their count, after its other checks pass.


def _fuzz_weights(seeds: dict[str, bytes], n: int, tmp: Path, record: Any) -> None:
    from resnet_pl.deploy.runtime import OnnxClassifier
    from resnet_pl.deploy.source import CheckpointError, load_checkpoint
    from resnet_pl.hub.pretrained import read_state_dict
    from resnet_pl.hub.weights import WeightsVerificationError

    stats = {k: FuzzStats(k, record) for k in seeds}
    escaped: list[str] = []

    def target(kind: str, data: bytes) -> None:
        path = tmp / f"fuzzed.{kind}"
        path.write_bytes(data)
        outcome = stats[kind]
        if kind == "safetensors":
            try:
                state = read_state_dict(path, "safetensors")
                assert all(isinstance(v, torch.Tensor) for v in state.values())
                outcome("ok")
            except WeightsVerificationError:
                outcome("WeightsVerificationError")
        elif kind == "ckpt":
            try:
                ckpt = AtomicCheckpointIO().load_checkpoint(path)
                outcome("io:ok")
            except (BadCheckpointError, UntrustedCheckpointError) as err:
                outcome(f"io:{type(err).__name__}")
                ckpt = None
            assert ckpt is None or isinstance(ckpt, dict)
            try:
                load_checkpoint(path)
                outcome("deploy:ok")
            except CheckpointError:
                outcome("deploy:CheckpointError")
            except ValueError as err:  # e.g. a mutated arch name: UnknownModelError
                outcome(f"deploy:{type(err).__name__}")
            except Exception as err:  # reported bug, see the note above _fuzz_weights
                outcome(f"deploy:UNDOCUMENTED {type(err).__name__}")
                escaped.append(f"load_checkpoint {type(err).__name__}: {err}")
        else:
            try:
                OnnxClassifier(path)
                outcome("ok")
            except ValueError as err:
                outcome(type(err).__name__)
            except Exception as err:
                if not type(err).__module__.startswith("onnxruntime"):
                    raise
                outcome(f"UNDOCUMENTED {type(err).__name__}")  # reported bug, see the note
                escaped.append(f"OnnxClassifier {type(err).__name__}: {err}")

    def campaign(kind: str) -> None:
        @fuzz_settings(n)
        @given(data=fuzz_inputs([seeds[kind]]))
        def run(data: bytes) -> None:
            stats[kind].example()
            target(kind, data)

        stats[kind].base = _rss_kib()
        _peak_rss_reset()
        run()
        stats[kind].finish(limit_mib=512)

    for kind in seeds:
        campaign(kind)
    if escaped:  # the rest of the contract held; this part is someone else's open bug
        kinds = sorted({e.split(":")[0] for e in escaped})
        pytest.fail(f"resnet_pl.deploy let {len(escaped)} undocumented errors escape: {kinds}")


@pytest.mark.timeout(900)
def test_fuzz_weight_loaders(
    weight_seeds: dict[str, bytes], tmp_path: Path, record_property: Any
) -> None:
    """Mutated safetensors, Lightning checkpoints and ONNX files into the hub's safetensors
    reader, our checkpoint IO (weights_only), the deploy checkpoint loader and ONNX Runtime
    sessions: only their documented errors, no hang, peak RSS growth < 512 MiB."""
    _fuzz_weights(weight_seeds, FUZZ_CASES, tmp_path, record_property)


@pytest.mark.slow
@pytest.mark.timeout(7200)
def test_fuzz_everything_long(
    image_seeds: list[bytes],
    weight_seeds: dict[str, bytes],
    tmp_path: Path,
    record_property: Any,
) -> None:
    _fuzz_images(image_seeds, FUZZ_CASES_SLOW, tmp_path, record_property)
    _fuzz_weights(weight_seeds, FUZZ_CASES_SLOW, tmp_path, record_property)


# ---- the resumable loader on its own ------------------------------------------------------------
@pytest.mark.parametrize("workers", [0, 2])
def test_loader_resumes_at_the_saved_batch(workers: int) -> None:
    """Stop after 3 batches of epoch 1, rebuild the loader from its state_dict: the remaining
    batches are exactly those of the uninterrupted epoch, also with worker processes; a
    second interruption in the same epoch resumes correctly too; the order of an epoch
    depends on (seed, epoch) only."""
    from resnet_pl.lightning.datamodules.tensor import TensorImageDataset, collate_batch

    ds = TensorImageDataset(torch.arange(100).view(100, 1, 1, 1), torch.arange(100))

    def loader() -> ResumableDataLoader:
        return ResumableDataLoader(
            ds, 8, seed=3, drop_last=True, num_workers=workers, collate_fn=collate_batch
        )

    full = loader()
    full.epoch_sampler.set_epoch(1)
    expected = [y.tolist() for _, y in full]
    flat = [i for batch in expected for i in batch]
    assert len(expected) == 12 and flat != sorted(flat) and len(set(flat)) == 96  # shuffled

    first = loader()
    first.epoch_sampler.set_epoch(1)
    it = iter(first)
    seen = [next(it)[1].tolist() for _ in range(3)]
    state = first.state_dict()
    assert state == {"epoch": 1, "batches": 3, "world_size": 1}

    second = loader()
    second.load_state_dict(state)
    second.epoch_sampler.set_epoch(1)  # Lightning calls this after loading: keeps the position
    it = iter(second)
    seen += [next(it)[1].tolist() for _ in range(4)]
    third = loader()
    third.load_state_dict(second.state_dict())  # {"epoch": 1, "batches": 7, ...}
    seen += [y.tolist() for _, y in third]
    assert seen == expected

    third.epoch_sampler.set_epoch(2)  # a new epoch: a new order, from its start
    again = [y.tolist() for _, y in third]
    assert len(again) == 12 and again != expected
    assert EpochShuffleSampler(100, 3).permutation(2) == EpochShuffleSampler(100, 3).permutation(2)
    assert EpochShuffleSampler(100, 3).permutation(2) != EpochShuffleSampler(100, 4).permutation(2)
