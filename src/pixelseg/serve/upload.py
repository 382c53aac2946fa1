"""Reading an upload from either body form (multipart or raw bytes), refused as early as possible."""
from __future__ import annotations

from typing import AsyncIterator

from fastapi import Request
from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser

from pixelseg.serve.decode import media_type
from pixelseg.serve.errors import ApiError
from pixelseg.serve.schemas import IMAGE_FIELD
from pixelseg.serve.settings import Limits

SEGMENT_PARAMS = ("format", "rle", "alpha", "boundaries", "legend")
# a multipart body holds the image and a little framing; anything with more parts is not our client
_MAX_FORM_PARTS = 8


async def read_body(request: Request, limits: Limits) -> bytes:
    """The body, refused with 413 as soon as it passes max_upload_bytes (declared or counted)."""
    declared = request.headers.get("content-length", "")
    too_big = ApiError(413, "payload_too_large", f"the upload is larger than this server's limit of "
                       f"{limits.max_upload_bytes:,} bytes", "max_upload_bytes", limits.max_upload_bytes)
    if declared.isdigit() and int(declared) > limits.max_upload_bytes:
        raise too_big
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limits.max_upload_bytes:
            raise too_big
    return bytes(body)


async def read_upload(request: Request, limits: Limits) -> tuple[bytes, str | None, str]:
    """(image bytes, their declared content type, how to name them in messages) from either body form."""
    content_type = request.headers.get("content-type")
    mt = media_type(content_type)
    if mt == "multipart/form-data":
        return await _form_upload(request, await read_body(request, limits))
    if mt in ("application/x-www-form-urlencoded", "text/plain", "application/json") or mt.startswith("text/"):
        raise ApiError(415, "unsupported_media_type",
                       f"content type '{mt}' is not an image; send multipart/form-data with the file in field "
                       f"'{IMAGE_FIELD}', or the raw bytes with Content-Type image/png, image/jpeg, ... "
                       "(curl: -H 'Content-Type: image/png' --data-binary @photo.png)")
    return await read_body(request, limits), content_type, "the request body"


async def _form_upload(request: Request, body: bytes) -> tuple[bytes, str | None, str]:
    async def chunks() -> AsyncIterator[bytes]:
        yield body

    try:
        form = await MultiPartParser(request.headers, chunks(), max_files=_MAX_FORM_PARTS,
                                     max_fields=_MAX_FORM_PARTS).parse()
    except MultiPartException as e:
        raise ApiError(400, "malformed_multipart", f"the multipart body cannot be parsed ({e})") from None
    try:
        names = list(form.keys())
        items = form.multi_items()
        if IMAGE_FIELD not in names and len(items) == 1 and isinstance(items[0][1], UploadFile):
            part = items[0][1]        # the one file of the upload, whatever its field is called ("file", ...)
            return await part.read(), part.content_type, f"field '{items[0][0]}' ({part.filename or 'no file name'})"
        unknown = sorted(set(names) - {IMAGE_FIELD})
        if IMAGE_FIELD not in names:
            got = f"got {', '.join(repr(n) for n in names)}" if names else "it has no fields"
            raise ApiError(422, "missing_field",
                           f"the multipart body has no '{IMAGE_FIELD}' field ({got}); send the file as '{IMAGE_FIELD}'")
        if unknown:
            raise ApiError(422, "unknown_field", f"unknown multipart field(s) {', '.join(map(repr, unknown))}; "
                           f"send only '{IMAGE_FIELD}' (options go in the query string: {', '.join(SEGMENT_PARAMS)})")
        parts = form.getlist(IMAGE_FIELD)
        if len(parts) != 1 or not isinstance(parts[0], UploadFile):
            raise ApiError(422, "invalid_field", f"'{IMAGE_FIELD}' must be exactly one file part "
                           f"(got {len(parts)} part(s){'' if isinstance(parts[0], UploadFile) else ', not a file'})")
        part = parts[0]
        data = await part.read()
        return data, part.content_type, f"field '{IMAGE_FIELD}' ({part.filename or 'no file name'})"
    finally:
        await form.close()
