"""The HTTP API and page of `cnnlab serve`, on FastAPI.

- `POST /predict`: images as multipart/form-data (any field names, up to `max_files`) or one
  image as the raw body with an image/* content type; per image its class, probability, top-k
  and every class's probability by name.
- `GET /health`: whether the model is loaded, its classes, runtime, backend and runs.
- `GET /`: a page to drop or pick photos on, with no resource from the network.
- `GET /openapi.json`: the API's schema, behind the token when there is one.

Every refusal is a 4xx JSON `{"error": "..."}` naming the problem; the server goes on serving.
No path a client sends is ever opened: uploads are bytes, decoded in memory.
"""

from __future__ import annotations

import asyncio
import os
import secrets
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cnnlab.commands.serve.batching import Batcher
from cnnlab.commands.serve.predictor import Predictor
from cnnlab.data.dataset import above
from cnnlab.data.images import TooManyPixels, Unusable
from cnnlab.utils.console import warn

PAGE = Path(__file__).with_name("page.html")


@dataclass(frozen=True)
class Limits:
    """What one request may hold, how requests are batched, and what the server holds open."""

    max_bytes: int = 20 * 1024 * 1024  # the body of one request
    max_files: int = 32  # images in one request
    max_batch: int = 32  # images in one model call
    wait_ms: float = 5.0  # how long the first waiting request waits for others
    top_k: int = 5
    # width x height of one image, read from its header before decoding: 50 million holds a
    # 200-megapixel phone's photos at 12.5 (its default) and refuses what decodes to gigabytes.
    max_pixels: int = 50_000_000
    max_connections: int = 100  # open connections; a request past them gets 503
    # Seconds a request's headers and body may take to arrive: a client that trickles them
    # (a byte a second holds a connection for hours) is cut off. 30 s carries --max-bytes'
    # 20 MB at 5.6 Mbit/s and a 5 MB photo at 1.4.
    request_timeout_s: float = 30.0


