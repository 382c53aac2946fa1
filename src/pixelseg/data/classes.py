"""The class table: names, colors and the ignore index, read from and written to classes.json."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from pixelseg.errors import PixelsegError

DEFAULT_IGNORE_INDEX = 255


def voc_colormap(n: int = 256) -> list[tuple[int, int, int]]:
    """The PASCAL VOC bit-interleaved colormap: distinct, familiar colors for class indices."""
    cmap = []
    for i in range(n):
        c, r, g, b = i, 0, 0, 0
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        cmap.append((r, g, b))
    return cmap


@dataclass(frozen=True)
class ClassTable:
    names: tuple[str, ...]
    colors: tuple[tuple[int, int, int], ...]
    ignore_index: int = DEFAULT_IGNORE_INDEX
    derived: bool = False  # True when the names were made up (class_0, ...) because no classes.json exists

    def __post_init__(self):
        if len(self.names) < 1:
            raise PixelsegError("class table has no classes; list at least one name in classes.json")
        if len(self.colors) != len(self.names):
            raise PixelsegError(
                f"class table has {len(self.names)} names but {len(self.colors)} colors; give one [r,g,b] per class")
        if self.ignore_index < 0:
            # masks hold unsigned values: a negative index never matches a pixel, and padding filled with it
            # would wrap to a real class
            raise PixelsegError(f"ignore_index {self.ignore_index} is negative; masks store unsigned values, "
                                "choose one outside the class range (255 is the convention)")
        if self.ignore_index > 65535:
            # masks are at most 16-bit: an index above that never matches a pixel (and sizing per-value
            # counts by it would take minutes and gigabytes)
            raise PixelsegError(f"ignore_index {self.ignore_index} cannot occur in a mask (masks store 8- or 16-bit "
                                "values); choose one the masks store (255 is the convention)")
        if 0 <= self.ignore_index < len(self.names):
            raise PixelsegError(
                f"ignore_index {self.ignore_index} is also a class index (0..{len(self.names) - 1}); "
                "choose an ignore_index outside the class range (255 is the convention)")

    @property
    def num_classes(self) -> int:
        return len(self.names)

    @classmethod
    def derive(cls, num_classes: int, ignore_index: int = DEFAULT_IGNORE_INDEX) -> "ClassTable":
        return cls(tuple(f"class_{i}" for i in range(num_classes)),
                   tuple(voc_colormap(num_classes)), ignore_index, derived=True)

    @classmethod
    def from_dict(cls, d: dict, source: str = "classes.json") -> "ClassTable":
        if not isinstance(d, dict) or "names" not in d:
            raise PixelsegError(f"{source}: expected an object with a 'names' list, e.g. "
                                '{"names": ["background", "car"], "colors": [[0,0,0],[255,0,0]], "ignore_index": 255}')
        unknown = set(d) - {"names", "colors", "ignore_index"}
        if unknown:
            raise PixelsegError(f"{source}: unknown key(s) {sorted(unknown)}; valid keys are names, colors, ignore_index")
        names = d["names"]
        if not isinstance(names, list) or not all(isinstance(n, str) and n for n in names):
            raise PixelsegError(f"{source}: 'names' must be a list of non-empty strings")
        if len(set(names)) != len(names):
            raise PixelsegError(f"{source}: class names must be unique")
        colors = d.get("colors")
        if colors is None:
            colors = voc_colormap(len(names))
        elif not (isinstance(colors, list) and all(
                isinstance(c, (list, tuple)) and len(c) == 3 and all(isinstance(v, int) and 0 <= v <= 255 for v in c)
                for c in colors)):
            raise PixelsegError(f"{source}: 'colors' must be a list of [r, g, b] integer triples in 0..255")
        ignore = d.get("ignore_index", DEFAULT_IGNORE_INDEX)
        if not isinstance(ignore, int) or isinstance(ignore, bool):
            raise PixelsegError(f"{source}: 'ignore_index' must be an integer (255 is the convention)")
        try:
            return cls(tuple(names), tuple(tuple(int(v) for v in c) for c in colors), ignore)
        except PixelsegError as e:
            raise PixelsegError(f"{source}: {e}") from None

    @classmethod
    def from_json(cls, path: str | Path) -> "ClassTable":
        try:
            d = json.loads(Path(path).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise PixelsegError(f"{path}: not found; write a classes.json with the class names") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise PixelsegError(f"{path}: not valid JSON ({e}); fix the file or delete it to use class_0, class_1, ...") from None
        return cls.from_dict(d, str(path))

    def to_dict(self) -> dict:
        return {"names": list(self.names), "colors": [list(c) for c in self.colors], "ignore_index": self.ignore_index}


def output_channels(classes: ClassTable, binary_sigmoid: bool = False) -> int:
    """How many channels the model predicts: one per class, or one sigmoid channel for a 2-class table
    when binary_sigmoid is asked for."""
    if not binary_sigmoid:
        return classes.num_classes
    if classes.num_classes != 2:
        raise PixelsegError(f"binary_sigmoid needs exactly 2 classes (background, foreground), the data has "
                            f"{classes.num_classes} ({', '.join(classes.names[:5])}); turn it off to train them with softmax")
    return 1
