"""Pictures of label maps: colored masks, palette PNGs, overlays with a legend, side-by-side panels.

Everything takes and returns numpy arrays (uint8 RGB, HxWx3) and is vectorized: a 4000x4000 label
map colorizes in a fraction of a second. Label conventions are the package's: a class index per
pixel, `ignore_index` (255 by default) for pixels that belong to no class.
"""
from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageDraw, UnidentifiedImageError

from pixelseg.errors import PixelsegError
from pixelseg.viz.drawing import PANEL_BG, _as_rgb, _draw_text, _fit, _font, _font_size, _text_width, side_by_side
from pixelseg.fileio import atomic_path

IGNORE_COLOR = (255, 255, 255)   # how ignore pixels look in colored label maps and palette PNGs
SWATCH_BORDER = (110, 110, 110)  # so black and white swatches stay visible on the panel

__all__ = ["colorize", "save_label_png", "read_label_png", "overlay", "add_legend", "save_overlay",
           "side_by_side", "IGNORE_COLOR"]


# ----------------------------------------------------------------------------------------- checks

def _colors_array(colors) -> np.ndarray:
    arr = np.asarray(colors)
    if arr.ndim != 2 or arr.shape[1] != 3 or len(arr) == 0:
        raise ValueError(f"colors must be a non-empty list of (r, g, b) triples, got shape {arr.shape}")
    if not np.issubdtype(arr.dtype, np.integer) or arr.min() < 0 or arr.max() > 255:
        raise ValueError("colors must be integer (r, g, b) triples in 0..255")
    return arr.astype(np.uint8)


def _as_label(label) -> np.ndarray:
    label = np.asarray(label)
    if label.ndim == 3 and label.shape[2] == 1:
        label = label[:, :, 0]
    if label.ndim != 2:
        raise ValueError(f"a label map must be HxW (one class index per pixel), got shape {label.shape}")
    if label.dtype == bool:
        label = label.astype(np.uint8)
    if not np.issubdtype(label.dtype, np.integer):
        raise ValueError(f"a label map must hold integer class indices, got dtype {label.dtype}; "
                         "take argmax of the scores, or .astype(np.int64) if the values are whole numbers")
    return label


def _bad_values_error(values, n: int, ignore_index: int) -> ValueError:
    values = np.unique(np.asarray(values))
    shown = ", ".join(str(v) for v in values[:5]) + (", ..." if len(values) > 5 else "")
    return ValueError(f"label map has value(s) {shown} that are neither a class index (0..{n - 1}) "
                      f"nor the ignore index {ignore_index}")


def _ignore_mask(label: np.ndarray, n: int, ignore_index: int) -> np.ndarray | None:
    """Pixels equal to the ignore index, or None when there are none. An ignore index that is also a
    class index (e.g. 256 VOC colors with ignore 255) is a class: the class color wins."""
    if 0 <= ignore_index < n:
        return None
    mask = label == ignore_index
    return mask if mask.any() else None


def _lookup(label: np.ndarray, n: int, ignore_index: int) -> np.ndarray:
    """Check every value is a class index or the ignore index; return indices into a table of
    n class colors plus one ignore color at position n."""
    if label.size == 0:
        return label
    lo, hi = int(label.min()), int(label.max())
    if lo >= 0 and hi < n:
        return label
    ignore = _ignore_mask(label, n, ignore_index)
    outside = (label < 0) | (label >= n)
    bad = outside if ignore is None else outside & ~ignore
    if bad.any():
        raise _bad_values_error(label[bad], n, ignore_index)
    return label if ignore is None else np.where(ignore, n, label)


# ----------------------------------------------------------------------------------- label maps

