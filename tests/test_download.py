"""``download: auto``: a local copy when there is one, else one verified download into the cache.

The real Fashion-MNIST ``.gz`` files are served from a loopback HTTP server that counts requests;
torchvision's ``FashionMNIST.mirrors`` points at it. The Debian package is hidden by replacing the
system folder in the resolution order itself (not by passing another ``data_dir``). The Debian
package re-compressed the files, so their ``.gz`` md5s differ from upstream's: the test sets the
class's ``resources`` to the served files' md5s, computed here, so the check that runs is the real
one against the bytes served.
"""

from __future__ import annotations

import hashlib
import http.server
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import lightning as L
import pytest
from torchvision import datasets as tv

from resnet_pl import ImageDataModule, ResNetClassifier
from resnet_pl.data import datasets as ds
from resnet_pl.data.download import resolve
from resnet_pl.data.errors import BadDataError, DataNotFoundError

NAMES = (
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
)


class Mirror:
    """A loopback HTTP server serving the given files; counts requests, can truncate one."""

    def __init__(self, files: dict[str, bytes], delay_s: float = 0.0) -> None:
        self.files, self.delay_s = files, delay_s
        self.requests: list[str] = []
        self.truncate: set[str] = set()
        mirror = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                name = self.path.lstrip("/")
                mirror.requests.append(name)
                time.sleep(mirror.delay_s)
                body = mirror.files.get(name)
                if body is None:
                    self.send_error(404)
                    return
                if name in mirror.truncate:
                    body = body[: len(body) // 2]
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def served(fashion_mnist_dir: Path) -> dict[str, bytes]:
    return {n: (fashion_mnist_dir / n).read_bytes() for n in NAMES}


@pytest.fixture
def mirror(
    served: dict[str, bytes], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Mirror]:
    """A mirror of the real files, the Debian folder hidden, an empty cache under tmp_path."""
    m = Mirror(served)
    monkeypatch.setattr(tv.FashionMNIST, "mirrors", [m.url])
    monkeypatch.setattr(
        tv.FashionMNIST,
        "resources",
        [(n, hashlib.md5(b, usedforsecurity=False).hexdigest()) for n, b in served.items()],
    )
    monkeypatch.setattr(ds, "DEBIAN_FASHION_MNIST", tmp_path / "no-debian-package")
    monkeypatch.setenv("RESNET_PL_DATA", str(tmp_path / "cache"))
    monkeypatch.delenv("RESNET_PL_OFFLINE", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    try:
        yield m
    finally:
        m.stop()


def raw(tmp_path: Path) -> Path:
    return tmp_path / "cache" / "FashionMNIST" / "raw"


def test_resolution_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """data_dir (three layouts), then the Debian folder, then the cache (three layouts)."""
    monkeypatch.setenv("RESNET_PL_DATA", str(tmp_path / "cache"))
    d, c = tmp_path / "mine", tmp_path / "cache"
    assert ds.idx_candidates("fashion_mnist", d) == [
        d,
        d / "FashionMNIST" / "raw",
        d / "fashion_mnist",
        ds.DEBIAN_FASHION_MNIST,
        c,
        c / "FashionMNIST" / "raw",
        c / "fashion_mnist",
    ]
    assert ds.idx_candidates("mnist", None) == [c, c / "MNIST" / "raw", c / "mnist"]


def test_first_fit_downloads_verifies_and_trains_then_never_again(
    mirror: Mirror, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dm = ImageDataModule("fashion_mnist", train_subset=64, val_subset=32, batch_size=32)
    assert dm.hparams["download"] == "auto"  # the default
    model = ResNetClassifier(
        "resnet20", num_classes=10, in_chans=1, model_kwargs={"widths": [4, 8, 8]}
    )
    trainer = L.Trainer(
        max_steps=2,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
    )
    trainer.fit(model, dm)
    assert trainer.global_step == 2
    assert sorted(mirror.requests) == sorted(NAMES)  # each file once
    assert sorted(p.name for p in raw(tmp_path).iterdir() if not p.name.startswith(".")) == sorted(
        NAMES
    )
    err = capsys.readouterr().err
    line = [x for x in err.splitlines() if "fashion_mnist:" in x]
    assert len(line) == 1 and "downloaded 4 file(s)" in line[0] and "md5 verified" in line[0]
    assert str(raw(tmp_path)) in line[0]

    # A second run (and a strict offline one) finds the cache and never touches the network.
    for mode in ("auto", False):
        again = ImageDataModule("fashion_mnist", download=mode)
        again.prepare_data()
        again.setup("test")
        assert len(again.test_set) == 10_000  # type: ignore[arg-type]
    assert len(mirror.requests) == 4
    lines = [x for x in capsys.readouterr().err.splitlines() if "fashion_mnist:" in x]
    assert lines == [f"resnet-pl: fashion_mnist: using the local copy in {raw(tmp_path)}"] * 2


def test_a_local_copy_wins_over_the_network(
    mirror: Mirror, tmp_path: Path, fashion_mnist_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The Debian folder (back in the order) is used as is: auto never downloads; true does."""
    monkeypatch.setattr(ds, "DEBIAN_FASHION_MNIST", fashion_mnist_dir)
    assert resolve("fashion_mnist", None, "auto") is None
    assert mirror.requests == []
    resolve("fashion_mnist", None, True)  # forced: into the cache, whatever exists elsewhere
    assert sorted(mirror.requests) == sorted(NAMES)


def test_truncated_download_is_refused_and_leaves_nothing(mirror: Mirror, tmp_path: Path) -> None:
    mirror.truncate.add("train-images-idx3-ubyte.gz")
    dm = ImageDataModule("fashion_mnist")
    with pytest.raises(BadDataError) as info:
        dm.prepare_data()
    message = str(info.value)
    assert "\n" not in message
    assert "corrupted or truncated train-images-idx3-ubyte.gz" in message
    assert "discarded" in message
    assert [p.name for p in raw(tmp_path).iterdir() if "train-images" in p.name] == []
    assert not [p for p in raw(tmp_path).iterdir() if ".part" in p.name]
    with pytest.raises(DataNotFoundError):  # nothing half-written to be read later
        dm.setup("fit")


def test_no_network_and_no_copy_names_the_three_ways(
    mirror: Mirror, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    mirror.stop()  # the port is closed now: connection refused
    for mode in ("auto", False):
        with pytest.raises(DataNotFoundError) as info:
            resolve("fashion_mnist", None, mode)
        message = str(info.value)
        assert "\n" not in message
        assert "network access" in message  # 1. download (auto)
        assert "apt-get install dataset-fashion-mnist" in message  # 2. the Debian package
        assert "--data.data_dir" in message  # 3. a folder of your own
    assert mirror.requests == []
    monkeypatch.setenv("RESNET_PL_OFFLINE", "1")  # offline: auto does not even try
    with pytest.raises(DataNotFoundError, match="offline"):
        resolve("fashion_mnist", None, "auto")


def test_two_concurrent_starts_download_once(mirror: Mirror, tmp_path: Path) -> None:
    """Two runs start together on an empty cache: one downloads under the lock, the other waits,
    then finds the files; both load the data."""
    mirror.delay_s = 0.2
    results: list[Any] = []

    def start() -> None:
        try:
            dm = ImageDataModule("fashion_mnist")
            dm.prepare_data()
            dm.setup("test")
            results.append(len(dm.test_set))  # type: ignore[arg-type]
        except Exception as err:  # surfaced below
            results.append(err)

    threads = [threading.Thread(target=start) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert results == [10_000, 10_000]
    assert sorted(mirror.requests) == sorted(NAMES)  # once, not twice


def test_download_option_values() -> None:
    from resnet_pl.lightning.errors import ConfigError

    assert ImageDataModule("fake", download="true").hparams["download"] is True
    with pytest.raises(ConfigError, match="download must be auto, true or false"):
        ImageDataModule("fake", download="sometimes")  # type: ignore[arg-type]


def test_readme_first_screen_is_ci_set_up_main_job_and_tests() -> None:
    """The README's first code block: the two set-up commands and the test command exactly as
    .ci/run runs them, and the main job as one command with no data flags."""
    import re

    root = Path(__file__).resolve().parents[1]
    readme = (root / "README.md").read_text(encoding="utf-8")
    block = re.search(r"```bash\n(.*?)```", readme, re.S)
    assert block is not None and readme.index(block.group(0)) < readme.index("\n## ")
    commands = [ln.split("  #")[0].strip() for ln in block.group(1).splitlines() if ln.strip()]
    ci = (root / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    ci = [ln.strip() for ln in ci]
    assert commands[:2] == [c for c in ci if c.startswith("python3 -m pip install")]
    assert commands[2] == "resnet-pl fit --config configs/fashion_mnist_fast.yaml"
    assert commands[3] in ci and commands[3] == "python3 -m pytest -q"
    assert len(commands) == 4


CHILD = """
import sys
from torchvision import datasets as tv
from resnet_pl.data import datasets as ds
from resnet_pl.lightning import ImageDataModule

tv.FashionMNIST.mirrors = [sys.argv[1]]
tv.FashionMNIST.resources = [tuple(r.split(":")) for r in sys.argv[2].split(",")]
ds.DEBIAN_FASHION_MNIST = ds.Path(sys.argv[3])
dm = ImageDataModule("fashion_mnist")
dm.prepare_data()
dm.setup("test")
print("items", len(dm.test_set))
"""


@pytest.mark.slow
def test_two_processes_on_an_empty_cache_download_once(
    mirror: Mirror, served: dict[str, bytes], tmp_path: Path
) -> None:
    """The same as the threaded test, with two real processes (the lock is an flock)."""
    import os
    import subprocess
    import sys

    mirror.delay_s = 0.5
    resources = ",".join(
        f"{n}:{hashlib.md5(b, usedforsecurity=False).hexdigest()}" for n, b in served.items()
    )
    env = {**os.environ, "RESNET_PL_DATA": str(tmp_path / "cache")}
    root = Path(__file__).resolve().parents[1]
    cmd = [sys.executable, "-c", CHILD, mirror.url, resources, str(tmp_path / "none")]
    procs = [
        subprocess.Popen(cmd, cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for _ in range(2)
    ]
    outs = [p.communicate(timeout=300) for p in procs]
    for p, (out, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err.decode()[-2000:]
        assert b"items 10000" in out
    assert sorted(mirror.requests) == sorted(NAMES)
    said = sorted(err.decode().split("fashion_mnist: ")[1].split(" ")[0] for _, err in outs)
    assert said == ["downloaded", "using"]
