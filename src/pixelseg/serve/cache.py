"""Label maps of recent uploads, by content hash."""
from __future__ import annotations

from collections import OrderedDict

import numpy as np


class LabelCache:
    """Label maps of recent uploads by content hash, bounded by total pixels (LRU).

    Why: the web page asks twice for one picture (JSON to draw it, then the label PNG to download), and
    clients retry. Only touched from the event loop thread, so it needs no lock."""

    def __init__(self, max_pixels: int):
        self.max_pixels = max_pixels
        self._items: OrderedDict[str, np.ndarray] = OrderedDict()
        self._pixels = 0

    def get(self, key: str) -> np.ndarray | None:
        label = self._items.get(key)
        if label is not None:
            self._items.move_to_end(key)
        return label

    def put(self, key: str, label: np.ndarray) -> None:
        if label.size > self.max_pixels or key in self._items:
            return
        self._items[key] = label
        self._pixels += label.size
        while self._pixels > self.max_pixels:
            _, old = self._items.popitem(last=False)
            self._pixels -= old.size