def colorize(label: np.ndarray, colors, ignore_index: int = 255,
             ignore_color=IGNORE_COLOR) -> np.ndarray:
    """HxW class indices -> HxWx3 uint8 colors; ignore pixels get `ignore_color`.

    A value that is neither a class index nor the ignore index raises ValueError: a silent
    black pixel would hide a label-convention bug.
    """
    label = _as_label(label)
    cols = _colors_array(colors)
    n = len(cols)
    ignore_color = np.asarray(ignore_color, np.uint8).reshape(3)
    if label.size == 0:
        return np.zeros(label.shape + (3,), np.uint8)
    lo, hi = int(label.min()), int(label.max())
    if lo >= 0 and hi <= 255:
        # the common case (<= 255 classes, ignore 255): a 256-entry table applied by cv2.LUT, ~10x
        # faster than numpy fancy indexing on a 4000x4000 map
        lab8 = label.astype(np.uint8, copy=False)
        lut = np.zeros((256, 3), np.uint8)
        lut[:min(n, 256)] = cols[:256]
        if hi >= n:
            counts = np.bincount(lab8.ravel(), minlength=256)
            bad = np.flatnonzero(counts[n:]) + n
            bad = bad[bad != ignore_index]
            if len(bad):
                raise _bad_values_error(bad, n, ignore_index)
            if n <= ignore_index <= 255:
                lut[ignore_index] = ignore_color
        return cv2.LUT(cv2.merge([lab8, lab8, lab8]), lut.reshape(256, 1, 3))
    idx = _lookup(label, n, ignore_index).astype(np.intp, copy=False)
    return np.vstack([cols, ignore_color[None]])[idx]


def _palette(colors: np.ndarray, ignore_index: int, ignore_color) -> list[int]:
    pal = np.zeros((256, 3), np.uint8)
    pal[:min(len(colors), 256)] = colors[:256]
    if len(colors) <= ignore_index <= 255:
        pal[ignore_index] = ignore_color
    return pal.ravel().tolist()


def label_png_image(label: np.ndarray, colors, ignore_index: int = 255, ignore_color=IGNORE_COLOR,
                    where: str = "label map") -> Image.Image:
    """A label map as the image a label PNG holds: palette ('P') whose pixel values ARE the class indices and
    whose palette holds the class colors (the ignore index gets `ignore_color`). With more than 256 classes,
    or any value above 255, 16-bit grayscale ('I;16') instead: no palette, the values still the indices.
    The one label-PNG encoder: files (save_label_png) and bytes (label_png_bytes, what serve answers)."""
    label = _as_label(label)
    cols = _colors_array(colors)
    _lookup(label, len(cols), ignore_index)          # validates the values
    lo = int(label.min()) if label.size else 0
    hi = int(label.max()) if label.size else 0
    if lo < 0:
        raise ValueError(f"{where}: ignore index {ignore_index} is negative and cannot be stored in a PNG; "
                         "map it to 255 (the convention) before saving")
    if hi > 65535:
        raise ValueError(f"{where}: label value {hi} does not fit a 16-bit PNG")
    if hi > 255 or len(cols) > 256:
        return Image.fromarray(np.ascontiguousarray(label, dtype=np.uint16))   # mode 'I;16'
    im = Image.fromarray(np.ascontiguousarray(label, dtype=np.uint8))           # mode 'L' ...
    im.putpalette(_palette(cols, ignore_index, ignore_color))                   # ... becomes 'P', values kept
    return im


def save_label_png(path, label: np.ndarray, colors, ignore_index: int = 255,
                   ignore_color=IGNORE_COLOR) -> None:
    """Write a label map as a label PNG (label_png_image), atomically. read_label_png reads it back."""
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise ValueError(f"{path}: label maps are written as .png (lossless); a lossy format would change class indices")
    im = label_png_image(label, colors, ignore_index, ignore_color, where=str(path))
    with atomic_path(path) as tmp:
        im.save(tmp, format="PNG")


def label_png_bytes(label: np.ndarray, colors, ignore_index: int = 255, compress_level: int = 6) -> bytes:
    """The bytes of the file save_label_png writes (zlib `compress_level`: 1 is ~3x cheaper for a server)."""
    import io
    buf = io.BytesIO()
    label_png_image(label, colors, ignore_index).save(buf, format="PNG", compress_level=compress_level)
    return buf.getvalue()


