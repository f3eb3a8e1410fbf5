"""The suite runner: ``resnet-pl benchmark --suite quick`` (in a clone also
``python -m benchmarks.run --suite quick``, a thin wrapper that writes to benchmarks/results).

Each planned case times our model and, for ImageNet-family archs, torchvision's model of the
same arch with the same weights and settings, interleaved; every row also gets the same
implementation's eager fp32 baseline. Results go to ``--out`` as JSON (everything, rewritten
after each case so a killed run keeps what it measured), markdown and PNG plots.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import os
import shlex
import sys
import textwrap
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from resnet_pl.bench.aggregate import (
    DEFAULT_ACCURACY_BUDGET,
    attach_references,
    blank_row,
    recommend,
    summarize,
)
from resnet_pl.bench.plan import (
    COMPILE_MODES,
    MEMORY_FORMATS,
    PRECISIONS,
    SUITES,
    Capabilities,
    Case,
    Overrides,
    expand,
    format_plan,
)

# Results go under the current folder unless --out says otherwise (the clone's wrapper,
# python -m benchmarks.run, passes benchmarks/results).
DEFAULT_OUT = Path("benchmark-results")
PROG = "resnet-pl benchmark"
# A torch.compile case is not started with less than this left of the time budget.
COMPILE_RESERVE_S = 150.0
T = TypeVar("T")


def _csv(convert: Callable[[str], T]) -> Callable[[str], tuple[T, ...]]:
    def parse(text: str) -> tuple[T, ...]:
        items = tuple(convert(p.strip()) for p in text.split(",") if p.strip())
        if not items:
            raise argparse.ArgumentTypeError("expected a comma-separated list")
        return items

    return parse


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text}")
    return value


def parse_peak_tflops(text: str) -> float | dict[str, float]:
    """``"989"`` (every precision) or ``"bf16=989,fp16=989,tf32=495,fp32=67"``."""
    try:
        if "=" not in text:
            return float(text)
        out = {}
        for part in text.split(","):
            key, _, val = part.partition("=")
            if key.strip() not in PRECISIONS:
                raise ValueError(f"unknown precision {key.strip()!r}")
            out[key.strip()] = float(val)
        return out
    except ValueError as e:
        raise argparse.ArgumentTypeError(
            f"--peak-tflops {text!r}: {e}; use a number or e.g. bf16=989,fp32=67"
        ) from None


def build_parser(prog: str = PROG, default_out: Path = DEFAULT_OUT) -> argparse.ArgumentParser:
    suites = "\n".join(
        textwrap.fill(
            f"{s.name} ({s.device}): {s.description}",
            width=92,
            initial_indent="  ",
            subsequent_indent="      ",
        )
        for s in SUITES.values()
    )
    p = argparse.ArgumentParser(
        prog=prog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=(
            "Benchmark resnet-pl models against torchvision's twins (same arch, same weights,\n"
            "interleaved repeats): images/s, latency percentiles, peak memory, FLOP rate and MFU\n"
            "for inference and training steps over precisions, memory formats and backends.\n"
            "Writes <out>/<suite>-<device>-<UTC time>.json (and -latest.json), a .md table\n"
            "beside each, and PNG plots <suite>-<device>-{throughput_vs_batch,speedup,\n"
            "throughput_vs_depth}.png.\n\nSuites:\n" + suites
        ),
        epilog=(
            "Axis flags (--archs, --batch-sizes, --precisions, --memory-formats, --backends, "
            "--modes, --input-size) replace that axis in every sweep of the suite; the result "
            "files are then named <suite>-custom-... unless --name is given.\n\n"
            "Examples:\n"
            f"  {prog} --suite quick\n"
            f"  {prog} --suite gpu --dry-run   # plan only, no CUDA needed\n"
            f"  {prog} --archs resnet50 --batch-sizes 1,32 \\\n"
            "      --backends eager,onnxruntime\n"
            f"  {prog} --from-json {default_out}/gpu-cuda-latest.json\n"
            "Columns are explained in docs/benchmarks.md."
        ),
    )
    p.add_argument("--suite", choices=sorted(SUITES), default="quick", help="default: quick")
    p.add_argument("--list-suites", action="store_true", help="print the suites and exit")
    p.add_argument(
        "--dry-run", action="store_true", help="print the planned rows (with skip reasons) and exit"
    )
    p.add_argument("--archs", type=_csv(str), help="e.g. resnet18,resnet50,resnet20")
    p.add_argument("--batch-sizes", type=_csv(_positive_int), help="e.g. 1,8,32")
    p.add_argument("--precisions", type=_csv(str), help=f"from {','.join(PRECISIONS)} (autocast)")
    p.add_argument("--memory-formats", type=_csv(str), help=f"from {','.join(MEMORY_FORMATS)}")
    p.add_argument(
        "--backends",
        type=_csv(str),
        help=(
            "from eager, compile[:MODE] (MODE: " + ", ".join(COMPILE_MODES) + "), cudagraphs, "
            "onnxruntime[:PROVIDER] (default provider: CPU or CUDA by device)"
        ),
    )
    p.add_argument("--modes", type=_csv(str), help="infer (forward), train (fwd+bwd+SGD step)")
    p.add_argument("--input-size", type=int, help="image side in pixels for every arch")
    p.add_argument("--steps", type=_positive_int, help="timed steps per repeat (suite default)")
    p.add_argument("--warmup", type=int, help="untimed warm-up steps (suite default)")
    p.add_argument("--repeats", type=_positive_int, help="timed repeats (suite default)")
    p.add_argument("--device", choices=("cpu", "cuda"), help="default: the suite's device")
    p.add_argument(
        "--with-loader",
        action="store_true",
        help="feed batches from a DataLoader over an in-memory uint8 dataset (normalised and "
        "moved to the device inside the timed step) instead of one synthetic device batch",
    )
    p.add_argument(
        "--loader-workers",
        type=int,
        help="DataLoader workers (default: 0 on CPU, min(8, cores/2) on CUDA)",
    )
    p.add_argument(
        "--peak-tflops",
        type=parse_peak_tflops,
        help="peak TFLOP/s for MFU: one number, or per precision (bf16=989,fp32=67); default: "
        "a built-in table for H100/H200 SXM and A100, none for CPUs",
    )
    p.add_argument(
        "--time-budget",
        type=float,
        help="seconds after which no new case starts (the rest are recorded as skipped); "
        "0 = none; default: the suite's",
    )
    p.add_argument(
        "--threads",
        type=_positive_int,
        help="torch.set_num_threads (CPU); ONNX Runtime and OpenVINO rows use as many",
    )
    p.add_argument(
        "--eval-samples",
        type=int,
        help="real test images per arch for the accuracy columns (deploy suite; default: the "
        "suite's, per arch)",
    )
    p.add_argument("--calibration-samples", type=_positive_int, help="images for int8 calibration")
    p.add_argument(
        "--accuracy-budget",
        type=float,
        default=DEFAULT_ACCURACY_BUDGET,
        help="points of top-1 the recommended deployment path may lose (default "
        f"{DEFAULT_ACCURACY_BUDGET})",
    )
    p.add_argument(
        "--note", help="free text stored in the results (e.g. 'machine shared with training')"
    )
    p.add_argument(
        "--out", type=Path, default=default_out, help=f"results folder (default: {default_out})"
    )
    p.add_argument("--name", help="file-name tag instead of the suite name")
    p.add_argument("--seed", type=int, default=0, help="seed of the synthetic inputs (default 0)")
    p.add_argument(
        "--from-json",
        type=Path,
        metavar="FILE",
        help="measure nothing: redraw the markdown and plots of an existing results file "
        "(e.g. one a killed run left behind)",
    )
    return p


def _overrides(args: argparse.Namespace) -> Overrides:
    return Overrides(
        archs=args.archs,
        modes=args.modes,
        batch_sizes=args.batch_sizes,
        precisions=args.precisions,
        memory_formats=args.memory_formats,
        backends=args.backends,
        input_size=args.input_size,
        with_loader=args.with_loader,
    )


def _print(msg: str) -> None:
    print(msg, flush=True)


def _case_rows(case: Case, status: str, reason: str) -> list[dict[str, Any]]:
    impls = ("resnet_pl", "torchvision") if case.has_twin else ("resnet_pl",)
    return [blank_row(case.as_dict(), impl, status, reason) for impl in impls]


def _progress(i: int, n: int, case: Case, rows: Sequence[dict[str, Any]], secs: float) -> str:
    ok = {r["impl"]: r for r in rows if r["status"] == "ok"}
    if not ok:
        return f"[{i}/{n}] {case.label()}: {rows[0]['status']}: {rows[0]['reason']}"
    parts = [f"ours {ok['resnet_pl']['images_per_s']:.1f} img/s"] if "resnet_pl" in ok else []
    if "torchvision" in ok:
        parts.append(f"tv {ok['torchvision']['images_per_s']:.1f} img/s")
        if "resnet_pl" in ok:
            ratio = ok["resnet_pl"]["images_per_s"] / ok["torchvision"]["images_per_s"]
            parts.append(f"ratio {ratio:.3f}")
    return f"[{i}/{n}] {case.label()}: {', '.join(parts)} ({secs:.1f} s)"


def rerender(path: Path) -> int:
    """Redraw markdown and plots beside ``path`` from the rows it holds."""
    import json

    from resnet_pl.bench import report

    try:
        doc = json.loads(path.read_text())
        rows = attach_references(doc["rows"])
    except (OSError, ValueError, KeyError) as e:
        print(f"error: cannot read results file {path}: {e}", file=sys.stderr)
        return 2
    doc["rows"] = rows
    prefix = f"{doc['tag']}-{doc['device']}"
    plots = report.write_plots(rows, path.parent, prefix)
    report.write_text(path.with_suffix(".md"), report.markdown(doc, [str(p) for p in plots]))
    _print(f"wrote {path.with_suffix('.md')} and {len(plots)} plots")
    return 0


def main(
    argv: list[str] | None = None, *, prog: str = PROG, default_out: Path = DEFAULT_OUT
) -> int:
    """Run a benchmark suite; returns 0 on success, 1 if some case failed, 2 on bad input."""
    parser = build_parser(prog, default_out)
    args = parser.parse_args(argv)
    args.prog = prog
    if args.from_json:
        return rerender(args.from_json)
    if args.list_suites:
        for s in SUITES.values():
            _print(f"{s.name} ({s.device}): {s.description}")
        return 0
    suite = SUITES[args.suite]
    device = args.device or suite.device
    overrides = _overrides(args)
    steps = args.steps or suite.steps
    warmup = suite.warmup if args.warmup is None else args.warmup
    repeats = args.repeats or suite.repeats
    if warmup < 0:
        parser.error("--warmup must be >= 0")

    caps = Capabilities.detect()
    plan_caps = caps
    if args.dry_run and device == "cuda" and not caps.cuda:
        plan_caps = dataclasses.replace(caps, cuda=True)
    try:
        cases = expand(suite, overrides, plan_caps, device)
    except ValueError as e:  # unknown arch/precision/backend ...: one clear message
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.dry_run:
        if plan_caps is not caps:
            _print("(no CUDA here: planning as if a CUDA device were present)")
        _print(format_plan(cases, suite, steps, warmup, repeats))
        return 0
    if device == "cuda" and not caps.cuda:
        print(
            f"error: the {suite.name} suite runs on CUDA but torch.cuda.is_available() is False; "
            "run it on a GPU machine (benchmarks/gpu_run.sh), or use --dry-run to see its plan",
            file=sys.stderr,
        )
        return 2
    return _run(args, suite.name, device, cases, steps, warmup, repeats, argv)


def _run(
    args: argparse.Namespace,
    suite_name: str,
    device: str,
    cases: list[Case],
    steps: int,
    warmup: int,
    repeats: int,
    argv: list[str] | None,
) -> int:
    import torch

    from resnet_pl.bench import report
    from resnet_pl.bench.measure import OutOfMemory, Settings, free_memory, measure_with_oom_retry

    cases = _apply_timing_overrides(args, cases)

    suite = SUITES[suite_name]
    if args.threads:
        torch.set_num_threads(args.threads)
    if device == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed shapes: let cuDNN pick its fastest kernels
    workers = args.loader_workers
    if workers is None:
        workers = 0 if device == "cpu" else min(8, (os.cpu_count() or 2) // 2)
    settings = Settings(steps=steps, warmup=warmup, repeats=repeats, loader_workers=workers,
                        seed=args.seed,
                        eval_samples=suite.eval_samples if args.eval_samples is None
                        else args.eval_samples,
                        calibration_samples=args.calibration_samples
                        or suite.calibration_samples)  # fmt: skip
    budget = suite.time_budget_s if args.time_budget is None else args.time_budget
    tag = args.name or (f"{suite.name}-custom" if _overrides(args).any() else suite.name)
    out_dir: Path = args.out
    out_dir.mkdir(parents=True, exist_ok=True)
    started = dt.datetime.now(dt.timezone.utc)
    stamp = started.strftime("%Y%m%d-%H%M%S")
    prefix = f"{tag}-{device}"
    json_paths = [out_dir / f"{prefix}-{stamp}.json", out_dir / f"{prefix}-latest.json"]
    md_paths = [p.with_suffix(".md") for p in json_paths]
    machine = report.machine_info()
    device_name = machine["gpu_name"] if device == "cuda" else machine["cpu_model"]
    command = f"{args.prog} " + shlex.join(sys.argv[1:] if argv is None else argv)
    doc: dict[str, Any] = {
        "schema_version": 1,
        "suite": suite.name,
        "tag": tag,
        "device": device,
        "partial": True,
        "started": started.isoformat(timespec="seconds"),
        "timestamp": started.isoformat(timespec="seconds"),
        "elapsed_s": 0.0,
        "machine": machine,
        "versions": report.versions(),
        "settings": {
            "command": command,
            "suite_description": suite.description,
            "input_sizes": suite.sizes,
            "overrides": {k: v for k, v in dataclasses.asdict(_overrides(args)).items() if v},
            "steps": steps,
            "warmup": warmup,
            "repeats": repeats,
            "time_budget_s": budget,
            "peak_tflops_override": args.peak_tflops,
            "loader_workers": workers,
            "torch_num_threads": torch.get_num_threads(),
            "cudnn_benchmark": device == "cuda",
            "seed": args.seed,
            "interleave": "ABBA (ours, torchvision, torchvision, ours, ...)",
            "timing": "CUDA events per step + synchronised wall clock per repeat"
            if device == "cuda"
            else "time.perf_counter per step and per repeat",
            "flops": "forward FLOPs per image from torch.utils.flop_counter; train = 3x forward",
            "train_step": "cross-entropy, backward, SGD(lr=1e-4, momentum=0.9); fp16 with "
            "GradScaler",
            "cases_planned": len(cases),
            "note": args.note,
            "load_average_at_start": _loadavg(),
            "interleave_mode": suite.interleave,
            "eval_samples": settings.eval_samples,
            "calibration_samples": settings.calibration_samples,
            "accuracy_budget_points": args.accuracy_budget,
        },
        "rows": [],
        "files": {
            "json": [str(p) for p in json_paths],
            "markdown": [str(p) for p in md_paths],
            "plots": [str(out_dir / f"{prefix}-{n}.png") for n in report.PLOT_NAMES],
        },
    }
    raw_rows: list[dict[str, Any]] = []
    t_start = time.perf_counter()
    errors = 0

    def save(final: bool) -> None:
        doc["rows"] = attach_references(raw_rows)
        doc["elapsed_s"] = time.perf_counter() - t_start
        doc["timestamp"] = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
        doc["partial"] = not final
        report.write_json(doc, json_paths)

    _print(f"{suite.name} suite on {device} ({device_name}): {len(cases)} cases -> {out_dir}")
    if suite.interleave == "group":
        doc["settings"]["interleave"] = (
            "group: every case of one arch, batch and input size set up first, then one timed "
            "repeat of each per round, the order reversed every other round"
        )
        errors = _run_groups(cases, settings, budget, device, device_name, args, raw_rows, save)
        cases = []  # measured above
    for i, case in enumerate(cases, 1):
        elapsed = time.perf_counter() - t_start
        reserve = COMPILE_RESERVE_S if case.backend.startswith("compile:") else 0.0
        t0 = time.perf_counter()
        if case.skip:
            rows = _case_rows(case, "skipped", case.skip)
        elif budget and elapsed + reserve > budget:
            rows = _case_rows(
                case,
                "skipped",
                f"time budget of {budget:.0f} s used up after {elapsed:.0f} s "
                + (f"(compile cases need {reserve:.0f} s left) " if reserve else "")
                + "(--time-budget)",
            )
        else:
            try:
                measurements, retries = measure_with_oom_retry(case, settings)
                rows = []
                for m in measurements:
                    row = summarize(m, device_name=device_name, peak_override=args.peak_tflops)
                    row["oom_retries"] = retries
                    if retries:
                        row["note"] = (
                            f"CUDA out of memory at batch {case.batch_size}: halved "
                            f"{retries} time(s) to {m.batch_size}"
                        )
                    rows.append(row)
            except OutOfMemory as e:
                rows = _case_rows(case, "skipped", str(e))
            except Exception as e:  # one broken case must not lose the others' results
                errors += 1
                first = str(e).strip().splitlines()[0] if str(e).strip() else ""
                rows = _case_rows(case, "error", f"{type(e).__name__}: {first}"[:500])
                traceback.print_exc()
            finally:
                free_memory(device)
        raw_rows.extend(rows)
        _print(_progress(i, len(cases), case, rows, time.perf_counter() - t0))
        save(final=False)

    doc["settings"]["load_average_at_end"] = _loadavg()
    save(final=True)
    plots = report.write_plots(doc["rows"], out_dir, prefix)
    md = report.markdown(doc, [str(p) for p in plots])
    for p in md_paths:
        report.write_text(p, md)
    _print(f"wrote {json_paths[0]}, {md_paths[0]} (and -latest), plots: {len(plots)}")
    _print(f"done in {doc['elapsed_s']:.0f} s; {errors} case(s) failed")
    recs = recommend(doc["rows"], args.accuracy_budget)
    if recs:
        _print("\n" + report.recommendation_text(recs, doc["rows"]))
    return 1 if errors else 0


def _loadavg() -> list[float] | None:
    """The 1/5/15-minute load averages: how busy the machine was (timings are only as good)."""
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None


def _apply_timing_overrides(args: argparse.Namespace, cases: list[Case]) -> list[Case]:
    """Command-line --steps/--warmup/--repeats/--eval-samples win over a sweep's own."""
    changes: dict[str, Any] = {
        k: None
        for k, flag in (
            ("steps", args.steps),
            ("warmup", args.warmup),
            ("repeats", args.repeats),
            ("eval_samples", args.eval_samples),
        )
        if flag is not None
    }
    return [dataclasses.replace(c, **changes) for c in cases] if changes else cases


