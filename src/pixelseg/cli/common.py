"""What every command shares: the parser class (one-line errors), argument types with bounds, the console,
progress bars, the metrics table and the checks on output paths."""
from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path

from pixelseg.errors import PixelsegError

DATA_HELP = "dataset root (default: the one the run was trained on, from RUN/config.yaml)"


class Parser(argparse.ArgumentParser):
    """argparse with a one-line error: the usage block of `train` is forty lines, and a user who typed a bad
    value wants the flag, what is wrong, and where to read more. Exit code 2, as argparse's own."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


def bounded(kind, name: str | None = None, **meta):
    """An argparse type: `kind` (int or float) within the bounds of config.opt (gt=, ge=, lt=, le=)."""
    from pixelseg.config import bounds_problem

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"'{text}' is not {'an integer' if kind is int else 'a number'}") from None
        problem = bounds_problem(meta, value)
        if problem:
            raise argparse.ArgumentTypeError(f"{problem} (got {text})")
        return value
    parse.__name__ = name or kind.__name__      # argparse names the type in some messages
    return parse


POSITIVE_INT = bounded(int, "positive integer", gt=0)
POSITIVE = bounded(float, "positive number", gt=0)
NON_NEGATIVE_INT = bounded(int, "integer >= 0", ge=0)


def console():
    from rich.console import Console
    return Console()


def progress(total: int | None, what: str):
    """A rich progress bar on a terminal; nothing when output is captured (logs, tests)."""
    if not sys.stderr.isatty():
        return contextlib.nullcontext(None)
    from rich.progress import Progress

    @contextlib.contextmanager
    def bar():
        with Progress(console=console(), transient=True) as prog:
            task = prog.add_task(what, total=total)
            yield lambda n: prog.advance(task, n)
    return bar()


def size(values, flag: str = "--image-size"):
    """H W, or one value for a square -> (H, W)."""
    if values is None:
        return None
    if len(values) not in (1, 2):
        raise PixelsegError(f"{flag} takes H W (or one value for a square)")
    return tuple(values) if len(values) == 2 else (values[0], values[0])


def print_metrics(metrics: dict, title: str) -> dict:
    from pixelseg.measure.metrics import format_table
    table = format_table(metrics)
    table.title = title
    console().print(table)
    return metrics


def check_out_folder(path: str | Path, flag: str = "--out") -> Path:
    """A folder that is there or can be made: an existing file at the path or above it is a one-line error
    before any work is done (not a NotADirectoryError after training)."""
    path = Path(path)
    for p in (path, *path.parents):
        if p.exists():
            if not p.is_dir():
                what = "is a file" if p == path else f"is inside {p}, which is a file"
                raise PixelsegError(f"{flag} {path}: {what}; give a folder (it is created if missing)")
            break
    return path



DATASET_FILES = ("classes.json", "class_dict.csv", "labels.txt", "label_colors.txt", "codes.txt")


def check_not_dataset_file(path: str | Path | None, root: str | Path, flag: str) -> None:
    """An output aimed at an image, a mask or a class table of the dataset being read is refused before
    anything is written: it would replace the user's data (issue 16: outputs never replace an input)."""
    from pixelseg.data.io import IMAGE_EXTS
    if path is None:
        return
    path, root = Path(path), Path(root)
    if path.is_file() and root.is_dir() and path.resolve().is_relative_to(root.resolve()) and \
            (path.suffix.lower() in IMAGE_EXTS or path.name in DATASET_FILES):
        raise PixelsegError(f"{flag} {path}: is a file of the dataset {root}; writing it would replace your data — "
                            "give a path outside the dataset")


def check_not_run_file(path: str | Path | None, run: str | Path | None, flag: str) -> None:
    """An output aimed at a file of the run folder being read (model.json, the weights, config.yaml, ...) is
    refused before any work: it would replace the run's own description or weights."""
    if path is None or run is None:
        return
    from pixelseg.run.folder import RunFolder
    path, run = Path(path), Path(run)
    if path.is_file() and RunFolder(run).is_run() and path.resolve().parent == run.resolve():
        raise PixelsegError(f"{flag} {path}: is a file of the run {run}; writing it would damage the run — "
                            "give a path outside the run folder")


def add_max_pixels(p: argparse.ArgumentParser) -> None:
    """--max-pixels: the decode gate's limit (data/io.py); any command that reads user images can take it."""
    from pixelseg.data.io import DEFAULT_MAX_PIXELS
    p.add_argument("--max-pixels", type=int, default=None, metavar="N",
                   help=f"refuse images whose header declares more than N pixels, before decoding them "
                        f"(default {DEFAULT_MAX_PIXELS:,}, or $PIXELSEG_MAX_PIXELS)")


def apply_max_pixels(a) -> None:
    if getattr(a, "max_pixels", None) is not None:
        from pixelseg.data.io import set_max_pixels
        set_max_pixels(a.max_pixels)
