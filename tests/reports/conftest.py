"""One tiny trained run shared by the report tests: 1 epoch on a few 48 px synthetic images."""
from __future__ import annotations

from html.parser import HTMLParser
from pathlib import Path

import pytest
import torch

import pixelseg
from pixelseg.data.tools.synth import generate

N_VAL = 8


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("report-data")
    generate(root, n_train=8, n_val=N_VAL, size=(48, 48), seed=5)
    return root


@pytest.fixture(scope="session")
def tiny_run(tiny_data, tmp_path_factory) -> Path:
    """Trained with report=True: the automatic end-of-training report is part of what is tested."""
    threads = torch.get_num_threads()
    out = tmp_path_factory.mktemp("report-runs") / "r"
    try:
        return pixelseg.train(tiny_data, out=str(out), epochs=1, model="unet", image_size=(48, 48), batch_size=4,
                              num_workers=0, threads=1, quiet=True, report=True)
    finally:
        torch.set_num_threads(threads)


class _Tables(HTMLParser):
    """Rows of every <table id=...>: each row is (tr attributes, [(cell attributes, cell text)])."""

    def __init__(self):
        super().__init__()
        self.tables: dict[str, list] = {}
        self._table = self._row = self._cell = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "table" and "id" in a:
            self._table = self.tables.setdefault(a["id"], [])
        elif tag == "tr" and self._table is not None:
            self._row = (a, [])
            self._table.append(self._row)
        elif tag in ("td", "th") and self._row is not None:
            self._cell = [a, ""]
            self._row[1].append(self._cell)

    def handle_endtag(self, tag):
        if tag == "table":
            self._table = self._row = None
        elif tag in ("td", "th"):
            self._cell = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell[1] += data


@pytest.fixture
def html_tables():
    def parse(path) -> dict[str, list]:
        p = _Tables()
        p.feed(Path(path).read_text(encoding="utf-8"))
        return p.tables
    return parse
