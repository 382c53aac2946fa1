"""A bound on decoded pixels in flight across all requests, and the header read that sizes them.

Why: each request's memory grows with its pixels (the decoded image, the model's per-class scores at
the original size, the label map, the overlay), not with its upload: 32 concurrent 4096 x 4096 JPEGs
of 263 KB each took a server from 1.5 to 4.8 GB. A per-request limit cannot stop that; a budget shared
by all requests can. Each request reserves its declared width x height (read from the header, before
anything is decoded) and holds it until its answer is encoded; requests that do not fit wait in
arrival order (a large image is not starved by a stream of small ones) and get 503 with Retry-After
when the wait passes budget_wait_s.
"""
from __future__ import annotations

import asyncio
import contextlib
import io
from collections import deque
from typing import AsyncIterator

from PIL import Image

from pixelseg.serve.errors import ApiError

# the formats serve.decode accepts, by Pillow's names
_PILLOW_FORMATS = ("PNG", "JPEG", "BMP", "TIFF", "WEBP")


def declared_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from the image header, or None when no accepted format's header parses.

    Pillow's format plugins are called directly rather than through Image.open, whose decompression-bomb
    check would refuse a large declared size with its own message (and its own limit) before ours."""
    Image.init()
    head = data[:16]
    for name in _PILLOW_FORMATS:
        factory, accept = Image.OPEN.get(name, (None, None))
        if factory is None or (accept is not None and not accept(head)):
            continue
        try:
            with factory(io.BytesIO(data)) as im:
                w, h = im.size
                return int(w), int(h)
        except Exception:       # any header Pillow cannot parse: decode_image will name the problem
            return None
    return None


def check_pixels(size: tuple[int, int], max_pixels: int, where: str) -> None:
    """413 from pixelseg, stating the same limit as limit_value, for any size above max_pixels."""
    w, h = size
    if w * h > max_pixels:
        raise ApiError(413, "too_many_pixels", f"{where} is {w}x{h} = {w * h:,} pixels, above this server's limit of "
                       f"{max_pixels:,}; downscale it first", "max_pixels", max_pixels)


class PixelBudget:
    """A weighted semaphore in pixels, first come first served. Event-loop thread only (no lock)."""

    def __init__(self, capacity: int, wait_s: float):
        self.capacity, self.wait_s = capacity, wait_s
        self.in_use = 0
        self.peak = 0                     # the most ever reserved at once (tests and metrics read it)
        self._waiters: deque[tuple[int, asyncio.Future]] = deque()

    @contextlib.asynccontextmanager
    async def reserve(self, pixels: int) -> AsyncIterator[None]:
        pixels = max(1, min(pixels, self.capacity))
        if not self._waiters and self.in_use + pixels <= self.capacity:
            self._take(pixels)
        else:
            await self._wait(pixels)
        try:
            yield
        finally:
            self.in_use -= pixels
            self._wake()

    async def _wait(self, pixels: int) -> None:
        entry = (pixels, asyncio.get_running_loop().create_future())
        self._waiters.append(entry)
        try:
            async with asyncio.timeout(self.wait_s):
                await entry[1]
        except TimeoutError:
            self._abandon(entry)
            raise ApiError(503, "overloaded", f"the images being processed hold {self.in_use:,} of this server's "
                           f"{self.capacity:,} pixels in flight and this one waited {self.wait_s:g} s for room; "
                           "retry shortly", "max_pixels_in_flight", self.capacity, headers={"Retry-After": "2"}) from None
        except BaseException:            # the request's own timeout or a cancellation
            self._abandon(entry)
            raise

    def _abandon(self, entry: tuple[int, asyncio.Future]) -> None:
        pixels, future = entry
        if future.done() and not future.cancelled():      # granted just as the waiter gave up
            self.in_use -= pixels
        else:
            future.cancel()
            self._waiters.remove(entry)
        self._wake()                      # a large waiter leaving the head may let smaller ones in

    def _take(self, pixels: int) -> None:
        self.in_use += pixels
        self.peak = max(self.peak, self.in_use)

    def _wake(self) -> None:
        while self._waiters and self.in_use + self._waiters[0][0] <= self.capacity:
            pixels, future = self._waiters.popleft()
            if not future.done():
                self._take(pixels)
                future.set_result(None)
