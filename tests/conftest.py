"""Shared test fixtures."""
from __future__ import annotations

import pytest
import torch


@pytest.fixture(scope="module")
def one_thread():
    """Tiny tensors: with the cores shared, extra intra-op threads only wait on each other (10-100x slower)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        # what a malicious pickle would run on load: builtins.open pickles by reference, so unpickling
        # needs no module of ours (several conftest.py files would make "conftest" ambiguous)
        return (open, (str(self.marker), "w"))


@pytest.fixture
def evil_payload(tmp_path):
    """(object whose unpickling creates a marker file, marker path): put it in a file a test loads."""
    marker = tmp_path / "pwned"
    return _Evil(marker), marker
