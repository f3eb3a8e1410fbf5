"""``resnet-pl serve``: the shipped Fashion-MNIST model behind LitServe on a free loopback port.

One server (PyTorch, dynamic batching on, an API key from the environment) serves the module;
the last test stops it with SIGTERM while requests are in flight. What is checked: the three
request kinds give ``classify``'s probabilities, also for the awkward files of the parity test;
bad requests get 4xx with one line while good ones sent at the same time stay correct; the web
page works in a real headless chromium; the ONNX runtime serves the same answers.
"""

from __future__ import annotations

import base64
import concurrent.futures as cf
import io
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import requests
import torch
from PIL import Image

from resnet_pl.cli.serve import main as serve_main
from resnet_pl.data import decode_image, load_image
from resnet_pl.deploy.runtime import open_classifier

ROOT = Path(__file__).resolve().parents[1]
MODEL = "wrn_16_2.fashion_mnist"
KEY = "test-key-123"
AUTH = {"X-API-Key": KEY}
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
]  # fmt: skip
N_REAL = 12


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """``resnet-pl serve`` in a subprocess on a free loopback port; :meth:`stop` always runs."""

    def __init__(
        self, model: str, *args: str, env: dict[str, str] | None = None, session: bool = False
    ) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        cmd = [sys.executable, "-m", "resnet_pl.cli", "serve", model, "--port", str(self.port)]
        full_env = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
        self.proc = subprocess.Popen(
            [*cmd, *args],
            cwd=ROOT,
            env=full_env,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=session,  # its own process group, for a terminal-like Ctrl-C
        )
        self.stderr = ""
        self.signalled = False

    def wait_ready(self, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"server exited: {self.proc.communicate()[1][-2000:]}")
            try:
                if requests.get(f"{self.url}/health", headers=AUTH, timeout=2).status_code == 200:
                    return
            except requests.ConnectionError:
                pass
            time.sleep(0.3)
        raise AssertionError(f"server not ready after {timeout} s")

    def terminate(self) -> None:
        self.signalled = True
        self.proc.send_signal(signal.SIGTERM)

    def stop(self, timeout: float = 60.0) -> int:
        if self.proc.poll() is None and not self.signalled:
            self.terminate()
        try:
            _, err = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            _, err = self.proc.communicate()
        self.stderr += err or ""
        return int(self.proc.returncode)


def png(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    srv = Server(
        MODEL, "--max_batch_size", "8", "--batch_timeout", "0.01", "--max_body_mb", "1",
        env={"RESNET_PL_API_KEY": KEY},
    )  # fmt: skip
    try:
        srv.wait_ready()
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="module")
def real_pngs(
    fashion_mnist_test: tuple[torch.Tensor, torch.Tensor], tmp_path_factory: pytest.TempPathFactory
) -> list[Path]:
    """The first real Fashion-MNIST test images as PNG files."""
    folder = tmp_path_factory.mktemp("fm_png")
    images, _ = fashion_mnist_test
    paths = []
    for i in range(N_REAL):
        path = folder / f"{i:02d}.png"
        path.write_bytes(png(images[i, 0].numpy()))
        paths.append(path)
    return paths


@pytest.fixture(scope="module")
def classifier() -> Any:
    """``classify``'s classifier for the served model (what ``resnet-pl classify`` opens)."""
    return open_classifier(MODEL, pretrained=True)


def classify_files(clf: Any, paths: list[Path]) -> list[Any]:
    """``classify``'s predictions (all classes) for files, by its own code path."""
    return [r.prediction for r in clf.classify_files(paths, top_k=10)]


def post(url: str, kind: str, data: bytes, **kw: Any) -> requests.Response:
    if kind == "multipart":
        return requests.post(
            f"{url}/predict", files={"image": ("x.png", data, "image/png")}, headers=AUTH, **kw
        )
    if kind == "raw":
        headers = {**AUTH, "Content-Type": "application/octet-stream"}
        return requests.post(f"{url}/predict", data=data, headers=headers, **kw)
    body = {"image": base64.b64encode(data).decode()}
    return requests.post(f"{url}/predict", json=body, headers=AUTH, **kw)


def assert_same(answer: dict[str, Any], pred: Any, k: int = 5) -> None:
    assert answer["label"] == pred.label and answer["index"] == pred.index
    got = [(t["index"], t["prob"]) for t in answer["top_k"]]
    assert [i for i, _ in got] == pred.indices[:k]
    np.testing.assert_allclose([p for _, p in got], pred.probs[:k], rtol=0, atol=1e-5)