def read_label_png(path) -> np.ndarray:
    """Class indices from a label PNG: a palette PNG gives its indices (not its colors), a grayscale
    one (8 or 16 bit) its values. An RGB image is refused: its colors are not indices."""
    path = Path(path)
    try:
        with Image.open(path) as im:
            im.load()
            mode = im.mode
            if mode in ("P", "L", "I;16", "I;16B", "I;16L", "I"):
                arr = np.array(im)
            elif mode == "1":
                arr = np.array(im).astype(np.uint8)
            else:
                raise PixelsegError(
                    f"{path}: is a {mode} image, not a label map; expected a palette or grayscale PNG whose "
                    "pixel values are class indices (as written by `pixelseg predict`)")
    except FileNotFoundError:
        raise PixelsegError(f"{path}: not found") from None
    except (UnidentifiedImageError, OSError, SyntaxError) as e:
        raise PixelsegError(f"{path}: cannot be read as an image ({e}); re-create or remove the file") from None
    if arr.dtype.byteorder == ">":
        arr = arr.astype(arr.dtype.newbyteorder("="))
    return arr


# -------------------------------------------------------------------------------------- overlays

def _boundary_mask(label: np.ndarray, thickness: int) -> np.ndarray:
    """Pixels where the class changes within `thickness` pixels (both sides of every edge)."""
    if label.size == 0:
        return np.zeros(label.shape, bool)
    lo, hi = int(label.min()), int(label.max())
    if lo >= 0 and hi <= 255:
        lab = label.astype(np.uint8, copy=False)
    elif lo >= 0 and hi <= 65535:
        lab = label.astype(np.uint16, copy=False)
    else:
        lab = label.astype(np.float32)               # OpenCV morphology has no int32/int64
    k = 2 * thickness + 1
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE if thickness > 1 else cv2.MORPH_RECT, (k, k))
    return cv2.morphologyEx(lab, cv2.MORPH_GRADIENT, kernel) > 0


def _boundary_thickness(h: int, w: int) -> int:
    # about 1 px per side per 1000 px: stays thin yet visible once a big image is scaled to a screen
    return max(1, round(max(h, w) / 1000))


def overlay(image: np.ndarray, label: np.ndarray, colors, alpha: float = 0.5, ignore_index: int = 255,
            boundaries: bool = True) -> np.ndarray:
    """Blend class colors over an image: HxW gray or HxWx3/4 uint8 -> HxWx3 uint8.

    Every class (background included) is blended with weight `alpha`; ignore pixels keep the image.
    With `boundaries`, the pixels along class edges are drawn in their class color at full strength,
    so regions stay readable where the fill is faint.
    """
    img = _as_rgb(image)
    label = _as_label(label)
    if label.shape != img.shape[:2]:
        raise ValueError(f"label map is {label.shape[1]}x{label.shape[0]} but the image is "
                         f"{img.shape[1]}x{img.shape[0]}; they must have the same size")
    alpha = float(alpha)
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in 0..1, got {alpha}")
    colored = colorize(label, colors, ignore_index, ignore_color=(0, 0, 0))
    out = cv2.addWeighted(img, 1.0 - alpha, colored, alpha, 0.0)
    if boundaries:
        edge = _boundary_mask(label, _boundary_thickness(*label.shape))
        np.copyto(out, colored, where=edge[:, :, None])
    ignore = _ignore_mask(label, len(_colors_array(colors)), ignore_index)
    if ignore is not None:
        np.copyto(out, img, where=ignore[:, :, None])
    return out


# --------------------------------------------------------------------------------------- legend

