"""The LitServe pieces: :class:`ImageClassifierAPI` (a ``LitAPI``: model loading, decoding,
batched prediction) and :class:`ImageRequestSpec` (a ``LitSpec``: the HTTP side of ``POST
/predict``), put together by :func:`build_server`.

Where each step runs:

- the HTTP front end (uvicorn, in LitServe's API-server processes) checks the API key and the
  body size, reads multipart uploads, raw image bytes or JSON ``{"image": base64}`` **in
  memory**, and answers 4xx for anything malformed before it reaches a worker;
- an inference worker decodes the bytes with the one decoder (:func:`resnet_pl.data.
  decode_image`, the same rules as ``classify`` and training) and runs the classifier that
  ``classify`` uses (:func:`resnet_pl.deploy.runtime.open_classifier`: the model's own
  evaluation transform and recorded TTA views). With dynamic batching, one undecodable image
  in a batch becomes a 4xx for that request alone; the others are still predicted.

Nothing uploaded is written to disk or unpickled.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
import json
import math
import os
import re
import signal
import sys
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import litserve as ls
from fastapi import HTTPException, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from litserve.specs.base import LitSpec
from litserve.utils import LitAPIStatus, ResponseBufferItem

from resnet_pl.errors import ResNetPLError

API_KEY_ENV = "RESNET_PL_API_KEY"
DEFAULT_MAX_BODY_MB = 10.0
# 25 M pixels (e.g. 6000 x 4000) covers photos; PIL's own default (89 M) lets one request
# allocate ~270 MB. Larger images are refused as possible decompression bombs.
DEFAULT_MAX_PIXELS = 25_000_000
LOOPBACK = "127.0.0.1"
# Fields of the model card shown by GET /info (the rest of a hub record, e.g. the training
# recipe, stays in the record).
CARD_KEYS = (
    "arch", "architecture", "num_classes", "class_names", "dataset", "input_size", "mean",
    "std", "interpolation", "crop_pct", "tta", "metrics", "num_params", "gflops", "license",
    "origin", "credit", "paper", "source_weights", "weights_sha256", "resnet_pl_version",
)  # fmt: skip
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


class ServeOptionError(ResNetPLError, ValueError):
    """An impossible serving option (port, batch size, body limit ...); the message names it."""


@dataclass(frozen=True)
class ServeConfig:
    """What a worker needs to open the model (plain values: the API object is pickled into
    each spawned worker, and every worker loads its own copy of the model)."""

    model: str
    backend: str = "auto"  # auto | torch | onnx (classify's --backend)
    runtime: str = "onnxruntime"  # what runs an .onnx file: onnxruntime | openvino
    top_k: int = 5
    threads: int | None = None
    max_pixels: int = DEFAULT_MAX_PIXELS
    pretrained: bool | None = None


@dataclass
class _Item:
    """One decoded request inside a worker: an image, or the 4xx that answers it."""

    request_id: str
    top_k: int
    image: Any = None
    error: tuple[int, str] | None = None


def open_model(config: ServeConfig, device: str = "cpu") -> Any:
    """``classify``'s classifier for ``config.model`` (see :func:`open_classifier`)."""
    from resnet_pl.deploy.runtime import open_classifier

    model = config.model
    pretrained = config.pretrained
    if pretrained is None and not str(model).endswith((".onnx", ".ckpt", ".pt", ".pth")):
        pretrained = True  # as classify: a hub name means its trained weights
    return open_classifier(
        model,
        backend=config.backend,  # type: ignore[arg-type]
        device=device,
        threads=config.threads,
        runtime=config.runtime,  # type: ignore[arg-type]
        pretrained=pretrained,
    )


def _json_safe(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)


def model_card(clf: Any, config: ServeConfig) -> dict[str, Any]:
    """``GET /info``'s model part: name, weights sha256, runtime, classes, preprocessing and
    metrics, from the classifier's resolved config and metadata."""
    merged: dict[str, Any] = {**dict(getattr(clf, "metadata", {}) or {}), **dict(clf.cfg)}
    card = {k: merged[k] for k in CARD_KEYS if merged.get(k) is not None}
    card["class_names"] = [clf.label_of(i) for i in range(_num_classes(clf, merged))]
    card["num_classes"] = len(card["class_names"])
    path = Path(config.model)
    name = path.name if path.is_file() else config.model
    sha = merged.get("weights_sha256")
    if sha is None and path.is_file():
        from resnet_pl.hub.pretrained import sha256_file

        sha = sha256_file(path)
    card.update(name=name, weights_sha256=sha, backend=clf.backend, runtime=config.runtime)
    return _json_safe(card)  # type: ignore[no-any-return]


