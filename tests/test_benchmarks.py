"""Benchmarks (issue 6): the aggregation maths on known timings, the suites' plans, and tiny real
runs of the command line that check the JSON, markdown and plot files it writes."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `benchmarks` is a top-level folder, not an installed package
    sys.path.insert(0, str(ROOT))

from benchmarks.run import main  # noqa: E402
from resnet_pl import model_info  # noqa: E402
from resnet_pl.bench import measure  # noqa: E402
from resnet_pl.bench.aggregate import (  # noqa: E402
    ROW_FIELDS,
    Measurement,
    attach_references,
    peak_tflops_for,
    percentile,
    summarize,
)
from resnet_pl.bench.plan import (  # noqa: E402
    CIFAR_DEPTHS,
    IMAGENET_DEPTHS,
    SUITES,
    Capabilities,
    Overrides,
    expand,
    planned_gflops,
)
from resnet_pl.bench.report import PLOT_NAMES  # noqa: E402

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
TINY = ["--steps", "2", "--warmup", "1", "--repeats", "2", "--threads", "1"]
CPU_CAPS = Capabilities(cuda=False, cpu_bf16=True, ort_providers=("CPUExecutionProvider",))
GPU_CAPS = Capabilities(cuda=True, cpu_bf16=True, ort_providers=("CPUExecutionProvider",))
BASE = {"precision": "fp32", "memory_format": "contiguous"}  # with backend eager: the baseline


def _case(**kw: Any) -> dict[str, Any]:
    base = {
        "arch": "resnet50",
        "family": "imagenet",
        "mode": "infer",
        "requested_batch_size": 4,
        "input_size": 224,
        "precision": "bf16",
        "memory_format": "channels_last",
        "backend": "eager",
        "device": "cuda",
        "loader": False,
        "groups": ["test"],
    }
    return {**base, **kw}


def _measurement(impl: str, walls: list[float], **case: Any) -> Measurement:
    return Measurement(
        case=_case(**case),
        impl=impl,
        batch_size=4,
        repeat_wall_s=walls,
        steps_per_repeat=2,
        step_s=[w / 2 for w in walls],
        flops_per_image=10**9,
    )


# ---- aggregation: pure functions on known timings ---------------------------------------------
@pytest.mark.parametrize("q", [0, 10, 25, 50, 75, 90, 99, 100])
def test_percentile_matches_numpy(q: float) -> None:
    values = [3.0, 1.0, 4.0, 1.5, 9.0, 2.6, 5.0]
    assert percentile(values, q) == pytest.approx(float(np.percentile(values, q)), abs=1e-12)


def test_percentile_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="empty"):
        percentile([], 50)
    with pytest.raises(ValueError, match=r"\[0, 100\]"):
        percentile([1.0], 101)


def test_summarize_known_timings() -> None:
    """4 images x 2 steps per repeat in 0.5 / 0.4 / 0.8 s -> 16 / 20 / 10 images/s."""
    m = Measurement(
        case=_case(),
        impl="resnet_pl",
        batch_size=4,
        repeat_wall_s=[0.5, 0.4, 0.8],
        steps_per_repeat=2,
        step_s=[0.25, 0.25, 0.2, 0.2, 0.3, 0.5],
        flops_per_image=4 * 10**9,
        peak_mem_bytes=3 * 2**20,
        peak_mem_kind="cuda_allocated",
        extra={"setup_s": 1.5},
    )
    row = summarize(m, device_name="NVIDIA H200")
    assert row["images_per_s_repeats"] == [16.0, 20.0, 10.0]
    assert row["images_per_s"] == 16.0
    assert (row["images_per_s_min"], row["images_per_s_max"]) == (10.0, 20.0)
    assert (row["images_per_s_q1"], row["images_per_s_q3"]) == (13.0, 18.0)
    # Sorted latencies (ms): 200 200 250 250 300 500.
    assert row["latency_ms_p50"] == pytest.approx(250.0)
    assert row["latency_ms_p90"] == pytest.approx(400.0)  # 300 + 0.5 * (500 - 300)
    assert row["latency_ms_p99"] == pytest.approx(490.0)  # 300 + 0.95 * 200
    assert row["latency_ms_mean"] == pytest.approx(1700 / 6)
    assert row["achieved_tflops"] == pytest.approx(4e9 * 16 / 1e12)
    assert row["peak_tflops"] == 989.0 and row["peak_tflops_source"] == "table:H200"
    assert row["mfu"] == pytest.approx(0.064 / 989.0)
    assert row["peak_mem_mb"] == 3.0
    assert row["gflops_per_image"] == 4.0 and row["flops_factor"] == 1
    assert row["setup_s"] == 1.5 and row["status"] == "ok"

    train = summarize(
        Measurement(
            case=_case(mode="train", precision="fp32", device="cpu"),
            impl="resnet_pl",
            batch_size=4,
            repeat_wall_s=[1.0],
            steps_per_repeat=2,
            step_s=[0.5, 0.5],
            flops_per_image=10**9,
        ),
        device_name="AMD EPYC",
    )
    assert train["flops_factor"] == 3
    assert train["achieved_tflops"] == pytest.approx(3 * 1e9 * 8 / 1e12)
    assert train["mfu"] is None  # no peak known for a CPU
    overridden = summarize(
        Measurement(
            case=_case(mode="train", precision="fp32", device="cpu"),
            impl="resnet_pl",
            batch_size=4,
            repeat_wall_s=[1.0],
            steps_per_repeat=2,
            step_s=[0.5, 0.5],
            flops_per_image=10**9,
        ),
        device_name="AMD EPYC",
        peak_override=2.0,
    )
    assert overridden["mfu"] == pytest.approx(0.024 / 2.0)


def test_attach_references_ratios_and_speedups() -> None:
    rows = [
        summarize(_measurement("resnet_pl", [0.5, 0.5, 0.5])),  # 16 img/s
        summarize(_measurement("torchvision", [0.4, 0.5, 0.8])),  # 20, 16, 10 -> median 16
        summarize(_measurement("resnet_pl", [1.0, 1.0, 1.0], **BASE)),  # 8 img/s
        summarize(_measurement("torchvision", [2.0, 2.0, 2.0], **BASE)),  # 4 img/s
        summarize(_measurement("resnet_pl", [0.25], arch="resnet20", family="small")),
        summarize(_measurement("resnet_pl", [0.5], arch="resnet20", family="small", **BASE)),
    ]
    out = attach_references(rows)
    ours, tv, ours_base, _, cifar, cifar_base = out
    assert ours["ratio_vs_torchvision"] == pytest.approx(1.0)
    # Paired repeats: 16/20, 16/16, 16/10.
    assert ours["ratio_vs_torchvision_min"] == pytest.approx(0.8)
    assert ours["ratio_vs_torchvision_max"] == pytest.approx(1.6)
    assert ours["ratio_vs_torchvision_paired_median"] == pytest.approx(1.0)
    assert ours["ratio_within_noise"] is True
    assert ours["speedup_vs_eager_fp32"] == pytest.approx(2.0)
    assert tv["speedup_vs_eager_fp32"] == pytest.approx(4.0)
    assert tv["ratio_vs_torchvision"] is None and "reference" in tv["note"]
    assert ours_base["ratio_vs_torchvision"] == pytest.approx(2.0)
    assert ours_base["ratio_within_noise"] is False
    assert ours_base["speedup_vs_eager_fp32"] == pytest.approx(1.0)
    assert cifar["ratio_vs_torchvision"] is None
    assert "CIFAR" in cifar["note"]
    assert cifar["speedup_vs_eager_fp32"] == pytest.approx(2.0)
    assert cifar_base["speedup_vs_eager_fp32"] == pytest.approx(1.0)
    assert all(list(r)[: len(ROW_FIELDS)] == list(ROW_FIELDS) for r in out)
    assert "ratio_vs_torchvision" not in rows[0]  # inputs are not modified


@pytest.mark.parametrize(
    ("name", "precision", "override", "expected"),
    [
        ("NVIDIA H200", "bf16", None, 989.0),
        ("NVIDIA H100 80GB HBM3", "tf32", None, 495.0),
        ("NVIDIA H100 80GB HBM3", "fp32", None, 67.0),
        ("NVIDIA A100-SXM4-80GB", "fp16", None, 312.0),
        ("NVIDIA A100-SXM4-80GB", "fp32", None, 19.5),
        ("NVIDIA H100 PCIe", "bf16", None, None),  # not the SXM part: no table entry
        ("AMD EPYC", "fp32", None, None),
        ("AMD EPYC", "fp32", 1.5, 1.5),
        ("NVIDIA H200", "bf16", {"bf16": 700.0}, 700.0),
        ("NVIDIA H200", "fp32", {"bf16": 700.0}, 67.0),
    ],
)
def test_peak_tflops_table(
    name: str, precision: str, override: Any, expected: float | None
) -> None:
    assert peak_tflops_for(name, precision, override)[0] == expected


# ---- planning ------------------------------------------------------------------------------
def test_gpu_suite_plan_is_well_formed() -> None:
    """The GPU suite's plan, checked without CUDA: every case on cuda, each baseline before its
    dependants, compile only for resnet50 bs256, all precisions and both depth sweeps."""
    cases = expand(SUITES["gpu"], Overrides(), GPU_CAPS)
    assert len({c.key() for c in cases}) == len(cases)
    assert {c.device for c in cases} == {"cuda"}
    seen: set[tuple[Any, ...]] = set()
    for c in cases:
        if not c.skip:
            assert c.baseline().key() in seen | {c.key()}, f"baseline missing for {c.label()}"
        seen.add(c.key())
        assert planned_gflops(c) > 0
    compiled = [c for c in cases if c.backend.startswith("compile")]
    assert {(c.arch, c.batch_size, c.mode) for c in compiled} == {
        ("resnet50", 256, "infer"),
        ("resnet50", 256, "train"),
    }
    r50 = [c for c in cases if c.arch == "resnet50" and c.batch_size == 256]
    assert {c.precision for c in r50} == {"fp32", "tf32", "bf16", "fp16"}
    assert {c.backend for c in r50} >= {"eager", "cudagraphs", "compile:default"}
    assert "channels_last" in {c.memory_format for c in r50}
    assert {c.arch for c in cases} >= set(IMAGENET_DEPTHS) | set(CIFAR_DEPTHS)
    assert all(c.input_size == (224 if c.family == "imagenet" else 32) for c in cases)
    assert any(c.arch == "resnet20" and c.mode == "train" for c in cases)
    ort = [c for c in cases if c.backend.startswith("onnxruntime")]
    assert ort and all("onnxruntime-gpu" in (c.skip or "") for c in ort)
    assert sum(c.skip is None for c in cases) > 60


def test_dry_run_prints_gpu_plan_without_cuda(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--suite", "gpu", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "suite gpu:" in out and "compile:default" in out and "cudagraphs" in out
    assert "resnet152" in out and "resnet110" in out


def test_cpu_plan_records_skip_reasons() -> None:
    ov = Overrides(
        archs=("resnet20",),
        batch_sizes=(2,),
        precisions=("fp32", "bf16", "fp16", "tf32"),
        backends=("eager", "cudagraphs", "onnxruntime"),
    )
    cases = expand(SUITES["quick"], ov, dataclass_replace(CPU_CAPS, cpu_bf16=False))
    reasons = {(c.precision, c.backend, c.mode): c.skip or "" for c in cases}
    assert "GPU-only" in reasons[("fp16", "eager", "infer")]
    assert "GPU-only" in reasons[("tf32", "eager", "train")]
    assert "bf16 support" in reasons[("bf16", "eager", "infer")]
    assert "CUDA graphs" in reasons[("fp32", "cudagraphs", "infer")]
    assert "inference only" in reasons[("fp32", "onnxruntime:CPUExecutionProvider", "train")]
    assert reasons[("fp32", "onnxruntime:CPUExecutionProvider", "infer")] == ""
    assert reasons[("fp32", "eager", "train")] == ""
    # ONNX Runtime has no memory-format axis: channels_last collapses into the contiguous row.
    assert {c.memory_format for c in cases if c.backend.startswith("onnx")} == {"contiguous"}


def dataclass_replace(caps: Capabilities, **kw: Any) -> Capabilities:
    import dataclasses

    return dataclasses.replace(caps, **kw)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--archs", "resnet19"], "resnet18"),
        (["--precisions", "fp8"], "fp8"),
        (["--backends", "compile:turbo"], "compile:max-autotune"),
        (["--backends", "tensorrt"], "onnxruntime"),
        (["--input-size", "4"], "input size"),
    ],
)
def test_bad_input_is_one_clear_error(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([*argv, "--dry-run"]) == 2
    assert message in capsys.readouterr().err


def test_gpu_suite_without_cuda_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    if torch.cuda.is_available():
        pytest.skip("CUDA present")
    assert main(["--suite", "gpu", "--out", str(tmp_path)]) == 2
    assert "--dry-run" in capsys.readouterr().err


def test_oom_retry_halves_the_batch(monkeypatch: pytest.MonkeyPatch) -> None:
    """On CUDA out-of-memory the case is retried at half the batch, and the halvings counted."""
    calls: list[int] = []

    def fake(case: Any, settings: Any, batch: int) -> list[Measurement]:
        calls.append(batch)
        if batch > 16:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")
        return [_measurement("resnet_pl", [1.0])]

    monkeypatch.setattr(measure, "measure_case", fake)
    monkeypatch.setattr(measure, "free_memory", lambda device: None)
    case = expand(SUITES["gpu"], Overrides(), GPU_CAPS)[0]
    _, retries = measure.measure_with_oom_retry(case, measure.Settings(1, 0, 1))
    assert calls == [256, 128, 64, 32, 16] and retries == 4


# ---- real (tiny) runs --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("bench")
    argv = ["--suite", "quick", "--archs", "resnet20", "--batch-sizes", "2", "--input-size", "32"]
    assert main([*argv, *TINY, "--out", str(out)]) == 0
    return {"out": out, "doc": json.loads((out / "quick-custom-cpu-latest.json").read_text())}


def test_quick_tiny_run_writes_complete_json(quick_run: dict[str, Any]) -> None:
    doc, out = quick_run["doc"], quick_run["out"]
    assert doc["suite"] == "quick" and doc["device"] == "cpu" and doc["partial"] is False
    for key in ("hostname", "cpu_model", "cpu_count", "gpu_name", "driver_version", "cuda_version"):
        assert key in doc["machine"]
    for key in ("torch", "torchvision", "onnxruntime", "resnet_pl"):
        assert doc["versions"][key]
    assert doc["settings"]["steps"] == 2 and doc["settings"]["repeats"] == 2
    assert doc["timestamp"].endswith("+00:00")
    stamped = list(out.glob("quick-custom-cpu-2*.json"))
    assert len(stamped) == 1 and json.loads(stamped[0].read_text())["rows"] == doc["rows"]

    rows = doc["rows"]
    ok = [r for r in rows if r["status"] == "ok"]
    assert {(r["precision"], r["memory_format"], r["backend"], r["mode"]) for r in ok} >= {
        ("fp32", "contiguous", "eager", "infer"),
        ("fp32", "contiguous", "eager", "train"),
        ("fp32", "channels_last", "eager", "infer"),
        ("fp32", "contiguous", "onnxruntime:CPUExecutionProvider", "infer"),
    }
    flops = model_info("resnet20", (3, 32, 32)).flops
    base = {r["mode"]: r for r in ok if (r["precision"], r["memory_format"], r["backend"]) == (
        "fp32", "contiguous", "eager")}  # fmt: skip
    for r in rows:
        assert list(r)[: len(ROW_FIELDS)] == list(ROW_FIELDS)
    for r in ok:
        assert r["impl"] == "resnet_pl" and r["batch_size"] == 2 and r["repeats"] == 2
        assert len(r["images_per_s_repeats"]) == 2
        assert r["images_per_s_min"] <= r["images_per_s"] <= r["images_per_s_max"]
        assert 0 < r["latency_ms_p50"] <= r["latency_ms_p90"] <= r["latency_ms_p99"]
        assert r["flops_per_image"] == flops
        factor = 3 if r["mode"] == "train" else 1
        assert r["achieved_tflops"] == pytest.approx(flops * factor * r["images_per_s"] / 1e12)
        assert r["speedup_vs_eager_fp32"] == pytest.approx(
            r["images_per_s"] / base[r["mode"]]["images_per_s"]
        )
        assert r["ratio_vs_torchvision"] is None and "CIFAR" in r["note"]
        assert r["peak_mem_mb"] > 0 and r["peak_mem_kind"].startswith("process_rss")
        assert r["mfu"] is None  # CPU: no peak unless --peak-tflops
    skipped = [r for r in rows if r["status"] == "skipped"]
    assert all(r["reason"] for r in skipped)
    assert not [r for r in rows if r["status"] == "error"]


def test_quick_tiny_run_writes_markdown_and_plots(quick_run: dict[str, Any]) -> None:
    out = quick_run["out"]
    md = (out / "quick-custom-cpu-latest.md").read_text()
    assert "| resnet20 | ours | infer | 2 | 32 | fp32 | contiguous | eager |" in md
    for name in PLOT_NAMES:
        png = out / f"quick-custom-cpu-{name}.png"
        assert png.read_bytes()[:8] == PNG_MAGIC, name
        assert f"({png.name})" in md


def test_plots_are_drawn_without_data(tmp_path: Path) -> None:
    """Plot files exist even when a run measured nothing, so the stable names always resolve."""
    from resnet_pl.bench.report import write_plots

    paths = write_plots([], tmp_path, "empty-cpu")
    assert [p.name for p in paths] == [f"empty-cpu-{n}.png" for n in PLOT_NAMES]
    assert all(p.read_bytes()[:8] == PNG_MAGIC for p in paths)


def test_from_json_redraws_report(quick_run: dict[str, Any]) -> None:
    out = quick_run["out"]
    latest = out / "quick-custom-cpu-latest.json"
    plot = out / f"quick-custom-cpu-{PLOT_NAMES[0]}.png"
    plot.unlink()
    assert main(["--from-json", str(latest)]) == 0
    assert plot.read_bytes()[:8] == PNG_MAGIC


def test_twin_rows_are_interleaved_and_compared(tmp_path: Path) -> None:
    """An ImageNet-family arch gets torchvision's twin with the same weights; the ratio is ours
    over theirs from the same run, and both count the same FLOPs and parameters."""
    argv = ["--archs", "resnet18", "--batch-sizes", "2", "--input-size", "32", "--modes",
            "infer,train", "--precisions", "fp32", "--memory-formats", "contiguous",
            "--backends", "eager", "--with-loader", "--name", "twin"]  # fmt: skip
    assert main([*argv, *TINY, "--out", str(tmp_path)]) == 0
    rows = json.loads((tmp_path / "twin-cpu-latest.json").read_text())["rows"]
    assert [(r["impl"], r["mode"]) for r in rows] == [
        ("resnet_pl", "infer"),
        ("torchvision", "infer"),
        ("resnet_pl", "train"),
        ("torchvision", "train"),
    ]
    for ours, tv in (rows[:2], rows[2:]):
        assert ours["status"] == tv["status"] == "ok" and ours["loader"] is True
        assert ours["ratio_vs_torchvision"] == pytest.approx(
            ours["images_per_s"] / tv["images_per_s"]
        )
        pairs = zip(ours["images_per_s_repeats"], tv["images_per_s_repeats"], strict=True)
        paired = [a / b for a, b in pairs]
        assert ours["ratio_vs_torchvision_min"] == pytest.approx(min(paired))
        assert ours["flops_per_image"] == tv["flops_per_image"]
        assert ours["params"] == tv["params"]
        assert tv["ratio_vs_torchvision"] is None
        assert math.isfinite(ours["latency_ms_p99"])


@pytest.mark.slow
def test_compile_backend_on_cpu(tmp_path: Path) -> None:
    """torch.compile rows (inductor's C++ backend on CPU): slow, because compiling is."""
    argv = ["--archs", "resnet20", "--batch-sizes", "2", "--input-size", "32", "--modes",
            "infer", "--precisions", "fp32", "--memory-formats", "contiguous", "--backends",
            "compile", "--name", "compile"]  # fmt: skip
    assert main([*argv, *TINY, "--out", str(tmp_path)]) == 0
    rows = json.loads((tmp_path / "compile-cpu-latest.json").read_text())["rows"]
    compiled = [r for r in rows if r["backend"] == "compile:default"]
    assert compiled and all(r["status"] == "ok" for r in compiled)
    assert compiled[0]["speedup_vs_eager_fp32"] is not None


# ---- GPU -------------------------------------------------------------------------------------
@pytest.mark.gpu
def test_gpu_code_paths(tmp_path: Path) -> None:
    """Every GPU code path on a tiny model: the four precisions, channels_last, CUDA graphs
    (inference and training), a DataLoader-free synthetic batch on the device, CUDA memory."""
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    argv = ["--suite", "gpu", "--archs", "resnet18,resnet20", "--batch-sizes", "4",
            "--input-size", "32", "--modes", "infer,train", "--precisions",
            "fp32,tf32,bf16,fp16", "--memory-formats", "contiguous,channels_last",
            "--backends", "eager,cudagraphs"]  # fmt: skip
    assert main([*argv, *TINY, "--out", str(tmp_path)]) == 0
    doc = json.loads((tmp_path / "gpu-custom-cuda-latest.json").read_text())
    assert doc["machine"]["gpu_name"] and doc["machine"]["cuda_version"]
    rows = doc["rows"]
    ok = [r for r in rows if r["status"] == "ok"]
    assert not [r for r in rows if r["status"] == "error"]
    assert {r["precision"] for r in ok} == {"fp32", "tf32", "bf16", "fp16"}
    assert {r["backend"] for r in ok} == {"eager", "cudagraphs"}
    skipped = {r["reason"] for r in rows if r["status"] == "skipped"}
    assert all("GradScaler" in s for s in skipped)  # only fp16 training under CUDA graphs
    for r in ok:
        assert r["peak_mem_kind"] == "cuda_allocated" and r["peak_mem_mb"] > 0
        known = peak_tflops_for(doc["machine"]["gpu_name"], r["precision"])[0]
        assert (r["mfu"] is not None) == (known is not None)
    ratios = [r for r in ok if r["ratio_vs_torchvision"] is not None]
    assert len(ratios) == len([r for r in ok if r["arch"] == "resnet18"]) // 2


# ---- dense-prediction rows (issue 12) --------------------------------------------------------
def test_dense_rows_are_planned_with_twins_and_skips() -> None:
    """Backbones at output stride 16/8 and DeepLabV3 are in the suites; torchvision's twin is
    planned where torchvision can build the same model, and training/ONNX rows are skipped."""
    for suite in ("quick", "cpu", "gpu"):
        caps = GPU_CAPS if suite == "gpu" else CPU_CAPS
        cases = expand(SUITES[suite], Overrides(), caps)
        dense_rows = {c.arch: c for c in cases if "dense" in c.groups}
        assert {"resnet50-os8", "resnet50-os16", "deeplabv3_resnet50"} <= set(dense_rows)
        assert all(c.has_twin for c in dense_rows.values() if "resnet50" in c.arch)
        assert all(c.mode == "infer" and not c.skip for c in dense_rows.values())
    quick = {c.arch: c for c in expand(SUITES["quick"], Overrides(), CPU_CAPS)}
    # torchvision cannot dilate BasicBlock nets, and has no CIFAR nets: no twin, still timed.
    assert not quick["resnet18-os8"].has_twin and not quick["deeplabv3_resnet20"].has_twin
    ov = Overrides(archs=("resnet50-os8",), modes=("infer", "train"), backends=("onnxruntime",))
    skips = {c.mode: c.skip for c in expand(SUITES["quick"], ov, CPU_CAPS) if c.skip}
    assert "forward pass only" in skips["train"]
    assert "classifiers only" in skips["infer"]
    # Dilation replaces strides: the same weights do ~4x the work at output stride 8 vs 32.
    assert (
        planned_gflops(quick["resnet50-os8"]) > 2.5 * model_info("resnet50", (3, 64, 64)).gflops * 2
    )


@pytest.mark.parametrize(
    ("arch", "message"), [("resnet18-os4", "choose one of 32, 16, 8"), ("fcn_resnet19", "resnet18")]
)
def test_bad_dense_spec_is_one_clear_error(
    arch: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--archs", arch, "--dry-run"]) == 2
    assert message in capsys.readouterr().err


def test_dense_tiny_run_compares_with_torchvision(tmp_path: Path) -> None:
    """A real (tiny) run: backbone and DeepLabV3 rows beside torchvision's deeplabv3_resnet50
    with the same weights (same FLOPs and parameters), and a ratio from the same run."""
    argv = ["--archs", "resnet50-os16,deeplabv3_resnet50,resnet20-os1", "--batch-sizes", "1",
            "--input-size", "32", "--modes", "infer", "--precisions", "fp32",
            "--memory-formats", "contiguous", "--backends", "eager", "--name", "dense"]  # fmt: skip
    assert main([*argv, *TINY, "--out", str(tmp_path)]) == 0
    rows = json.loads((tmp_path / "dense-cpu-latest.json").read_text())["rows"]
    assert [(r["arch"], r["impl"]) for r in rows] == [
        ("resnet50-os16", "resnet_pl"),
        ("resnet50-os16", "torchvision"),
        ("deeplabv3_resnet50", "resnet_pl"),
        ("deeplabv3_resnet50", "torchvision"),
        ("resnet20-os1", "resnet_pl"),
    ]
    assert all(r["status"] == "ok" for r in rows)
    for ours, tv in (rows[0:2], rows[2:4]):
        assert ours["ratio_vs_torchvision"] == pytest.approx(
            ours["images_per_s"] / tv["images_per_s"]
        )
        assert ours["flops_per_image"] == tv["flops_per_image"] > 0
        assert ours["params"] == tv["params"]
    assert rows[4]["ratio_vs_torchvision"] is None and rows[4]["flops_per_image"] > 0
