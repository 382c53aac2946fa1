"""uvicorn's HTTP protocols with a deadline for the request head.

Why: uvicorn's keep-alive timer runs only between requests and stops at the first byte of the next
one, and neither h11 nor httptools has a header timeout. A client that opens a connection and sends
nothing, or half a request line and then nothing, holds its socket (and a file descriptor) for as long
as it likes: 300 such connections held 20 s stayed open. Here a connection must complete each request
head within `timeout_keep_alive` seconds of opening or of its previous answer, else it is closed. A
stalled *body* is the app's business (serve.timeouts answers 408 there).
"""
from __future__ import annotations

import asyncio

from uvicorn.protocols.http.h11_impl import H11Protocol as _H11
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol as _HttpTools


class _HeadDeadline:
    """Mixin over a uvicorn HTTP protocol (both keep the request in progress in `self.cycle`)."""

    def connection_made(self, transport: asyncio.Transport) -> None:
        self._head_timer: asyncio.TimerHandle | None = None
        self._head_cycle = None
        super().connection_made(transport)
        self._arm_head_deadline()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.cycle is not None and self.cycle is not self._head_cycle:     # a new request head is complete
            self._head_cycle = self.cycle
            self._cancel_head_deadline()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._arm_head_deadline()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_deadline()
        super().connection_lost(exc)

    def _arm_head_deadline(self) -> None:
        self._cancel_head_deadline()
        self._head_timer = self.loop.call_later(self.timeout_keep_alive, self._head_deadline_passed)

    def _cancel_head_deadline(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_deadline_passed(self) -> None:
        self._head_timer = None
        busy = self.cycle is not None and not self.cycle.response_complete   # a request is being answered
        if not busy and not self.transport.is_closing():
            self.transport.close()


class HttpToolsProtocol(_HeadDeadline, _HttpTools):
    pass


class H11Protocol(_HeadDeadline, _H11):
    pass


def default_protocol() -> type:
    """What uvicorn's http='auto' would pick: httptools when installed, else h11."""
    try:
        import httptools  # noqa: F401
    except ImportError:
        return H11Protocol
    return HttpToolsProtocol
