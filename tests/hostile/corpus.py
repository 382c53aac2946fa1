"""Hostile and careless input for the command line (issue 16): decompression bombs, broken class tables,
masks and images, damaged run folders, bad configs, every numeric flag at 0 / -1 / huge / not a number,
outputs aimed at files or at the inputs, unknown names, and what README.md promises a clean error for.

Each case writes its inputs into an empty folder (the command's working folder) and returns the arguments
after `pixelseg`; test_corpus.py runs it in a subprocess under a memory cap and checks the refusal: exit 1
or 2, no traceback, a last line naming `names`, and nothing that was there before changed.
"""
from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image

from pixelseg.testing import bomb_jpeg, bomb_png  # noqa: F401  (used here and by importers)

H, W = 24, 32
RUN_CLASSES = {"names": ["class0", "class1"]}     # the class table of the session's run (test_corpus.py)


@dataclass(frozen=True)
class Ctx:
    tmp: Path                    # the command's working folder, empty at the start
    run: Path | None             # the session's tiny run folder (cases with run=True), never to be changed

    def copy_run(self) -> Path:
        """A private copy of the run, for cases that damage it."""
        return Path(shutil.copytree(self.run, self.tmp / "run"))


@dataclass(frozen=True)
class Case:
    id: str
    build: Callable[[Ctx], list]      # writes the inputs, returns the arguments after `pixelseg`
    names: tuple[str, ...]            # each must appear in the last line of stderr: the file or flag involved
    writes: tuple[str, ...] = ()      # globs (relative to the working folder) the command may create
    run: bool = False                 # needs the session's run folder
    doctor: bool = False              # verify-dataset's report: exit 1, a `problem:` line names the file


CASES: list[Case] = []


def case(id: str, *names: str, writes=(), run=False, doctor=False):
    def add(fn):
        CASES.append(Case(id, fn, names, tuple(writes), run, doctor))
        return fn
    return add


def add(id: str, argv: list, *names: str, writes=(), run=False, doctor=False) -> None:
    """A case whose arguments need no files beyond a clean dataset `ds` (built when "ds" is among them)."""
    def build(c: Ctx) -> list:
        if "ds" in argv:
            dataset(c.tmp / "ds")
        if "imgs" in argv:
            images(c.tmp / "imgs")
        return [str(c.run) if a == "RUN" else a for a in argv]
    CASES.append(Case(id, build, names, tuple(writes), run, doctor))


# ------------------------------------------------------------------ files

def image(path: Path, seed: int, size=(H, W)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (*size, 3), dtype=np.uint8)).save(path)
    return path


def mask(path: Path, seed: int, values=(0, 1), size=(H, W)) -> Path:
    """Blocks of 8x8 pixels (exact under any nearest-neighbour read)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    cells = np.random.default_rng(seed).choice(np.asarray(values), size=(size[0] // 8, size[1] // 8))
    cells.flat[:len(values)] = values            # every value present at least once
    Image.fromarray(np.kron(cells, np.ones((8, 8), cells.dtype)).astype(np.uint8)).save(path)
    return path


def dataset(root: Path, classes: dict | str | None = None, train: int = 2, val: int = 2) -> Path:
    """The folder format, 2 classes, distinct pictures in each split: verify-dataset passes it."""
    root.mkdir(parents=True, exist_ok=True)
    doc = {"names": ["bg", "fg"]} if classes is None else classes
    (root / "classes.json").write_text(doc if isinstance(doc, str) else json.dumps(doc))
    for split, n in (("train", train), ("val", val)):
        for k in range(n):
            seed = k + (100 if split == "val" else 0)
            image(root / split / "images" / f"{split}{k}.png", seed)
            mask(root / split / "masks" / f"{split}{k}.png", seed)
    return root


def images(folder: Path, n: int = 2) -> Path:
    for k in range(n):
        image(folder / f"im{k}.png", 50 + k)
    return folder


def ds_with(c: Ctx, rel: str, data: bytes | None = None, **kw) -> Path:
    """The clean dataset with the file at `rel` replaced by `data` (the file's old version removed first)."""
    root = dataset(c.tmp / "ds", **kw)
    target = root / rel
    for old in target.parent.glob(target.stem + ".*"):
        old.unlink()
    if data is not None:
        target.write_bytes(data)
    return root


def model_json(run: Path, edit: Callable[[dict], None]) -> None:
    d = json.loads((run / "model.json").read_text())
    edit(d)
    (run / "model.json").write_text(json.dumps(d))


# Cases that load torch before they can refuse (a model, the training engine, the predictor): 15-55 s each on a
# loaded 2-core machine. One of each kind runs by default; these variants run with PIXELSEG_HOSTILE=all.
SLOW_VARIANTS = {
    "predict-bomb-jpg", "predict-bomb-among-images", "train-bomb-image-jpg", "train-truncated-image",
    "train-unknown-encoder", "predict-truncated-image", "train-mask-value-7", "predict--tile-three-values",
    "predict-out-onto-a-file", "train-missing-data", "serve-unknown-backend", "train-out-onto-the-dataset",
    "predict-missing-input", "bench-unknown-model", "train-unknown-loss", "predict-unknown-device",
    "predict-model-json-unknown-model-name", "evaluate-pred-dir-wrong-size", "evaluate-pred-dir-value-out-of-range",
    "evaluate-classes-disagree-with-run", "evaluate-pred-dir-without-data", "predict-run-is-not-a-run",
    "evaluate-model-json-image-size-zero", "predict-fake-onnx", "train-resume-without-a-run",
    "predict-weights-truncated", "predict-run-missing", "compare-metrics-json-without-iou", "report-not-a-run",
    "train-init-from-a-damaged-run", "export-model-json-image-size-string", "evaluate-missing-split",
    "models-unknown-family", "train-one-image-dataset",
}


def all_cases() -> list[Case]:
    """Every case, by theme: the modules register theirs on import."""
    from tests.hostile import corpus_data  # noqa: F401
    from tests.hostile import corpus_doors  # noqa: F401
    from tests.hostile import corpus_flags  # noqa: F401
    from tests.hostile import corpus_run  # noqa: F401
    from tests.hostile import corpus_edges
    SLOW_VARIANTS.update(corpus_edges.SLOW)      # its cases that load torch before refusing
    assert len({c.id for c in CASES}) == len(CASES), "case ids must be unique"
    assert SLOW_VARIANTS <= {c.id for c in CASES}
    return CASES
