"""Reading images and masks with errors a user can act on, through one decode gate.

Images: grayscale, RGB, RGBA (8-bit; 16-bit grayscale is scaled to 8-bit) -> HxWxC uint8.
Masks: single-channel 8/16-bit or palette PNGs whose pixel value is the class index -> HxW int array.

The decode gate (`open_image`): every reader (datasets, the doctor, convert/show, predict, the server)
opens a file here. Only the header is parsed first; a file declaring more pixels than the limit is refused
with its name, its declared size and the limit before a single pixel is decoded, so a few-KB PNG declaring
100000 x 100000 cannot take the process down. The limit is a setting: `set_max_pixels(n)`, or the
PIXELSEG_MAX_PIXELS environment variable (which loader worker processes inherit), default
DEFAULT_MAX_PIXELS. Pillow's own bomb check stays on behind it, raised only as far as the limit needs.

Orientation: one rule everywhere, as photo tools and the server do it: the EXIF orientation tag is
applied, so a phone photo stored sideways is read (and its size reported) upright.
"""
from __future__ import annotations

import math
import os
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from pixelseg.data import geotiff
from pixelseg.errors import PixelsegError

# Pillow's format name -> the file suffixes it goes by: the one list of image formats files and uploads are read in
IMAGE_FORMATS = {"PNG": (".png",), "JPEG": (".jpg", ".jpeg"), "BMP": (".bmp",), "TIFF": (".tif", ".tiff"),
                 "WEBP": (".webp",)}
IMAGE_EXTS = tuple(ext for exts in IMAGE_FORMATS.values() for ext in exts)
MODE_CHANNELS = {"1": 1, "L": 1, "I;16": 1, "I;16B": 1, "I": 1, "F": 1, "P": 3, "RGB": 3, "RGBA": 4, "LA": 1, "CMYK": 3}
# Pillow's own error level (2x its warning level): about 13,400 x 13,400, a large aerial tile. Bigger rasters
# are legitimate too, but then the user says so (--max-pixels), knowing each one needs gigabytes decoded.
DEFAULT_MAX_PIXELS = 178_956_970
MAX_PIXELS_ENV = "PIXELSEG_MAX_PIXELS"
_DECODE_ERRORS = (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError, IndexError, TypeError)
# EXIF orientation -> the transpose that shows the picture upright (the table ImageOps.exif_transpose uses)
_UPRIGHT = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180, 4: Image.Transpose.FLIP_TOP_BOTTOM,
            5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE,
            8: Image.Transpose.ROTATE_90}


class TooManyPixelsError(PixelsegError):
    """A file whose header declares more pixels than the decode limit (nothing was decoded)."""

    def __init__(self, name: str, width: int, height: int, limit: int):
        self.width, self.height, self.limit = width, height, limit
        super().__init__(f"{name}: declares {width}x{height} = {width * height:,} pixels, above the limit of "
                         f"{limit:,} (a decompression bomb, or a raster this large); if it is a real image, raise "
                         f"the limit with --max-pixels {width * height} (or {MAX_PIXELS_ENV}) or tile it first")


def set_pixel_limit(env: str, flag: str, n: int | None) -> None:
    """A pixel limit for this process and the processes it starts, kept in the environment variable `env` so
    loader workers inherit it (None: back to the default); `flag` names it in the error."""
    if n is None:
        os.environ.pop(env, None)
        return
    if int(n) < 1:
        raise PixelsegError(f"{flag} must be positive (got {n})")
    os.environ[env] = str(int(n))


def pixel_limit(env: str, default: int) -> int:
    """The pixel limit the environment variable `env` holds (`_` and `,` allowed as separators), else `default`."""
    value = os.environ.get(env, "").replace("_", "").replace(",", "")
    if not value:
        return default
    try:
        n = int(float(value))
    except (ValueError, OverflowError):
        raise PixelsegError(f"{env}={value!r} is not a number of pixels; e.g. {default}") from None
    if n < 1:
        raise PixelsegError(f"{env}={value!r} must be positive")
    return n


def set_max_pixels(n: int | None) -> None:
    """The decode limit for this process and the processes it starts (None: back to the default)."""
    set_pixel_limit(MAX_PIXELS_ENV, "--max-pixels", n)
    if n is not None:
        _pillow_follows(int(n))


