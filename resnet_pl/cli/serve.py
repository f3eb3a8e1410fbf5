"""``resnet-pl serve MODEL``: an HTTP endpoint (LitServe) and a web page for a classifier.

``main(argv)`` returns the exit status: 0 after a clean stop (Ctrl-C or SIGTERM: requests
already accepted are answered first), 2 for bad usage (unknown model, impossible option), one
line on stderr, never a traceback.
"""

from __future__ import annotations

import os
import signal
import sys
from types import FrameType

from jsonargparse import ArgumentParser, Namespace

from resnet_pl.cli.util import accept_dashed, new_parser, parse
from resnet_pl.errors import ResNetPLError

HELP = (
    "Serve MODEL over HTTP with LitServe: POST /predict (multipart upload, raw image bytes or "
    'JSON {"image": base64}), GET /health, GET /info (the model card), a web page at / and '
    "the OpenAPI page at /docs. Stop with Ctrl-C or SIGTERM."
)
HOSTS = ("127.0.0.1", "0.0.0.0", "::")
RUNTIMES = ("auto", "torch", "onnxruntime", "openvino")


def build_parser() -> ArgumentParser:
    from resnet_pl.serve.api import API_KEY_ENV, DEFAULT_MAX_BODY_MB, DEFAULT_MAX_PIXELS

    p = new_parser("resnet-pl serve", HELP)
    p.add_argument(
        "model",
        type=str,
        help="what classify takes: hub name (wrn_16_2.fashion_mnist), checkpoint or .onnx file",
    )
    p.add_argument(
        "--runtime",
        type=str,
        default="auto",
        choices=list(RUNTIMES),
        help="torch, onnxruntime (a hub model or checkpoint is exported to ONNX in memory) or "
        "openvino (.onnx files); auto: onnxruntime for .onnx files, torch otherwise",
    )
    p.add_argument(
        "--host",
        type=str,
        default="127.0.0.1",
        help="127.0.0.1 (default: this machine only), 0.0.0.0 or :: (every interface; set "
        "--api_key)",
    )
    p.add_argument("--port", type=int, default=8000, help="TCP port, 1024..65535")
    p.add_argument("--top_k", type=int, default=5, help="labels per answer (a request's ?top_k=)")
    p.add_argument(
        "--max_batch_size",
        type=int,
        default=1,
        help="dynamic batching: requests per forward (1: off, the faster choice measured on "
        "CPU; see docs/serve.md)",
    )
    p.add_argument(
        "--batch_timeout",
        type=float,
        default=0.005,
        help="with batching: seconds a worker waits to fill a batch (0 polls the queue "
        "without pause)",
    )
    p.add_argument(
        "--workers_per_device", type=int, default=1, help="inference processes per device"
    )
    p.add_argument("--accelerator", type=str, default="auto", help="auto, cpu or cuda")
    p.add_argument("--devices", type=str, default="auto", help="number of devices (GPUs), or auto")
    p.add_argument(
        "--max_body_mb",
        type=float,
        default=DEFAULT_MAX_BODY_MB,
        help="larger request bodies get 413",
    )
    p.add_argument(
        "--max_pixels",
        type=int,
        default=DEFAULT_MAX_PIXELS,
        help="larger images get 413 (decompression-bomb guard)",
    )
    p.add_argument(
        "--api_key",
        type=str | None,
        default=None,
        help=f"require this key (X-API-Key header); default: ${API_KEY_ENV} if set",
    )
    p.add_argument(
        "--threads", type=int | None, default=None, help="CPU threads per worker (default 1)"
    )
    p.add_argument(
        "--timeout", type=float, default=30.0, help="seconds a request may queue before a 504"
    )
    p.add_argument(
        "--shutdown_timeout",
        type=float,
        default=20.0,
        help="on Ctrl-C/SIGTERM: seconds given to requests in flight",
    )
    p.add_argument("--log_level", type=str, default="warning", help="debug, info, warning or error")
    return p


