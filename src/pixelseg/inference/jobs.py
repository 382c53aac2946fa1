"""Prediction jobs over files: the inputs (files and folders) listed, this process's share under torchrun, the
outputs planned and checked before anything is loaded or written, then the label maps written.

An output never replaces a user's file: an --out folder that is an input folder, or any label map or overlay
whose path is an input image, is refused before the first write (writes are atomic as well, see viz)."""
from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from pixelseg.errors import PixelsegError
from pixelseg import torchrun
from pixelseg.inference.outputs import PredictionWriter, output_stems, planned_outputs


@dataclass(frozen=True)
class Plan:
    """What a job will read and write: this rank's images and the out folder."""
    paths: list[Path]
    out_dir: Path
    rank: int = 0
    world: int = 1


@dataclass(frozen=True)
class JobResult:
    images: int
    written: list[Path]
    seconds: float
    backend: str
    rank: int = 0
    world: int = 1

    @property
    def images_per_second(self) -> float:
        return self.images / max(self.seconds, 1e-9)


def shard(paths: Sequence[Path]) -> tuple[list[Path], int, int]:
    """This rank's share of a prediction job under torchrun: (paths, rank, world size).

    Images that share a file stem stay on one rank, so the output names (which disambiguate equal stems
    with their folder's name) are the same whatever the number of ranks. No process group is needed:
    the split is a pure function of the list, which every rank builds identically."""
    rank, world, _ = torchrun.world()
    if world <= 1:
        return list(paths), 0, 1
    stems = sorted({p.stem for p in paths})
    mine = {s for i, s in enumerate(stems) if i % world == rank}
    return [p for p in paths if p.stem in mine], rank, world


def rank_device(device: str) -> str:
    """Under torchrun, an 'auto'/'cuda' prediction device becomes this rank's own GPU."""
    _, world, local = torchrun.world()
    if world > 1 and device in ("auto", "cuda"):
        import torch
        if torch.cuda.is_available():
            return f"cuda:{local}"
    return device


def plan(inputs: Sequence[str | Path], out_dir: str | Path, overlay: bool = False,
         uncertainty: bool = False, vector: str | None = None) -> Plan:
    """List the inputs, take this rank's share, and refuse an out folder that would replace any input."""
    from pixelseg.data.preprocess import list_inputs
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise PixelsegError(f"{out_dir}: is a file; give a folder for the label maps (it is created if missing)")
    every = list_inputs(inputs)
    target = out_dir.resolve()
    for given in map(Path, inputs):
        if given.is_dir() and given.resolve() == target:
            raise PixelsegError(f"{out_dir}: is the input folder; label maps would be written among (and over) your "
                                "images: give another output folder")
    sources = {p.resolve() for p in every}
    if vector is not None:
        from pixelseg.inference.vectors import FORMATS, require_gpkg
        if vector not in FORMATS:
            raise PixelsegError(f"--vector {vector}: choose {', '.join(FORMATS)}")
        if vector == "gpkg":
            require_gpkg()          # a missing pyogrio names the geo extra before any image is predicted
    outputs = planned_outputs(every, out_dir, overlay, uncertainty, vector)
    for q in outputs:
        if q.resolve() in sources:
            raise PixelsegError(f"{q}: is an input image and would be replaced by a label map; give another "
                                "output folder")
    clash = [q for q, n in Counter(outputs).items() if n > 1]
    if clash:
        raise PixelsegError(f"{clash[0]}: two inputs would write this same file (an image named like another's "
                            "overlay); rename one or predict them separately")
    from pixelseg.inference.rasters import check_raster_size, too_big_to_read
    for p in every:                 # a GeoTIFF bomb is refused before the model loads (issue 27)
        if too_big_to_read(p):
            check_raster_size(p)
    paths, rank, world = shard(every)
    return Plan(paths, out_dir, rank, world)


def run(predictor, job: Plan, *, overlay: bool = False, alpha: float = 0.5, batch_size: int = 4,
        progress: Callable[[int], None] | None = None, uncertainty: bool = False,
        uncertainty_npy: bool = False, vector: str | None = None) -> JobResult:
    """Write <stem>.png (and <stem>_overlay.png) for every image of the plan with `predictor`; with
    `uncertainty` also <stem>_confidence.png and <stem>_entropy.png (and with `uncertainty_npy` their float32
    .npy), see write_uncertain."""
    if batch_size < 1:
        raise PixelsegError(f"batch size {batch_size}: give 1 or more images per batch")
    if not 0 <= alpha <= 1:
        raise PixelsegError(f"overlay alpha {alpha} is outside 0..1")
    t0 = time.time()
    if uncertainty or uncertainty_npy:
        written = write_uncertain(predictor, job.paths, job.out_dir, overlay, alpha, batch_size, uncertainty_npy,
                                  progress)
    else:
        written = predictor.predict_paths(job.paths, job.out_dir, overlay=overlay, alpha=alpha,
                                          batch_size=batch_size, progress=progress) if job.paths else []
    if vector and job.paths:          # polygons from the label maps just written (inference/vectors.py)
        from pixelseg.inference.vectors import vectorize_outputs
        written += vectorize_outputs(job.paths, output_stems(job.paths), job.out_dir, predictor.classes, vector)
    return JobResult(len(job.paths), written, time.time() - t0, predictor.backend_name, job.rank, job.world)


def write_uncertain(predictor, paths: Sequence[Path], out_dir: Path, overlay: bool, alpha: float, batch_size: int,
                    npy: bool, progress: Callable[[int], None] | None = None) -> list[Path]:
    """Label maps plus per-pixel uncertainty (inference/outputs.py names them), from one pass of Predictor.probs
    (which applies the run's temperature). The label map is the argmax of the same probabilities."""
    import numpy as np
    import torch

    from pixelseg.data.io import read_image
    from pixelseg.models.outputs import argmax

    writer = PredictionWriter(out_dir, predictor.classes, overlay, alpha, uncertainty=True, npy=npy)
    dtype = np.uint8 if predictor.classes.num_classes <= 256 else np.uint16
    stems = output_stems(paths)
    written: list[Path] = []
    for i in range(0, len(paths), batch_size):
        images = [read_image(p, predictor.info.preprocessing.in_channels) for p in paths[i:i + batch_size]]
        with predictor.inputs_named(paths[i:i + batch_size]):
            batch_probs = predictor.probs(images)
        for path, stem, image, probs in zip(paths[i:i + batch_size], stems[i:i + batch_size], images, batch_probs):
            label = argmax(torch.from_numpy(probs), 0).numpy().astype(dtype)
            written += writer.write(path, stem, image, label, probs)
        if progress is not None:
            progress(len(images))
    return written
