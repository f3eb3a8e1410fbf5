"""Load test of ``resnet-pl serve``: throughput, latency, errors and mix-ups over HTTP, against
offline ``classify`` on the same model and images in the same run.

    python -m benchmarks.serve [--model wrn_16_2.fashion_mnist] [--concurrency 1 8 32 64]
                               [--requests 400] [--seconds 15] [--images 256]

For batching off (``--max_batch_size 1``) and on, the server runs on a free loopback port and a
bounded asyncio client (at most ``--requests`` requests and ``--seconds`` seconds per level, a
fixed number in flight) posts real Fashion-MNIST test images as PNG bytes. Every answer is
checked against the one ``classify`` gives for that very image (label and top-5
probabilities, and the echoed request id), so a batch that mixed answers up shows as a
mix-up. Offline ``classify`` (its own code path: files -> decoder -> batches of 32) is timed
before, between and after the server runs; the serving overhead is the ratio of served
requests/s to offline images/s.

Results: ``benchmarks/results/serve-<device>-<stamp>.json`` (+ ``.md`` and ``.png``), with
the load average before/after each step and the CPU flags: on a shared machine only ratios
measured in the same run mean much.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


def _load() -> list[float]:
    return [round(v, 2) for v in os.getloadavg()]


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ServerProcess:
    """``python -m resnet_pl.cli serve`` on a free loopback port, stopped with SIGTERM."""

    def __init__(self, model: str, *args: str) -> None:
        import requests

        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        cmd = [sys.executable, "-m", "resnet_pl.cli", "serve", model, "--port", str(self.port)]
        self.proc = subprocess.Popen([*cmd, *args], cwd=ROOT, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited: {self.proc.communicate()[1][-2000:]}")
            try:
                if requests.get(f"{self.url}/health", timeout=2).status_code == 200:
                    return
            except requests.ConnectionError:
                pass
            time.sleep(0.3)
        self.stop()
        raise RuntimeError("server not ready after 180 s")

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.communicate()
        return int(self.proc.returncode)


def _png(array: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def offline_classify(clf: Any, paths: list[Path], repeats: int = 1) -> dict[str, Any]:
    """Images/s of ``classify``'s path (files -> decoder -> batches of 32), best of repeats."""
    rates = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        n = sum(1 for r in clf.classify_files(paths, top_k=5, batch_size=32) if r.prediction)
        rates.append(n / (time.perf_counter() - t0))
    return {"images_per_s": round(max(rates), 1), "runs": [round(r, 1) for r in rates]}


async def _level(
    url: str,
    images: list[bytes],
    expected: list[Any],
    concurrency: int,
    count: int,
    seconds: float,
    headers: dict[str, str] | None = None,
) -> dict[str, Any]:
    """One concurrency level: ``concurrency`` requests always in flight until ``count`` were
    sent or ``seconds`` passed; every answer checked against its own image's."""
    import aiohttp

    latencies: list[float] = []
    errors: list[str] = []
    mixups = 0
    sent = 0
    deadline = 0.0

    async def worker(session: aiohttp.ClientSession, wid: int) -> None:
        nonlocal sent, mixups
        while sent < count and time.monotonic() < deadline:
            i = sent % len(images)
            rid = f"w{wid}-n{sent}"
            sent += 1
            t0 = time.perf_counter()
            try:
                async with session.post(
                    f"{url}/predict",
                    data=images[i],
                    headers={**(headers or {}), "Content-Type": "image/png", "X-Request-ID": rid},
                ) as r:
                    body = await r.json()
                    status = r.status
            except Exception as e:
                errors.append(f"{type(e).__name__}: {e}")
                continue
            latencies.append(time.perf_counter() - t0)
            if status != 200:
                errors.append(f"{status}: {body}")
                continue
            want = expected[i]
            probs = [t["prob"] for t in body["top_k"]]
            same = (
                body["request_id"] == rid
                and [t["index"] for t in body["top_k"]] == want.indices[:5]
                and np.allclose(probs, want.probs[:5], rtol=0, atol=1e-5)
            )
            mixups += not same

    timeout = aiohttp.ClientTimeout(total=120)
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:

        async def warm() -> None:
            warm_headers = {**(headers or {}), "Content-Type": "image/png"}
            async with session.post(f"{url}/predict", data=images[0], headers=warm_headers) as r:
                await r.read()

        # warm-up: a few requests, not counted
        await asyncio.gather(*(warm() for _ in range(min(concurrency, 8))))
        deadline = time.monotonic() + seconds
        t0 = time.perf_counter()
        await asyncio.gather(*(worker(session, w) for w in range(concurrency)))
        wall = time.perf_counter() - t0
    lat = sorted(latencies)

    def pct(q: float) -> float | None:
        return round(1000 * lat[min(len(lat) - 1, int(q * len(lat)))], 1) if lat else None

    return {
        "concurrency": concurrency,
        "requests": sent,
        "answered": len(latencies),
        "wall_s": round(wall, 2),
        "requests_per_s": round(len(latencies) / wall, 1) if wall else None,
        "latency_ms": {
            "p50": pct(0.50),
            "p95": pct(0.95),
            "p99": pct(0.99),
            "mean": round(1000 * statistics.fmean(lat), 1) if lat else None,
        },
        "errors": len(errors),
        "error_examples": errors[:3],
        "mixups": mixups,
    }


