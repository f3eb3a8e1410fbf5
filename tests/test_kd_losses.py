"""KD loss options against values computed by hand (numpy, written from the papers' formulas)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from resnet_pl.lightning import kd_losses

S = np.array([[2.0, 0.5, -1.0, 0.0], [0.1, 0.2, 3.0, -0.5]])
T = np.array([[3.0, 1.0, 0.0, -2.0], [-1.0, 0.5, 2.0, 1.5]])
Y = np.array([0, 2])


def softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def kl(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    return (p * (np.log(p) - np.log(q))).sum(axis=-1)


def zscore(x: np.ndarray) -> np.ndarray:
    return (x - x.mean(-1, keepdims=True)) / (x.std(-1, ddof=1, keepdims=True) + 1e-7)


def np_dkd(s: np.ndarray, t: np.ndarray, y: np.ndarray, temp: float, a: float, b: float) -> float:
    """DKD as its paper writes it: binary KL of [p_gt, 1 - p_gt] and KL over the others."""
    total = 0.0
    for i in range(len(y)):
        ps, pt = softmax(s[i] / temp), softmax(t[i] / temp)
        bs = np.array([ps[y[i]], 1 - ps[y[i]]])
        bt = np.array([pt[y[i]], 1 - pt[y[i]]])
        others = [j for j in range(s.shape[1]) if j != y[i]]
        ns, nt = ps[others] / ps[others].sum(), pt[others] / pt[others].sum()
        total += a * kl(bt, bs) + b * kl(nt, ns)
    return total / len(y) * temp**2


def t(x: np.ndarray) -> torch.Tensor:
    return torch.tensor(x, dtype=torch.float32)


def test_one_value_by_hand() -> None:
    """Two classes, T=1: student logits [0, 0] (p = 1/2, 1/2), teacher [ln 3, 0] (p = 3/4,
    1/4): KL = 3/4 ln(3/2) + 1/4 ln(1/2)."""
    got = kd_losses.kl_kd(torch.tensor([[0.0, 0.0]]), torch.tensor([[math.log(3), 0.0]]), 1.0)
    assert got.item() == pytest.approx(0.75 * math.log(1.5) + 0.25 * math.log(0.5), rel=1e-6)


@pytest.mark.parametrize("temp", [1.0, 4.0])
def test_kl_kd_matches_numpy(temp: float) -> None:
    want = kl(softmax(T / temp), softmax(S / temp)).mean() * temp**2
    assert kd_losses.kl_kd(t(S), t(T), temp).item() == pytest.approx(want, rel=1e-5)


@pytest.mark.parametrize(("temp", "a", "b"), [(1.0, 1.0, 1.0), (4.0, 1.0, 8.0), (2.0, 0.5, 2.0)])
def test_dkd_matches_numpy(temp: float, a: float, b: float) -> None:
    got = kd_losses.dkd(t(S), t(T), torch.tensor(Y), temp, alpha=a, beta=b)
    assert got.item() == pytest.approx(np_dkd(S, T, Y, temp, a, b), rel=1e-5)


def test_kd_is_tckd_plus_weighted_nckd() -> None:
    """The DKD paper's identity: KD = TCKD + (1 - p_gt^teacher) * NCKD, per sample."""
    temp = 2.0
    tckd, nckd = kd_losses.dkd_parts(t(S), t(T), torch.tensor(Y), temp)
    p_gt = softmax(T / temp)[np.arange(2), Y]
    per_sample = kl(softmax(T / temp), softmax(S / temp))
    np.testing.assert_allclose((tckd + t(1 - p_gt) * nckd).numpy(), per_sample, rtol=1e-5)


def test_logit_standardization_matches_numpy_and_ignores_scale() -> None:
    temp = 2.0
    want = kl(softmax(zscore(T) / temp), softmax(zscore(S) / temp)).mean() * temp**2
    got = kd_losses.kl_kd(t(S), t(T), temp, standardize=True)
    assert got.item() == pytest.approx(want, rel=1e-5)
    # z-scores ignore each row's shift and scale: a teacher 3x as confident gives the same loss.
    scaled = kd_losses.kl_kd(t(S), t(3 * T + 5), temp, standardize=True)
    assert scaled.item() == pytest.approx(got.item(), rel=1e-5)
    assert kd_losses.kl_kd(t(S), t(3 * T), temp).item() != pytest.approx(
        kd_losses.kl_kd(t(S), t(T), temp).item(), rel=1e-2
    )
    dkd_ls = kd_losses.dkd(t(S), t(T), torch.tensor(Y), temp, standardize=True)
    assert dkd_ls.item() == pytest.approx(np_dkd(zscore(S), zscore(T), Y, temp, 1.0, 8.0), rel=1e-5)


def test_gradients_are_finite_and_reach_only_the_student() -> None:
    s = t(S * 30).requires_grad_()  # very confident: softmaxes saturate
    teacher = t(T * 30).requires_grad_()
    loss = kd_losses.dkd(s, teacher, torch.tensor(Y), 1.0) + kd_losses.kl_kd(
        s, teacher, 1.0, standardize=True
    )
    loss.backward()
    assert torch.isfinite(loss) and s.grad is not None and torch.isfinite(s.grad).all()
    assert teacher.grad is None
    same = kd_losses.dkd(t(S), t(S), torch.tensor(Y), 4.0)
    assert same.item() == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize(("kd_loss", "stand"), [("dkd", False), ("dkd", True), ("kl", True)])