def _num_classes(clf: Any, merged: Mapping[str, Any]) -> int:
    if clf.class_names:
        return len(clf.class_names)
    n = merged.get("num_classes")
    if isinstance(n, int) and n > 0:
        return n
    raise ServeOptionError(f"{merged.get('arch', 'the model')}: unknown number of classes")


class ImageClassifierAPI(ls.LitAPI):
    """A ``LitAPI`` serving one image classifier: ``decode_request`` decodes an image with the
    project's one decoder, ``predict`` runs a batch through ``classify``'s classifier,
    ``encode_response`` returns top-k labels and probabilities. Undecodable images become 4xx
    answers for their own request only, also inside a dynamic batch.

    Args:
        config: the model and how to run it (:class:`ServeConfig`).
        card: what ``encode_response`` reports as the model's ``name`` / ``weights_sha256``
            (:func:`model_card`; computed from the model when omitted).
        api_key: when set, every endpoint but the web page needs it (``X-API-Key`` header or
            ``Authorization: Bearer``).
        max_batch_size, batch_timeout: LitServe's dynamic batching (on the ``LitAPI``, as
            LitServe >= 0.2.13 wants).
        max_body_bytes: larger request bodies get 413.
        api_path: where the endpoint lives (default ``/predict``).
    """

    def __init__(
        self,
        config: ServeConfig,
        *,
        card: Mapping[str, Any] | None = None,
        api_key: str | None = None,
        max_batch_size: int = 1,
        batch_timeout: float = 0.0,
        max_body_bytes: int = int(DEFAULT_MAX_BODY_MB * 2**20),
        api_path: str = "/predict",
    ) -> None:
        spec = ImageRequestSpec(api_path, max_body_bytes=max_body_bytes, top_k=config.top_k)
        super().__init__(max_batch_size=max_batch_size, batch_timeout=batch_timeout, spec=spec)
        self.config = config
        self.card = dict(card) if card is not None else None
        self.api_key = api_key or None
        self.clf: Any = None

    # ---- LitServe hooks, in the worker ----------------------------------------------------
    def setup(self, device: str) -> None:
        # Ctrl-C reaches every process of the terminal's group; the main process stops the
        # HTTP side first and then the workers, so that accepted requests are answered.
        if os.environ.get("LITSERVE_WORKER_ID") is not None:
            signal.signal(signal.SIGINT, signal.SIG_IGN)
        if self.config.threads:
            import torch

            torch.set_num_threads(self.config.threads)
        self.clf = open_model(self.config, device=str(device))
        if self.card is None:
            self.card = model_card(self.clf, self.config)
        self.num_classes = int(self.card["num_classes"])

    def decode_request(self, request: Any, **kwargs: Any) -> _Item:
        from resnet_pl.data import ImageLoadError, decode_image

        item = _Item(str(request["request_id"]), int(request["top_k"]))
        try:
            item.image = decode_image(request["image"], self.clf.in_chans, self.config.max_pixels)
        except ImageLoadError as e:
            status = 413 if "decompression bomb" in str(e) else 400
            item.error = (status, f"image: {e}")
        return item

    def predict(self, x: Any, **kwargs: Any) -> Any:
        items: list[_Item] = list(x) if self.max_batch_size > 1 else [x]
        good = [it for it in items if it.error is None]
        outputs: dict[int, dict[str, Any]] = {}
        if good:
            try:
                preds = self.clf.predict([it.image for it in good], top_k=self.num_classes)
            except Exception:
                if len(good) == 1:
                    raise  # LitServe logs it and answers 500
                # One image the model cannot take must not fail the others of its batch.
                preds = [self._predict_one(it) for it in good]
                good = [it for it in good if it.error is None]
                preds = [p for p in preds if p is not None]
            for it, p in zip(good, preds, strict=True):
                k = min(it.top_k, len(p.indices))
                outputs[id(it)] = {
                    "request_id": it.request_id,
                    "label": p.labels[0],
                    "index": p.indices[0],
                    "prob": p.probs[0],
                    "top_k": [
                        {"label": lab, "index": i, "prob": pr}
                        for lab, i, pr in zip(p.labels[:k], p.indices[:k], p.probs[:k], strict=True)
                    ],
                }
        results = [
            outputs.get(id(it))
            or {"request_id": it.request_id, "error": it.error[1], "status": it.error[0]}  # type: ignore[index]
            for it in items
        ]
        return results if self.max_batch_size > 1 else results[0]

    def _predict_one(self, item: _Item) -> Any:
        try:
            return self.clf.predict([item.image], top_k=self.num_classes)[0]
        except Exception as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            item.error = (500, f"this image could not be classified: {first}")
            return None

    def encode_response(self, output: Any, **kwargs: Any) -> dict[str, Any]:
        if "error" in output:
            return dict(output)
        card = self.card or {}
        return {
            **output,
            "model": card.get("name"),
            "weights_sha256": card.get("weights_sha256"),
        }

    # ---- auth: LitServe uses it for /health, /info and the spec's endpoints ----------------
    def authorize(self, request: Request) -> None:
        """A FastAPI dependency: 401 unless the request carries the API key (when one is set)."""
        if not self.api_key:
            return
        given = request.headers.get("x-api-key") or ""
        auth = request.headers.get("authorization") or ""
        if not given and auth.lower().startswith("bearer "):
            given = auth[7:].strip()
        if not hmac.compare_digest(given.encode(), self.api_key.encode()):
            raise HTTPException(401, "missing or wrong API key: send it as the X-API-Key header")


