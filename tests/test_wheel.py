"""The built wheel ships what ``pip install resnet-pl`` users run: the benchmark engine and its
suites (``resnet-pl benchmark`` outside a clone), the shipped weights, and the one version.

The default run builds the wheel (a few seconds) and reads its file list; the slow test installs
it in a fresh virtual environment outside the clone (``--system-site-packages``, so torch is not
installed again) and runs the ``smoke`` suite there with the ``resnet-pl`` script.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "resnet_pl"


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel of this checkout, built from a copy of its sources (so no build/ or egg-info
    folder is left in the checkout) without network (``--no-build-isolation``)."""
    setuptools = pytest.importorskip("setuptools", reason="building the wheel needs setuptools")
    major = int(setuptools.__version__.split(".")[0])
    assert major >= 68, f"pyproject.toml needs setuptools >= 68, found {setuptools.__version__}"
    src = tmp_path_factory.mktemp("src")
    shutil.copytree(PACKAGE, src / "resnet_pl", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, src / name)
    out = tmp_path_factory.mktemp("wheel")
    cmd = [sys.executable, "-m", "pip", "wheel", str(src), "--no-deps", "--no-build-isolation"]
    subprocess.run([*cmd, "-q", "-w", str(out)], check=True, capture_output=True, timeout=300)
    (built,) = out.glob("resnet_pl-*.whl")
    return built


def test_wheel_ships_the_benchmark_engine_suites_and_one_version(wheel: Path) -> None:
    from resnet_pl.version import __version__

    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        dist = next(n.split("/")[0] for n in names if n.endswith(".dist-info/METADATA"))
        metadata = zf.read(f"{dist}/METADATA").decode()
        entry_points = zf.read(f"{dist}/entry_points.txt").decode()
        suites = json.loads(zf.read("resnet_pl/bench/suites.json"))
    # Every module of the engine, and the suites as data.
    engine = {f"resnet_pl/bench/{p.name}" for p in (PACKAGE / "bench").glob("*.py")}
    assert {"resnet_pl/bench/run.py", "resnet_pl/bench/measure.py"} <= engine <= names
    assert {"smoke", "quick", "cpu", "gpu", "deploy"} <= set(suites["suites"])
    # Nothing of the repository's benchmarks/ folder: the engine does not need it.
    assert not [n for n in names if n.startswith("benchmarks/")]
    # The shipped weights, the command, and the version from resnet_pl/version.py.
    assert "resnet_pl/weights/resnet20.fashion_mnist.safetensors" in names
    assert "resnet-pl = resnet_pl.cli:main" in entry_points
    assert f"\nVersion: {__version__}\n" in metadata
    assert wheel.name.startswith(f"resnet_pl-{__version__}-")


@pytest.mark.slow
def test_resnet_pl_benchmark_runs_from_the_installed_wheel_outside_the_clone(
    wheel: Path, tmp_path: Path
) -> None:
    venv = tmp_path / "venv"
    subprocess.run(
        [sys.executable, "-m", "venv", "--system-site-packages", str(venv)],
        check=True,
        timeout=120,
    )
    python, script = venv / "bin" / "python", venv / "bin" / "resnet-pl"
    subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    work = tmp_path / "elsewhere"  # not the clone: no benchmarks/ folder to fall back on
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["OMP_NUM_THREADS"] = "1"
    where = subprocess.run(
        [str(python), "-c", "import resnet_pl.bench, benchmarks"],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert "No module named 'benchmarks'" in where.stderr  # the clone is not on the path
    run = subprocess.run(
        [str(script), "benchmark", "--suite", "smoke", "--out", "results", "--threads", "1"],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    doc = json.loads((work / "results" / "smoke-cpu-latest.json").read_text())
    (row,) = doc["rows"]
    assert row["status"] == "ok" and row["arch"] == "resnet20" and row["images_per_s"] > 0
    assert doc["settings"]["command"].startswith("resnet-pl benchmark")
    installed = subprocess.run(
        [str(python), "-c", "import resnet_pl; print(resnet_pl.__file__)"],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    ).stdout
    assert str(venv) in installed  # the wheel's copy ran, not the checkout's
