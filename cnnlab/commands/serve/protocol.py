"""uvicorn's HTTP protocol with a deadline on each request's arrival.

uvicorn times a kept-alive connection between requests, but not a request's headers or body
while they arrive: a client that sends a byte a second holds its connection (and one of
`--max-connections`) for as long as it likes, and a few hundred such clients take the server
down. Here a request's headers and body must be in within `seconds` of its first byte (of the
connection, for its first request), or the connection is closed. Processing time after that
is not counted.
"""

from __future__ import annotations

import asyncio


def timed_protocol(seconds: float) -> type[asyncio.Protocol]:
    """uvicorn's httptools protocol that closes a connection whose request has not fully
    arrived `seconds` after it began; for `uvicorn.Config(http=...)`.

    Raises:
        ImportError: httptools is not installed.
    """
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    class TimedHttpToolsProtocol(HttpToolsProtocol):
        _deadline: asyncio.TimerHandle | None = None

        def connection_made(self, transport) -> None:
            super().connection_made(transport)
            self._arm()  # a connection that never sends a byte is a request that never arrives

        def on_message_begin(self) -> None:
            super().on_message_begin()
            if self._deadline is None:  # the first request keeps the connection's deadline
                self._arm()

        def on_message_complete(self) -> None:
            self._disarm()
            super().on_message_complete()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

        def _arm(self) -> None:
            self._disarm()
            self._deadline = self.loop.call_later(seconds, self._expire)

        def _disarm(self) -> None:
            if self._deadline is not None:
                self._deadline.cancel()
                self._deadline = None

        def _expire(self) -> None:
            self._deadline = None
            if not self.transport.is_closing():
                self.transport.close()  # the app, if it is reading the body, sees a disconnect

    return TimedHttpToolsProtocol