def test_distillation_classifier_options(kd_loss: str, stand: bool) -> None:
    """The constructor options pick the loss, are recorded in hparams, and give the hand value."""
    from resnet_pl.lightning import ConfigError, DistillationClassifier
    from resnet_pl.lightning.hparams import DistillConfig

    kwargs: dict[str, Any] = {"in_chans": 1, "model_kwargs": {"widths": [4, 8, 8]},
                              "teacher": "resnet20.fashion_mnist"}  # fmt: skip
    loss = {"temperature": 2.0, "alpha": 0.75, "dkd_alpha": 0.5, "dkd_beta": 3.0}
    module = DistillationClassifier(
        "resnet20",
        distill=DistillConfig(kd_loss=kd_loss, logit_standardization=stand, **loss),  # type: ignore[arg-type]
        **kwargs,
    )
    assert module.hparams["distill"]["kd_loss"] == kd_loss
    assert module.hparams["distill"]["logit_standardization"] is stand
    g = np.random.default_rng(0)
    s, te = g.normal(size=(3, 10)) * 2, g.normal(size=(3, 10)) * 2
    y = np.array([1, 9, 4])
    zs, zt = (zscore(s), zscore(te)) if stand else (s, te)
    if kd_loss == "dkd":
        kd = np_dkd(zs, zt, y, 2.0, 0.5, 3.0)
    else:
        kd = kl(softmax(zt / 2.0), softmax(zs / 2.0)).mean() * 4.0
    ce = -np.log(softmax(s)[np.arange(3), y]).mean()
    parts = module.distillation_loss(t(s), t(te), torch.tensor(y))
    assert parts["kd"].item() == pytest.approx(kd, rel=1e-5)
    assert parts["loss"].item() == pytest.approx(0.75 * kd + 0.25 * ce, rel=1e-5)
    with pytest.raises(ConfigError, match="kd_loss must be"):
        DistillationClassifier("resnet20", distill=DistillConfig(kd_loss="crd"), **kwargs)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="dkd_beta must be"):
        DistillationClassifier("resnet20", distill=DistillConfig(dkd_beta=-1.0), **kwargs)


def test_benchmark_merge_combines_jobs(tmp_path: Path) -> None:
    """``benchmarks.distillation --merge``: arms run as separate jobs become one summary; files
    of other settings are refused."""
    import json

    from benchmarks.distillation import main as bench_main

    def doc(arm: str, accs: list[float], epochs: int = 3) -> dict[str, Any]:
        runs = [{"arm": arm, "seed": i, "test_top1": a, "final_val_top1": a + 0.1,
                 "fit_wall_s": 10.0 * (1 + (arm != "baseline")), "steps": 1, "epochs": epochs}
                for i, a in enumerate(accs)]  # fmt: skip
        return {"kind": "smoke", "command": f"job {arm}", "loadavg": [1.0, 1.0, 1.0],
                "machine": {"cpu_model": "cpu", "cpu_usable": 2}, "cpu_flags": [],
                "versions": {"torch": "x"}, "time": "t", "student_params": 1,
                "teachers": [{"teacher": "t", "num_params": 1, "test_top1": 95.0, "n": 1}],
                "settings": {"student": "resnet8", "student_kwargs": {}, "epochs": epochs,
                             "temperature": 4.0, "alpha": 0.9, "feature_weight": 0.0,
                             "max_steps": -1, "batch_size": 256, "lr": 0.2,
                             "precision": "bf16-mixed", "seeds": [0, 1]},
                "runs": runs}  # fmt: skip

    a, b, c = tmp_path / "a.json", tmp_path / "b.json", tmp_path / "c.json"
    a.write_text(json.dumps(doc("baseline", [90.0, 91.0])))
    b.write_text(json.dumps(doc("kd_ls", [91.0, 92.0])))
    c.write_text(json.dumps(doc("kd", [91.0, 92.0], epochs=5)))
    assert bench_main(["--merge", str(a), str(b), "--out-dir", str(tmp_path / "out")]) == 0
    (merged,) = (tmp_path / "out").glob("distillation-smoke-merged-*.json")
    summary = json.loads(merged.read_text())["summary"]
    assert summary["baseline"]["test_top1_mean"] == 90.5 and summary["kd_ls"]["n"] == 2
    assert summary["kd_ls_gain_points"] == 1.0
    assert summary["wall_ratio_kd_ls_over_baseline"] == 2.0
    assert "| kd_ls | 2 | 91.50 |" in merged.with_suffix(".md").read_text()
    with pytest.raises(SystemExit, match=r"differs .* in epochs"):
        bench_main(["--merge", str(a), str(c), "--out-dir", str(tmp_path / "out")])


def test_benchmark_measures_each_teacher_and_the_ensemble(fashion_mnist_dir: Path) -> None:
    """The distillation benchmark's teacher table: each teacher by a plain forward, and the
    logit-averaged ensemble the student sees (two copies of one teacher: the same top-1)."""
    import argparse

    from benchmarks.distillation import teacher_top1

    args = argparse.Namespace(data_dir=str(fashion_mnist_dir), test_subset=300,
                              teacher=["resnet20.fashion_mnist"] * 2)  # fmt: skip
    one, two, ensemble = teacher_top1(args)
    assert one == two and one["n"] == 300 and one["forward"] == "plain"
    assert 85 < one["test_top1"] <= 100
    assert ensemble["teacher"].startswith("ensemble") and ensemble["n"] == 300
    assert ensemble["test_top1"] == one["test_top1"]
    assert ensemble["num_params"] == 2 * one["num_params"]
