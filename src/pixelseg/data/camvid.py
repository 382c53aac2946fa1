"""CamVid, in the three layouts it circulates in.

SegNet (11 classes + void, index masks; the common benchmark split 367/101/233):
    ROOT/{train,val,test}/<name>.png   ROOT/{train,val,test}annot/<name>.png   values 0..10, 11 = void -> ignore
Original release (32 classes, color-coded masks):
    ROOT/label_colors.txt ("R G B<tab>Name" lines), ROOT/701_StillsRaw_full|images/<stem>.png,
    ROOT/LabeledApproved_full|labels/<stem>_L.png; the "Void" color -> ignore
fast.ai copy (32 classes, index masks):
    ROOT/codes.txt (one name per line, index = line), ROOT/images/<stem>.png, ROOT/labels/<stem>_P.png
The last two have no official split: ROOT/valid.txt (image file names, fast.ai's) is the val split when
present, else val is held out of train by a hash of the name.
"""
from __future__ import annotations

from pathlib import Path

from pixelseg.data.classes import ClassTable, voc_colormap
from pixelseg.data.formats import DatasetIndex, Sample, make_index
from pixelseg.data.io import IMAGE_EXTS
from pixelseg.data.labels import ColorMap, value_map
from pixelseg.errors import PixelsegError

NAMES = ("sky", "building", "pole", "road", "pavement", "tree", "signsymbol", "fence", "car", "pedestrian", "bicyclist")
COLORS = ((128, 128, 128), (128, 0, 0), (192, 192, 128), (128, 64, 128), (60, 40, 222), (128, 128, 0),
          (192, 128, 128), (64, 64, 128), (64, 0, 128), (64, 64, 0), (0, 128, 192))
VOID = 11
IMAGE_DIRS, LABEL_DIRS = ("701_StillsRaw_full", "images"), ("LabeledApproved_full", "labels")


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


def detect(root: Path) -> bool:
    return layout(root) is not None


def _segnet(root: Path, val_fraction: float) -> DatasetIndex:
    decode = value_map({**{i: i for i in range(11)}, VOID: 255, 255: 255}, "CamVid SegNet labels 0..11 (11 = void)")
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


def open(root: Path, val_fraction: float = 0.1) -> DatasetIndex:  # noqa: A001 - the format-module contract
    kind = layout(root)
    if kind is None:
        raise PixelsegError(f"{root}: not a CamVid layout; expected train/ + trainannot/ (SegNet), label_colors.txt with "
                            "701_StillsRaw_full/ + LabeledApproved_full/ (original), or codes.txt with images/ + labels/ (fast.ai)")
    if kind == "segnet":
        return _segnet(root, val_fraction)
    if kind == "color":
        table = _read_label_colors(root / "label_colors.txt")
        named = [(rgb, n) for rgb, n in table if n.lower() != "void"]
        void = [rgb for rgb, n in table if n.lower() == "void"]
        colors = tuple(rgb for rgb, _ in named) + tuple(void)
        indices = tuple(range(len(named))) + (255,) * len(void)
        classes = ClassTable(tuple(n for _, n in named), tuple(rgb for rgb, _ in named), 255)
        samples = _paired(root, "_L.png", ColorMap(colors, indices))
    else:
        names = [line.strip() for line in (root / "codes.txt").read_text(encoding="utf-8").splitlines() if line.strip()]
        pairs = {i: (255 if n.lower() == "void" else i - sum(1 for m in names[:i] if m.lower() == "void"))
                 for i, n in enumerate(names)}
        pairs[255] = 255
        kept = [n for n in names if n.lower() != "void"]
        classes = ClassTable(tuple(kept), tuple(voc_colormap(len(kept))), 255)
        samples = _paired(root, "_P.png", value_map(pairs, f"indices into {root / 'codes.txt'} (0..{len(names) - 1})"))
    return make_index(root, "camvid", classes, _split_by_valid(root, samples), val_fraction)
