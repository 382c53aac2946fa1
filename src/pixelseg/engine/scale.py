"""The scale and the crop of big-image training (engine/recipe.py asks; data/crops.py and the predictor use them).

Scale: the small common objects (the median over foreground classes of their 10th percentile extent,
data/objects.py, measured on a few masks) should span at least CELLS output cells of LR-ASPP's 1/8
output, i.e. CELLS x 8 pixels after scaling: scale = clip(CELLS x 8 / extent, 1/8, top), in eighths, where
top is 1 on a CPU (native resolution: growing a big image costs its square) and 2 on a GPU.
Crop: one step's pixels, as much as the device trains fast (~262k on a CPU, today's 16 x 128^2; ~4.2M on a
GPU, 16 x 512^2), split over a batch of 4 (CPU) / 8 (GPU) crops, shaped like the scaled image (up to 2:1,
so 2048x1024 driving frames get wide crops) and never larger than it.
"""
from __future__ import annotations

import math
import statistics

from pixelseg.data.labels import load_mask
from pixelseg.data.objects import object_sizes

CELLS, STRIDE = 3, 8
MASKS_MEASURED = 8                # a cheap sample: the recipe runs before step 1
STEP_PIXELS = {"cpu": 16 * 128 * 128, "cuda": 16 * 512 * 512}
CROP_BATCH = {"cpu": 4, "cuda": 8}


def choose_scale(samples, num_classes: int, color_channel=None, gpu: bool = False) -> tuple[float, str]:
    picked = samples[:: max(1, len(samples) // MASKS_MEASURED)][:MASKS_MEASURED]
    sizes = object_sizes((load_mask(s, color_channel) for s in picked if s.mask is not None), num_classes)
    small = sizes.small_common()
    if small is None:
        return 1.0, f"no objects found in {len(picked)} masks: native resolution"
    target = CELLS * STRIDE
    top = 2.0 if gpu else 1.0       # growing a big image costs its square; a CPU keeps native resolution
    scale = min(top, max(0.125, round(target / small * 8) / 8))
    fg = [c for c in range(num_classes) if c != sizes.background and sizes.counts[c]]
    meds = [sizes.median[c] for c in fg]
    capped = scale == top < target / small
    why = (f"objects in {len(picked)} masks: {sum(sizes.counts[c] for c in fg)} of {len(fg)} foreground classes, "
           f"extent p10 {small:.0f} px (median {statistics.median(meds):.0f} px); "
           + (f"x{target / small:.2g} would make the small ones {target} px ({CELLS} cells of the model's 1/{STRIDE} "
              "output), capped at native resolution on the CPU" if capped else
              f"scale {scale:g} keeps the small ones >= {target} px, {CELLS} cells of the model's 1/{STRIDE} output"))
    return scale, why


def _r32(v: float) -> int:
    return max(32, int(v // 32) * 32)


def choose_crop(sizes: list[tuple[int, int]], scale: float, hw) -> tuple[tuple[int, int], str]:
    kind = "cuda" if hw.is_cuda else "cpu"
    h = statistics.median(s[0] for s in sizes) * scale
    w = statistics.median(s[1] for s in sizes) * scale
    area = STEP_PIXELS[kind] / CROP_BATCH[kind]
    aspect = min(2.0, max(0.5, w / h))
    ch, cw = min(_r32(math.sqrt(area / aspect)), _r32(h)), min(_r32(math.sqrt(area * aspect)), _r32(w))
    why = (f"~{STEP_PIXELS[kind]:,} px a step on {'a GPU' if hw.is_cuda else 'the CPU'} as {CROP_BATCH[kind]} crops, "
           f"shaped like the scaled image ({int(w)}x{int(h)})")
    return (ch, cw), why
