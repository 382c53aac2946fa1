"""The dataset commands of the CLI (`verify-dataset`, `data convert|show|download`): arguments and printing.
cli.py registers them with `add_verify_args` / `add_data_commands` and dispatches to `run_verify` /
`run_data_command`, so the shared CLI file only carries the hooks."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pixelseg.cli.common import NON_NEGATIVE_INT, POSITIVE_INT, add_max_pixels, apply_max_pixels, check_not_dataset_file
from pixelseg.config import AUGMENT_PRESETS, DATA_FORMATS
from pixelseg.errors import PixelsegError

FORMAT_CHOICES = ["auto", *DATA_FORMATS]


def layouts_help() -> str:
    from pixelseg.data.formats.layout import LAYOUTS
    return "dataset layouts (--format):\n" + "\n".join(f"  {name:<11} {text}" for name, text in LAYOUTS.items())


def add_verify_args(v: argparse.ArgumentParser) -> None:
    v.formatter_class = argparse.RawDescriptionHelpFormatter   # keep the layout list one per line
    v.epilog = layouts_help()
    v.add_argument("--format", default="auto", choices=FORMAT_CHOICES, help="dataset layout (default: detected)")
    v.add_argument("--json", help="also write the full report to this JSON file")
    v.add_argument("--workers", type=POSITIVE_INT, default=4, help="decoding threads (default %(default)s)")
    add_max_pixels(v)


def add_data_commands(dsub) -> None:
    c = dsub.add_parser("convert", help="write any readable dataset (VOC, Cityscapes, COCO, ...) in the folder format")
    c.add_argument("src")
    c.add_argument("--to", default="folder", choices=["folder"])
    c.add_argument("--out", required=True)
    c.add_argument("--format", default="auto", choices=FORMAT_CHOICES, help="layout of SRC (default: detected)")
    c.add_argument("--link", action="store_true", help="hard-link the images instead of copying them")
    c.add_argument("--workers", type=POSITIVE_INT, default=4)
    add_max_pixels(c)

    s = dsub.add_parser("show", help="grid of images with their masks overlaid (optionally as training augments them)")
    s.add_argument("root")
    s.add_argument("--out", help="grid image (.png or .jpg) (default: <dataset folder name>_<split>.png in the current "
                   "folder, never inside the dataset)")
    s.add_argument("--format", default="auto", choices=FORMAT_CHOICES)
    s.add_argument("--split", default="train")
    s.add_argument("--n", type=POSITIVE_INT, default=16, help="images in the grid (default %(default)s)")
    s.add_argument("--cols", type=POSITIVE_INT, default=4)
    s.add_argument("--augmented", action="store_true", help="show the images after the training augmentation")
    s.add_argument("--augment", default="default",
                   help=f"preset ({', '.join(AUGMENT_PRESETS)}) or pipeline file for --augmented (default %(default)s)")
    s.add_argument("--image-size", type=POSITIVE_INT, nargs="+", metavar=("H", "W"), help="network size for --augmented")
    s.add_argument("--alpha", type=float, default=0.5)
    s.add_argument("--seed", type=NON_NEGATIVE_INT, default=0)
    add_max_pixels(s)

    i = dsub.add_parser("import", help="corrected LabelMe files (e.g. from `suggest --labelme` or `audit --labelme`) "
                        "back into a dataset as its masks")
    i.add_argument("src", help="folder of LabelMe .json files beside their images")
    i.add_argument("--into", required=True, help="the dataset (folder layout, split or not, or flat pairs); a mask "
                   "that exists is replaced, the old one kept under DATASET/.pixelseg-replaced/<time>/")
    i.add_argument("--split", default="train", help="where images new to the dataset go (default %(default)s)")
    add_max_pixels(i)

    d = dsub.add_parser("download", help="download and unpack voc | ade20k | camvid, or print cityscapes-instructions")
    d.add_argument("name", choices=["voc", "ade20k", "camvid", "cityscapes-instructions"])
    d.add_argument("--out", required=True)
    d.add_argument("--url", help="a mirror of the archive (checked against the official checksum)")
    d.add_argument("--checksum", help="md5:<hex> | sha1:<hex> | sha256:<hex> (default: the published one)")


def _console():
    from rich.console import Console
    return Console()


PLAN_KEYS = {"model.name": "model", "model.encoder": "encoder", "model.encoder_weights": "weights",
             "data.scale": "scale", "data.crop": "crop", "data.image_size": "input", "train.batch_size": "batch"}


def train_plan(index) -> list[str]:
    """What `pixelseg train --data ROOT` would choose on this machine, from the same recipe (engine/recipe.py):
    the doctor's view and the trainer's never disagree on the input size."""
    from pixelseg.config import Config, DataConfig
    from pixelseg.engine.recipe import detect_hardware, resolve

    hw = detect_hardware()
    cfg = Config(data=DataConfig(root=str(index.root), format=index.format))
    _, chosen = resolve(cfg, index, hw, stamp="plan")
    got = {k: v for k, v, _ in chosen}
    if "data.crop" in got:
        got.pop("data.image_size", None)     # crops at a scale: the crop is the input
    rows = [f"{label} {got[k]}" for k, label in PLAN_KEYS.items() if k in got]
    return [f"train would use on this machine ({hw.name}): {', '.join(rows)} (`pixelseg train --data "
            f"{index.root}` prints why)"]


def run_verify(a) -> int:
    from rich.table import Table

    from pixelseg.data.tools.doctor import diagnose
    from pixelseg.fileio import write_json

    apply_max_pixels(a)
    check_not_dataset_file(a.json, a.root, "--json")
    con = _console()
    rep = diagnose(a.root, a.format, getattr(a, "workers", 4))
    idx, c = rep.index, rep.index.classes
    for note in idx.notes:
        con.print(f"note: {note}")
    names = [s for s in rep.splits if rep.splits[s].labelled]
    t = Table(title=f"{idx.root} ({idx.format} format, {c.num_classes} classes, ignore index {c.ignore_index})")
    t.add_column("class")
    for s in names:
        t.add_column(f"{s} ({rep.splits[s].labelled} masks)\npixels · images", justify="right")
    t.add_column("weight", justify="right")
    for i, n in enumerate(list(c.names) + [f"ignore ({c.ignore_index})"]):
        cells = []
        for s in names:
            st = rep.splits[s]
            share = f"{st.pixels[i] / max(1, int(st.pixels.sum())):.1%}"
            cells.append(f"{share} · {int(st.images_with[i])}" if i < c.num_classes else share)
        cells.append(f"{rep.class_weights[i]:.3g}" if i < c.num_classes else "")
        t.add_row(n, *cells)
    con.print(t)
    if rep.sizes:
        sz = rep.sizes
        con.print(f"image sizes: {sz['images']} images, {sz['distinct_sizes']} distinct; height "
                  f"{sz['height']['min']:.0f}/{sz['height']['median']:.0f}/{sz['height']['max']:.0f}, width "
                  f"{sz['width']['min']:.0f}/{sz['width']['median']:.0f}/{sz['width']['max']:.0f} (min/median/max); "
                  f"aspect W/H {sz['aspect_w_over_h']['min']:.2f}..{sz['aspect_w_over_h']['max']:.2f}")
    for line in train_plan(idx):
        con.print(line)
    con.print(f"class weights (median frequency), if wanted: "
              f"--class-weights {' '.join(f'{x:.3g}' for x in rep.class_weights)}")
    for s in names:
        if rep.splits[s].background_only:
            con.print(f"note: {s}: {rep.splits[s].background_only} mask(s) hold only class 0 ({c.names[0]})")
    for wmsg in rep.warnings:
        con.print(f"[yellow]warning:[/] {wmsg}")
    if a.json:
        write_json(a.json, rep.to_dict())
        con.print(f"report written to {a.json}")
    if rep.problems:
        for p in rep.problems:
            print(f"problem: {p}", file=sys.stderr)
        print(f"verdict: {len(rep.problems)} problem(s) in {idx.root}; fix the files listed above", file=sys.stderr)
        return 1
    pairs = sum(st.labelled for st in rep.splits.values())
    con.print(f"verdict: OK — {pairs} image/mask pairs decode, sizes match, values are valid, no image in two splits")
    return 0


def run_data_command(a) -> int:
    apply_max_pixels(a)
    if a.data_command == "convert":
        from pixelseg.data.tools.convert import convert
        r = convert(a.src, a.out, a.format, a.to, a.workers, link=a.link)
        for note in r.notes:
            print(f"note: {note}")
        counts = ", ".join(f"{n} {k}" for k, n in r.counts.items())
        print(f"wrote {counts} images to {r.out} (folder format{', images hard-linked' if r.linked else ''}); "
              f"train with: pixelseg train --data {r.out}")
        return 0
    if a.data_command == "import":
        from pixelseg.data.tools.labelling import import_labelme
        r = import_labelme(a.src, a.into, a.split)
        print(f"{len(r['replaced'])} mask(s) replaced, {len(r['added'])} added in {a.into}"
              + (f"; the replaced ones are kept in {r['backup']}" if r["backup"] else "")
              + f". Check with: pixelseg verify-dataset {a.into}")
        return 0
    if a.data_command == "show":
        from pixelseg.data.tools.show import show
        size = None
        if a.image_size:
            if len(a.image_size) not in (1, 2):
                raise PixelsegError("--image-size takes H W (or one value for a square)")
            size = (a.image_size[0], a.image_size[-1])
        if not 0 <= a.alpha <= 1:
            raise PixelsegError(f"--alpha {a.alpha} is outside 0..1")
        if a.out is None:
            a.out = f"{Path(a.root).resolve().name or 'dataset'}_{a.split}.png"
        check_not_dataset_file(a.out, a.root, "--out")
        out = show(a.root, a.out, a.format, a.split, a.n, a.augment if a.augmented else None, size, a.cols,
                   a.alpha, a.seed)
        print(f"grid written to {out}")
        return 0
    return _download(a)


def _download(a) -> int:
    import time

    from pixelseg.data.tools.download import CITYSCAPES, fetch
    if a.name == "cityscapes-instructions":
        print(CITYSCAPES.format(out=a.out))
        return 0
    last = [0.0]

    def progress(done: int, total: int | None) -> None:
        if time.time() - last[0] > 2 or (total and done >= total):
            last[0] = time.time()
            pct = f" ({done / total:.0%})" if total else ""
            print(f"\r{done / 1e6:,.0f} MB{pct}", end="", file=sys.stderr, flush=True)

    target = fetch(a.name, a.out, a.url, a.checksum, progress)
    print(f"\n{a.name} ready in {target}; check it with: pixelseg verify-dataset {target}")
    return 0