def _pillow_follows(n: int) -> None:
    """A limit the user raised moves Pillow's hard error (at twice MAX_IMAGE_PIXELS) just above it: the check
    stays on, it only no longer refuses what the user allowed. A lower limit leaves Pillow's as it is."""
    if Image.MAX_IMAGE_PIXELS is not None and 2 * Image.MAX_IMAGE_PIXELS < n:
        Image.MAX_IMAGE_PIXELS = math.ceil(n / 2)


def max_pixels() -> int:
    n = pixel_limit(MAX_PIXELS_ENV, DEFAULT_MAX_PIXELS)
    if os.environ.get(MAX_PIXELS_ENV):
        _pillow_follows(n)    # loader workers inherit the variable, not the parent's Pillow setting
    return n


def _declared_size(fp) -> tuple[int, int] | None:
    """(W, H) from the header when Pillow's bomb check refused the file before showing it: the format
    plugins parse headers only, so this decodes nothing."""
    Image.init()
    fp.seek(0)
    prefix = fp.read(16)
    for fmt in Image.ID:
        factory, accept = Image.OPEN[fmt]
        try:
            if accept is None or accept(prefix) is True:
                fp.seek(0)
                return factory(fp, "").size
        except Exception:  # noqa: BLE001 - not this format; try the next, as Image.open does
            continue
    return None


def open_image(source, what: str = "image", fix: str = "check the path", name: str | None = None,
               limit: int | None = None, formats: list[str] | None = None) -> Image.Image:
    """The decode gate: `source` (a path or a binary file object) opened lazily, header only, and refused
    when it declares more than `limit` pixels (default: the process setting). Nothing is decoded yet."""
    name = name or str(source)
    limit = max_pixels() if limit is None else limit
    fp = open(source, "rb") if isinstance(source, (str, Path)) else source  # noqa: SIM115 - Pillow closes it
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)   # the limit below is the policy
            im = Image.open(fp, formats=formats)
    except Image.DecompressionBombError:
        size = _declared_size(fp)
        fp.close()
        w, h = size if size else (0, 0)
        # Pillow's guard was lower than ours (a process that set one): report the limit that applied
        raise TooManyPixelsError(name, w, h, min(limit, 2 * (Image.MAX_IMAGE_PIXELS or limit))) from None
    except _DECODE_ERRORS as e:
        fp.close()
        raise PixelsegError(f"{name}: {what} cannot be decoded ({e}); re-export it or remove it (with its pair)") from None
    w, h = im.size
    if w * h > limit:
        im.close()
        raise TooManyPixelsError(name, w, h, limit)
    return im


def _open_path(path: Path, what: str, fix: str) -> Image.Image:
    try:
        return open_image(path, what, fix)
    except FileNotFoundError:
        raise PixelsegError(f"{path}: {what} not found; {fix}") from None
    except IsADirectoryError:
        raise PixelsegError(f"{path}: is a folder, not an {what} file; rename or move it") from None


def orientation(im: Image.Image) -> int:
    """The EXIF orientation tag (1 = as stored), from what the header holds: a PNG's eXIf chunk after the
    pixel data is not read, so the header size and the decoded picture always agree."""
    if im.format == "PNG" and "exif" not in im.info:
        return 1
    try:
        return int(im.getexif().get(0x0112, 1) or 1)
    except Exception:  # noqa: BLE001 - a damaged EXIF block: show the picture as stored
        return 1


def upright(im: Image.Image) -> Image.Image:
    """An image from `open_image`, decoded and turned upright by its EXIF orientation."""
    turn = _UPRIGHT.get(orientation(im))
    im.load()
    return im.transpose(turn) if turn is not None else im


def load(path: str | Path, what: str = "image", fix: str = "check the path") -> Image.Image:
    """Through the gate, decoded, upright (EXIF applied). A truncated file fails here, with its name."""
    path = Path(path)
    im = _open_path(path, what, fix)
    try:
        return upright(im)
    except _DECODE_ERRORS as e:
        raise PixelsegError(f"{path}: {what} cannot be decoded ({e}); re-export it or remove it (with its pair)") from None


