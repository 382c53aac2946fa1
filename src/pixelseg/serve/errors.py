"""Refusals: every one is a 4xx (or a 503 when the pixels in flight are at their bound) with the same
JSON body, naming the limit that applied.

    {"status": 413, "code": "too_many_pixels", "message": "...", "limit": "max_pixels", "limit_value": 16777216}

`code` is stable (clients branch on it); `message` is for people; `limit`/`limit_value` are set when a
configured limit caused the refusal, so a client can tell "my file is bad" from "this server is strict".
"""
from __future__ import annotations

from pydantic import BaseModel, Field


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, limit: str | None = None,
                 limit_value: float | int | None = None, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.limit, self.limit_value = limit, limit_value
        self.headers = headers

    def body(self) -> dict:
        return {"status": self.status, "code": self.code, "message": self.message,
                "limit": self.limit, "limit_value": self.limit_value}


class ErrorBody(BaseModel):
    """The body of every refusal (4xx, and 503 when the server is full)."""
    status: int = Field(description="the HTTP status, repeated for clients that only keep the body")
    code: str = Field(description="stable machine-readable reason, e.g. empty_body, unsupported_media_type, "
                                  "too_many_pixels, payload_too_large, undecodable_image, invalid_parameter, "
                                  "timeout, busy, overloaded, unauthorized, not_found")
    message: str = Field(description="what was wrong and how to fix it")
    limit: str | None = Field(None, description="the server limit that applied, if any (e.g. max_pixels)")
    limit_value: float | int | None = Field(None, description="that limit's value")


def _doc(description: str) -> dict:
    return {"model": ErrorBody, "description": description}


# The refusals /v1/segment documents in its OpenAPI entry: what each status means here.
SEGMENT_ERRORS = {
    400: _doc("empty body, or an image that cannot be decoded (truncated, corrupt)"),
    401: _doc("the server has an API key and the X-API-Key header is missing or wrong"),
    408: _doc("the request took longer than the server's timeout_s (slow upload, long queue), or its body "
              "stalled for idle_timeout_s"),
    413: _doc("the upload is larger than max_upload_bytes, or the image has more pixels than max_pixels "
              "(checked from the header, before decoding)"),
    415: _doc("not multipart/form-data nor an image content type, or the bytes are not PNG/JPEG/BMP/TIFF/WebP, "
              "or they do not match the declared content type"),
    422: _doc("a wrong or unknown parameter, a multipart body without the `image` field, or an image the model "
              "cannot take (e.g. channel count)"),
    429: _doc("more than max_queue images are waiting; retry after the Retry-After seconds"),
    503: _doc("the images being processed hold max_pixels_in_flight pixels and this one waited budget_wait_s "
              "for room; retry after the Retry-After seconds"),
}
