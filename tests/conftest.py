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


def _side_effect(path):  # what a malicious pickle would run on load
    open(path, "w").close()
    return {}


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (_side_effect, (str(self.marker),))


@pytest.fixture
def evil_payload(tmp_path):
    """(object whose unpickling creates a marker file, marker path): put it in a file a test loads."""
    marker = tmp_path / "pwned"
    return _Evil(marker), marker