def plot(doc: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
    for mode in doc["modes"]:
        xs = [r["concurrency"] for r in mode["levels"]]
        a.plot(xs, [r["requests_per_s"] for r in mode["levels"]], "o-", label=mode["name"])
        b.plot(xs, [r["latency_ms"]["p50"] for r in mode["levels"]], "o-",
               label=f"{mode['name']} p50")  # fmt: skip
        b.plot(xs, [r["latency_ms"]["p99"] for r in mode["levels"]], "x--",
               label=f"{mode['name']} p99")  # fmt: skip
    offline = doc["offline_classify"]["images_per_s"]
    a.axhline(offline, color="gray", ls=":", label=f"offline classify ({offline:.0f} img/s)")
    for ax in (a, b):
        ax.set_xscale("log", base=2)
        ax.set_xlabel("concurrent requests")
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    a.set_ylabel("requests/s")
    b.set_ylabel("latency (ms)")
    b.set_yscale("log")
    m = doc["machine"]
    fig.suptitle(
        f"resnet-pl serve {doc['model']} ({doc['runtime']}), {m['cpu_usable']} cores, "
        f"shared machine (load {doc['load_average']['start'][0]}..{doc['load_average']['end'][0]})",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def markdown(doc: dict[str, Any]) -> str:
    off = doc["offline_classify"]["images_per_s"]
    lines = [
        f"# resnet-pl serve load test: {doc['model']} ({doc['runtime']})",
        "",
        f"{doc['machine']['cpu_model']}, {doc['machine']['cpu_usable']} usable cores, flags "
        f"{' '.join(doc['cpu_flags']) or '-'}; load average {doc['load_average']['start']} at "
        f"the start, {doc['load_average']['end']} at the end (a shared machine: compare ratios "
        "from this run only). Offline classify: "
        f"{off} img/s (runs {doc['offline_classify']['runs_all']}).",
        "",
        "| batching | concurrency | requests | req/s | x offline | p50 ms | p95 ms | p99 ms "
        "| errors | mix-ups |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for mode in doc["modes"]:
        for r in mode["levels"]:
            lat = r["latency_ms"]
            lines.append(
                f"| {mode['name']} | {r['concurrency']} | {r['answered']} | "
                f"{r['requests_per_s']} | {r['ratio_to_offline']} | {lat['p50']} | {lat['p95']} "
                f"| {lat['p99']} | {r['errors']} | {r['mixups']} |"
            )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="wrn_16_2.fashion_mnist")
    parser.add_argument("--runtime", default="torch", help="serve's --runtime")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32, 64])
    parser.add_argument("--requests", type=int, default=400, help="per level, at most")
    parser.add_argument("--seconds", type=float, default=15.0, help="per level, at most")
    parser.add_argument("--images", type=int, default=256, help="distinct real test images")
    parser.add_argument("--max_batch_size", type=int, default=16, help="the batching-on mode")
    parser.add_argument("--batch_timeout", type=float, default=0.005)
    parser.add_argument(
        "--threads", type=int, default=1, help="threads of the server's worker and of classify"
    )
    parser.add_argument(
        "--timeout", type=float, default=300.0, help="serve's --timeout (queue wait before 504)"
    )
    parser.add_argument(
        "--compare_threads",
        type=int,
        default=None,
        help="also serve with batching off and this many threads per worker",
    )
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)

    import torch

    from benchmarks.report import cpu_flags, machine_info, versions
    from resnet_pl.data import load_idx_dataset
    from resnet_pl.deploy.runtime import open_classifier

    load_start = _load()
    x, _ = load_idx_dataset("fashion_mnist", "test", None)
    images = [_png(x[i, 0].numpy()) for i in range(args.images)]
    threads = args.threads
    # `timeout` (and Ctrl-C) stop the run cleanly: the server is stopped in `finally`.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    torch.set_num_threads(threads)
    backend = "onnx" if args.runtime == "onnxruntime" else "auto"
    clf = open_classifier(args.model, pretrained=True, backend=backend)  # type: ignore[arg-type]
    with tempfile.TemporaryDirectory() as tmp:
        paths = []
        for i, data in enumerate(images):
            paths.append(Path(tmp) / f"{i:04d}.png")
            paths[-1].write_bytes(data)
        expected = [r.prediction for r in clf.classify_files(paths, top_k=5)]
        offline_runs = [offline_classify(clf, paths)]
        modes = []
        settings = [
            ("off", 1, 0.0, threads),
            (f"on (max_batch_size {args.max_batch_size}, batch_timeout {args.batch_timeout})",
             args.max_batch_size, args.batch_timeout, threads),
        ]  # fmt: skip
        if args.compare_threads and args.compare_threads != threads:
            settings.append((f"off, {args.compare_threads} threads", 1, 0.0, args.compare_threads))
        for name, mbs, bt, n_threads in settings:
            load_before = _load()
            server = ServerProcess(
                args.model, "--runtime", args.runtime, "--max_batch_size", str(mbs),
                "--batch_timeout", str(bt), "--threads", str(n_threads),
                "--timeout", str(args.timeout),
            )  # fmt: skip
            try:
                levels = [
                    asyncio.run(_level(server.url, images, expected, c, args.requests,
                                       args.seconds))
                    for c in args.concurrency
                ]  # fmt: skip
            finally:
                code = server.stop()
            modes.append(
                {
                    "name": name,
                    "max_batch_size": mbs,
                    "batch_timeout": bt,
                    "threads": n_threads,
                    "levels": levels,
                    "exit_code": code,
                    "load_average": {"before": load_before, "after": _load()},
                }
            )
            summary = ", ".join(
                f"c={r['concurrency']} {r['requests_per_s']} req/s, p99 "
                f"{r['latency_ms']['p99']} ms, {r['errors']} errors, {r['mixups']} mix-ups"
                for r in levels
            )
            print(f"batching {name}: {summary}", flush=True)
            offline_runs.append(offline_classify(clf, paths))
    offline = statistics.fmean(r["images_per_s"] for r in offline_runs)
    for mode in modes:
        for r in mode["levels"]:
            r["ratio_to_offline"] = round(r["requests_per_s"] / offline, 3)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    device = "cpu"
    doc = {
        "benchmark": "serve",
        "command": "python -m benchmarks.serve " + " ".join(argv or sys.argv[1:]),
        "model": args.model,
        "runtime": args.runtime,
        "threads_per_worker": threads,
        "client": "aiohttp, one process, on the same machine (it shares the CPU cores)",
        "images": args.images,
        "limits": {"requests_per_level": args.requests, "seconds_per_level": args.seconds},
        "offline_classify": {
            "images_per_s": round(offline, 1),
            "runs_all": [r["images_per_s"] for r in offline_runs],
            "how": "classify_files(batch_size=32) on the same PNG files, before, between and "
            "after each server mode (the mean of all of them)",
        },
        "modes": modes,
        "total_errors": sum(r["errors"] for m in modes for r in m["levels"]),
        "total_mixups": sum(r["mixups"] for m in modes for r in m["levels"]),
        "machine": machine_info(),
        "cpu_flags": cpu_flags(),
        "load_average": {"start": load_start, "end": _load()},
        "shared_machine_note": "2 cores shared with other work while this ran; absolute "
        "figures vary run to run, ratios from one run are the meaningful part",
        "versions": versions(),
        "stamp": stamp,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    base = args.out / f"serve-{device}-{stamp}"
    base.with_suffix(".json").write_text(json.dumps(doc, indent=2) + "\n")
    base.with_suffix(".md").write_text(markdown(doc))
    plot(doc, base.with_suffix(".png"))
    print(markdown(doc))
    print(f"wrote {base}.json, {base}.md and {base}.png")
    return 0 if doc["total_errors"] == 0 and doc["total_mixups"] == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
