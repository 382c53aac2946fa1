"""Drawing text and panels for pixelseg's pictures (legends, galleries, reports): fonts found on the system
with a fallback, text fitted to a width, and images placed side by side under titles."""
from __future__ import annotations

import functools
import importlib.util
import math
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont

PANEL_BG = (255, 255, 255)       # legend / title background
TEXT_COLOR = (25, 25, 25)


def _as_rgb(image) -> np.ndarray:
    """uint8 gray (HxW / HxWx1), RGB or RGBA (alpha dropped) -> contiguous HxWx3 uint8."""
    image = np.asarray(image)
    if image.dtype != np.uint8:
        raise ValueError(f"images must be uint8 (0..255), got {image.dtype}; scale and convert with .astype(np.uint8)")
    if image.ndim == 2:
        return np.repeat(image[:, :, None], 3, axis=2)
    if image.ndim == 3 and image.shape[2] == 1:
        return np.repeat(image, 3, axis=2)
    if image.ndim == 3 and image.shape[2] == 2:        # gray + alpha
        return np.repeat(image[:, :, :1], 3, axis=2)
    if image.ndim == 3 and image.shape[2] in (3, 4):
        return np.ascontiguousarray(image[:, :, :3])
    raise ValueError(f"images must be HxW, HxWx3 or HxWx4, got shape {image.shape}")


# ----------------------------------------------------------------------------------------- text

def _font_candidates() -> list[str]:
    # DejaVu first: Pillow's built-in font has no accented letters (é, ß, ü), common in class names.
    paths = []
    spec = importlib.util.find_spec("matplotlib")
    if spec is not None and spec.submodule_search_locations:
        for loc in spec.submodule_search_locations:
            paths.append(str(Path(loc) / "mpl-data" / "fonts" / "ttf" / "DejaVuSans.ttf"))
    paths += ["/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf", "/usr/share/fonts/dejavu/DejaVuSans.ttf",
              "/usr/share/fonts/TTF/DejaVuSans.ttf"]
    return [p for p in paths if Path(p).is_file()]


@functools.lru_cache(maxsize=64)
def _font(size: int):
    for p in _font_candidates():
        try:
            return ImageFont.truetype(p, size)
        except OSError:
            continue
    try:
        return ImageFont.load_default(size=size)     # Pillow >= 10.1 with FreeType
    except (TypeError, ImportError, OSError, AttributeError):
        return ImageFont.load_default()              # fixed-size bitmap: small, but never a crash


def _font_size(h: int, w: int) -> int:
    # Images are looked at scaled to fit a screen, so text scales with the long side;
    # 12 px is the floor that stays legible next to a 64 px thumbnail.
    return max(12, round(max(h, w) / 40))


def _text_width(font, text: str) -> int:
    return math.ceil(font.getlength(text)) if text else 0


def _fit(font, text: str, max_w: int) -> str:
    """`text`, shortened with an ellipsis to at most max_w pixels wide."""
    if _text_width(font, text) <= max_w:
        return text
    lo, hi = 0, len(text)
    while lo < hi:                                   # longest prefix that fits with the ellipsis
        mid = (lo + hi + 1) // 2
        if _text_width(font, text[:mid] + "…") <= max_w:
            lo = mid
        else:
            hi = mid - 1
    return text[:lo] + "…" if lo else ""


def _draw_text(draw: ImageDraw.ImageDraw, x: float, y_mid: float, text: str, font, align: str = "l") -> None:
    """Draw `text` vertically centred on y_mid; x is its left ('l'), centre ('m') or right ('r') end."""
    try:
        draw.text((x, y_mid), text, font=font, fill=TEXT_COLOR, anchor=align + "m")
    except (ValueError, TypeError):                  # bitmap fonts take no anchor
        l, t, r, b = draw.textbbox((0, 0), text, font=font)
        x0 = {"l": x, "m": x - (r - l) / 2, "r": x - (r - l)}[align]
        draw.text((x0, y_mid - (t + b) / 2), text, font=font, fill=TEXT_COLOR)


# ----------------------------------------------------------------------------------------- panels

def _resize_to_height(img: np.ndarray, height: int) -> np.ndarray:
    h, w = img.shape[:2]
    if h == height:
        return img
    new_w = max(1, round(w * height / h))
    # NEAREST when enlarging keeps label colors pure (no invented in-between classes)
    interp = cv2.INTER_NEAREST if height > h else cv2.INTER_AREA
    return cv2.resize(img, (new_w, height), interpolation=interp)


def side_by_side(panels: list[np.ndarray], titles: list[str]) -> np.ndarray:
    """Panels (e.g. image | ground truth | prediction) in a row, each under its title -> HxWx3 uint8.

    Panels of different heights are scaled to the tallest (keeping their aspect ratio).
    """
    if not panels:
        raise ValueError("side_by_side needs at least one panel")
    if len(titles) != len(panels):
        raise ValueError(f"got {len(panels)} panels but {len(titles)} titles; give one title per panel")
    rgbs = [_as_rgb(p) for p in panels]
    height = max(p.shape[0] for p in rgbs)
    rgbs = [_resize_to_height(p, height) for p in rgbs]
    fs = _font_size(height, max(p.shape[1] for p in rgbs))
    font = _font(fs)
    title_h = round(fs * 1.8)
    gap = max(2, fs // 3)
    total_w = sum(p.shape[1] for p in rgbs) + gap * (len(rgbs) - 1)
    canvas = Image.new("RGB", (total_w, title_h + height), PANEL_BG)
    draw = ImageDraw.Draw(canvas)
    x = 0
    for p, title in zip(rgbs, titles):
        pw = p.shape[1]
        canvas.paste(Image.fromarray(p), (x, title_h))
        text = _fit(font, str(title), pw - 4)
        if text:
            _draw_text(draw, x + pw / 2, title_h / 2, text, font, align="m")
        x += pw + gap
    return np.asarray(canvas).copy()
