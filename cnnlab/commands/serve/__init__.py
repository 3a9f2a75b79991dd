"""`cnnlab serve`: trained runs behind an HTTP API and a page, on uvicorn.

`predictor` loads the runs (Keras, or their ONNX exports in onnxruntime), `batching` gathers
requests that arrive together into one model call, `app` is the API and its limits, `protocol`
the deadline on a request's arrival.
"""

from __future__ import annotations

from pathlib import Path

from cnnlab.utils.console import say

KEEP_ALIVE_S = 5  # how long an idle connection stays open after a response


def serve(
    run_dirs: list[Path], host: str, port: int, *, onnx: bool,
    token: str | None, cors: list[str], limits,
) -> None:  # fmt: skip
    """Load the runs once, then serve until interrupted (Ctrl+C, SIGTERM)."""
    import warnings

    import uvicorn
    from PIL import Image

    from cnnlab.commands.serve.app import create_app, warn_if_exposed
    from cnnlab.commands.serve.predictor import load_predictor

    sock = _bind(host, port)  # before the model loads: a port in use fails at once
    predictor = load_predictor(run_dirs, onnx)
    # Uploads over Pillow's pixel limit are refused (read_image) with a line of their own.
    warnings.simplefilter("ignore", Image.DecompressionBombWarning)
    app = create_app(predictor, limits, token=token, cors=cors)
    warn_if_exposed(host, token)
    where = f"http://{host if ':' not in host else f'[{host}]'}:{port}"
    runs = ", ".join(predictor.run_dirs)
    engine = predictor.runtime + (f" on {predictor.backend}" if predictor.backend else "")
    say(f"serving {runs} ({len(predictor.class_names)} classes, {engine}) at {where}")
    say(f"page {where}/, API POST {where}/predict, GET {where}/health; Ctrl+C stops")
    config = uvicorn.Config(
        app, log_level="warning", access_log=False, timeout_graceful_shutdown=5,
        http=_protocol(limits.request_timeout_s), limit_concurrency=limits.max_connections,
        timeout_keep_alive=KEEP_ALIVE_S,
    )  # fmt: skip
    uvicorn.Server(config).run(sockets=[sock])


def _protocol(seconds: float):
    """The HTTP protocol that cuts off requests slower than `seconds`, or uvicorn's own."""
    from cnnlab.utils.console import warn

    try:
        from cnnlab.commands.serve.protocol import timed_protocol

        return timed_protocol(seconds)
    except ImportError:
        warn(
            "httptools is not installed: headers that trickle in are not cut off, only bodies "
            "(--request-timeout); pip install httptools"
        )
        return "auto"


def _bind(host: str, port: int):
    import socket

    from cnnlab.utils.errors import CnnlabError

    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as e:
        raise CnnlabError(f"--host {host}: {e.strerror}") from None
    family, _, _, _, address = infos[0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
    except OSError as e:
        sock.close()
        raise CnnlabError(
            f"--host {host} --port {port}: cannot listen there ({e.strerror})"
        ) from None
    sock.set_inheritable(True)
    return sock
