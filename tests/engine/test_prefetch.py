"""The loader's background thread: same order, errors at the item where they happen, a clean stop."""
from __future__ import annotations

import threading
import time

import pytest
import torch

from pixelseg.data.prefetch import ThreadPrefetcher
from pixelseg.errors import PixelsegError


def test_order_and_exhaustion_match_the_source():
    src = [torch.full((2,), i) for i in range(25)]
    with ThreadPrefetcher(src, depth=3) as it:
        got = list(it)
    assert [int(t[0]) for t in got] == list(range(25))
    with pytest.raises(StopIteration):
        next(it)


def test_error_is_raised_in_the_consumer_after_the_good_items():
    def gen():
        yield 0
        yield 1
        raise PixelsegError("data/masks/b.png: bad mask")

    it = ThreadPrefetcher(gen(), depth=2)
    assert next(it) == 0 and next(it) == 1
    with pytest.raises(PixelsegError, match="b.png"):
        next(it)
    with pytest.raises(StopIteration):   # finished, not hanging
        next(it)
    it.close()


def test_early_stop_ends_the_producer_thread():
    produced = []

    def endless():
        i = 0
        while True:
            produced.append(i)
            yield i
            i += 1

    it = ThreadPrefetcher(endless(), depth=2)
    assert next(it) == 0
    it.close()
    assert not it._thread.is_alive()
    n = len(produced)
    time.sleep(0.2)
    assert len(produced) == n            # nothing produced after the stop
    assert n <= 1 + 2 + 2                # bounded read-ahead: consumed + queue depth + one in hand


def test_producer_runs_ahead_of_a_slow_consumer():
    loaded = threading.Event()

    def slow_source():
        for i in range(3):
            if i == 2:
                loaded.set()
            yield i

    with ThreadPrefetcher(slow_source(), depth=2) as it:
        assert next(it) == 0
        assert loaded.wait(5)            # item 2 was loaded while the consumer held item 0 only
        assert list(it) == [1, 2]


def test_the_thread_uses_one_intra_op_thread_and_leaves_the_callers_setting():
    before = torch.get_num_threads()
    seen = []

    def src():
        seen.append(torch.get_num_threads())
        yield 1

    with ThreadPrefetcher(src()) as it:
        list(it)
    assert seen == [1]
    assert torch.get_num_threads() == before


def test_prefetched_threads_only_a_loader_without_workers():
    from torch.utils.data import DataLoader

    from pixelseg.data.prefetch import prefetched

    data = list(range(10))
    with prefetched(DataLoader(data, batch_size=4, num_workers=0)) as it:
        assert isinstance(it, ThreadPrefetcher)
        assert [b.tolist() for b in it] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    with prefetched(DataLoader(data, batch_size=4, num_workers=1)) as it:
        assert not isinstance(it, ThreadPrefetcher)
        assert [b.tolist() for b in it] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
