"""CamVid, in the three layouts it circulates in, read with its own classes or as the 11 SegNet classes.

SegNet (11 classes + void; the common benchmark split 367/101/233):
    ROOT/{train,val,test}/<name>.png   ROOT/{train,val,test}annot/<name>.png
    an annotation holds index values 0..10 (11 = void -> ignore) or, told apart per file, the colours of the
    11-class palette (COLORS; black = void -> ignore); any other colour is an error naming it
Original release (32 classes, color-coded masks):
    ROOT/label_colors.txt ("R G B<tab>Name" lines), ROOT/701_StillsRaw_full|images/<stem>.png,
    ROOT/LabeledApproved_full|labels/<stem>_L.png; the "Void" color -> ignore
fast.ai copy (32 classes, index masks):
    ROOT/codes.txt (one name per line, index = line), ROOT/images/<stem>.png, ROOT/labels/<stem>_P.png
The last two have no official split: ROOT/valid.txt (image file names, fast.ai's) is the val split when
present, else val is held out of train by a hash of the name. Format "camvid11" reads them as the 11 SegNet
classes (GROUPS_32_TO_11), the way the SegNet benchmark numbers are reported.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pixelseg.data.classes import ClassTable, voc_colormap
from pixelseg.data.index import DatasetIndex, Sample
from pixelseg.data.io import IMAGE_EXTS, load
from pixelseg.data.labels import ColorMap, ValueMap, value_map
from pixelseg.data.formats.layout import make_index
from pixelseg.errors import PixelsegError
from pixelseg.registry import Registry

NAMES = ("sky", "building", "pole", "road", "pavement", "tree", "signsymbol", "fence", "car", "pedestrian", "bicyclist")
COLORS = ((128, 128, 128), (128, 0, 0), (192, 192, 128), (128, 64, 128), (60, 40, 222), (128, 128, 0),
          (192, 128, 128), (64, 64, 128), (64, 0, 128), (64, 64, 0), (0, 128, 192))
VOID = 11
VOID_COLOR = (0, 0, 0)
IMAGE_DIRS, LABEL_DIRS = ("701_StillsRaw_full", "images"), ("LabeledApproved_full", "labels")

# The 32 classes of the original release grouped into the 11 of the SegNet benchmark (index into NAMES; void ->
# ignore). The grouping is the one MATLAB's CamVid example encodes in camvidPixelLabelIDs ("group them into 11
# classes following the original SegNet training methodology"; a public copy: github.com/Melsaftawy98/
# Semantic-Segmentation, camvidpixellabelID.m). Keys are the release's names, lower-cased.
GROUPS_32_TO_11 = {
    "sky": 0,
    "building": 1, "wall": 1, "bridge": 1, "tunnel": 1, "archway": 1,
    "column_pole": 2, "trafficcone": 2,
    "road": 3, "lanemkgsdriv": 3, "lanemkgsnondriv": 3,
    "sidewalk": 4, "parkingblock": 4, "roadshoulder": 4,
    "tree": 5, "vegetationmisc": 5,
    "signsymbol": 6, "misc_text": 6, "trafficlight": 6,
    "fence": 7,
    "car": 8, "suvpickuptruck": 8, "truck_bus": 8, "train": 8, "othermoving": 8,
    "pedestrian": 9, "child": 9, "cartluggagepram": 9, "animal": 9,
    "bicyclist": 10, "motorcyclescooter": 10,
    "void": 255,
}
CLASS_CHOICES = (11, 32)   # 32 = the layout's own classes (the SegNet layout has only the 11)


def _first_dir(root: Path, names) -> Path | None:
    return next((root / n for n in names if (root / n).is_dir()), None)


def layout(root: Path) -> str | None:
    if (root / "train").is_dir() and (root / "trainannot").is_dir():
        return "segnet"
    if (root / "label_colors.txt").is_file():
        return "color"
    if (root / "codes.txt").is_file() and (root / "labels").is_dir():
        return "fastai"
    return None


def register(formats: Registry) -> None:
    formats.register("camvid", detect=detect)(open)
    # the 32-class layouts read as the 11 SegNet classes: asked for by name, never detected
    formats.register("camvid11")(functools.partial(open, classes=11))


def detect(root: Path) -> bool:
    return layout(root) is not None


@dataclass(frozen=True)
class SegnetAnnot:
    """A SegNet-layout annotation, index-coded or colour-coded, told apart per file (copies of CamVid mix both):
    an 8/16-bit or gray RGB file holds indices 0..11; an RGB file with colour, or a palette PNG that uses
    colours of the 11-class palette (other than index i drawn in COLORS[i], which is an index mask with the
    CamVid palette, as `pixelseg data convert` writes), holds colours. A gray RGB file whose values
    exceed 11 is colour too (sky is gray 128,128,128). Colours outside the palette are an error, never rounded."""
    index: ValueMap
    color: ColorMap

    def __call__(self, path: Path) -> np.ndarray:
        return self.color(path) if _holds_colors(path) else self.index(path)


def _holds_colors(path: Path) -> bool:
    im = load(path, "mask", "add the mask or remove its image")
    if im.mode == "P":
        used = np.unique(np.asarray(im))
        pal = np.asarray(im.getpalette("RGB") or [], np.int32).reshape(-1, 3)
        pal = np.concatenate([pal, np.zeros((max(0, 256 - len(pal)), 3), np.int32)])
        colors = [tuple(int(v) for v in pal[u]) for u in used]
        if all(u in (VOID, 255) or (u < VOID and c == COLORS[u]) for u, c in zip(used, colors)):
            return False   # class i drawn in its CamVid colour: the values are the indices
        # any class colour in use says the palette carries the meaning (a foreign colour beside it is then
        # reported as a colour); a palette without one (gray ramps, VOC's) is only how the indices are shown
        return any(c in COLORS for c in colors)
    if im.mode in ("RGB", "RGBA"):
        rgb = np.asarray(im)[..., :3]
        if not ((rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 0] == rgb[..., 2]).all()):
            return True
        return any(VOID < v < 255 for v in np.unique(rgb[..., 0]).tolist())
    return False


def segnet_decoder() -> SegnetAnnot:
    return SegnetAnnot(value_map({**{i: i for i in range(11)}, VOID: 255, 255: 255}, "CamVid SegNet labels 0..11 (11 = void)"),
                       ColorMap(COLORS + (VOID_COLOR,), tuple(range(11)) + (255,)))


def _segnet(root: Path, val_fraction: float) -> DatasetIndex:
    decode = segnet_decoder()
    splits = {}
    for split in ("train", "val", "test"):
        img_dir, ann_dir = root / split, root / f"{split}annot"
        if not img_dir.is_dir():
            continue
        if not ann_dir.is_dir():
            raise PixelsegError(f"{ann_dir}: annotation folder not found; the SegNet CamVid layout pairs "
                                f"{split}/<name>.png with {split}annot/<name>.png")
        samples = []
        for img in sorted(p for p in img_dir.iterdir() if p.suffix.lower() in IMAGE_EXTS):
            ann = ann_dir / f"{img.stem}.png"
            if not ann.is_file():
                raise PixelsegError(f"{img}: has no annotation {ann}; add it or remove the image")
            samples.append(Sample(img, ann, img.stem, decode))
        splits[split] = samples
    return make_index(root, "camvid", ClassTable(NAMES, COLORS, 255), splits, val_fraction)


def _read_label_colors(path: Path) -> list[tuple[tuple[int, int, int], str]]:
    out = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split()
        try:
            rgb = (int(parts[0]), int(parts[1]), int(parts[2]))
            name = " ".join(parts[3:])
            if not name or not all(0 <= v <= 255 for v in rgb):
                raise ValueError
        except (ValueError, IndexError):
            raise PixelsegError(f"{path}: line {n} '{line.strip()}' is not 'R G B Name'") from None
        out.append((rgb, name))
    return out


def _group(name: str, source: Path) -> int:
    """The 11-class index (or 255) of one of the 32 CamVid class names."""
    try:
        return GROUPS_32_TO_11[name.strip().lower()]
    except KeyError:
        raise PixelsegError(f"{source}: class '{name}' is not one of the 32 CamVid classes, so it has no place in the "
                            "11 SegNet classes; read the data with its own classes (--format camvid)") from None


def _paired(root: Path, label_suffix: str, decode) -> list[Sample]:
    img_dir, lab_dir = _first_dir(root, IMAGE_DIRS), _first_dir(root, LABEL_DIRS)
    if img_dir is None or lab_dir is None:
        raise PixelsegError(f"{root}: needs an image folder ({' or '.join(IMAGE_DIRS)}) and a label folder "
                            f"({' or '.join(LABEL_DIRS)}) with <stem>{label_suffix}")
    samples = []
    for img in sorted(p for p in img_dir.iterdir() if p.suffix.lower() in IMAGE_EXTS):
        lab = lab_dir / f"{img.stem}{label_suffix}"
        if not lab.is_file():
            raise PixelsegError(f"{img}: has no label {lab}; add it or remove the image")
        samples.append(Sample(img, lab, img.stem, decode))
    return samples


def _split_by_valid(root: Path, samples: list[Sample]) -> dict[str, list[Sample]]:
    valid = root / "valid.txt"
    if not valid.is_file():
        return {"train": samples}
    names = {Path(line.strip()).stem for line in valid.read_text().splitlines() if line.strip()}
    return {"train": [s for s in samples if s.stem not in names], "val": [s for s in samples if s.stem in names]}


def _color_release(root: Path, classes: int) -> tuple[ClassTable, list[Sample]]:
    source = root / "label_colors.txt"
    rows = _read_label_colors(source)
    if classes == 11:
        decode = ColorMap(tuple(rgb for rgb, _ in rows), tuple(_group(n, source) for _, n in rows))
        return ClassTable(NAMES, COLORS, 255), _paired(root, "_L.png", decode)
    named = [(rgb, n) for rgb, n in rows if n.lower() != "void"]
    void = [rgb for rgb, n in rows if n.lower() == "void"]
    indices = tuple(range(len(named))) + (255,) * len(void)
    table = ClassTable(tuple(n for _, n in named), tuple(rgb for rgb, _ in named), 255)
    return table, _paired(root, "_L.png", ColorMap(tuple(rgb for rgb, _ in named) + tuple(void), indices))


def _fastai(root: Path, classes: int) -> tuple[ClassTable, list[Sample]]:
    source = root / "codes.txt"
    names = [line.strip() for line in source.read_text(encoding="utf-8").splitlines() if line.strip()]
    expected = f"indices into {source} (0..{len(names) - 1})"
    if classes == 11:
        pairs = {i: _group(n, source) for i, n in enumerate(names)}
        pairs[255] = 255
        return ClassTable(NAMES, COLORS, 255), _paired(root, "_P.png", value_map(pairs, expected))
    pairs = {i: (255 if n.lower() == "void" else i - sum(1 for m in names[:i] if m.lower() == "void"))
             for i, n in enumerate(names)}
    pairs[255] = 255
    kept = [n for n in names if n.lower() != "void"]
    table = ClassTable(tuple(kept), tuple(voc_colormap(len(kept))), 255)
    return table, _paired(root, "_P.png", value_map(pairs, expected))


def open(root: Path, val_fraction: float = 0.1, classes: int = 32) -> DatasetIndex:  # noqa: A001 - the format-module contract
    """classes=32: each layout's own classes (the SegNet layout only has 11); classes=11: the 32-class layouts
    grouped into the 11 SegNet classes (GROUPS_32_TO_11)."""
    if classes not in CLASS_CHOICES:
        raise PixelsegError(f"CamVid is read with 11 or 32 classes, not {classes}")
    kind = layout(root)
    if kind is None:
        raise PixelsegError(f"{root}: not a CamVid layout; expected train/ + trainannot/ (SegNet), label_colors.txt with "
                            "701_StillsRaw_full/ + LabeledApproved_full/ (original), or codes.txt with images/ + labels/ (fast.ai)")
    if kind == "segnet":
        return _segnet(root, val_fraction)
    table, samples = (_color_release if kind == "color" else _fastai)(root, classes)
    notes = [f"the 32 CamVid classes grouped into the 11 SegNet classes ({', '.join(NAMES)})"] if classes == 11 else []
    return make_index(root, "camvid", table, _split_by_valid(root, samples), val_fraction, notes)