class _BadRequest(ResNetPLError, ValueError):
    """A request the front end refuses: answered with ``status`` and the one-line message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _error(status: int, message: str, request_id: str) -> JSONResponse:
    """The one shape of every error answer: one line, and the request id."""
    line = " ".join(str(message).split())
    return JSONResponse(
        {"detail": line, "request_id": request_id},
        status_code=status,
        headers={"X-Request-ID": request_id},
    )


_USAGE = (
    "send multipart/form-data with the image in a field named 'image' (curl -F image=@x.png), "
    "the raw image bytes with an image/* or application/octet-stream content type, or JSON "
    '{"image": "<base64>"}'
)


class ImageRequestSpec(LitSpec):
    """The HTTP side of ``POST /predict``: reads the three request kinds in memory, enforces
    the body limit, answers 4xx with one line (``{"detail": ..., "request_id": ...}``) for
    anything malformed, and hands ``{"image": bytes, "top_k": k, "request_id": id}`` to the
    workers. Replaces LitServe's default endpoint, which parses every non-form body as JSON
    (a 500 for raw bytes or malformed JSON)."""

    def __init__(
        self, api_path: str = "/predict", *, max_body_bytes: int = 10 * 2**20, top_k: int = 5
    ) -> None:
        super().__init__()
        self.api_path = api_path
        self.max_body_bytes = int(max_body_bytes)
        self.default_top_k = int(top_k)
        self.add_endpoint(api_path, self.predict_endpoint, ["POST"])

    def decode_request(self, request: Any, context_kwargs: Any = None) -> Any:
        return request

    def encode_response(self, output: Any, context_kwargs: Any = None) -> Any:
        return output

    # ---- reading one request ----------------------------------------------------------------
    async def _body(self, request: Request) -> bytes:
        limit = self.max_body_bytes
        declared = request.headers.get("content-length")
        if declared is not None:
            try:
                size = int(declared)
            except ValueError:
                raise _BadRequest(400, f"bad Content-Length {declared!r}") from None
            if size > limit:
                raise _BadRequest(413, _too_large(size, limit))
        chunks, total = [], 0
        async for chunk in request.stream():
            total += len(chunk)
            if total > limit:
                raise _BadRequest(413, _too_large(total, limit))
            chunks.append(chunk)
        return b"".join(chunks)

    def _top_k(self, value: Any) -> int:
        if value is None:
            return -1
        try:
            k = int(value)
        except (TypeError, ValueError):
            raise _BadRequest(400, f"top_k must be an integer, got {value!r}") from None
        if k < 1:
            raise _BadRequest(400, f"top_k must be >= 1, got {k}")
        return k

    async def read(self, request: Request) -> tuple[bytes, int]:
        """``(image bytes, top_k or -1)`` of one request, or :class:`_BadRequest`."""
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        top_k = self._top_k(request.query_params.get("top_k"))
        body = await self._body(request)
        if not body:
            raise _BadRequest(400, f"empty request body; {_USAGE}")
        if ctype == "multipart/form-data":
            data, k = await _read_multipart(request, body)
            return data, top_k if k is None else self._top_k(k)
        if ctype in ("application/json", "text/json") or ctype.endswith("+json"):
            return _read_json(body, self)
        if ctype.startswith("image/") or ctype == "application/octet-stream":
            return body, top_k
        shown = ctype or "none"
        raise _BadRequest(415, f"unsupported content type {shown!r}; {_USAGE}")

    async def predict_endpoint(self, request: Request) -> Response:
        rid = request.headers.get("x-request-id", "")
        rid = rid if _REQUEST_ID.match(rid) else uuid.uuid4().hex
        try:
            data, top_k = await self.read(request)
        except _BadRequest as e:
            return _error(e.status, e.message, rid)
        k = top_k if top_k > 0 else self.default_top_k
        payload = {"image": data, "top_k": k, "request_id": rid}

        uid = str(uuid.uuid4())
        event = asyncio.Event()
        self.response_buffer[uid] = ResponseBufferItem(event=event)
        self.request_queue.put((self.response_queue_id, uid, time.monotonic(), payload))
        await event.wait()
        response, status = self.response_buffer.pop(uid).response
        if status == LitAPIStatus.ERROR:
            if isinstance(response, HTTPException):  # e.g. 504: waited in the queue too long
                return _error(response.status_code, str(response.detail), rid)
            # Anything else is ours to fix; LitServe's worker logged it. Never unpickled here.
            return _error(500, "internal error while predicting (see the server log)", rid)
        if "error" in response:
            return _error(int(response["status"]), str(response["error"]), rid)
        return JSONResponse(response, headers={"X-Request-ID": rid})


def _too_large(size: int, limit: int) -> str:
    return (
        f"request body of {size} bytes is over the limit of {limit} bytes "
        f"({limit / 2**20:g} MB; the server's --max_body_mb)"
    )


async def _read_multipart(request: Request, body: bytes) -> tuple[bytes, Any]:
    """The file of a multipart form (field ``image``, or ``file``, or the only file), parsed
    from ``body`` in memory; and its ``top_k`` field if any."""
    from starlette.datastructures import UploadFile
    from starlette.formparsers import MultiPartException, MultiPartParser

    # Uploads stay in memory (the body is already in memory and under --max_body_mb): never
    # spool a part to a temporary file on disk. LitServe sets the same at import.
    MultiPartParser.spool_max_size = sys.maxsize

    sent = False

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if sent:
            return {"type": "http.request", "body": b"", "more_body": False}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    replay = Request(request.scope, receive)
    try:
        # The whole body is already in memory and under the limit; so is every part.
        form = await replay.form(max_files=4, max_fields=16, max_part_size=len(body) + 1)
    except (MultiPartException, AssertionError, ValueError, KeyError) as e:
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise _BadRequest(400, f"malformed multipart body: {reason}; {_USAGE}") from None
    try:
        files = {k: v for k, v in form.multi_items() if isinstance(v, UploadFile)}
        upload = files.get("image") or files.get("file")
        if upload is None and len(files) == 1:
            upload = next(iter(files.values()))
        if upload is None:
            names = sorted(form.keys()) or ["none"]
            raise _BadRequest(
                400, f"no image file in the multipart form (fields: {', '.join(names)}); {_USAGE}"
            )
        data = await upload.read()
        if not data:
            raise _BadRequest(400, f"the uploaded file {upload.filename!r} is empty")
        top_k = form.get("top_k")
        return data, top_k if isinstance(top_k, str) else None
    finally:
        await form.close()


def _read_json(body: bytes, spec: ImageRequestSpec) -> tuple[bytes, int]:
    try:
        doc = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise _BadRequest(400, f"malformed JSON: {e}; {_USAGE}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("image"), str):
        raise _BadRequest(400, f'JSON must be an object with an "image" string; {_USAGE}')
    text = doc["image"]
    if text.startswith("data:") and "," in text:  # a data URL: data:image/png;base64,....
        text = text.split(",", 1)[1]
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise _BadRequest(400, '"image" is not valid base64') from None
    if not data:
        raise _BadRequest(400, '"image" is empty')
    return data, spec._top_k(doc.get("top_k"))


def build_server(
    model: str | Path,
    *,
    backend: str = "auto",
    runtime: str = "onnxruntime",
    top_k: int = 5,
    max_batch_size: int = 1,
    batch_timeout: float = 0.0,
    accelerator: str = "auto",
    devices: int | str = "auto",
    workers_per_device: int = 1,
    max_body_mb: float = DEFAULT_MAX_BODY_MB,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    api_key: str | None = None,
    threads: int | None = None,
    timeout: float = 30.0,
    pretrained: bool | None = None,
    **server_kwargs: Any,
) -> ls.LitServer:
    """A ``LitServer`` serving ``model`` (anything ``classify`` takes: a hub name such as
    ``wrn_16_2.fashion_mnist``, a checkpoint, an exported ``.onnx`` file) with ``POST
    /predict``, ``GET /health``, ``GET /info`` (the model card), the web page at ``/`` and
    LitServe's OpenAPI page at ``/docs``. Start it with ``server.run(host=..., port=...)``.

    The model is opened once here (a bad name or file stops with one line, before any worker
    starts) to fill ``/info``; each inference worker then opens its own copy.

    Args:
        model: what to serve.
        backend: ``auto`` (ONNX Runtime for ``.onnx`` files, PyTorch otherwise), ``torch`` or
            ``onnx`` (a hub model exported to ONNX in memory first).
        runtime: what runs an ``.onnx`` file: ``onnxruntime`` or ``openvino``.
        top_k: labels per answer when the request does not say (``?top_k=``).
        max_batch_size, batch_timeout: dynamic batching (set on the ``LitAPI``).
        accelerator, devices, workers_per_device: LitServe's placement: one worker process per
            device and per ``workers_per_device``.
        max_body_mb: request bodies over this get 413.
        max_pixels: images with more pixels get 413 (decompression-bomb guard).
        api_key: require this key (default: the ``RESNET_PL_API_KEY`` environment variable;
            none when unset).
        threads: CPU threads per worker (default 1; add workers for parallelism).
        timeout: seconds a request may wait for a worker before a 504.
        pretrained: for bare architecture names: load the default weights.
        server_kwargs: passed on to ``LitServer`` (e.g. ``track_requests``).

    Raises:
        ServeOptionError: an impossible option; other ResNetPLError/ValueError/OSError
            subclasses for a model that cannot be opened (one line, as ``classify``).
    """
    if top_k < 1:
        raise ServeOptionError(f"--top_k must be >= 1, got {top_k}")
    if max_batch_size < 1:
        raise ServeOptionError(f"--max_batch_size must be >= 1, got {max_batch_size}")
    if batch_timeout < 0:
        raise ServeOptionError(f"--batch_timeout must be >= 0 seconds, got {batch_timeout}")
    if workers_per_device < 1:
        raise ServeOptionError(f"--workers_per_device must be >= 1, got {workers_per_device}")
    if not max_body_mb > 0:
        raise ServeOptionError(f"--max_body_mb must be > 0, got {max_body_mb}")
    if max_pixels < 1:
        raise ServeOptionError(f"--max_pixels must be >= 1, got {max_pixels}")
    if backend not in ("auto", "torch", "onnx"):
        raise ServeOptionError(f"backend must be auto, torch or onnx, got {backend!r}")
    if api_key is None:
        api_key = os.environ.get(API_KEY_ENV) or None
    if threads is None:
        # One thread per worker: on a busy 2-core machine two threads per worker served 150-330x
        # fewer requests/s than one (benchmarks/results/serve-cpu-20261204-041142.json);
        # parallelism comes from --workers_per_device instead.
        threads = 1
    config = ServeConfig(
        str(model),
        backend=backend,
        runtime=runtime,
        top_k=top_k,
        threads=threads,
        max_pixels=max_pixels,
        pretrained=pretrained,
    )
    clf = open_model(config)  # fails here, once, with classify's one-line errors
    card = model_card(clf, config)
    del clf
    api = ImageClassifierAPI(
        config,
        card=card,
        api_key=api_key,
        max_batch_size=max_batch_size,
        batch_timeout=batch_timeout,
        max_body_bytes=int(max_body_mb * 2**20),
    )
    metadata = {**card, "top_k": top_k, "max_body_mb": max_body_mb, "max_pixels": max_pixels,
                "api_key_required": bool(api_key)}  # fmt: skip
    server = ls.LitServer(
        api,
        accelerator=accelerator,
        devices=devices,
        workers_per_device=workers_per_device,
        timeout=timeout,
        model_metadata=metadata,
        max_payload_size=None,
        **server_kwargs,
    )
    _mount_page(server)
    return server


def _mount_page(server: ls.LitServer) -> None:
    """Replace LitServe's ``GET /`` ("litserve running") by the web page. The page itself is
    public (it holds no data); what it calls (/info, /predict) needs the key when one is set."""
    from starlette.routing import Route

    page = (Path(__file__).with_name("page.html")).read_text(encoding="utf-8")
    routes = server.app.router.routes
    routes[:] = [
        r
        for r in routes
        if not (isinstance(r, Route) and r.path == "/" and "GET" in (r.methods or ()))
    ]

    async def index() -> HTMLResponse:
        return HTMLResponse(page)

    server.app.add_api_route("/", index, methods=["GET"], include_in_schema=False)


__all__ = [
    "API_KEY_ENV",
    "DEFAULT_MAX_BODY_MB",
    "DEFAULT_MAX_PIXELS",
    "ImageClassifierAPI",
    "ImageRequestSpec",
    "ServeConfig",
    "ServeOptionError",
    "build_server",
    "model_card",
    "open_model",
]