def _run_groups(
    cases: list[Case],
    settings: Any,
    budget: float,
    device: str,
    device_name: str | None,
    args: argparse.Namespace,
    raw_rows: list[dict[str, Any]],
    save: Callable[[bool], None],
) -> int:
    """Measure ``cases`` group by group (see :func:`resnet_pl.bench.measure.measure_group`); returns
    the number of failed cases. Accuracy is measured once per path, in the group with the
    arch's largest batch."""
    from resnet_pl.bench.measure import free_memory, measure_group

    groups: dict[tuple[Any, ...], list[Case]] = {}
    for case in cases:
        groups.setdefault(case.group_key(), []).append(case)
    largest: dict[str, int] = {}
    for case in cases:
        if not case.skip:
            largest[case.arch] = max(largest.get(case.arch, 0), case.batch_size)
    eval_paths = {c.path_key() for c in cases if c.batch_size == largest.get(c.arch)}
    t_start = time.perf_counter()
    errors = 0
    for i, members in enumerate(groups.values(), 1):
        t0 = time.perf_counter()
        rows = [r for c in members if c.skip for r in _case_rows(c, "skipped", c.skip)]
        runnable = [c for c in members if not c.skip]
        elapsed = time.perf_counter() - t_start
        head = runnable[0] if runnable else members[0]
        if runnable and budget and elapsed > budget:
            why = f"time budget of {budget:.0f} s used up after {elapsed:.0f} s (--time-budget)"
            rows += [r for c in runnable for r in _case_rows(c, "skipped", why)]
        elif runnable:
            failures: list[tuple[Case, str, str]] = []
            try:
                measurements = measure_group(runnable, settings, eval_paths, failures)
                for m in measurements:
                    rows.append(
                        summarize(m, device_name=device_name, peak_override=args.peak_tflops)
                    )
            except Exception as e:  # the shared model itself failed: the whole group
                first = str(e).strip().splitlines()[0] if str(e).strip() else ""
                failures = [(c, "resnet_pl", f"{type(e).__name__}: {first}"[:500])
                            for c in runnable]  # fmt: skip
                traceback.print_exc()
            finally:
                free_memory(device)
            for case, impl, message in failures:
                errors += 1
                rows.append(blank_row(case.as_dict(), impl, "error", message))
        raw_rows.extend(rows)
        label = f"{head.arch} {head.mode} bs{head.batch_size} {head.input_size}px"
        _print(f"[group {i}/{len(groups)}] {label}: {len(rows)} rows "
               f"({time.perf_counter() - t0:.1f} s)")  # fmt: skip
        for r in rows:
            what = (f"{r['images_per_s']:.1f} img/s" if r["status"] == "ok"
                    else f"{r['status']}: {r['reason']}")  # fmt: skip
            _print(f"    {r['impl']:<11} {r['precision']:<5} {r['memory_format']:<13} "
                   f"{r['backend']:<20} {what}")  # fmt: skip
        save(False)
    return errors


if __name__ == "__main__":
    sys.exit(main())
