"""The deploy benchmark suite (issue 14): its plan, a tiny real run on the shipped Fashion-MNIST
model (rows, fields, accuracy on real test images, the OpenVINO row skipped when OpenVINO is
absent), the recommendation logic on synthetic rows, and ``classify --runtime``."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `benchmarks` is a top-level folder, not an installed package
    sys.path.insert(0, str(ROOT))

from benchmarks.run import main as bench_main  # noqa: E402
from resnet_pl.bench import deploy as deploy_module  # noqa: E402
from resnet_pl.bench import plan as plan_module  # noqa: E402
from resnet_pl.bench.aggregate import (  # noqa: E402
    ROW_FIELDS,
    accuracy_loss,
    attach_references,
    blank_row,
    deploy_command,
    recommend,
)
from resnet_pl.bench.plan import SUITES, Capabilities, Overrides, expand  # noqa: E402

CAPS = Capabilities(cuda=False, cpu_bf16=True, ort_providers=("CPUExecutionProvider",))
FM = "resnet20.fashion_mnist"


# ---- the plan --------------------------------------------------------------------------------
@pytest.mark.parametrize("openvino", [None, "2026.4.1"])
def test_deploy_plan(openvino: str | None) -> None:
    caps = Capabilities(False, True, ("CPUExecutionProvider",), openvino=openvino)
    cases = expand(SUITES["deploy"], Overrides(), caps)
    assert {c.arch for c in cases} == {FM, "resnet50"}
    ov = [c for c in cases if c.backend == "export:openvino"]
    ort = [c for c in cases if c.backend == "export:onnxruntime"]
    assert {c.precision for c in ov} == {c.precision for c in ort} == {"fp32", "fp16", "int8"}
    assert all(c.skip is None for c in ort)
    if openvino is None:
        assert all("pip install 'resnet-pl[openvino]'" in (c.skip or "") for c in ov)
    else:
        assert all(c.skip is None for c in ov)
    # torchvision's twin only on resnet50's eager fp32 reference; never on export rows.
    twins = {(c.arch, c.backend, c.precision, c.memory_format) for c in cases if c.has_twin}
    assert twins == {("resnet50", "eager", "fp32", "contiguous")}
    # Each arch at its own input size (28 px for the Fashion-MNIST weights), its own timing.
    assert {c.input_size for c in cases if c.arch == FM} == {28}
    assert {c.steps for c in cases if c.arch == "resnet50"} == {2}
    # Every group (arch, batch) holds its eager fp32 reference.
    groups: dict[tuple[Any, ...], list[Any]] = {}
    for c in cases:
        groups.setdefault(c.group_key(), []).append(c)
    for members in groups.values():
        assert any((c.backend, c.precision, c.memory_format) == ("eager", "fp32", "contiguous")
                   for c in members)  # fmt: skip


def test_export_backend_spellings_and_skips() -> None:
    assert plan_module.normalize_backend("export", "cpu") == "export:onnxruntime"
    assert plan_module.normalize_backend("openvino", "cpu") == "export:openvino"
    with pytest.raises(ValueError, match="export:onnxruntime or export:openvino"):
        plan_module.normalize_backend("export:tensorrt", "cpu")
    ov = Overrides(archs=("resnet20",), batch_sizes=(2,), precisions=("bf16", "int8"),
                   backends=("eager", "export:onnxruntime"))  # fmt: skip
    reasons = {(c.backend, c.precision): c.skip for c in expand(SUITES["deploy"], ov, CAPS)}
    assert "fp32/fp16/int8 files" in reasons[("export:onnxruntime", "bf16")]
    assert "quantised ONNX file" in reasons[("eager", "int8")]
    assert reasons[("export:onnxruntime", "int8")] is None


# ---- a tiny real run -------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory, fashion_mnist_dir: Path) -> dict[str, Any]:
    """The shipped resnet20.fashion_mnist at batch 2, one step per repeat, eager and the
    exported files in ONNX Runtime and OpenVINO, with OpenVINO simulated absent. (One group,
    so one export per dtype: the run is mostly the three exports.)"""
    out = tmp_path_factory.mktemp("deploy")
    mp = pytest.MonkeyPatch()
    mp.setattr(plan_module, "openvino_version", lambda: None)
    deploy_module.clear_exports()
    try:
        code = bench_main([
            "--suite", "deploy", "--archs", FM, "--batch-sizes", "2",
            "--backends", "eager,export:onnxruntime,export:openvino",
            "--steps", "1", "--warmup", "1", "--repeats", "2", "--threads", "1",
            "--eval-samples", "48", "--calibration-samples", "32",
            "--out", str(out), "--name", "tiny", "--note", "test run",
        ])  # fmt: skip
    finally:
        mp.undo()
        deploy_module.clear_exports()
    assert code == 0
    return {"out": out, "doc": json.loads((out / "tiny-cpu-latest.json").read_text())}


def _rows(doc: dict[str, Any], **match: Any) -> list[dict[str, Any]]:
    return [r for r in doc["rows"] if all(r[k] == v for k, v in match.items())]


def test_tiny_deploy_rows_and_fields(tiny_run: dict[str, Any]) -> None:
    doc = tiny_run["doc"]
    s = doc["settings"]
    assert s["interleave_mode"] == "group" and s["note"] == "test run"
    assert len(s["load_average_at_start"]) == 3 and len(s["load_average_at_end"]) == 3
    for r in doc["rows"]:
        assert list(r)[: len(ROW_FIELDS)] == list(ROW_FIELDS)
    ort = _rows(doc, backend="export:onnxruntime", status="ok")
    assert {(r["precision"], r["batch_size"]) for r in ort} == {
        ("fp32", 2),
        ("fp16", 2),
        ("int8", 2),
    }
    eager = _rows(doc, backend="eager", precision="fp32", memory_format="contiguous")
    assert [r["speedup_vs_eager_fp32"] for r in eager] == [1.0]
    for r in ort + eager:
        assert r["images_per_s"] > 0 and r["latency_ms_p50"] <= r["latency_ms_p99"]
        assert r["peak_mem_mb"] > 0 and r["peak_mem_rise_mb"] is not None
        assert r["speedup_vs_eager_fp32"] > 0
        # Top-1 on the same 48 real test images for every row; the delta against eager fp32.
        assert r["eval_samples"] == 48 and "fashion_mnist test[:48]" in r["eval_data"]
        assert 70.0 < r["top1"] <= 100.0
        assert r["top1_delta_vs_eager_fp32"] == pytest.approx(r["top1"] - eager[0]["top1"])
    for r in ort:
        assert r["runtime_threads"] == 1 and "onnxruntime" in r["runtime"]
        assert r["export_s"] > 0 and r["model_file_mb"] > 0 and r["precision"] in r["model_file"]
    fp32 = next(r for r in ort if r["precision"] == "fp32")
    assert fp32["top1_delta_vs_eager_fp32"] == 0.0 and fp32["logits_rel_rms_vs_eager_fp32"] < 1e-5
    int8 = next(r for r in ort if r["precision"] == "int8")
    assert int8["model_file_mb"] < 0.5 * fp32["model_file_mb"]
    # OpenVINO "absent": its rows are skipped with the fix, not errors.
    ov = _rows(doc, backend="export:openvino")
    assert ov and all(r["status"] == "skipped" for r in ov)
    files = [r for r in ov if r["precision"] in ("fp32", "fp16", "int8")]
    assert len(files) == 3
    assert all("pip install 'resnet-pl[openvino]'" in r["reason"] for r in files)


def test_tiny_deploy_markdown_ends_with_recommendation(tiny_run: dict[str, Any]) -> None:
    out, doc = tiny_run["out"], tiny_run["doc"]
    md = (out / "tiny-cpu-latest.md").read_text()
    assert "## Deployment paths" in md and "ONNX Runtime, int8 file" in md
    tail = md[md.index("## Recommendation") :]
    rec = recommend(doc["rows"], 0.3)[0]
    assert rec["label"] in tail and f"`{rec['command']}`" in tail
    assert rec["loss"] <= 0.3 and rec["loss_kind"] in ("top-1", "reference")
    assert (out / "tiny-cpu-deploy.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.slow
def test_openvino_rows_record_what_ran(tmp_path: Path, fashion_mnist_dir: Path) -> None:
    """With OpenVINO installed, its rows run the same files and record the precision hint and
    the precision the compiled convolutions run in."""
    pytest.importorskip("openvino")
    deploy_module.clear_exports()
    code = bench_main([
        "--suite", "deploy", "--archs", FM, "--batch-sizes", "2", "--precisions", "fp32,int8",
        "--backends", "eager,export:openvino", "--steps", "1", "--warmup", "1", "--repeats", "1",
        "--threads", "1", "--eval-samples", "16", "--calibration-samples", "16",
        "--out", str(tmp_path), "--name", "ov",
    ])  # fmt: skip
    deploy_module.clear_exports()
    assert code == 0
    doc = json.loads((tmp_path / "ov-cpu-latest.json").read_text())
    ov = _rows(doc, backend="export:openvino", status="ok")
    assert {r["precision"] for r in ov} == {"fp32", "int8"}
    for r in ov:
        assert r["precision_hint"] in ("f32", "bf16", "f16")
        assert " x" in r["runtime_precision"] and r["top1"] is not None
    int8 = next(r for r in ov if r["precision"] == "int8")
    assert "u8" in int8["runtime_precision"] or "i8" in int8["runtime_precision"]


# ---- recommendation logic on synthetic rows --------------------------------------------------
def _row(backend: str, prec: str, ips: float, *, fmt: str = "contiguous", bs: int = 32,
         arch: str = FM, **extra: Any) -> dict[str, Any]:  # fmt: skip
    case = {"arch": arch, "family": "small", "mode": "infer", "requested_batch_size": bs,
            "input_size": 28, "precision": prec, "memory_format": fmt, "backend": backend,
            "device": "cpu", "loader": False, "groups": ["deploy"]}  # fmt: skip
    row = blank_row(case, "resnet_pl", "ok", None)  # type: ignore[arg-type]
    row.update(batch_size=bs, images_per_s=ips, latency_ms_p50=1000 * bs / ips,
               latency_ms_p99=1200 * bs / ips, images_per_s_repeats=[ips], **extra)  # fmt: skip
    return row


def _synthetic() -> list[dict[str, Any]]:
    return [
        _row("eager", "fp32", 100.0, top1=94.0, top1_delta_vs_eager_fp32=0.0, eval_samples=1),
        _row("eager", "bf16", 400.0, fmt="channels_last"),  # accuracy unknown: never chosen
        _row("export:onnxruntime", "int8", 500.0, top1=93.5, top1_delta_vs_eager_fp32=-0.5,
             eval_samples=1),
        _row("export:openvino", "fp16", 300.0, top1=93.9, top1_delta_vs_eager_fp32=-0.1,
             eval_samples=1),
        _row("export:onnxruntime", "fp32", 200.0, top1=94.1, top1_delta_vs_eager_fp32=0.1,
             eval_samples=1),
        _row("export:openvino", "fp16", 30.0, bs=1),  # batch-1 row of the same path
        _row("export:openvino", "int8", 9000.0, bs=1, top1=80.0,  # not the throughput batch
             top1_delta_vs_eager_fp32=-14.0, eval_samples=1),
    ]  # fmt: skip


def test_recommend_fastest_within_budget() -> None:
    rows = attach_references(_synthetic())
    (rec,) = recommend(rows, 0.3)
    assert rec["label"] == "OpenVINO, fp16 file" and rec["batch"] == 32
    assert rec["loss"] == pytest.approx(0.1) and rec["loss_kind"] == "top-1"
    assert rec["candidates"] == 3  # eager fp32, OpenVINO fp16, ORT fp32 (gains count as 0)
    assert rec["row"]["speedup_vs_eager_fp32"] == pytest.approx(3.0)
    assert rec["latency_row"]["requested_batch_size"] == 1
    assert "accuracy not measured" in rec["excluded"]["PyTorch eager bf16 autocast channels_last"]
    assert "0.50 points" in rec["excluded"]["ONNX Runtime, int8 file"]
    assert "--dtype fp16" in rec["command"] and "--runtime openvino" in rec["command"]
    (loose,) = recommend(rows, 1.0)
    assert loose["label"] == "ONNX Runtime, int8 file"
    assert "--dtype int8 --calibration_data fashion_mnist" in loose["command"]
    (strict,) = recommend(rows, 0.0)
    assert strict["label"] == "ONNX Runtime, fp32 file"  # a gain is no loss


def test_recommend_stand_in_and_pytorch_paths() -> None:
    rows = [
        _row("eager", "fp32", 10.0, arch="resnet50", top1_agreement_vs_eager_fp32=100.0),
        _row("eager", "bf16", 30.0, arch="resnet50", fmt="channels_last",
             top1_agreement_vs_eager_fp32=100.0),
        _row("export:onnxruntime", "int8", 50.0, arch="resnet50",
             top1_agreement_vs_eager_fp32=98.0),
    ]  # fmt: skip
    (rec,) = recommend(rows, 0.3)
    assert rec["label"] == "PyTorch eager bf16 autocast channels_last"
    assert rec["loss_kind"] == "disagreement"
    assert "channels_last" in rec["command"] and "bfloat16" in rec["command"]
    assert accuracy_loss(rows[2]) == (pytest.approx(2.0), "disagreement")
    assert "DIR_OF_YOUR_IMAGES" in deploy_command(rows[2])


def test_accuracy_is_shared_across_batch_sizes() -> None:
    rows = attach_references([
        _row("export:onnxruntime", "int8", 500.0, top1=93.0, top1_delta_vs_eager_fp32=-1.0,
             eval_samples=100, eval_data="x"),
        _row("export:onnxruntime", "int8", 50.0, bs=1),
        _row("export:openvino", "int8", 50.0, bs=1),  # another path: nothing to copy
    ])  # fmt: skip
    assert rows[1]["top1"] == 93.0 and rows[1]["eval_samples"] == 100
    assert "accuracy measured at batch 32" in rows[1]["note"]
    assert rows[2]["top1"] is None


# ---- classify --runtime ----------------------------------------------------------------------
@pytest.fixture(scope="module")
def fm_onnx(tmp_path_factory: pytest.TempPathFactory, fashion_mnist_dir: Path) -> dict[str, Any]:
    from resnet_pl.deploy import export_onnx
    from resnet_pl.deploy.datasets import load_fashion_mnist
    from resnet_pl.deploy.sample_images import main as sample_main

    root = tmp_path_factory.mktemp("cls")
    export_onnx(FM, root / "fm.onnx", verify=False)
    assert sample_main(["--dataset", "fashion_mnist", "--out", str(root / "img"), "-n", "12"]) == 0
    _, labels = load_fashion_mnist("test", 12)
    return {"onnx": root / "fm.onnx", "images": root / "img", "labels": labels}


def _classify(argv: list[str], tmp_path: Path) -> list[str]:
    import csv

    from resnet_pl.cli.deploy import main

    out = tmp_path / "pred.csv"
    assert main(["classify", *argv, "--output", str(out), "--threads", "1"]) == 0
    with out.open() as f:
        return [r["index"] for r in csv.DictReader(f)]


def test_classify_runtime_openvino_matches_onnxruntime(
    fm_onnx: dict[str, Any], tmp_path: Path
) -> None:
    pytest.importorskip("openvino")
    args = [str(fm_onnx["images"]), "--model", str(fm_onnx["onnx"])]
    ort = _classify([*args, "--runtime", "onnxruntime"], tmp_path)
    ov = _classify([*args, "--runtime", "openvino"], tmp_path)
    assert len(ort) == 12
    # OpenVINO may run the fp32 file in bf16 on this CPU: labels agree on nearly every image.
    assert np.mean(np.array(ort) == np.array(ov)) >= 11 / 12


def test_classify_runtime_openvino_absent(
    fm_onnx: dict[str, Any], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from resnet_pl.cli.deploy import main

    monkeypatch.setitem(sys.modules, "openvino", None)
    code = main(["classify", str(fm_onnx["images"]), "--model", str(fm_onnx["onnx"]),
                 "--runtime", "openvino"])  # fmt: skip
    assert code == 2
    assert "pip install 'resnet-pl[openvino]'" in capsys.readouterr().err
    code = main(["classify", str(fm_onnx["images"]), "--model", FM, "--runtime", "openvino"])
    assert code == 2
    assert "runs .onnx files" in capsys.readouterr().err
