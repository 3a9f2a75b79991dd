"""`cnnlab serve`: the real server process on a free port, its API and page, its limits, and
bad input that must never take it down."""

from __future__ import annotations

import io
import os
import shutil
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import requests
from PIL import Image

from cnnlab.commands.serve.app import exposed, warn_if_exposed

from .helpers import Server, invoke, invoke_ok, probability_atol
from .images import write_class_folders

pytestmark = pytest.mark.subprocess

CLASSES = ("birds", "cats", "dogs")
SIZE = 32
TOKEN = "s3cret-token"
ORIGIN = "http://app.example"


@pytest.fixture(scope="module")
def trained(tmp_path_factory, mnist_arrays):
    """A three-class photo run with flip TTA, and new photos of each class."""
    tmp = tmp_path_factory.mktemp("serve")
    root = write_class_folders(tmp / "train", mnist_arrays, 16, classes=CLASSES)
    config = tmp / "photos.yaml"
    config.write_text(
        f"data: {{loader: image_dir, root: {root}, image_size: [{SIZE}, {SIZE}]}}\n"
        "model: {builder: small_cnn, filters: [8, 16], tta: horizontal_flip}\n"
        "train: {epochs: 2, batch_size: 8, verbose: 0}\n"
        f"output_dir: {tmp / 'out'}\n"
    )
    invoke_ok("train", config)
    (run,) = (tmp / "out").iterdir()
    new = write_class_folders(tmp / "new", mnist_arrays, 2, classes=CLASSES, offset=60)
    return run, sorted(new.rglob("*.*"))


@pytest.fixture(scope="module")
def server(trained, tmp_path_factory):
    run, _ = trained
    started = Server(tmp_path_factory.mktemp("server"), run, "--batch-wait-ms", "50")
    yield started
    log = started.stop()
    assert "Traceback" not in log, log


@pytest.fixture(scope="module")
def limited(trained, tmp_path_factory):
    """Token from a file, a 2-second request deadline and at most 6 connections."""
    run, _ = trained
    tmp = tmp_path_factory.mktemp("limited")
    (tmp / "token").write_text(f"  {TOKEN}\n")
    started = Server(
        tmp, run, "--token-file", tmp / "token", "--request-timeout", "2",
        "--max-connections", "6",
    )  # fmt: skip
    yield started
    log = started.stop()
    assert "Traceback" not in log, log


@pytest.fixture(scope="module")
def guarded(trained, tmp_path_factory):
    """Token (from the variable), small limits and one CORS origin."""
    run, _ = trained
    started = Server(
        tmp_path_factory.mktemp("guarded"), run, "--max-bytes", "60000", "--max-files", "2",
        "--cors", ORIGIN, env={"CNNLAB_SERVE_TOKEN": TOKEN},
    )  # fmt: skip
    yield started
    started.stop()


def post_files(url: str, paths: list[Path], **kwargs) -> requests.Response:
    files = [("file", (p.name, p.read_bytes(), "application/octet-stream")) for p in paths]
    return requests.post(url + "/predict", files=files, timeout=60, **kwargs)


def test_health_names_the_runs_classes_and_runtime(server, trained):
    health = requests.get(server.url + "/health", timeout=10).json()
    assert health["loaded"] is True and health["status"] == "ok"
    assert health["classes"] == list(CLASSES)
    assert health["runtime"] == "keras" and health["backend"] == "tensorflow"
    assert health["runs"] == [str(trained[0])]


def test_predictions_are_those_of_cnnlab_predict(server, trained, tmp_path):
    run, photos = trained
    response = post_files(server.url, photos)
    assert response.status_code == 200, response.text
    predictions = response.json()["predictions"]
    assert [p["file"] for p in predictions] == [p.name for p in photos]

    invoke_ok("predict", run, *photos, "-o", tmp_path / "p.csv")
    import pandas as pd

    table = pd.read_csv(tmp_path / "p.csv")
    atol = probability_atol(run)
    for prediction, (_, row) in zip(predictions, table.iterrows(), strict=True):
        assert prediction["class"] == row["predicted"]
        served = [prediction["probabilities"][name] for name in CLASSES]
        np.testing.assert_allclose(served, [row[name] for name in CLASSES], atol=atol)
        assert prediction["probability"] == max(served)
        assert [k["class"] for k in prediction["top_k"]][0] == prediction["class"]
        assert sum(served) == pytest.approx(1, abs=1e-5)