def image_size(path: str | Path) -> tuple[int, int]:
    """(H, W) as read_image returns it (EXIF orientation applied), from the header only."""
    path = Path(path)
    if geotiff.is_raster(path) and path.is_file():
        return geotiff.raster_shape(path)[:2]
    with _open_path(path, "image", "check the path") as im:
        w, h = im.size
        turned = orientation(im) in (5, 6, 7, 8)
    return (w, h) if turned else (h, w)


def stored_size(path: str | Path) -> tuple[tuple[int, int], bool]:
    """((H, W) as stored, whether an EXIF orientation turns it a quarter): for explaining a size mismatch."""
    with _open_path(Path(path), "image", "check the path") as im:
        w, h = im.size
        return (h, w), orientation(im) in (5, 6, 7, 8)


def image_channels(path: str | Path) -> int:
    if geotiff.is_raster(path) and Path(path).is_file():
        return geotiff.raster_shape(path)[2]
    with _open_path(Path(path), "image", "check the path") as im:
        return MODE_CHANNELS.get(im.mode, 3)


def describe_odd_file(p: Path, what: str = "images") -> str | None:
    """None for a regular file with an image extension; '' for a file that is not an image at all (notes,
    JSON, hidden files: skipped quietly); otherwise what is wrong with an entry that looks like one of `what`
    (a folder named x.png, a dangling link, a GIF), so it is reported for what it is."""
    ext = p.suffix.lower()
    if ext in IMAGE_EXTS:
        if p.is_symlink() and not p.exists():
            return f"{p}: a symbolic link to a missing file ({os.readlink(p)}); fix the link or remove it"
        if p.is_dir():
            return f"{p}: is a folder, not an image file; rename or move it"
        return None if p.is_file() else f"{p}: not a regular file; replace it with the {what[:-1]} file"
    if ext in (".gif", ".webp", ".heic", ".heif", ".avif", ".jp2"):
        kind = "masks must be PNG" if what == "masks" else f"convert it to PNG or JPEG (read: {', '.join(IMAGE_EXTS)})"
        return f"{p}: {ext[1:].upper()} files are not read; {kind}"
    return ""


def to_channels(arr: np.ndarray, channels: int) -> np.ndarray:
    """Convert HxW / HxWxC uint8 to HxWx`channels`: gray is repeated, RGB->gray uses luminance, alpha is
    dropped or added (opaque). Anything else is an error the caller words."""
    if arr.ndim == 2:
        arr = arr[:, :, None]
    c = arr.shape[2]
    if c == channels:
        return arr
    if c == 1:
        if channels == 4:
            return np.concatenate([np.repeat(arr, 3, axis=2), np.full_like(arr, 255)], axis=2)
        return np.repeat(arr, channels, axis=2)
    if c == 4 and channels == 3:
        return arr[:, :, :3]
    if c in (3, 4) and channels == 1:
        rgb = arr[:, :, :3].astype(np.float32)
        return np.round(rgb @ np.array([0.299, 0.587, 0.114], np.float32)).astype(np.uint8)[:, :, None]
    if c == 3 and channels == 4:
        return np.concatenate([arr, np.full_like(arr[:, :, :1], 255)], axis=2)
    raise ValueError(f"cannot convert {c} channels to {channels}")


def _raster_gate(path: Path, all_bands: bool = False) -> Path:
    """The decode gate for rasters read through rasterio: the header's size against the same limit; with
    `all_bands` (an image, read whole) also its decoded bytes, every band at its sample size, against the limit's
    bytes as RGBA (4 per pixel): 200 float64 bands make a raster well inside the pixel limit a bomb (issue 27)."""
    h, w, bands, sample = geotiff.raster_header(path)       # one header read for both limits
    limit = max_pixels()
    if w * h > limit:
        raise TooManyPixelsError(str(path), w, h, limit)
    if all_bands:
        decoded = w * h * bands * sample
        if decoded > 4 * limit:
            raise PixelsegError(f"{path}: declares {w}x{h} pixels x {bands} bands = {decoded / 2**30:.1f} GiB decoded, "
                                f"above the limit of {4 * limit / 2**30:.1f} GiB (--max-pixels {limit:,} x 4 bytes); if "
                                f"it is a real image, raise the limit with --max-pixels {-(-decoded // 4)} (or "
                                f"{MAX_PIXELS_ENV}), or keep fewer bands")
    return path


