"""A deadline between the chunks of a request body (the head has its own: serve.protocol).

Why: a client that sends its headers and then trickles or stops its body would otherwise hold the
request (and the bytes read so far) until the whole request's timeout; with this, silence of
idle_timeout_s mid-body is answered 408 and the connection closed."""
from __future__ import annotations

import asyncio

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from pixelseg.serve.errors import ApiError


class BodyIdleTimeout:
    def __init__(self, app: ASGIApp, seconds: float):
        self.app, self.seconds = app, seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        body_done = False

        async def timed_receive() -> Message:
            nonlocal body_done
            if body_done:                  # later calls wait for a disconnect: no deadline on that
                return await receive()
            try:
                async with asyncio.timeout(self.seconds):
                    message = await receive()
            except TimeoutError:
                raise ApiError(408, "timeout", f"the client sent nothing for {self.seconds:g} s in the middle of the "
                               "request body; send the whole body at once", "idle_timeout_s", self.seconds,
                               headers={"Connection": "close"}) from None
            body_done = message["type"] != "http.request" or not message.get("more_body", False)
            return message

        await self.app(scope, timed_receive, send)
