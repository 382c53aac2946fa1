"""Predictor: a run folder (or a file `pixelseg export` wrote) in, label maps at the input's size out.

Preprocessing comes only from the run folder (model.json) or the exported file's metadata, so prediction
cannot drift from training: the input is converted to the model's channel count, resized to the training
size, normalized; the logits are resized back to the original size (bilinear) and the argmax taken there.

Modes, on every backend (torch / onnxruntime / openvino, see backends.py):
    whole image     the default, as above
    sliding window  tile=(h, w): windows at native resolution, Gaussian blending (tiling.py); tile=True: windows
                    of the training size at the training scale
An input far from the training images' size gets a PixelsegWarning (scale_warning) naming the fix.
    TTA             tta=TTA(flip, scales): probabilities averaged over the views (tta.py)
"""
from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from pixelseg.data.io import read_image
# preprocess / as_channels / list_inputs live with the data (export and calibration use them too); they
# stay importable from here as part of the predictor's API
from pixelseg.data.preprocess import as_channels, list_inputs, preprocess
from pixelseg.config import check_overlap, check_threads
from pixelseg.errors import PixelsegError, PixelsegWarning
from pixelseg.inference.outputs import PredictionWriter, output_stems
from pixelseg.inference.backends import EXPORTED_SUFFIXES, make_backend, resolve_backend
from pixelseg.inference.tiling import scaled_bands, scaled_input, sliding_window_bands, too_big
from pixelseg.inference.tta import TTA, tta_probs
from pixelseg.models.outputs import argmax, resize_logits
from pixelseg.run.folder import RunFolder, pick_device

SCALE_WARN = 2.0    # an input over 2x larger or smaller (linear) than the training images is warned about
MAX_SCALE_NOTES = 64   # distinct flagged sizes a Predictor remembers (and warns about)