def _backend_runtime(runtime: str, model: str) -> tuple[str, str]:
    """classify's ``--backend``/``--runtime`` pair for serve's one ``--runtime``."""
    is_onnx = model.endswith(".onnx")
    if runtime == "torch":
        if is_onnx:
            raise ValueError("--runtime torch needs a hub name or checkpoint, not an .onnx file")
        return "torch", "onnxruntime"
    if runtime == "onnxruntime":
        return "onnx", "onnxruntime"
    if runtime == "openvino":
        return "onnx", "openvino"
    return "auto", "onnxruntime"


def _devices(text: str) -> int | str:
    if text == "auto":
        return "auto"
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"--devices must be a number or auto, got {text!r}") from None


_MAIN_PID = os.getpid()


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    # SIGTERM takes Ctrl-C's path: LitServe stops the HTTP servers (which finish the requests
    # they accepted) before it stops the inference workers.
    if os.getpid() == _MAIN_PID:
        raise KeyboardInterrupt
    # A forked HTTP server inherits this handler; uvicorn re-raises the signal it stopped on
    # to end the process: let it end the default way.
    signal.signal(signum, signal.SIG_DFL)
    signal.raise_signal(signum)


def serve(args: Namespace) -> int:
    from resnet_pl.serve import build_server

    if args.host not in HOSTS:
        raise ValueError(
            f"--host must be one of {', '.join(HOSTS)} (LitServe binds these), got {args.host!r}"
        )
    if not 1024 <= args.port <= 65535:
        raise ValueError(f"--port must be in 1024..65535, got {args.port}")
    if not args.shutdown_timeout > 0:
        raise ValueError(f"--shutdown_timeout must be > 0, got {args.shutdown_timeout}")
    backend, runtime = _backend_runtime(args.runtime, args.model)
    server = build_server(
        args.model,
        backend=backend,
        runtime=runtime,
        top_k=args.top_k,
        max_batch_size=args.max_batch_size,
        batch_timeout=args.batch_timeout,
        accelerator=args.accelerator,
        devices=_devices(args.devices),
        workers_per_device=args.workers_per_device,
        max_body_mb=args.max_body_mb,
        max_pixels=args.max_pixels,
        api_key=args.api_key,
        threads=args.threads,
        timeout=args.timeout,
    )
    server.uvicorn_graceful_timeout = args.shutdown_timeout
    info = server.model_metadata or {}
    shown = "[::1]" if args.host == "::" else args.host
    where = f"http://{shown}:{args.port}"
    print(
        f"serving {info.get('name')} ({info.get('backend')}) at {where}: web page {where}/, "
        f"POST {where}/predict, API docs {where}/docs; Ctrl-C or SIGTERM stops",
        file=sys.stderr,
    )
    if args.host != "127.0.0.1" and not info.get("api_key_required"):
        print(
            "warning: listening on every interface without an API key; set --api_key or "
            "RESNET_PL_API_KEY, or bind 127.0.0.1 behind a proxy",
            file=sys.stderr,
        )
    global _MAIN_PID
    _MAIN_PID = os.getpid()
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        server.run(
            host=args.host,
            port=args.port,
            generate_client_file=False,
            log_level=args.log_level,
            num_api_servers=1,
        )
    except KeyboardInterrupt:  # a signal during start-up
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
    print("resnet-pl serve: stopped", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run ``resnet-pl serve``; returns the exit status."""
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    ns = parse(parser, accept_dashed(argv, parser, "resnet-pl serve"), "resnet-pl serve")
    if isinstance(ns, int):
        return ns
    try:
        return serve(ns)
    except (ResNetPLError, ValueError, OSError, ImportError, KeyError) as e:
        message = e.args[0] if isinstance(e, KeyError) and e.args else e
        first = str(message).strip().splitlines()[0] if str(message).strip() else type(e).__name__
        print(f"resnet-pl serve: error: {first}", file=sys.stderr)
        return 2


__all__ = ["build_parser", "main"]
