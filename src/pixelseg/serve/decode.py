"""Uploaded bytes -> an image array, refusing everything that is not a plain image of a sane size.

Order matters: the cheap checks come first and nothing is decoded before the declared size is known.
    1. magic bytes say which format the data is (the content type a client sends is only a claim);
    2. the declared content type, if it names an image format, must agree with the bytes;
    3. Pillow opens the file lazily: only the header is parsed, so width x height is known before any
       pixel is decoded, and a decompression bomb (a few KB declaring 100000 x 100000) is refused here;
    4. only then are the pixels decoded; a truncated or corrupt file fails here.
"""
from __future__ import annotations

import io

import numpy as np
from PIL import UnidentifiedImageError

from pixelseg.data.io import IMAGE_FORMATS, TooManyPixelsError, open_image, pil_to_array, upright
from pixelseg.errors import PixelsegError
from pixelseg.serve.errors import ApiError
from pixelseg.serve.settings import Limits

# format (data.io.IMAGE_FORMATS, the formats files are read in) -> (magic test, the content types that name it)
_HTTP = {
    "PNG": (lambda b: b.startswith(b"\x89PNG\r\n\x1a\n"), ("image/png",)),
    "JPEG": (lambda b: b.startswith(b"\xff\xd8\xff"), ("image/jpeg", "image/jpg", "image/pjpeg")),
    "BMP": (lambda b: b.startswith(b"BM"), ("image/bmp", "image/x-bmp", "image/x-ms-bmp")),
    "TIFF": (lambda b: b[:4] in (b"II*\x00", b"MM\x00*"), ("image/tiff", "image/tif")),
    "WEBP": (lambda b: b[:4] == b"RIFF" and b[8:12] == b"WEBP", ("image/webp",)),
}
_FORMATS = {name: _HTTP[name] for name in IMAGE_FORMATS}
IMAGE_CONTENT_TYPES = tuple(ct for _, cts in _FORMATS.values() for ct in cts)
# a client that does not know the type (curl --data-binary, a file picker without a mime table)
NEUTRAL_CONTENT_TYPES = ("application/octet-stream", "")
SUPPORTED = ", ".join(list(_FORMATS)[:-1]) + " or " + list(_FORMATS)[-1]


def media_type(content_type: str | None) -> str:
    """'Image/PNG; charset=x' -> 'image/png'."""
    return (content_type or "").split(";", 1)[0].strip().lower()


def check_content_type(content_type: str | None, where: str) -> None:
    """Refuse a declared type that is neither an image type we read nor neutral (415)."""
    mt = media_type(content_type)
    if mt in IMAGE_CONTENT_TYPES or mt in NEUTRAL_CONTENT_TYPES:
        return
    raise ApiError(415, "unsupported_media_type",
                   f"{where} has content type '{mt}'; send a {SUPPORTED} image "
                   f"(content type image/png, image/jpeg, ... or application/octet-stream)")


def sniff(data: bytes) -> str | None:
    for name, (test, _) in _FORMATS.items():
        if test(data[:16]):
            return name
    return None


def decode_image(data: bytes, content_type: str | None, limits: Limits, where: str = "the upload") -> np.ndarray:
    """Bytes of an uploaded file -> HxW (gray) / HxWx3 / HxWx4 uint8, upright (EXIF orientation applied)."""
    if not data:
        raise ApiError(400, "empty_body", f"{where} is empty; send the bytes of a {SUPPORTED} image")
    check_content_type(content_type, where)
    fmt = sniff(data)
    if fmt is None:
        raise ApiError(415, "unsupported_media_type",
                       f"{where} is not a {SUPPORTED} image (its first bytes match none of them)")
    mt = media_type(content_type)
    if mt in IMAGE_CONTENT_TYPES and mt not in _FORMATS[fmt][1]:
        raise ApiError(415, "unsupported_media_type",
                       f"{where} is declared {mt} but its bytes are {fmt}; send the right content type "
                       "or application/octet-stream")
    try:
        # the decode gate every reader shares (header first, nothing decoded above the limit), then
        # read_image's own decoding, EXIF orientation and mode handling: uploads and files cannot drift
        im = open_image(io.BytesIO(data), "image", name=where, limit=limits.max_pixels, formats=[fmt])
        with im:
            w, h = im.size
            if w < 1 or h < 1:
                raise ApiError(400, "undecodable_image", f"{where} declares an empty {w}x{h} image")
            return pil_to_array(upright(im))
    except ApiError:
        raise
    except TooManyPixelsError as e:
        raise ApiError(413, "too_many_pixels",
                       f"{where} is {e.width}x{e.height} = {e.width * e.height:,} pixels, above this server's limit of "
                       f"{e.limit:,}; downscale it first", "max_pixels", e.limit) from None
    except PixelsegError as e:
        raise ApiError(400, "undecodable_image", f"{where} is a damaged {fmt} file ({_reason(e)}); re-export it") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError, IndexError, TypeError) as e:
        # Pillow reports truncation and corruption with these, depending on the format and where it broke
        raise ApiError(400, "undecodable_image", f"{where} is a damaged {fmt} file ({_reason(e)}); re-export it") from None


def _reason(e: Exception) -> str:
    return str(e).splitlines()[0][:200] if str(e) else type(e).__name__
