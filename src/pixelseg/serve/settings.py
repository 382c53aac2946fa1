"""What a server is allowed to do: limits on each request and the batching policy.

One frozen dataclass, so the CLI, the app factory and the multi-worker launcher pass the same thing
(and can round-trip it through JSON to worker processes).
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field

from pixelseg.errors import PixelsegError


@dataclass(frozen=True)
class Limits:
    # 25 MiB holds a 12 MP phone JPEG many times over and an uncompressed 8 MP PNG
    max_upload_bytes: int = 25 * 1024 * 1024
    # 16.7 MP (4096 x 4096): the predictor holds K float32 logits per pixel at the original size,
    # so memory per request is about 4 * num_classes * max_pixels bytes (400 MB for 6 classes)
    max_pixels: int = 4096 * 4096
    # from the first byte read to the answer written: covers a slow upload, the queue and the model
    timeout_s: float = 30.0
    # images waiting for the model; beyond this a request is refused at once with 429 (back-pressure
    # instead of an unbounded queue whose requests all time out)
    max_queue: int = 64
    # a connection silent this long is closed: idle between requests (keep-alive), before its request
    # head is complete, or in the middle of a body (answered 408)
    idle_timeout_s: float = 10.0
    # decoded pixels of all requests together, from the header read until the answer is encoded
    # (None: 2 x max_pixels, so two of the largest images, or many small ones, at a time); what a
    # server's memory is sized by: about (3 + 4 * num_classes + 2) bytes per pixel in flight
    max_pixels_in_flight: int | None = None
    # how long a request waits for room under max_pixels_in_flight before it is refused with 503
    budget_wait_s: float = 10.0

    @property
    def pixel_budget(self) -> int:
        return self.max_pixels_in_flight or 2 * self.max_pixels


@dataclass(frozen=True)
class Batching:
    # Requests that arrive while the model is busy are run together as one batch when it is free
    # again, up to max_batch images. max_wait_ms > 0 also holds a lone request back that long to
    # wait for company: more throughput under steady load, more latency when idle.
    max_batch: int = 4
    max_wait_ms: float = 0.0


@dataclass(frozen=True)
class ServeSettings:
    run: str
    backend: str = "auto"
    device: str = "auto"
    api_key: str | None = None
    threads: int | None = None           # torch intra-op threads per worker; None = torch's default
    cache_pixels: int = 64_000_000       # label maps kept by content hash (uint8: about 64 MB)
    limits: Limits = field(default_factory=Limits)
    batching: Batching = field(default_factory=Batching)

    def __post_init__(self):
        lim, bat = self.limits, self.batching
        checks = [
            (lim.max_upload_bytes > 0, f"--max-upload-mb must be positive (got {lim.max_upload_bytes} bytes)"),
            (lim.max_pixels > 0, f"--max-pixels must be positive (got {lim.max_pixels})"),
            (lim.timeout_s > 0, f"--timeout must be positive seconds (got {lim.timeout_s})"),
            (lim.max_queue >= 1, f"--max-queue must be at least 1 (got {lim.max_queue})"),
            (lim.idle_timeout_s > 0, f"--idle-timeout must be positive seconds (got {lim.idle_timeout_s})"),
            (lim.max_pixels_in_flight is None or lim.max_pixels_in_flight >= lim.max_pixels,
             f"--max-pixels-in-flight ({lim.max_pixels_in_flight}) must be at least --max-pixels ({lim.max_pixels}): "
             "else the largest image allowed could never run"),
            (lim.budget_wait_s > 0, f"budget_wait_s must be positive seconds (got {lim.budget_wait_s})"),
            (bat.max_batch >= 1, f"--max-batch must be at least 1 (got {bat.max_batch})"),
            (bat.max_wait_ms >= 0, f"--batch-wait-ms must be 0 or more (got {bat.max_wait_ms})"),
            (self.threads is None or self.threads >= 1, f"--threads must be at least 1 (got {self.threads})"),
            (self.cache_pixels >= 0, f"cache_pixels must be 0 or more (got {self.cache_pixels})"),
            (self.api_key is None or len(self.api_key) >= 8,
             "the API key is shorter than 8 characters; use a long random one, e.g. `openssl rand -hex 16`"),
        ]
        for ok, message in checks:
            if not ok:
                raise PixelsegError(message)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, text: str) -> "ServeSettings":
        d = json.loads(text)
        return cls(**{**d, "limits": Limits(**d["limits"]), "batching": Batching(**d["batching"])})