def test_a_raw_image_body_and_top_k(server, trained):
    _, photos = trained
    photo = next(p for p in photos if p.suffix == ".png")
    response = requests.post(
        server.url + "/predict?top_k=2", data=photo.read_bytes(),
        headers={"Content-Type": "image/png"}, timeout=30,
    )  # fmt: skip
    assert response.status_code == 200, response.text
    (prediction,) = response.json()["predictions"]
    assert prediction["file"] == "body" and len(prediction["top_k"]) == 2
    probs = list(prediction["probabilities"].values())
    assert [k["probability"] for k in prediction["top_k"]] == sorted(probs, reverse=True)[:2]


def bomb_png() -> bytes:
    """A PNG of 10,000 x 9,000 one-bit pixels: 11 KB that would decode past Pillow's limit."""
    out = io.BytesIO()
    Image.new("1", (10_000, 9_000)).save(out, "PNG")
    return out.getvalue()


def flat_png(width: int, height: int) -> bytes:
    """An RGB PNG of one colour: 9,000 x 9,000 is 258 KB that decode to 243 MB."""
    out = io.BytesIO()
    Image.new("RGB", (width, height), (90, 120, 200)).save(out, "PNG")
    return out.getvalue()


def bad_requests(photo: bytes) -> list[tuple[str, dict, int, str]]:
    """(what, requests.post keyword arguments, status, words the error must hold)."""
    return [
        ("not an image", {"files": {"f": ("notes.jpg", b"plain text, no pixels")}}, 422,
         "notes.jpg: not an image"),
        ("truncated", {"files": {"f": ("cut.jpg", photo[: len(photo) // 2])}}, 422,
         "cut.jpg: damaged image"),
        ("empty file", {"files": {"f": ("empty.jpg", b"")}}, 400, "empty.jpg: empty file"),
        ("empty body", {"data": b"", "headers": {"Content-Type": "image/jpeg"}}, 400,
         "body is empty"),
        ("bomb", {"files": {"f": ("bomb.png", bomb_png())}}, 413, "bomb.png: too many pixels"),
        ("wrong type", {"data": photo, "headers": {"Content-Type": "text/plain"}}, 415,
         "content type 'text/plain'"),
        ("no type", {"data": photo}, 415, "content type"),
        ("a form without files", {"files": {"note": (None, "hello")}}, 400, "holds no file"),
        ("too many files", {"files": [("f", (f"{i}.jpg", photo)) for i in range(33)]}, 400,
         "Too many files"),
        ("too large", {"data": b"\xff" * (20 * 1024 * 1024 + 1),
                       "headers": {"Content-Type": "image/jpeg"}}, 413, "at most 20,971,520"),
        ("bad top_k", {"files": {"f": ("a.jpg", photo)}, "params": {"top_k": "x"}}, 422,
         "top_k"),
    ]  # fmt: skip


def test_bad_input_is_a_4xx_that_names_it_and_the_server_goes_on(server, trained):
    _, photos = trained
    photo = photos[0].read_bytes()
    for what, kwargs, status, words in bad_requests(photo):
        response = requests.post(server.url + "/predict", timeout=30, **kwargs)
        assert response.status_code == status, (what, response.text)
        assert words in response.json()["error"], (what, response.text)
    assert post_files(server.url, photos[:1]).status_code == 200


def urllib_post(url: str, body: bytes, content_type: str) -> tuple[int, dict]:
    """POST `body` with the standard library, which reads the answer only once it has sent
    the whole body: (status, the JSON answer)."""
    import json
    import urllib.error
    import urllib.request

    request = urllib.request.Request(
        url + "/predict", data=body, headers={"Content-Type": content_type}
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as e:
        return e.code, json.load(e)


def test_a_client_that_reads_after_sending_gets_the_early_answer(server):
    """A body refused before it is read (too large, or the wrong type) is read to its end and
    thrown away, so that urllib sees the 4xx rather than a connection reset."""
    large = os.urandom(25 * 1024 * 1024)  # over the default --max-bytes, 20 MB
    for _ in range(2):
        status, answer = urllib_post(server.url, large, "image/jpeg")
        assert status == 413 and "at most 20,971,520" in answer["error"], answer
    status, answer = urllib_post(server.url, large[: 5 * 1024 * 1024], "text/plain")
    assert status == 415 and "content type 'text/plain'" in answer["error"], answer
    # Sent in chunks, with no Content-Length: refused once 20 MB have arrived.
    chunks = (large[i : i + (1 << 20)] for i in range(0, len(large), 1 << 20))
    response = requests.post(
        server.url + "/predict", data=chunks, headers={"Content-Type": "image/jpeg"}, timeout=60
    )
    assert response.status_code == 413 and "20,971,520" in response.json()["error"]
    assert requests.get(server.url + "/health", timeout=10).status_code == 200


def test_a_body_far_over_the_limit_is_not_read_forever(server):
    """An endless chunked body is read only so far past the refusal before the connection is
    closed; the server goes on serving."""
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(
            b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n"
        )
        chunk = b"%x\r\n" % (1 << 20) + b"\xff" * (1 << 20) + b"\r\n"
        sock.settimeout(10)
        sent, begin = 0, time.monotonic()
        with pytest.raises(OSError):  # reset or broken pipe, once the server has closed
            while time.monotonic() - begin < 20:
                sock.sendall(chunk)
                sent += 1
    assert sent < 200, f"{sent} MB were taken before the connection was closed"
    assert time.monotonic() - begin < 10
    assert requests.get(server.url + "/health", timeout=10).status_code == 200


def test_an_image_over_max_pixels_is_refused_from_its_header(server):
    big = requests.post(
        server.url + "/predict", files={"f": ("big.png", flat_png(9000, 9000))}, timeout=30
    )
    assert big.status_code == 413, big.text
    error = big.json()["error"]
    assert "big.png" in error and "9,000 x 9,000 = 81,000,000" in error, error
    assert "50,000,000" in error and "--max-pixels" in error, error
    # A phone's photo, 24 megapixels, is under the default limit.
    photo = requests.post(
        server.url + "/predict", files={"f": ("phone.png", flat_png(6000, 4000))}, timeout=60
    )
    assert photo.status_code == 200, photo.text
    assert requests.get(server.url + "/health", timeout=10).json()["max_pixels"] == 50_000_000


def test_a_client_that_leaves_mid_upload(server, trained):
    _, photos = trained
    photo = photos[0].read_bytes()
    for content_type in (b"image/jpeg", b"multipart/form-data; boundary=zz"):
        with socket.create_connection(("127.0.0.1", server.port)) as sock:
            sock.sendall(
                b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: " + content_type
                + b"\r\nContent-Length: 100000\r\n\r\n--zz\r\nContent-Disposition: form-data; "
                + b'name="f"; filename="a.jpg"\r\n\r\n' + photo[:200]
            )  # fmt: skip
    time.sleep(0.5)
    assert post_files(server.url, photos[:1]).status_code == 200


def test_memory_stays_bounded_over_a_thousand_bad_requests(server, trained):
    _, photos = trained
    photo = photos[0].read_bytes()
    cases = [c for c in bad_requests(photo) if c[0] not in ("too large", "bomb")]
    with requests.Session() as session:

        def send(i: int) -> int:
            _, kwargs, _, _ = cases[i % len(cases)]
            return session.post(server.url + "/predict", timeout=30, **kwargs).status_code

        for i in range(100):  # warm: allocator pools and caches settle
            send(i)
        before = server.rss_mb()
        statuses = [send(i) for i in range(1000)]
        after = server.rss_mb()
    assert all(400 <= s < 500 for s in statuses)
    assert after - before < 30, f"resident size grew from {before:.0f} MB to {after:.0f} MB"


def test_requests_that_arrive_together_share_a_model_call(server, trained):
    _, photos = trained
    start = requests.get(server.url + "/health", timeout=10).json()
    with ThreadPoolExecutor(16) as pool:
        codes = list(pool.map(lambda p: post_files(server.url, [p]).status_code, photos * 3))
    assert codes == [200] * len(photos) * 3
    end = requests.get(server.url + "/health", timeout=10).json()
    assert end["images"] - start["images"] == len(codes)
    assert end["batches"] - start["batches"] < len(codes) / 2


def test_a_token_limits_and_cors(guarded, server, trained):
    _, photos = trained
    assert requests.get(guarded.url + "/health", timeout=10).status_code == 401
    wrong = {"Authorization": "Bearer nope"}
    response = post_files(guarded.url, photos[:1], headers=wrong)
    assert response.status_code == 401 and "token" in response.json()["error"]
    assert response.headers["WWW-Authenticate"] == "Bearer"
    auth = {"Authorization": f"Bearer {TOKEN}", "Origin": ORIGIN}
    response = post_files(guarded.url, photos[:2], headers=auth)
    assert response.status_code == 200, response.text
    assert response.headers["access-control-allow-origin"] == ORIGIN
    too_many = post_files(guarded.url, photos[:3], headers=auth)
    assert too_many.status_code == 400 and "Too many files" in too_many.json()["error"]

    def chunks():  # no Content-Length: the limit holds on the bytes as they arrive
        for _ in range(10):
            yield b"\xff" * 10_000

    large = requests.post(
        guarded.url + "/predict", data=chunks(), headers={**auth, "Content-Type": "image/jpeg"},
        timeout=30,
    )  # fmt: skip
    assert large.status_code == 413 and "60,000" in large.json()["error"]
    # The page itself needs no token; the default server sends no CORS header.
    assert requests.get(guarded.url + "/", timeout=10).status_code == 200
    plain = post_files(server.url, photos[:1], headers={"Origin": ORIGIN})
    assert "access-control-allow-origin" not in plain.headers


def test_the_schema_is_behind_the_token(guarded, limited, server):
    assert requests.get(guarded.url + "/openapi.json", timeout=10).status_code == 401
    auth = {"Authorization": f"Bearer {TOKEN}"}
    schema = requests.get(guarded.url + "/openapi.json", headers=auth, timeout=10)
    assert schema.status_code == 200 and "/predict" in schema.json()["paths"]
    assert requests.get(limited.url + "/openapi.json", timeout=10).status_code == 401
    for page in ("/docs", "/redoc"):
        assert requests.get(guarded.url + page, headers=auth, timeout=10).status_code == 404
    # Without a token the whole API is open, its schema too.
    assert requests.get(server.url + "/openapi.json", timeout=10).status_code == 200


def test_a_token_from_a_file(limited, trained, tmp_path):
    _, photos = trained
    assert requests.get(limited.url + "/health", timeout=10).status_code == 401
    auth = {"Authorization": f"Bearer {TOKEN}"}  # the file's line, stripped
    assert requests.get(limited.url + "/health", headers=auth, timeout=10).status_code == 200
    assert post_files(limited.url, photos[:1], headers=auth).status_code == 200
    assert TOKEN not in Path(f"/proc/{limited.process.pid}/cmdline").read_text()

    run, _ = trained
    (tmp_path / "empty").write_text("\n")
    (tmp_path / "two").write_text("one two\n")
    for args, words in [
        (["--token-file", tmp_path / "missing"], "missing: no such file"),
        (["--token-file", tmp_path / "empty"], "empty: empty"),
        (["--token-file", tmp_path / "two"], "more than one word"),
        (["--token-file", tmp_path / "two", "--token", "x"], "give one"),
    ]:
        result = invoke("serve", run, *args)
        assert result.exit_code != 0 and words in result.output, result.output
        assert len(result.output.strip().splitlines()) == 1, result.output


def trickle(port: int, head: bytes, body: bytes, every: float = 0.3) -> float | None:
    """Send `head` at once, then `body` a byte every `every` seconds: the seconds until the
    server closed the connection, or None if it never did."""
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.settimeout(every)
        begin = time.monotonic()
        sock.sendall(head)
        for byte in body:
            try:
                sock.sendall(bytes([byte]))
                sock.recv(4096)  # nothing, or the server's end: closed either way
                return time.monotonic() - begin
            except TimeoutError:
                continue
            except OSError:  # reset or broken pipe
                return time.monotonic() - begin
        return None


def test_slow_clients_are_cut_off_and_health_still_answers(limited):
    """--request-timeout 2: headers or a body at ~3 bytes a second, and a connection that
    sends nothing, are closed after about 2 s (each could go on for 15 s)."""
    slow_headers = (b"", b"GET /health HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"a" * 50)
    slow_body = (
        b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\n"
        + f"Authorization: Bearer {TOKEN}\r\nContent-Length: 1000\r\n\r\n".encode(),
        b"\xff" * 50,
    )
    auth = {"Authorization": f"Bearer {TOKEN}"}
    with ThreadPoolExecutor(2) as pool:
        cut = [pool.submit(trickle, limited.port, *case) for case in (slow_headers, slow_body)]
        with socket.create_connection(("127.0.0.1", limited.port)) as idle:
            idle.settimeout(5)
            begin = time.monotonic()
            while not all(f.done() for f in cut) and time.monotonic() - begin < 20:
                health = requests.get(limited.url + "/health", headers=auth, timeout=1)
                assert health.status_code == 200
                time.sleep(0.3)
            assert idle.recv(1) == b""  # closed by then
        took = [f.result() for f in cut]
    assert all(t is not None and 1.8 < t < 4 for t in took), took


def test_connections_past_the_limit_get_503(limited):
    """--max-connections 6: six open connections, and a seventh's request is refused; the
    six are closed once the request deadline passes and the server serves again."""
    auth = {"Authorization": f"Bearer {TOKEN}"}
    sockets = [socket.create_connection(("127.0.0.1", limited.port)) for _ in range(6)]
    try:
        time.sleep(0.3)
        refused = requests.get(limited.url + "/health", headers=auth, timeout=5)
        assert refused.status_code == 503, refused.text
        time.sleep(2.5)
        assert requests.get(limited.url + "/health", headers=auth, timeout=5).status_code == 200
    finally:
        for sock in sockets:
            sock.close()


def test_onnx_serves_the_export_without_tensorflow(server, trained, tmp_path):
    run, photos = trained
    invoke_ok("export", run, "--format", "onnx")
    onnx = Server(tmp_path, run, "--onnx")
    try:
        health = requests.get(onnx.url + "/health", timeout=10).json()
        assert health["runtime"] == "onnxruntime" and health["classes"] == list(CLASSES)
        maps = Path(f"/proc/{onnx.process.pid}/maps").read_text()
        assert "onnxruntime" in maps and "tensorflow" not in maps
        served = post_files(onnx.url, photos).json()["predictions"]
    finally:
        onnx.stop()
    keras = post_files(server.url, photos).json()["predictions"]
    atol = probability_atol(run)
    for a, b in zip(served, keras, strict=True):
        assert a["class"] == b["class"]
        np.testing.assert_allclose(
            list(a["probabilities"].values()), list(b["probabilities"].values()), atol=atol
        )


def test_onnx_without_an_export_and_a_port_in_use(trained, tmp_path):
    run, _ = trained
    bare = tmp_path / "bare"
    shutil.copytree(run, bare, ignore=shutil.ignore_patterns("export"))
    result = invoke("serve", bare, "--onnx")
    assert result.exit_code != 0
    assert f"cnnlab export {bare} --format onnx" in result.output
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        result = invoke("serve", run, "--port", busy.getsockname()[1])
    assert result.exit_code != 0 and "cannot listen there" in result.output
    assert len(result.output.strip().splitlines()) == 1, result.output


def test_only_loopback_is_private(capsys):
    assert not exposed("127.0.0.1") and not exposed("localhost") and not exposed("::1")
    assert exposed("0.0.0.0") and exposed("192.168.1.5") and exposed("example.org")
    warn_if_exposed("0.0.0.0", None)
    assert "open to the network" in capsys.readouterr().out
    warn_if_exposed("127.0.0.1", None)
    assert capsys.readouterr().out == ""


def test_the_page_shows_a_dropped_photo_with_its_class(server, trained, tmp_path):
    """Headless Chromium (Debian's chromium and chromium-driver; .ci/run installs them)."""
    driver_path = shutil.which("chromedriver")
    if driver_path is None or shutil.which("chromium") is None:
        message = "needs Debian's chromium and chromium-driver (apt-get install ...)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    _, photos = trained
    photo = photos[-1]
    expected = post_files(server.url, [photo]).json()["predictions"][0]
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                 "--window-size=1000,800", f"--user-data-dir={tmp_path / 'profile'}"):  # fmt: skip
        options.add_argument(flag)
    browser = webdriver.Chrome(service=Service(driver_path), options=options)
    try:
        browser.get(server.url + "/")
        wait = WebDriverWait(browser, 60)
        wait.until(lambda b: "classes" in b.find_element(By.ID, "about").text)
        picker = browser.find_element(By.ID, "picker")
        # A person clicks the drop zone to open the picker; a driver types into the input.
        browser.execute_script("arguments[0].hidden = false", picker)
        picker.send_keys(str(photo))
        wait.until(lambda b: "%" in b.find_element(By.CSS_SELECTOR, ".predicted").text)
        shown = browser.find_element(By.CSS_SELECTOR, ".predicted").text
        bars = [
            b.get_attribute("data-class") for b in browser.find_elements(By.CSS_SELECTOR, ".bar")
        ]
        browser.save_screenshot(str(tmp_path / "page.png"))
        keep = os.environ.get("CNNLAB_SCREENSHOT")
        if keep:
            shutil.copy(tmp_path / "page.png", keep)
    finally:
        browser.quit()
    assert shown.startswith(expected["class"] + " ")
    assert sorted(bars) == sorted(CLASSES)
