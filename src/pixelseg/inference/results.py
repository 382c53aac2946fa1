"""Prediction results for notebooks and scripts, one Result per image (as Ultralytics' Results):

    results = pixelseg.predict("runs/exp1", ["a.png", "b.png"])      # or a folder, arrays, a Predictor
    r = results[0]
    r.labels            # HxW class indices at the image's size
    r.probs             # KxHxW class probabilities (computed when first asked for)
    r.overlay(0.5)      # HxWx3 uint8: class colors over the image
    r.save("out/")      # out/a.png (palette label map, values = class indices) + out/a_overlay.png (legend)
    r.plot()            # a matplotlib Figure: image | overlay, with the classes present
    r.to_json()         # classes present with their pixel shares, sizes, source
    r                   # in Jupyter: the overlay with a legend (_repr_png_ / _repr_html_)

Arrays may be HxW, HxWxC (channels last, as PIL / OpenCV give them) or CxHxW (channels first, as torch gives
them: recognised when the first dimension is 1, 3 or 4 and the last is not); NxHxWxC and NxCxHxW batches are
split. A shape that fits both readings (3x4x3) is refused with the fix, never guessed.
"""
from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path

import numpy as np

from pixelseg.errors import PixelsegError
from pixelseg.inference.outputs import output_stems

_CHANNELS = (1, 3, 4)
REPR_MAX_SIDE = 1024            # Jupyter shows the picture at most this wide/high (the data stays full size)


class Result:
    """The prediction for one image. `source`: the file it came from, or None for an array."""

    def __init__(self, image: np.ndarray, labels: np.ndarray, classes, source: Path | None = None,
                 name: str = "image", predictor=None):
        self.image, self.labels, self.classes = image, labels, classes
        self.source, self.name = source, name
        self._predictor, self._probs = predictor, None

    def __repr__(self) -> str:
        h, w = self.labels.shape
        present = ", ".join(self.classes.names[i] for i in self._present())
        return f"Result({self.name!r}, {w}x{h}, classes present: {present or 'none'})"

    # -- data ---------------------------------------------------------------------------------------------
    @property
    def probs(self) -> np.ndarray:
        """K x H x W float32 class probabilities at the image's size (one more network pass, then kept)."""
        if self._probs is None:
            if self._predictor is None:
                raise PixelsegError("this Result has no model attached; get probabilities from pixelseg.predict")
            self._probs = np.asarray(self._predictor.probs([self.image])[0], np.float32)
        return self._probs

    def _counts(self) -> np.ndarray:
        n = self.classes.num_classes
        valid = self.labels < n
        return np.bincount(np.where(valid, self.labels, n).ravel().astype(np.intp), minlength=n + 1)[:n]

    def _present(self) -> list[int]:
        return [int(i) for i in np.flatnonzero(self._counts())]

    def summary(self) -> dict:
        counts, total = self._counts(), max(self.labels.size, 1)
        return {"source": str(self.source) if self.source else None, "name": self.name,
                "height": int(self.labels.shape[0]), "width": int(self.labels.shape[1]),
                "ignore_index": self.classes.ignore_index,
                "classes": [{"index": i, "name": self.classes.names[i], "color": list(self.classes.colors[i]),
                             "pixels": int(counts[i]), "share": round(float(counts[i]) / total, 6)}
                            for i in self._present()]}

    def to_json(self, indent: int | None = 2) -> str:
        """The summary as JSON: size, source and each class present with its pixel count and share."""
        return json.dumps(self.summary(), indent=indent)

    # -- pictures -----------------------------------------------------------------------------------------
    def overlay(self, alpha: float = 0.5, boundaries: bool = True) -> np.ndarray:
        """HxWx3 uint8 RGB: the class colors blended over the image (pixelseg.viz.overlay)."""
        from pixelseg.viz.overlay import overlay
        return overlay(self.image, self.labels, self.classes.colors, alpha, self.classes.ignore_index, boundaries)

    def _legend_picture(self, alpha: float = 0.5) -> np.ndarray:
        from pixelseg.viz.overlay import add_legend
        counts, total = self._counts(), max(self.labels.size, 1)
        present = self._present()
        extra = {i: f"{100 * counts[i] / total:.1f}%" for i in present}
        return add_legend(self.overlay(alpha), self.classes.names, self.classes.colors, np.array(present, int), extra)

    def save(self, directory: str | Path, overlay: bool = True, alpha: float = 0.5) -> list[Path]:
        """The files `pixelseg predict` writes for this image (inference/outputs.py): DIR/<name>.png (palette PNG
        whose values are the class indices), DIR/<name>_overlay.png, and <name>.tif for a GeoTIFF input, each
        written atomically; returns the paths."""
        from pixelseg.inference.outputs import PredictionWriter
        out = Path(directory)
        if out.exists() and not out.is_dir():
            raise PixelsegError(f"{out}: is a file; give a folder to save results in (it is created if missing)")
        image = self.image if self.image.ndim == 3 else self.image[:, :, None]
        return PredictionWriter(out, self.classes, overlay, alpha).write(self.source, self.name, image, self.labels)

    def plot(self, alpha: float = 0.5, figsize: tuple[float, float] | None = None):
        """A matplotlib Figure: the image and the overlay side by side, the classes present as a legend.
        Not attached to pyplot (no global state): in Jupyter it shows when it is the cell's value."""
        from matplotlib.figure import Figure
        from matplotlib.patches import Patch
        h, w = self.labels.shape
        fig = Figure(figsize=figsize or (10, max(2.5, 5 * h / max(w, 1)) + 0.8), layout="constrained")
        axes = fig.subplots(1, 2)
        for ax, pic, title in zip(axes, (_rgb(self.image), self.overlay(alpha)), ("image", "prediction")):
            ax.imshow(pic)
            ax.set_title(title)
            ax.axis("off")
        counts, total = self._counts(), max(self.labels.size, 1)
        handles = [Patch(color=np.array(self.classes.colors[i]) / 255,
                         label=f"{self.classes.names[i]} {100 * counts[i] / total:.1f}%") for i in self._present()]
        if handles:
            fig.legend(handles=handles, loc="outside lower center", ncols=min(len(handles), 4), frameon=False)
        fig.suptitle(self.name)
        return fig

    def _repr_png_(self) -> bytes:
        from PIL import Image
        im = Image.fromarray(self._legend_picture())
        im.thumbnail((REPR_MAX_SIDE, REPR_MAX_SIDE))
        buf = io.BytesIO()
        im.save(buf, format="PNG")
        return buf.getvalue()

    def _repr_html_(self) -> str:
        png = base64.b64encode(self._repr_png_()).decode("ascii")
        rows = "".join(
            f"<tr><td><span style='display:inline-block;width:1em;height:1em;background:rgb{tuple(c['color'])}'>"
            f"</span> {html.escape(c['name'])}</td><td style='text-align:right'>{100 * c['share']:.1f}%</td></tr>"
            for c in self.summary()["classes"])
        h, w = self.labels.shape
        return (f"<figure style='margin:0'><img src='data:image/png;base64,{png}' style='max-width:100%' "
                f"alt='{html.escape(self.name)}: prediction overlay'><figcaption>{html.escape(self.name)} "
                f"({w}x{h})<table><tr><th>class</th><th>pixels</th></tr>{rows}</table></figcaption></figure>")