class Predictor:
    """Label maps for images, from a run folder or an exported .onnx / OpenVINO .xml file.

    backend: "torch" (default; exactly what `pixelseg evaluate` scores), "onnxruntime", "openvino", or
    "auto" (the fastest available for the device). precision: fp32, bf16 (CPU with bf16 support / GPU),
    fp16 (GPU). tile: (h, w) sliding window at native resolution (True = the training size), with
    `overlap` as a share of the window. tta: a TTA(flip, scales) to average over augmented views.
    """

    def __init__(self, run, device: str = "auto", backend: str = "torch", *, precision: str = "fp32",
                 threads: int | None = None, tile=None, overlap: float = 0.25, tta: TTA | None = None,
                 window_batch: int = 4):
        # the settings first, so that a bad one is refused before the model loads (issue 27)
        check_threads(threads)
        if isinstance(tile, int) and not isinstance(tile, bool):
            tile = (tile, tile)
        if tile is not None and tile is not True and (len(tile) != 2 or min(tile) < 8):
            raise PixelsegError(f"--tile {' '.join(map(str, tile))}: give the window as H W (or one value), each "
                                f"at least 8 pixels")
        check_overlap(overlap)
        self.device = pick_device(device)
        if threads:
            torch.set_num_threads(threads)
        path = Path(run)
        exported = path.suffix.lower() in EXPORTED_SUFFIXES and not path.is_dir()
        name = resolve_backend(backend, self.device, precision, exported=exported)
        if exported:
            from pixelseg.deploy.metadata import read_exported
            self.info = read_exported(path)
            self.model = None
            self.backend = make_backend(name, self.device, path=path, threads=threads, precision=precision)
        else:
            self.info = RunFolder(run).info()
            self.model = self.info.load_model(self.device)
            self.backend = make_backend(name, self.device, model=self.model, info=self.info, threads=threads,
                                        precision=precision)
        # tile=True: windows of the training size at the training scale (the images were resized by
        # Preprocessing.stretch_scale on the way in: windows are too), or the training crop of a run at a scale
        self.tile_at_scale = tile is True
        if tile is True:
            tile = self.info.preprocessing.image_size
        self.tile = tuple(int(v) for v in tile) if tile is not None else None
        self.overlap, self.tta, self.window_batch = overlap, tta, window_batch
        self.scale_notes: dict[tuple[int, int], list] = {}   # flagged input size -> [warning, first input, count]
        self._names: list[str] | None = None                 # inputs_named: the files of the next arrays

    def __repr__(self) -> str:
        info, pre = self.info, self.info.preprocessing
        names = list(info.classes.names)
        shown = ", ".join(names[:6]) + (f", ... ({len(names)})" if len(names) > 6 else "")
        if pre.resize == "scale":
            how = f"at scale {pre.scale:g}, windows of {pre.image_size[0]}x{pre.image_size[1]}"
        else:
            how = f"resized to {pre.image_size[0]}x{pre.image_size[1]}" + (
                f" (trained from ~{pre.source_size[0]}x{pre.source_size[1]})" if pre.source_size else "")
        extra = "".join([f", tile={self.tile}" if self.tile else "", f", tta={self.tta}" if self.tta else "",
                         f", temperature={info.temperature:g}" if info.temperature != 1.0 else ""])
        model = info.model + (f"/{info.encoder}" if info.encoder else "")
        return (f"Predictor({str(info.path)!r}, model={model}, classes=[{shown}], input {pre.in_channels} ch "
                f"{how}, backend={self.backend_name}, device={self.device}{extra})")

    @property
    def classes(self):
        return self.info.classes

    @property
    def backend_name(self) -> str:
        return self.backend.name

    # -- the network, one batch of normalized inputs at a time -------------------------------------------
    def _probs(self, x: torch.Tensor) -> torch.Tensor:
        if self.tta is not None:
            return tta_probs(self.backend, x, self.tta)
        return torch.softmax(self.backend(x).float().cpu(), 1)

    def _scores(self, x: torch.Tensor) -> torch.Tensor:
        """Logits; with TTA the log of the averaged probabilities (same argmax, softmax gives them back)."""
        if self.tta is not None:
            return tta_probs(self.backend, x, self.tta).clamp_min(1e-12).log()
        return self.backend(x).float()

    def _whole(self, arrays: list[np.ndarray]) -> list[torch.Tensor]:
        pre = self.info.preprocessing
        if pre.resize == "scale":    # each image at the training scale; same-size images share a batch
            if len({a.shape for a in arrays}) > 1:
                return [t for a in arrays for t in self._whole([a])]
            x = torch.stack([scaled_input(as_channels(im, pre.in_channels), pre) for im in arrays])
        else:
            x = torch.stack([preprocess(im, pre) for im in arrays])
        scores = self._scores(x)
        return [resize_logits(scores[i:i + 1], im.shape[:2])[0].cpu() for i, im in enumerate(arrays)]

    def _windowed(self, image: np.ndarray) -> bool:
        """Sliding windows: asked for (tile), or at the training scale an image over the memory budget."""
        pre = self.info.preprocessing
        return self.tile is not None or (pre.resize == "scale" and too_big(image.shape, pre, self.device))

    def _bands(self, image: np.ndarray) -> Iterator[tuple[int, int, torch.Tensor]]:
        pre = self.info.preprocessing
        as_channels(image[:1, :1], pre.in_channels)   # a wrong channel count fails before any work
        window = self.tile or tuple(pre.image_size)
        at = pre.stretch_scale
        if self.tile_at_scale and at is not None and abs(at - 1) > 0.05:
            pre = replace(pre, resize="scale", scale=at)
        if pre.resize == "scale":
            return scaled_bands(image, self._probs, pre, self.classes.num_classes, window, self.overlap,
                                self.window_batch)
        return sliding_window_bands(image, self._probs, pre, self.classes.num_classes, window, self.overlap,
                                    self.window_batch)

    def _tiled_probs(self, image: np.ndarray) -> torch.Tensor:
        return torch.cat([p for _, _, p in self._bands(image)], dim=1)

    # -- public API ------------------------------------------------------------------------------------------
    @torch.inference_mode()
    def predict_logits(self, images: list[np.ndarray]) -> list[torch.Tensor]:
        """K x H x W scores (float32, CPU) for each image at its own size: logits, or with TTA / tiling the log
        of the averaged probabilities."""
        arrays = [self._as_array(im) for im in images]
        return [self._tiled_probs(a).clamp_min(1e-12).log() if self._windowed(a) else self._whole([a])[0]
                for a in arrays] if any(map(self._windowed, arrays)) else self._whole(arrays)

    def predict(self, image) -> np.ndarray:
        """image: path, PIL image or HxW(xC) uint8 array -> HxW class indices at the original size."""
        return self.predict_batch([image])[0]

    @torch.inference_mode()
    def predict_batch(self, images) -> list[np.ndarray]:
        arrays = [self._as_array(im) for im in images]
        dtype = np.uint8 if self.classes.num_classes <= 256 else np.uint16
        fast = self._labels_in_graph(arrays)
        if fast is not None:
            return list(fast.astype(dtype, copy=False))
        if not any(map(self._windowed, arrays)):
            return [argmax(lg, 0).numpy().astype(dtype) for lg in self._whole(arrays)]
        out = []
        for a in arrays:   # band by band: the probabilities of the whole image never exist at once
            if not self._windowed(a):
                out.append(argmax(self._whole([a])[0], 0).numpy().astype(dtype))
                continue
            label = np.empty(a.shape[:2], dtype)
            for y0, y1, p in self._bands(a):
                label[y0:y1] = argmax(p, 0).numpy()
            out.append(label)
        return out

    def _labels_in_graph(self, arrays: list[np.ndarray]) -> np.ndarray | None:
        """The real-time path: images already at the network's size, whole-image mode, a backend that can
        normalize and take the argmax inside its graph (OpenVINO) -> labels straight from the runtime.
        None when that does not apply; the general path gives the same labels (tested)."""
        pre = self.info.preprocessing
        if not arrays or self.tile is not None or self.tta is not None or not hasattr(self.backend, "labels") \
                or pre.resize != "stretch":
            return None
        if any(tuple(a.shape[:2]) != tuple(pre.image_size) for a in arrays):
            return None
        x = np.stack([as_channels(a, pre.in_channels) for a in arrays])      # N x H x W x C
        return self.backend.labels(x, pre.mean, pre.std)

    @contextlib.contextmanager
    def inputs_named(self, names):
        """Within the block, the arrays given to the predict methods are, in order, the files `names` (for the
        scale warnings: callers that decode the files themselves, like predict_paths, still name them)."""
        self._names = [str(n) for n in names]
        try:
            yield self
        finally:
            self._names = None

    def _as_array(self, image) -> np.ndarray:
        if isinstance(image, (str, Path)):
            arr = read_image(image, self.info.preprocessing.in_channels)
            self._check_scale(arr.shape[:2], str(image))
            return arr
        if hasattr(image, "mode") and hasattr(image, "size"):      # PIL image
            image = np.asarray(image)
        arr = np.asarray(image)
        if arr.dtype != np.uint8:
            raise PixelsegError(f"predict takes uint8 images (0..255), got {arr.dtype}; convert with .astype(np.uint8)")
        if arr.ndim not in (2, 3):
            raise PixelsegError(f"predict takes HxW or HxWxC images, got an array of shape {arr.shape}")
        self._check_scale(arr.shape[:2], self._names.pop(0) if self._names else "an image")
        return arr

    def scale_warning(self, hw: tuple[int, int]) -> str | None:
        """Why an input of size `hw` may be labelled badly: a run trained by whole-image resize squeezes (or
        blows up) every input to its training size, so an input far larger or smaller than its training images
        shows objects at another scale than the model learned. None when the size is close, the run was trained
        at a scale (inputs are then scaled, not squeezed), windows were asked for, or the run predates the record."""
        pre = self.info.preprocessing
        if self.tile is not None or pre.stretch_scale is None:
            return None
        (h, w), (sh, sw) = hw, pre.source_size
        f = ((h * w) / (sh * sw)) ** 0.5
        if 1 / SCALE_WARN <= f <= SCALE_WARN:
            return None
        big = f > 1
        return (f"{h}x{w} is {f if big else 1 / f:.1f}x {'larger' if big else 'smaller'} than the training images "
                f"(median {sh}x{sw}), and the model squeezes every input to {pre.image_size[0]}x{pre.image_size[1]}: "
                f"objects will look {f if big else 1 / f:.1f}x {'smaller' if big else 'larger'} than in training. "
                + ("If they are the size they were in training (a mosaic, a big scene), predict by windows at the "
                   "training scale: --tile with no value (API: tile=True); if it is the same kind of picture at a "
                   "higher resolution, this is fine" if big else
                   "If its objects are larger than in training, this is fine; otherwise train on images like it"))

    def _check_scale(self, hw: tuple[int, int], name: str) -> None:
        """Warn once per input size that scale_warning flags. Only flagged sizes are kept, at most MAX_SCALE_NOTES
        of them: a server sees endless sizes and must not grow with them."""
        key = (int(hw[0]), int(hw[1]))
        if key in self.scale_notes:
            self.scale_notes[key][2] += 1
            return
        message = self.scale_warning(key)
        if message is not None and len(self.scale_notes) < MAX_SCALE_NOTES:
            self.scale_notes[key] = [message, name, 1]
            warnings.warn(f"{name}: {message}", PixelsegWarning, stacklevel=4)

    def scale_warnings(self) -> list[str]:
        """One line per input size warned about (scale_warning), naming the first input and how many had it."""
        return [f"{name}{f' (and {n - 1} more of that size)' if n > 1 else ''}: {msg}"
                for msg, name, n in self.scale_notes.values()]

    def predict_paths(self, inputs, out_dir, overlay: bool = False, alpha: float = 0.5, batch_size: int = 4,
                      progress: Callable[[int], None] | None = None) -> list[Path]:
        """Write <stem>.png (palette label map) and, with overlay, <stem>_overlay.png for every input image.

        Decoding the next batch and encoding the previous one run in threads while the network computes
        (PIL, OpenCV and the runtimes release the GIL), so the network is rarely left waiting on files."""
        from concurrent.futures import ThreadPoolExecutor

        from pixelseg.inference.rasters import check_raster_size, predict_raster, too_big_to_read

        paths = list_inputs(inputs)
        writer = PredictionWriter(out_dir, self.classes, overlay, alpha)
        name = dict(zip(paths, output_stems(paths)))
        # a GeoTIFF above the decode limit is predicted block by block into <stem>.tif (bounded memory)
        windowed = [p for p in paths if too_big_to_read(p)]
        for p in windowed:          # every ceiling before the first output
            check_raster_size(p)
        written: list[Path] = []
        for p in windowed:
            written.append(writer.out_dir / f"{name[p]}.tif")
            predict_raster(self, p, written[-1])
            if progress is not None:
                progress(1)
        paths = [p for p in paths if p not in windowed]
        channels = self.info.preprocessing.in_channels
        chunks = [paths[i:i + batch_size] for i in range(0, len(paths), batch_size)]

        def load(chunk):
            return [read_image(p, channels) for p in chunk]

        def write(chunk, images, labels) -> list[Path]:
            return [q for p, image, label in zip(chunk, images, labels) for q in writer.write(p, name[p], image, label)]

        with ThreadPoolExecutor(max_workers=2) as io:
            pending = io.submit(load, chunks[0]) if chunks else None
            writes = []
            for k, chunk in enumerate(chunks):
                images = pending.result()
                if k + 1 < len(chunks):
                    pending = io.submit(load, chunks[k + 1])
                with self.inputs_named(chunk):
                    labels = self.predict_batch(images)
                writes.append(io.submit(write, chunk, images, labels))
                while len(writes) > 2:        # bounded: at most two batches of outputs waiting to be encoded
                    written += writes.pop(0).result()
                if progress is not None:
                    progress(len(chunk))
            for w in writes:
                written += w.result()
        return written

    @property
    def temperature(self) -> float:
        """The run's temperature (`pixelseg calibrate`; 1 when none is stored)."""
        return float(getattr(self.info, "temperature", 1.0) or 1.0)

    @torch.inference_mode()
    def probs(self, images) -> list[np.ndarray]:
        """K x H x W float32 class probabilities for each image (path, PIL image or uint8 array) at its original
        size: the softmax of the scores the labels come from (predict_logits: whole image, tiles or TTA), the
        logits divided first by the run's temperature, so the argmax is predict_batch's label map and only the
        confidence changes. The one source of probabilities: Result.probs, predict --uncertainty, serve's
        confidence, audit and suggest all read them here."""
        t = self.temperature
        return [torch.softmax(s / t, 0).numpy() for s in self.predict_logits(list(images))]
