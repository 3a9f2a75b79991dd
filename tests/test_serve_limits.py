"""The limits of `cnnlab serve` that need no trained model: an image's size read from its
header, how many uploads decode at once, and a slow body where httptools is missing (the app
in this process, on a stand-in predictor whose decode counts its callers)."""

from __future__ import annotations

import io
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import numpy as np
import pytest
import requests
from PIL import Image

from cnnlab.commands.serve.app import Limits, _cores, create_app
from cnnlab.config import ImageFormat
from cnnlab.data.images import TooManyPixels, read_image

from .helpers import free_port

CORES = _cores()  # this process's share of the machine


def test_read_image_refuses_more_than_max_pixels_from_the_header():
    out = io.BytesIO()
    Image.new("RGB", (9000, 9000), (10, 20, 30)).save(out, "PNG")
    data = out.getvalue()
    assert len(data) < 300_000  # 243 MB of pixels in a few hundred KB
    fmt = ImageFormat(32, 32, "rgb")
    begin = time.perf_counter()
    with pytest.raises(TooManyPixels, match=r"9,000 x 9,000 = 81,000,000; at most 50,000,000"):
        read_image(data, fmt, max_pixels=50_000_000)
    assert time.perf_counter() - begin < 0.5  # decoding would take seconds
    assert read_image(_png(64, 48), fmt, max_pixels=64 * 48).shape == (32, 32, 3)


def _png(width: int, height: int) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height)).save(out, "PNG")
    return out.getvalue()


class CountingPredictor:
    """Stands in for the runs: `decode` takes 0.2 s and records how many ran at once."""

    class_names = ["a", "b"]
    runtime, backend, run_dirs, thresholds = "none", None, [], None

    def __init__(self):
        self.lock = threading.Lock()
        self.running = self.most = 0

    def decode(self, data: bytes, max_pixels: int | None = None) -> dict:
        with self.lock:
            self.running += 1
            self.most = max(self.most, self.running)
        time.sleep(0.2)
        with self.lock:
            self.running -= 1
        return {}

    def probabilities(self, images: list) -> np.ndarray:
        return np.full((len(images), 2), 0.5)


@contextmanager
def running(app, http: str = "auto"):
    """`app` on uvicorn in a thread of this process, on a free port: yields the port."""
    import uvicorn

    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", http=http)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.05)
        assert server.started
        yield port
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def test_uploads_decode_one_per_core_at_a_time():
    predictor = CountingPredictor()
    with running(create_app(predictor, Limits())) as port:

        def post(_) -> int:
            return requests.post(
                f"http://127.0.0.1:{port}/predict", data=b"x",
                headers={"Content-Type": "image/png"}, timeout=30,
            ).status_code  # fmt: skip

        count = CORES + 6
        with ThreadPoolExecutor(count) as pool:
            codes = list(pool.map(post, range(count)))
    assert codes == [200] * count
    assert predictor.most <= CORES, f"{predictor.most} decodes at once on {CORES} cores"


def test_a_slow_body_gets_408_without_the_timed_protocol(monkeypatch, capsys):
    """Without httptools, uvicorn's h11 protocol times nothing: the app's own deadline ends
    a body that trickles in, and the server says what it cannot guard."""
    import sys

    from cnnlab.commands.serve import _protocol

    monkeypatch.setitem(sys.modules, "httptools", None)  # import httptools: ImportError
    monkeypatch.delitem(sys.modules, "uvicorn.protocols.http.httptools_impl", raising=False)
    assert _protocol(1.0) == "auto"
    assert "httptools is not installed" in capsys.readouterr().out

    app = create_app(CountingPredictor(), Limits(request_timeout_s=1.0))
    with running(app, http="h11") as port, socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(
            b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\n"
            b"Content-Length: 100\r\n\r\n"
        )
        sock.settimeout(0.3)
        begin, answer = time.monotonic(), b""
        for _ in range(20):  # a byte each 0.3 s: 6 s at most
            sock.sendall(b"x")
            try:
                answer = sock.recv(4096)
                break
            except TimeoutError:
                continue
        took = time.monotonic() - begin
    assert answer.startswith(b"HTTP/1.1 408"), answer
    assert b"--request-timeout" in answer and 0.8 < took < 2.5, (answer, took)
