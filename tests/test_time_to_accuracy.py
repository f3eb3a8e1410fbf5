"""``benchmarks.time_to_accuracy``: curve reading, the reference extrapolation, and one tiny
real run end to end (fake data, two epochs) through the CLI subprocesses it drives."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks import time_to_accuracy as tta


def _write_metrics(path: Path, accs: list[float], per_epoch: float) -> Path:
    lines = ["epoch,step,train_loss_step,val_acc,elapsed_s"]
    for e, a in enumerate(accs):
        lines.append(f"{e},{e * 10},0.5,,")
        lines.append(f"{e},{e * 10 + 9},,{a},{(e + 1) * per_epoch}")
    path.write_text("\n".join(lines) + "\n")
    return path


def test_curve_and_first_reaching(tmp_path: Path) -> None:
    curve = tta.read_curve(_write_metrics(tmp_path / "m.csv", [0.9, 0.93, 0.941, 0.95], 30.0))
    assert [r["val_acc"] for r in curve] == [0.9, 0.93, 0.941, 0.95]
    assert tta.first_reaching(curve, 0.94, "elapsed_s") == 90.0
    assert tta.first_reaching(curve, 0.94, "epoch") == 2
    assert tta.first_reaching(curve, 0.99, "epoch") is None


def test_reference_extrapolates_from_the_log(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tta, "REPO", tmp_path)
    log = _write_metrics(tmp_path / "ref.csv", [0.8, 0.9, 0.935, 0.942], 1.0)
    # Two timings of 2 epochs: start-up once (the fit wall), then the steady per-epoch rate
    # from the runs' own elapsed_s, for the epochs the committed log still needed.
    timed = [
        {"fit_wall_s": 100.0, "curve": [{"elapsed_s": 50.0}, {"elapsed_s": 90.0}]},
        {"fit_wall_s": 110.0, "curve": [{"elapsed_s": 55.0}, {"elapsed_s": 105.0}]},
    ]
    est = tta.reference_estimate(timed, log, 0.94, timed_epochs=2)
    assert est["seconds_per_epoch"] == 45.0 and est["timed_fit_wall_s"] == 105.0
    assert est["epochs_to_target"] == 4  # 1-based: the 4th epoch reached it
    assert est["time_to_target_s"] == 105.0 + 2 * 45.0
    assert "extrapolated" in est["method"]
    # One timed epoch: no steady rate; the whole fit stands for an epoch.
    one = tta.reference_estimate([{"fit_wall_s": 60.0, "curve": []}], log, 0.94, timed_epochs=1)
    assert one["seconds_per_epoch"] == 60.0 and one["time_to_target_s"] == 240.0


def test_summary_mean_and_spread() -> None:
    rows = [
        {"test_acc": 0.94, "fit_wall_s": 100.0, "curve": [{"val_acc": 0.95, "elapsed_s": 80.0}]},
        {"test_acc": 0.92, "fit_wall_s": 110.0, "curve": [{"val_acc": 0.93, "elapsed_s": 90.0}]},
    ]
    s = tta.summarize(rows, 0.94)
    assert s["test_acc_mean"] == pytest.approx(0.93)
    assert s["test_acc_std"] == pytest.approx(0.01414, abs=1e-4)
    assert s["val_time_to_target_s"] == [80.0, None]


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_tiny_end_to_end_run(tmp_path: Path) -> None:
    config = tmp_path / "tiny.yaml"
    config.write_text(
        "seed_everything: 0\ntrainer:\n  max_epochs: 2\n  enable_model_summary: false\n"
        "model:\n  arch: resnet20\n  model_kwargs: {widths: [8, 16, 32]}\n  ema_decay: 0.9\n"
        "  tta: flip\ndata:\n  dataset: fake\n  fake_size: 128\n  batch_size: 32\n"
    )
    log = _write_metrics(tmp_path / "ref.csv", [0.05, 0.06, 0.07], 1.0)
    out = tmp_path / "results"
    code = tta.main([
        "--recipe", f"tiny={config}", "--seeds", "0,1", "--target", "0.0",
        "--reference", str(config), "--reference-log", str(log), "--reference-epochs", "1",
        "--out", str(out), "--name", "tiny",
    ])  # fmt: skip
    assert code == 0
    result = json.loads((out / "tiny-latest.json").read_text())
    assert [r["seed"] for r in result["runs"]] == [0, 1]
    assert all(0.0 <= r["test_acc"] <= 1.0 and r["fit_wall_s"] > 0 for r in result["runs"])
    assert all("elapsed_s" in c for r in result["runs"] for c in r["curve"])
    assert result["machine"]["cpu_flags"] is not None
    assert "speedup_vs_reference" in result
    assert (out / "tiny.png").stat().st_size > 1000