def add_legend(image: np.ndarray, names, colors, class_ids, extra: dict[int, str] | None = None) -> np.ndarray:
    """Append a legend panel (a swatch and the name for each id in `class_ids`, optionally followed by
    `extra[id]`, e.g. '23.4%') to the right of the image, or below it when the image is wide.

    Font size follows the image size; many classes wrap into columns; the canvas grows (padding the
    image with the panel color) when the legend needs more room than the image offers.
    """
    img = _as_rgb(image)
    h, w = img.shape[:2]
    names = list(names)
    cols = _colors_array(colors)
    ids = [int(i) for i in class_ids]
    for i in ids:
        if not 0 <= i < min(len(names), len(cols)):
            raise ValueError(f"class id {i} has no name/color (the table has {min(len(names), len(cols))} classes)")
    if not ids:
        return img.copy()
    extra = {int(k): str(v) for k, v in (extra or {}).items()}

    fs = _font_size(h, w)
    font = _font(fs)
    row_h = round(fs * 1.55)
    sw = round(fs * 1.05)                            # swatch side
    pad = round(fs * 0.8)
    gap = round(fs * 0.5)
    border = max(1, round(fs / 16))
    max_name_w = fs * 14                             # about 25 characters; longer names get an ellipsis
    labels = [_fit(font, names[i], max_name_w) for i in ids]
    extras = [extra.get(i, "") for i in ids]
    name_w = max(_text_width(font, t) for t in labels)
    extra_w = max(_text_width(font, t) for t in extras)
    col_w = sw + gap + name_w + (2 * gap + extra_w if extra_w else 0) + 2 * gap
    n = len(ids)

    below = w > 1.5 * h
    if below:
        n_cols = max(1, min(n, (w - 2 * pad) // col_w))
        rows = math.ceil(n / n_cols)
    else:
        # the legend may be taller than a small image: give it room for a dozen rows before wrapping
        avail_h = max(h, min(n, 12) * row_h + 2 * pad)
        rows_fit = max(1, (avail_h - 2 * pad) // row_h)
        n_cols = math.ceil(n / rows_fit)
        rows = math.ceil(n / n_cols)                 # balance the columns
    panel_w = n_cols * col_w + 2 * pad - 2 * gap
    panel_h = rows * row_h + 2 * pad

    if below:
        canvas = Image.new("RGB", (max(w, panel_w), h + panel_h), PANEL_BG)
        ox, oy = pad, h + pad
    else:
        canvas = Image.new("RGB", (w + panel_w, max(h, panel_h)), PANEL_BG)
        ox, oy = w + pad, pad
    canvas.paste(Image.fromarray(img), (0, 0))
    draw = ImageDraw.Draw(canvas)
    for k, (i, text, ex) in enumerate(zip(ids, labels, extras)):
        c, r = divmod(k, rows)                       # fill column by column
        x = ox + c * col_w
        y_mid = oy + r * row_h + row_h / 2
        y0 = round(y_mid - sw / 2)
        draw.rectangle([x, y0, x + sw - 1, y0 + sw - 1], fill=tuple(int(v) for v in cols[i]),
                       outline=SWATCH_BORDER, width=border)
        # the border must not hide the color of a tiny swatch
        inner = sw - 2 * border
        if inner < 2:
            draw.rectangle([x, y0, x + sw - 1, y0 + sw - 1], fill=tuple(int(v) for v in cols[i]))
        _draw_text(draw, x + sw + gap, y_mid, text, font)
        if ex:
            _draw_text(draw, x + col_w - 2 * gap, y_mid, ex, font, align="r")
    return np.asarray(canvas).copy()


def _pct(share: float) -> str:
    return "<0.1%" if 0 < share < 0.05 else f"{share:.1f}%"


def _write_picture(path, rgb: np.ndarray) -> None:
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".png":
        fmt, opts = "PNG", {}
    elif suffix in (".jpg", ".jpeg"):
        fmt, opts = "JPEG", {"quality": 95}
    else:
        raise ValueError(f"{path}: write pictures as .png or .jpg")
    im = Image.fromarray(rgb)
    with atomic_path(path) as tmp:
        im.save(tmp, format=fmt, **opts)


def save_overlay(path, image, label, class_table, alpha: float = 0.5, legend: bool = True) -> None:
    """Overlay the label map on the image and, with `legend`, list the classes present with their share
    of the image's pixels; written atomically as .png or .jpg (by the suffix of `path`)."""
    label = _as_label(label)
    out = overlay(image, label, class_table.colors, alpha, class_table.ignore_index)
    if legend:
        n = class_table.num_classes
        valid = (label >= 0) & (label < n)
        counts = np.bincount(np.where(valid, label, n).ravel().astype(np.intp), minlength=n + 1)[:n]
        present = np.flatnonzero(counts)
        total = max(label.size, 1)
        extra = {int(i): _pct(100.0 * counts[i] / total) for i in present}
        out = add_legend(out, class_table.names, class_table.colors, present, extra)
    _write_picture(path, out)


def to_png8(values) -> np.ndarray:
    """A map in [0, 1] as uint8 0..255 (value * 255, rounded; NaN -> 0) for an 8-bit grayscale PNG.
    Decoding is byte / 255, within 1/510 of the value."""
    v = values.detach().cpu().numpy() if hasattr(values, "detach") else np.asarray(values)   # a tensor or an array
    v = np.nan_to_num(v.astype(np.float32), nan=0.0)
    return np.clip(np.rint(v * 255.0), 0, 255).astype(np.uint8)
