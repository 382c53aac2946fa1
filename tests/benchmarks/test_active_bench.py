"""benchmarks/active.py's pools: the shares it promises are the shares it builds (the benchmark's numbers are
only as good as its pool)."""
from __future__ import annotations

import argparse

import numpy as np
import pytest

from pixelseg.data.labels import load_mask
from tests.helpers.benchmarks import load_benchmark


@pytest.fixture(scope="module")
def active():
    return load_benchmark("active")


def args(**kw):
    base = dict(pool=24, val=12, size=32, frames=1, rare=None, rare_share=0.08, empty_share=0.0, seed=0)
    return argparse.Namespace(**{**base, **kw})


def blank(samples) -> int:
    return sum(not (load_mask(s, None) > 0).any() for s in samples)


def test_empty_share_is_kept_in_pool_and_val(active, tmp_path):
    _, pool, val = active.make_pool(tmp_path, args(empty_share=0.5))
    assert (len(pool), len(val)) == (24, 12)
    assert (blank(pool), blank(val)) == (12, 6)
    first = [blank(pool[i:i + 6]) for i in range(0, 24, 6)]
    assert 0 < min(first) and max(first) < 6              # shuffled in, not appended as a block


def test_no_empty_share_leaves_every_image_with_objects(active, tmp_path):
    _, pool, val = active.make_pool(tmp_path, args())
    assert blank(pool) == 0 and blank(val) == 0


def test_rare_and_empty_shares_compose(active, tmp_path):
    _, pool, _ = active.make_pool(tmp_path, args(pool=40, rare="star", rare_share=0.25, empty_share=0.5))
    star = sum(bool((load_mask(s, None) == 4).any()) for s in pool)
    assert blank(pool) == 20 and star == 5                 # rare-share counts among the images with objects
    assert np.isclose(star / (40 - blank(pool)), 0.25)