def _rgb(image: np.ndarray) -> np.ndarray:
    if image.ndim == 3 and image.shape[2] == 1:
        return image[:, :, 0]
    return image[:, :, :3] if image.ndim == 3 else image


# -- inputs ---------------------------------------------------------------------------------------------------
def channels_last(arr: np.ndarray, what: str = "array") -> np.ndarray:
    """HxW or HxWxC as given; CxHxW (first dim 1/3/4, last dim not) moved to HxWxC; ambiguous shapes refused."""
    if arr.ndim == 2:
        return arr
    if arr.ndim != 3:
        raise PixelsegError(f"{what} of shape {arr.shape}: give HxW, HxWxC or CxHxW images (NxHxWxC for a batch)")
    first, last = arr.shape[0] in _CHANNELS, arr.shape[2] in _CHANNELS
    if first and last:
        raise PixelsegError(f"{what} of shape {arr.shape} reads as channels first and channels last; pass it as "
                            "HxWxC (np.moveaxis(a, 0, -1) if it is CxHxW) or as a list of HxWxC arrays")
    if first:
        return np.ascontiguousarray(np.moveaxis(arr, 0, -1))
    if last:
        return arr
    raise PixelsegError(f"{what} of shape {arr.shape}: no dimension of 1, 3 or 4 channels; give HxWxC or CxHxW")


def gather(source, channels: int) -> list[tuple[np.ndarray, Path | None, str]]:
    """(image, file or None, name) for a path, a folder, an array, a PIL image, a tensor or a list of those."""
    from pixelseg.data.io import read_image
    from pixelseg.data.preprocess import list_inputs

    items = list(source) if isinstance(source, (list, tuple)) else [source]
    out: list[tuple[np.ndarray, Path | None, str]] = []
    for item in items:
        if isinstance(item, (str, Path)):
            out += [(read_image(p, channels), p, p.stem) for p in list_inputs([item])]
            continue
        if hasattr(item, "detach"):                       # a torch tensor
            item = item.detach().cpu().numpy()
        arr = np.asarray(item)                            # PIL images too
        if arr.dtype == object or arr.ndim < 2:
            raise PixelsegError(f"cannot predict on a {type(item).__name__}; give image paths, a folder, or arrays")
        batch = arr if arr.ndim == 4 else arr[None]
        for a in batch:
            out.append((channels_last(a, "image array" if arr.ndim < 4 else "batch item"), None, ""))
    files = [p for _, p, _ in out if p is not None]
    named = dict(zip(files, output_stems(files)))       # the rule predict's files are named by
    width = len(str(len(out) - 1))
    return [(a, p, named[p] if p is not None else f"image_{i:0{width}d}") for i, (a, p, _) in enumerate(out)]


def predict(predictor, source, batch_size: int = 4) -> list[Result]:
    """One Result per image of `source`, in order, with `predictor` (a pixelseg.inference.Predictor)."""
    items = gather(source, predictor.info.preprocessing.in_channels)
    if not items:
        raise PixelsegError("nothing to predict: the list of images is empty")
    results = []
    for i in range(0, len(items), batch_size):
        chunk = items[i:i + batch_size]
        labels = predictor.predict_batch([a for a, _, _ in chunk])
        results += [Result(a, lab, predictor.classes, p, name, predictor) for (a, p, name), lab in zip(chunk, labels)]
    return results
