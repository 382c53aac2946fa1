"""The labelled split of a run: the one place that decides how a command opens the data it measures a run on.

    split = open_split(run, data=None, split="val", verb="evaluate")
    split.samples, split.classes, split.loader(), split.root

evaluate, compare, tune-threshold, calibrate, the report, audit's scoring and export's INT8 measurement all
open their data here, so the same RUN and --data always mean the same images, decoded the same way:
  - no --data: the dataset the run was trained on (a one-line error with the fix when it is gone);
  - that same folder is read with the run's format and val_fraction (config.yaml), so its held-out val split
    and a format option such as camvid11 carry over; a format variant (camvid11) carries over to any folder;
    any other folder is detected as `pixelseg train` would detect it;
  - the class table must be the run's, the split must have masks, and its masks are checked once (require_clean).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pixelseg.errors import PixelsegError


@dataclass
class LabelledSplit:
    """A split of a dataset opened for measuring a run: `index` (the DatasetIndex), `samples` (the split's, each
    with a mask), `name` (train / val / test), `info` (the run's RunInfo; None for label maps without a run)."""
    index: object
    samples: list
    name: str
    info: object = None

    @property
    def classes(self):
        return self.index.classes

    @property
    def root(self) -> Path:
        return self.index.root

    @property
    def mask_color_channel(self):
        return self.index.mask_color_channel

    def loader(self, batch_size: int = 1, num_workers: int = 0, limit: int | None = None):
        """The split preprocessed the way the run was trained (measure.evaluation.split_loader)."""
        from pixelseg.measure.evaluation import split_loader
        samples = self.samples if limit is None else self.samples[:limit]
        return split_loader(samples, self.classes, self.info.preprocessing, self.mask_color_channel, batch_size,
                            num_workers)

    def masks(self):
        """Each sample's mask as class indices (the format's decoder applied), in order."""
        from pixelseg.data.labels import load_mask
        return (load_mask(s, self.mask_color_channel) for s in self.samples)


def open_like_run(run, data):
    """`data` opened the way `run` read its training data: with the run's data.format and val_fraction
    (config.yaml) when `data` is that same folder, so that a held-out val split and a format option such as
    camvid11 (32 CamVid classes grouped into 11) carry over; a format variant carries over to any folder (a
    model of the 11 CamVid classes is evaluated on CamVid read as 11 classes). Other folders are detected."""
    from pixelseg.data.formats import VARIANTS, open_dataset
    from pixelseg.run.folder import RunFolder

    folder = RunFolder(run)
    settings = folder.data_settings()
    fmt, root = settings.get("format") or "auto", folder.data_root()
    same = root is not None and root == Path(data).resolve()
    if same or fmt in VARIANTS:
        return open_dataset(data, fmt, float(settings.get("val_fraction", 0.1)) if same else 0.1)
    return open_dataset(data)


def open_split(run=None, data=None, split: str = "val", *, verb: str = "evaluate", check: bool = True,
               need_masks: bool = True) -> LabelledSplit:
    """The labelled `split` of `data` for measuring `run` (see the module's docstring). With no run (label
    maps written by any model) `data` is required and detected. `verb` names the command in error messages.
    `check=False` skips require_clean (for callers that only sample a few images, such as export)."""
    from pixelseg.data.formats import open_dataset
    from pixelseg.data.tools.checks import require_clean
    from pixelseg.run.folder import RunFolder

    info = None
    if run is None:
        if data is None:
            raise PixelsegError(f"{verb} without a run needs the ground truth: pass --data ROOT")
        index = open_dataset(data)
    else:
        folder = RunFolder(run)
        info = folder.info()
        index = open_like_run(run, folder.require_data_root() if data is None else data)
        if index.classes.names != info.classes.names:
            raise PixelsegError(f"{index.root}: classes {list(index.classes.names)} differ from the run's "
                                f"{list(info.classes.names)}; {verb} on data with the run's class table")
    samples = index.split(split)
    if need_masks and (not samples or not all(s.mask is not None for s in samples)):
        raise PixelsegError(f"{index.root}: split '{split}' has no masks to {verb} on; give a labelled split")
    if check:
        report = require_clean(index, (split,))[split]      # train: refused there when every mask is all ignore
        if need_masks and report.counts is not None and report.counts[:-1].sum() == 0:    # any split: no labelled pixel gives no number (issue 27)
            raise PixelsegError(f"{index.root}: every {split} mask is all ignore ({index.classes.ignore_index}); "
                                f"there is nothing to {verb} on — label some pixels, or pick a labelled split "
                                f"with --split")
    return LabelledSplit(index, samples, split, info)