class Refused(Exception):
    """A request the server will not predict: its status and a line that says why."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


# A body answered before it has all arrived is still read, and thrown away, up to this many
# bytes or twice --max-bytes, whichever is more (below).
LINGER_BYTES = 64 * 1024 * 1024


class BodyLimit:
    """Refuse a body over `max_bytes` (413) from its Content-Length, or once that many bytes
    have arrived when it has none (chunked uploads), before it is all read; and one still
    arriving `timeout_s` after the request reached the app (408), however slowly it comes.

    A response sent before its request's body has all arrived (a 413, a 401, a 415) ends only
    once the rest of the body has been read and thrown away, and closes the connection, as
    nginx's lingering close does: a client that reads nothing until it has sent its whole body
    (urllib, requests) would otherwise see a connection reset instead of the answer. At most
    `max(LINGER_BYTES, 2 * max_bytes)` bytes of body are read so, within the same `timeout_s`;
    past either the connection is closed, and a body declared longer is not read at all.

    The server's protocol (`protocol.timed_protocol`) cuts a slow client off on its own; the
    408 holds where that protocol is not used."""

    def __init__(self, app: ASGIApp, max_bytes: int, timeout_s: float):
        self.app, self.max_bytes, self.timeout_s = app, max_bytes, timeout_s
        self.linger_bytes = max(LINGER_BYTES, 2 * max_bytes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        limit = self.max_bytes
        headers = dict(scope["headers"])
        length = headers.get(b"content-length")
        declared = int(length) if length is not None and length.isdigit() else None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout_s
        seen = 0
        # Whether the body has all arrived: at once for a request without one (a GET).
        done = declared == 0 or (declared is None and b"transfer-encoding" not in headers)

        async def counted() -> Message:
            nonlocal seen, done
            if done:  # the body is in: what follows (a disconnect) may take its time
                return await receive()
            try:
                message = await asyncio.wait_for(receive(), max(deadline - loop.time(), 0))
            except TimeoutError:
                raise Refused(
                    408, f"the body did not arrive within {self.timeout_s:g} s (--request-timeout)"
                ) from None
            done = not message.get("more_body", False)
            seen += len(message.get("body", b""))
            if seen > limit:
                raise Refused(413, f"the body is over {limit:,} bytes")
            return message

        async def lingering(message: Message) -> None:
            """`send`, but an answer given before the body is in waits for its end."""
            if done:
                return await send(message)
            if message["type"] == "http.response.start":
                closing = [*message.get("headers", []), (b"connection", b"close")]
                return await send({**message, "headers": closing})
            if message.get("more_body", False):
                return await send(message)
            await send({**message, "more_body": True})  # the whole answer, sent now
            if declared is None or declared <= self.linger_bytes:
                await self._discard(receive, seen, deadline)
            await send({"type": "http.response.body", "body": b"", "more_body": False})

        if declared is not None and declared > limit:
            return await _refuse(
                lingering, 413, f"the body is {declared:,} bytes; at most {limit:,}"
            )
        await self.app(scope, counted, lingering)

    async def _discard(self, receive: Receive, seen: int, deadline: float) -> None:
        """Read the rest of a body (`seen` bytes of it arrived) until its end, a disconnect,
        `linger_bytes` in all or `deadline`."""
        loop = asyncio.get_running_loop()
        while seen <= self.linger_bytes:
            try:
                message = await asyncio.wait_for(receive(), max(deadline - loop.time(), 0))
            except TimeoutError:
                return
            if message["type"] != "http.request" or not message.get("more_body", False):
                return
            seen += len(message.get("body", b""))


async def _refuse(send: Send, status: int, message: str) -> None:
    response = JSONResponse({"error": message}, status_code=status)
    await response({"type": "http"}, _nothing, send)


async def _nothing() -> Message:
    return {"type": "http.disconnect"}


def create_app(
    predictor: Predictor, limits: Limits = Limits(), token: str | None = None,
    cors: list[str] | None = None,
) -> FastAPI:  # fmt: skip
    """The server's application: `predictor`'s runs behind the API, batched by `limits`."""
    batcher = Batcher(predictor.probabilities, limits.max_batch, limits.wait_ms / 1000)
    # Uploads decode one per core at a time, each in full before the next starts: a crowd of
    # large photos waits its turn rather than holding all their pixels in memory at once (the
    # threads Starlette lends, 40, would decode 40 at a time).
    decoders = ThreadPoolExecutor(max_workers=_cores(), thread_name_prefix="cnnlab-decode")

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        batcher.start()
        yield
        await batcher.stop()
        decoders.shutdown(wait=True, cancel_futures=True)

    # The schema is served below, behind the token; no docs pages.
    app = FastAPI(
        title="cnnlab serve", lifespan=lifespan, openapi_url=None, docs_url=None, redoc_url=None
    )
    app.add_middleware(BodyLimit, max_bytes=limits.max_bytes, timeout_s=limits.request_timeout_s)
    if cors:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(
            CORSMiddleware, allow_origins=cors, allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type"],
        )  # fmt: skip

    def check_token(request: Request) -> None:
        if token is None:
            return
        sent = request.headers.get("authorization", "")
        scheme, _, value = sent.partition(" ")
        if scheme.lower() != "bearer" or not secrets.compare_digest(value.encode(), token.encode()):
            raise Refused(401, "missing or wrong token: send 'Authorization: Bearer <token>'")

    @app.exception_handler(Refused)
    async def refused(request: Request, e: Refused) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if e.status == 401 else None
        return JSONResponse({"error": str(e)}, status_code=e.status, headers=headers)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, e: HTTPException) -> JSONResponse:
        return JSONResponse({"error": str(e.detail)}, status_code=e.status_code)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, e: RequestValidationError) -> JSONResponse:
        problems = "; ".join(
            f"{'.'.join(map(str, err['loc']))}: {err['msg']}" for err in e.errors()
        )
        return JSONResponse({"error": problems}, status_code=422)

    @app.exception_handler(ClientDisconnect)
    async def disconnected(request: Request, e: ClientDisconnect) -> JSONResponse:
        return JSONResponse({"error": "the client disconnected"}, status_code=400)

    @app.get("/", response_class=HTMLResponse)
    async def page() -> str:
        return PAGE.read_text(encoding="utf-8")

    @app.get("/openapi.json", include_in_schema=False)
    async def openapi(request: Request) -> JSONResponse:
        check_token(request)
        return JSONResponse(app.openapi())

    @app.get("/health")
    async def health(request: Request) -> dict:
        check_token(request)
        return {
            "status": "ok", "loaded": True, "classes": predictor.class_names,
            "multi_label": predictor.thresholds is not None,
            "runtime": predictor.runtime, "backend": predictor.backend,
            "runs": predictor.run_dirs, "max_batch": limits.max_batch,
            "max_files": limits.max_files, "max_bytes": limits.max_bytes,
            "max_pixels": limits.max_pixels,
            "batches": batcher.batches, "images": batcher.images,
        }  # fmt: skip

    @app.post("/predict")
    async def predict(request: Request, top_k: int = limits.top_k) -> dict:
        check_token(request)
        if top_k < 1:
            raise Refused(422, f"top_k: {top_k}; at least 1")
        uploads = await _uploads(request, limits.max_files)
        loop = asyncio.get_running_loop()
        images = []
        for name, data in uploads:
            try:
                images.append(
                    await loop.run_in_executor(decoders, predictor.decode, data, limits.max_pixels)
                )
            except TooManyPixels as e:
                raise Refused(413, f"{name}: {e}, the server's --max-pixels") from None
            except Unusable as e:
                raise Refused(422 if data else 400, f"{name}: {e}") from None
        probs = await batcher.predict(images)
        names = predictor.class_names
        return {
            "predictions": [
                _prediction(name, row, names, top_k, predictor.thresholds)
                for (name, _), row in zip(uploads, probs, strict=True)
            ]
        }

    return app


def _cores() -> int:
    """The cores this process may run on (a container's or taskset's share, not the host's)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


async def _uploads(request: Request, max_files: int) -> list[tuple[str, bytes]]:
    """(name, bytes) of each image in the request: multipart files, or a raw image body."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind == "multipart/form-data":
        from starlette.formparsers import MultiPartException

        try:
            async with request.form(max_files=max_files, max_fields=max_files) as form:
                files = [v for _, v in form.multi_items() if isinstance(v, UploadFile)]
                if not files:
                    raise Refused(400, "the form holds no file: send each image as a file part")
                return [
                    (f.filename or f"file {i + 1}", await f.read()) for i, f in enumerate(files)
                ]
        except MultiPartException as e:
            raise Refused(400, f"the form: {e.message}") from None
    if kind.startswith("image/"):
        data = await request.body()
        if not data:
            raise Refused(400, "the body is empty: send the image's bytes")
        return [("body", data)]
    raise Refused(
        415,
        f"content type {kind or 'none'!r}: send multipart/form-data files or an image/* body",
    )


def _prediction(name: str, row, names: list[str], top_k: int, thresholds=None) -> dict:
    """One image's answer: the most probable class, the top k, every class's probability, and
    with several labels per image (`thresholds`) the classes at or above their threshold."""
    order = row.argsort()[::-1]
    found = {
        "file": name,
        "class": names[order[0]],
        "probability": round(float(row[order[0]]), 6),
        "top_k": [
            {"class": names[i], "probability": round(float(row[i]), 6)} for i in order[:top_k]
        ],
        "probabilities": {names[i]: round(float(p), 6) for i, p in enumerate(row)},
    }
    if thresholds is not None:
        chosen = above(row[None], thresholds)[0]
        found["labels"] = [names[i] for i in np.flatnonzero(chosen)]
        found["thresholds"] = {names[i]: round(float(t), 6) for i, t in enumerate(thresholds)}
    return found


def exposed(host: str) -> bool:
    """Whether binding `host` opens the API beyond this machine."""
    import ipaddress

    if host == "localhost":
        return False
    try:
        return not ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name: whatever it resolves to, say so
        return True


def warn_if_exposed(host: str, token: str | None) -> None:
    if exposed(host):
        guard = "a token is required" if token else "anyone who can reach it may use it (--token)"
        warn(f"--host {host}: the API is open to the network; {guard}")
