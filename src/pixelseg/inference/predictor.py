"""Predictor: a run folder in, label maps at the input's original size out.

Preprocessing comes only from the run folder (model.json), so prediction cannot drift from training:
the input is converted to the model's channel count, resized to the training size, normalized; the
logits are resized back to the original size (bilinear) and the argmax taken there.
"""
from __future__ import annotations

from pathlib import Path

import functools

import numpy as np
import torch
import torch.nn.functional as F

from pixelseg.data.dataset import normalize
from pixelseg.data.io import IMAGE_EXTS, read_image, to_channels
from pixelseg.data.transforms import eval_transform
from pixelseg.errors import PixelsegError
from pixelseg.run import Preprocessing, load_model, read_run


def resize_logits(logits: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """N x K x h x w -> N x K x H x W, the one way logits are brought back to an image's pixels."""
    if tuple(logits.shape[-2:]) == tuple(size):
        return logits
    return F.interpolate(logits, size=size, mode="bilinear", align_corners=False)


def preprocess(image: np.ndarray, pre: Preprocessing) -> torch.Tensor:
    """HxW(xC) uint8 -> C x H' x W' normalized tensor at the training size, through the very transform
    that validation used during training (so predict and evaluate see identical inputs)."""
    x = to_channels(image, pre.in_channels)
    x = _resizer(tuple(pre.image_size))(image=x)["image"]
    if x.ndim == 2:
        x = x[:, :, None]
    return normalize(x, pre.mean, pre.std)


@functools.lru_cache(maxsize=8)
def _resizer(size: tuple[int, int]):
    return eval_transform(size)


def pick_device(device: str = "auto") -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise PixelsegError(f"device '{device}' asked for, but no CUDA GPU is visible; use --device cpu")
    return torch.device(device)


def list_inputs(inputs) -> list[Path]:
    """Files and folders (their images, sorted) -> image paths; a missing path is an error."""
    out = []
    for p in map(Path, inputs):
        if p.is_dir():
            found = sorted(q for q in p.iterdir() if q.suffix.lower() in IMAGE_EXTS and not q.name.startswith("."))
            if not found:
                raise PixelsegError(f"{p}: folder holds no images ({', '.join(IMAGE_EXTS)})")
            out += found
        elif p.is_file():
            out.append(p)
        else:
            raise PixelsegError(f"{p}: not found; give image files or folders of images")
    return out


class Predictor:
    def __init__(self, run, device: str = "auto"):
        self.info = read_run(run)
        self.device = pick_device(device)
        self.model = load_model(self.info, self.device)

    @property
    def classes(self):
        return self.info.classes

    @torch.inference_mode()
    def predict_logits(self, images: list[np.ndarray]) -> list[torch.Tensor]:
        """K x H x W logits (float32, CPU) for each image, at the image's own size."""
        x = torch.stack([preprocess(im, self.info.preprocessing) for im in images]).to(self.device)
        logits = self.model(x).float()
        return [resize_logits(logits[i:i + 1], im.shape[:2])[0].cpu() for i, im in enumerate(images)]

    def predict(self, image) -> np.ndarray:
        """image: path, PIL image or HxW(xC) uint8 array -> HxW class indices at the original size."""
        return self.predict_batch([image])[0]

    def predict_batch(self, images) -> list[np.ndarray]:
        arrays = [self._as_array(im) for im in images]
        dtype = np.uint8 if self.classes.num_classes <= 256 else np.uint16
        return [lg.argmax(0).numpy().astype(dtype) for lg in self.predict_logits(arrays)]

    def predict_proba(self, image) -> np.ndarray:
        return torch.softmax(self.predict_logits([self._as_array(image)])[0], 0).numpy()

    def _as_array(self, image) -> np.ndarray:
        if isinstance(image, (str, Path)):
            return read_image(image, self.info.preprocessing.in_channels)
        if hasattr(image, "mode") and hasattr(image, "size"):      # PIL image
            image = np.asarray(image)
        arr = np.asarray(image)
        if arr.dtype != np.uint8:
            raise PixelsegError(f"predict takes uint8 images (0..255), got {arr.dtype}; convert with .astype(np.uint8)")
        return arr

    def predict_paths(self, inputs, out_dir, overlay: bool = False, alpha: float = 0.5, batch_size: int = 4,
                      progress=None) -> list[Path]:
        """Write <stem>.png (palette label map) and, with overlay, <stem>_overlay.png for every input image."""
        from pixelseg import viz

        paths = list_inputs(inputs)
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        stems = [p.stem for p in paths]
        dup = {s for s in stems if stems.count(s) > 1}
        written = []
        for start in range(0, len(paths), batch_size):
            chunk = paths[start:start + batch_size]
            images = [read_image(p, self.info.preprocessing.in_channels) for p in chunk]
            for p, image, label in zip(chunk, images, self.predict_batch(images)):
                stem = f"{p.parent.name}_{p.stem}" if p.stem in dup else p.stem
                target = out_dir / f"{stem}.png"
                viz.save_label_png(target, label, self.classes.colors, self.classes.ignore_index)
                written.append(target)
                if overlay:
                    shown = image[:, :, :3] if image.shape[2] >= 3 else image[:, :, 0]
                    ov = out_dir / f"{stem}_overlay.png"
                    viz.save_overlay(ov, shown, label, self.classes, alpha=alpha)
                    written.append(ov)
            if progress is not None:
                progress(len(chunk))
        return written