# ---- without a server (first: the module's server is not up yet) ------------------------
def test_cli_usage_errors_are_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert serve_main(["no_such_model.tag"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("resnet-pl serve: error:") and err.count("\n") == 1
    for argv in (
        [MODEL, "--host", "example.com"],
        [MODEL, "--port", "80"],
        [MODEL, "--runtime", "torch", "--top_k", "0"],
        ["x.onnx", "--runtime", "torch"],
    ):
        assert serve_main(argv) == 2, argv
        err = capsys.readouterr().err
        assert err.startswith("resnet-pl serve: error:") and err.count("\n") == 1, err
    assert serve_main([MODEL, "--bogus"]) == 2
    capsys.readouterr()
    assert serve_main(["--help"]) == 0
    assert "--max_batch_size" in capsys.readouterr().out


def test_onnx_runtime_serves_classifys_probabilities(tmp_path: Path, real_pngs: list[Path]) -> None:
    """The served path (the LitAPI's decode/predict/encode, in process) on an exported ONNX
    file, with a bad image inside the batch: classify's probabilities for the good ones."""
    from resnet_pl.deploy import export_onnx
    from resnet_pl.serve import ImageClassifierAPI, ServeConfig, model_card, open_model
    from tests.test_data import awkward_files

    onnx_path = tmp_path / "model.onnx"
    export_onnx(MODEL, onnx_path, verify=False, exporter="torchscript")
    config = ServeConfig(str(onnx_path), threads=1)
    card = model_card(open_model(config), config)
    api = ImageClassifierAPI(config, card=card, max_batch_size=8)
    api.pre_setup()
    api.setup("cpu")
    awkward = awkward_files(3)
    for name, data in awkward.items():
        (tmp_path / name).write_bytes(data)
    paths = [*real_pngs[:4], *(tmp_path / n for n in awkward)]
    expected = classify_files(open_classifier(onnx_path), paths)
    reqs = [
        {"image": p.read_bytes(), "top_k": 5, "request_id": str(i)} for i, p in enumerate(paths)
    ]
    reqs.insert(2, {"image": b"garbage", "top_k": 5, "request_id": "bad"})
    outputs = api.predict(api.batch([api.decode_request(r) for r in reqs]))
    answers = [api.encode_response(o) for o in api.unbatch(outputs)]
    assert answers[2]["status"] == 400 and "not a readable image" in answers[2]["error"]
    del answers[2]
    for answer, pred in zip(answers, expected, strict=True):
        assert_same(answer, pred)
        assert answer["model"] == "model.onnx"


def test_one_bad_image_never_fails_its_batch() -> None:
    """In a dynamic batch, an undecodable image gets 400 and an image the model then fails on
    gets 500, each for its own request; the other requests of the batch get predictions."""
    from resnet_pl.deploy.runtime import Prediction
    from resnet_pl.serve import ImageClassifierAPI, ServeConfig

    class Model:
        in_chans = 1

        def predict(self, images: list[Image.Image], top_k: int) -> list[Prediction]:
            if any(im.size == (1, 1) for im in images):
                raise RuntimeError("input too small for the network")
            return [Prediction([1, 0, 2], ["b", "a", "c"], [0.7, 0.2, 0.1]) for _ in images]

    card = {"name": "m", "num_classes": 3, "weights_sha256": "0" * 64}
    api = ImageClassifierAPI(ServeConfig("m"), card=card, max_batch_size=4)
    api.pre_setup()
    api.clf, api.num_classes = Model(), 3
    images = [png(np.zeros((8, 8), np.uint8)), png(np.zeros((1, 1), np.uint8)), b"junk", png(
        np.ones((5, 7), np.uint8))]  # fmt: skip
    reqs = [{"image": d, "top_k": 2, "request_id": str(i)} for i, d in enumerate(images)]
    out = api.unbatch(api.predict(api.batch([api.decode_request(r) for r in reqs])))
    answers = [api.encode_response(o) for o in out]
    assert [a.get("status", 200) for a in answers] == [200, 500, 400, 200]
    assert [a["request_id"] for a in answers] == ["0", "1", "2", "3"]
    assert answers[0]["label"] == "b" and len(answers[0]["top_k"]) == 2
    assert answers[0]["model"] == "m" and "too small" in answers[1]["error"]


# ---- answers ---------------------------------------------------------------------------------
def test_three_request_kinds_give_classifys_probabilities(
    server: Server, real_pngs: list[Path], classifier: Any
) -> None:
    expected = classify_files(classifier, real_pngs)
    assert len({p.label for p in expected}) >= 4  # the images are not all one class
    for i, (path, pred) in enumerate(zip(real_pngs, expected, strict=True)):
        kind = ("multipart", "raw", "json")[i % 3]
        r = post(server.url, kind, path.read_bytes(), timeout=30)
        assert r.status_code == 200, r.text
        answer = r.json()
        assert_same(answer, pred)
        assert answer["model"] == MODEL
        assert answer["weights_sha256"] == classifier.cfg["weights_sha256"]
        assert len(answer["weights_sha256"]) == 64
        assert answer["request_id"] == r.headers["X-Request-ID"]
    r = post(server.url, "raw", real_pngs[0].read_bytes(), params={"top_k": 2}, timeout=30)
    assert len(r.json()["top_k"]) == 2
    r = requests.post(
        f"{server.url}/predict",
        data=real_pngs[0].read_bytes(),
        headers={**AUTH, "Content-Type": "image/png", "X-Request-ID": "abc-1"},
        timeout=30,
    )
    assert r.json()["request_id"] == "abc-1"


def test_awkward_files_give_classifys_probabilities(
    server: Server, classifier: Any, tmp_path: Path
) -> None:
    """The parity test's files (alpha, palette with transparency, EXIF rotation, 16-bit, CMYK,
    LA, an odd 41x37 size): served probabilities equal classify's, for each request kind."""
    from tests.test_data import awkward_files

    files = awkward_files(7)
    paths = []
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
        paths.append(tmp_path / name)
        # The server's in-memory decoder is the file decoder.
        assert np.array_equal(
            np.asarray(decode_image(data, 1)), np.asarray(load_image(tmp_path / name, 1))
        )
    expected = classify_files(classifier, paths)
    for i, (path, pred) in enumerate(zip(paths, expected, strict=True)):
        r = post(server.url, ("raw", "multipart", "json")[i % 3], path.read_bytes(), timeout=30)
        assert r.status_code == 200, (path.name, r.text)
        assert_same(r.json(), pred)


def test_health_info_docs_and_the_api_key(server: Server) -> None:
    assert requests.get(f"{server.url}/health", headers=AUTH, timeout=10).text == "ok"
    info = requests.get(f"{server.url}/info", headers=AUTH, timeout=10).json()["model"]
    assert info["name"] == MODEL and info["arch"] == "wrn_16_2"
    assert info["class_names"][9] == "Ankle boot" and info["num_classes"] == 10
    assert info["input_size"] == [1, 28, 28] and info["tta"] == "flip"
    assert info["metrics"]["top1"] == 95.62 and info["api_key_required"] is True
    assert "/predict" in requests.get(f"{server.url}/openapi.json", timeout=10).json()["paths"]
    assert requests.get(f"{server.url}/docs", timeout=10).status_code == 200
    # Without the key (or with a wrong one): 401 with one line, on every endpoint but the page.
    for method, path in (("GET", "/info"), ("GET", "/health"), ("POST", "/predict")):
        for headers in ({}, {"X-API-Key": "wrong"}):
            r = requests.request(method, f"{server.url}{path}", headers=headers, timeout=10)
            assert r.status_code == 401, (path, r.text)
            assert "API key" in r.json()["detail"]
    bearer = {"Authorization": f"Bearer {KEY}"}
    assert requests.get(f"{server.url}/info", headers=bearer, timeout=10).status_code == 200
    page = requests.get(f"{server.url}/", timeout=10)
    assert page.status_code == 200 and 'id="file"' in page.text


def forged_png(width: int, height: int) -> bytes:
    from tests.test_classify import forged_png as forge

    return forge(width, height)


def test_bad_requests_get_4xx_while_good_ones_stay_correct(
    server: Server, real_pngs: list[Path], classifier: Any
) -> None:
    good = [p.read_bytes() for p in real_pngs]
    expected = classify_files(classifier, real_pngs)
    url = f"{server.url}/predict"
    truncated = good[0][: len(good[0]) // 2]
    bad: dict[str, tuple[int, str, dict[str, Any]]] = {
        "not an image": (400, "not a readable image", {"data": b"hello, world" * 10}),
        "truncated": (400, "image", {"data": truncated}),
        "empty body": (400, "empty request body", {"data": b""}),
        "bomb": (413, "decompression bomb", {"data": forged_png(30_000, 30_000)}),
        "too large": (413, "over the limit", {"data": b"\0" * (2**20 + 10)}),
        "wrong type": (415, "unsupported content type", {"ctype": "text/plain"}),
        "no type": (415, "unsupported content type", {"ctype": ""}),
        "bad json": (400, "malformed JSON", {"ctype": "application/json", "data": b"{'x"}),
        "json no image": (400, '"image"', {"ctype": "application/json", "data": b'{"a": 1}'}),
        "bad base64": (400, "base64", {"ctype": "application/json", "data": b'{"image": "!!"}'}),
        "form no file": (400, "no image file", {"form": True}),
        "bad top_k": (400, "top_k", {"params": {"top_k": "x"}}),
    }

    def send_bad(name: str) -> tuple[str, requests.Response]:
        _, _, spec = bad[name]
        data = spec.get("data", good[1])
        if spec.get("form"):
            form = {"note": (None, "x")}  # a multipart form with a text field only
            return name, requests.post(url, files=form, headers=AUTH, timeout=60)
        ctype = spec.get("ctype", "image/png")
        headers = {**AUTH, "Content-Type": ctype} if ctype else dict(AUTH)
        if not ctype:
            return name, requests.post(
                url, data=data, headers={**AUTH, "Content-Type": ""}, timeout=60
            )
        return name, requests.post(
            url, data=data, headers=headers, params=spec.get("params"), timeout=60
        )

    def send_good(i: int) -> tuple[int, requests.Response]:
        kind = ("raw", "multipart", "json")[i % 3]
        return i, post(server.url, kind, good[i % len(good)], timeout=60)

    with cf.ThreadPoolExecutor(16) as pool:
        jobs = []
        for round_ in range(2):
            for j, name in enumerate(bad):
                jobs.append(pool.submit(send_good, round_ * len(bad) + j))
                jobs.append(pool.submit(send_bad, name))
        results = [j.result() for j in jobs]
    n_good = 0
    for key, r in results:
        if isinstance(key, int):
            assert r.status_code == 200, r.text
            assert_same(r.json(), expected[key % len(good)])
            n_good += 1
        else:
            status, words, _ = bad[key]
            assert r.status_code == status, (key, r.status_code, r.text)
            detail = r.json()["detail"]
            assert words in detail and "\n" not in detail, (key, detail)
    assert n_good == 2 * len(bad)
    # The worker survived: the server still answers, correctly.
    r = post(server.url, "raw", good[3], timeout=30)
    assert r.status_code == 200 and r.json()["label"] == expected[3].label


def test_load_benchmark_client_counts_mixups(
    server: Server, real_pngs: list[Path], classifier: Any
) -> None:
    """benchmarks.serve's client: 0 errors and 0 mix-ups against the right answers, and every
    answer counted as a mix-up when the expected answers are shifted by one image."""
    import asyncio

    from benchmarks.serve import _level

    images = [p.read_bytes() for p in real_pngs[:6]]
    expected = classify_files(classifier, real_pngs[:6])
    right = asyncio.run(_level(server.url, images, expected, 4, 12, 30, headers=AUTH))
    assert (right["answered"], right["errors"], right["mixups"]) == (12, 0, 0)
    shifted = expected[1:] + expected[:1]
    wrong = asyncio.run(_level(server.url, images, shifted, 4, 12, 30, headers=AUTH))
    assert wrong["mixups"] == wrong["answered"] == 12
    assert right["latency_ms"]["p50"] <= right["latency_ms"]["p99"]


def test_web_page_in_headless_chromium(
    server: Server, real_pngs: list[Path], classifier: Any
) -> None:
    """Upload a real Fashion-MNIST PNG through the page in Debian's chromium: the label shown
    is classify's, with five bars and the model's name."""
    if not CHROMIUM.is_file():
        message = "/usr/bin/chromium not found (apt-get install chromium)"
        if os.environ.get("CI"):
            pytest.fail(message + ": CI must run the browser test")
        pytest.skip(message)
    from playwright.sync_api import sync_playwright

    path = real_pngs[0]
    expected = classify_files(classifier, [path])[0]
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 820, "height": 520})
            page.goto(f"{server.url}/")
            # The server wants a key: the page asks for it.
            page.wait_for_selector("#apikey", state="visible", timeout=20_000)
            page.fill("#apikey", KEY)
            page.dispatch_event("#apikey", "change")
            page.wait_for_function(
                "document.getElementById('model').textContent.includes('wrn_16_2')",
                timeout=20_000,
            )
            page.set_input_files("#file", str(path))
            page.wait_for_selector("body[data-state=done]", timeout=30_000)
            assert page.inner_text("#label") == expected.label
            names = page.locator("#rows .name").all_inner_texts()
            assert names == expected.labels[:5]
            assert MODEL in page.inner_text("#model")
            shot = os.environ.get("RESNET_PL_SCREENSHOT")
            if shot:
                page.screenshot(path=shot)
        finally:
            browser.close()


@pytest.mark.slow  # a second server (~20-40 s to start on 2 shared cores) and an ONNX export
def test_onnx_file_over_http_and_ctrl_c_of_the_process_group(
    tmp_path: Path, real_pngs: list[Path]
) -> None:
    """An exported .onnx file served by ONNX Runtime: the awkward files get classify's
    probabilities over HTTP; then Ctrl-C as a terminal sends it (SIGINT to every process of the
    group) with requests in flight: each accepted one is answered and the server exits 0."""
    from resnet_pl.deploy import export_onnx
    from tests.test_data import awkward_files

    onnx_path = tmp_path / "model.onnx"
    export_onnx(MODEL, onnx_path, verify=False, exporter="torchscript")
    paths = list(real_pngs[:3])
    for name, data in awkward_files(11).items():
        (tmp_path / name).write_bytes(data)
        paths.append(tmp_path / name)
    expected = classify_files(open_classifier(onnx_path), paths)
    srv = Server(str(onnx_path), "--api_key", KEY, session=True)
    try:
        srv.wait_ready()
        info = requests.get(f"{srv.url}/info", headers=AUTH, timeout=10).json()["model"]
        assert info["backend"] == "onnx" and info["name"] == "model.onnx"
        for i, (path, pred) in enumerate(zip(paths, expected, strict=True)):
            r = post(srv.url, ("raw", "multipart", "json")[i % 3], path.read_bytes(), timeout=30)
            assert r.status_code == 200, (path.name, r.text)
            assert_same(r.json(), pred)

        def one(_: int) -> int | str:
            try:
                return post(srv.url, "raw", paths[0].read_bytes(), timeout=60).status_code
            except requests.ConnectionError:
                return "refused"

        with cf.ThreadPoolExecutor(16) as pool:
            jobs = [pool.submit(one, i) for i in range(16)]
            time.sleep(0.05)
            srv.signalled = True
            os.killpg(srv.proc.pid, signal.SIGINT)
            codes = [j.result() for j in jobs]
        assert srv.stop(timeout=60) == 0, srv.stderr[-2000:]
        assert all(c in (200, "refused") for c in codes) and 200 in codes, codes
    finally:
        if srv.proc.poll() is None:
            os.killpg(srv.proc.pid, signal.SIGKILL)
            srv.proc.communicate()


def test_sigterm_answers_requests_in_flight_and_exits_zero(
    server: Server, real_pngs: list[Path]
) -> None:
    """Last (it stops the module's server): SIGTERM with requests in flight; every request the
    server accepted is answered correctly, and the process exits 0 in bounded time."""
    data = real_pngs[5].read_bytes()

    def one(_: int) -> int | str:
        try:
            return post(server.url, "raw", data, timeout=60).status_code
        except requests.ConnectionError:
            return "refused"  # sent after the server stopped listening: never accepted

    with cf.ThreadPoolExecutor(16) as pool:
        jobs = [pool.submit(one, i) for i in range(16)]
        time.sleep(0.05)
        t0 = time.monotonic()
        server.terminate()
        codes = [j.result() for j in jobs]
        code = server.stop(timeout=60)
    assert code == 0, server.stderr[-2000:]
    assert time.monotonic() - t0 < 45
    assert all(c in (200, "refused") for c in codes), codes
    assert codes.count(200) >= 1
    assert "Traceback" not in server.stderr, server.stderr[-3000:]