def check_header(path: str | Path) -> None:
    """The decode gate without decoding: a file read_image would refuse for what its header declares (its pixels,
    or a raster's bytes over every band) is refused now, in the same one-line error."""
    path = Path(path)
    if geotiff.is_raster(path) and path.is_file():
        _raster_gate(path, all_bands=True)
    else:
        _open_path(path, "image", "check the path").close()


def read_image(path: str | Path, channels: int | None = None) -> np.ndarray:
    """HxWxC uint8. With `channels`, converted to that many channels."""
    path = Path(path)
    # GeoTIFF / COG (any band count) through rasterio when installed; other TIFFs and images through PIL
    arr = geotiff.read_raster_image(_raster_gate(path, all_bands=True)) if geotiff.is_raster(path) and path.is_file() else \
        pil_to_array(load(path, "image", "check the path"))
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if channels is not None:
        try:
            arr = to_channels(arr, channels)
        except ValueError:
            raise PixelsegError(f"{path}: has {arr.shape[2]} channels but the model takes {channels}; "
                                "convert the image or train with matching --in-channels") from None
    return np.ascontiguousarray(arr)


def pil_to_array(im: Image.Image) -> np.ndarray:
    """A decoded image -> HxW (gray) or HxWx3 / HxWx4 uint8: 16-bit and float scaled to 8 bits, a palette
    image with transparency kept as RGBA (as an RGBA file is). The server decodes uploads through it too."""
    if im.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        a = np.asarray(im, dtype=np.float32)
        hi = 65535.0 if im.mode.startswith("I;16") else max(float(a.max(initial=0.0)), 1.0)
        return np.clip(a / hi * 255.0 + 0.5, 0, 255).astype(np.uint8)
    if im.mode in ("1", "L", "LA"):
        return np.asarray(im.convert("L"))
    if im.mode == "RGBA" or (im.mode == "P" and "transparency" in im.info):
        return np.asarray(im.convert("RGBA"))
    return np.asarray(im.convert("RGB"))


def read_mask(path: str | Path, color_channel: int | None = None) -> np.ndarray:
    """HxW class-index array (uint8 or uint16). A 3/4-channel mask is accepted only when its channels are
    equal (a gray mask saved as RGB), or when `color_channel` says which channel holds the index
    (the keras_segmentation convention). Anything else is a color-coded mask, which is not an index."""
    path = Path(path)
    if geotiff.is_raster(path) and path.is_file():
        return geotiff.read_raster_mask(_raster_gate(path))
    im = load(path, "mask", "add the mask or remove its image")
    if im.mode == "P":
        return np.asarray(im)  # palette PNG: the stored values are the indices
    if im.mode == "1":
        return np.asarray(im).astype(np.uint8)  # bilevel: stored 0/1 are the indices (convert("L") gives 0/255 = ignore)
    if im.mode == "L":
        return np.asarray(im)
    if im.mode in ("I;16", "I;16B", "I;16L", "I"):
        a = np.asarray(im)
        if a.min() < 0 or a.max() > 65535:
            raise PixelsegError(f"{path}: mask values outside 0..65535; store class indices")
        return a.astype(np.uint16) if a.dtype != np.uint16 else a
    if im.mode in ("RGB", "RGBA", "LA"):
        a = np.asarray(im)
        if im.mode == "LA":
            return np.ascontiguousarray(a[:, :, 0])
        rgb = a[:, :, :3]
        if color_channel is not None:
            return np.ascontiguousarray(rgb[:, :, color_channel])
        if (rgb[:, :, 0] == rgb[:, :, 1]).all() and (rgb[:, :, 0] == rgb[:, :, 2]).all():
            return np.ascontiguousarray(rgb[:, :, 0])
        raise PixelsegError(f"{path}: is a color-coded RGB mask, not class indices; save single-channel "
                            "index masks (pixel value = class index) or convert the color masks to indices")
    raise PixelsegError(f"{path}: mask mode {im.mode} is not supported; save it as an 8-bit, 16-bit or palette PNG")
