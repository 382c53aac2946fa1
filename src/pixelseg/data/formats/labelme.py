"""LabelMe JSON files, rasterized to class masks.

    ROOT/[train|val|test/]<name>.json   each next to (or pointing at, via imagePath) its image
    ROOT/labels.txt (optional, labelme's own convention): one label per line; "__ignore__" lines are skipped,
        "_background_" is class 0. Without it: class 0 "_background_" + the labels found, sorted.
A label that labels.txt does not list is an error naming the file and the shape. Shapes are drawn in
file order, so a later shape covers an earlier one (as labelme's labelme2voc does).
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from pixelseg.data.classes import ClassTable, voc_colormap
from pixelseg.data.index import DatasetIndex, Sample
from pixelseg.data.labels import LabelMeShapes, read_labelme
from pixelseg.data.formats.layout import make_index
from pixelseg.errors import PixelsegError
from pixelseg.registry import Registry

BACKGROUND = "_background_"


def _is_labelme(p: Path) -> bool:
    try:
        head = p.open("r", encoding="utf-8").read(4096)
    except (OSError, UnicodeDecodeError):
        return False
    return '"shapes"' in head or '"imagePath"' in head


def _json_files(d: Path) -> list[Path]:
    return sorted(p for p in d.glob("*.json") if not p.name.startswith("."))


def _dirs(root: Path) -> dict[str, Path]:
    subs = {s: root / s for s in ("train", "val", "test") if (root / s).is_dir() and _json_files(root / s)}
    return subs or {"train": root}


def register(formats: Registry) -> None:
    formats.register("labelme", detect=detect)(open)


def detect(root: Path) -> bool:
    d = _dirs(root).get("train")
    files = _json_files(d) if d else []
    return bool(files) and _is_labelme(files[0])


def _summary(js: Path) -> dict:
    doc = read_labelme(js)
    return {"imagePath": doc.get("imagePath"), "labels": {sh.get("label") for sh in doc["shapes"] if isinstance(sh, dict)}}


def _image_of(js: Path, doc: dict) -> Path:
    rel = doc.get("imagePath")
    cands = [js.parent / rel.replace("\\", "/")] if isinstance(rel, str) and rel else []
    cands += [js.with_suffix(ext) for ext in (".jpg", ".png", ".jpeg", ".bmp", ".tif")]
    for c in cands:
        if c.is_file():
            return c
    raise PixelsegError(f"{js}: its image ({rel or js.stem + '.*'}) is not next to it; put the image beside the JSON "
                        "(LabelMe's imagePath is relative to the JSON file)")


def open(root: Path, val_fraction: float = 0.1) -> DatasetIndex:  # noqa: A001 - the format-module contract
    dirs = _dirs(root)
    per_split = {s: _json_files(d) for s, d in dirs.items()}
    if not per_split.get("train"):
        raise PixelsegError(f"{root}: no LabelMe .json files here or in train/; the LabelMe layout is "
                            "ROOT/[train/]<name>.json next to <name>.jpg")
    with ThreadPoolExecutor(4) as ex:
        # keep only what indexing needs: LabelMe files often embed the whole image (imageData, base64)
        docs = {s: list(ex.map(_summary, files)) for s, files in per_split.items()}
    labels_txt = root / "labels.txt"
    notes = []
    if labels_txt.is_file():
        names = [n.strip() for n in labels_txt.read_text(encoding="utf-8").splitlines() if n.strip()]
        names = [n for n in names if n != "__ignore__"]
        if BACKGROUND in names and names[0] != BACKGROUND:
            raise PixelsegError(f"{labels_txt}: '{BACKGROUND}' must come first (it is class 0)")
        if not names or names[0] != BACKGROUND:
            names = [BACKGROUND] + names
    else:
        found = sorted({label for ds in docs.values() for d in ds for label in d["labels"]} - {None, BACKGROUND})
        names = [BACKGROUND] + found
        notes.append(f"no labels.txt: classes are {BACKGROUND} + the {len(found)} labels found, sorted; write "
                     f"{labels_txt} to fix their order")
    if len(set(names)) != len(names):
        raise PixelsegError(f"{labels_txt}: labels repeat; list each once")
    decode = LabelMeShapes(tuple((n, i) for i, n in enumerate(names)))
    splits = {s: [Sample(_image_of(js, d), js, js.stem, decode) for js, d in zip(per_split[s], docs[s])] for s in per_split}
    classes = ClassTable(tuple(names), tuple(voc_colormap(len(names))), 255)
    return make_index(root, "labelme", classes, splits, val_fraction, notes)

