"""Load the next batches in a background thread when the DataLoader has no worker processes.

On a 2-core CPU the recipe runs the loader in the training process (a worker process takes a core
from the model and measured about half the steps a minute). Without workers every batch is decoded
and augmented between two steps, and the model waits for it. A thread overlaps that work with the
step instead: decoding (Pillow, OpenCV) and the tensor ops release the GIL, and the step has serial
stretches (Python, the optimizer) where a core is idle. torch's DataLoader has no thread mode, so this
small wrapper does it; it keeps the loader's order exactly (one producer, a FIFO queue), so training
stays reproducible and a resume replays the same batches.
"""
from __future__ import annotations

import os
import queue
import threading
import contextlib
from collections.abc import Iterable, Iterator

import torch
import torch.distributed as dist

_DONE = object()


class ThreadPrefetcher(Iterator):
    """Iterate `source` in a daemon thread, up to `depth` items ahead; errors are raised in the caller
    at the item where they happened. Use as a context manager (or call close()) so that a consumer that
    stops early also stops the thread."""

    def __init__(self, source: Iterable, depth: int = 2):
        if depth < 1:
            raise ValueError("depth must be >= 1")
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._finished = False
        self._thread = threading.Thread(target=self._produce, args=(iter(source),), name="pixelseg-prefetch",
                                        daemon=True)
        self._thread.start()

    def _put(self, item) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _produce(self, it: Iterator) -> None:
        # one intra-op thread here (the setting is per thread): the step keeps its cores, and this
        # thread only fills the gaps; with the default team it oversubscribed and cost 20% of the steps
        torch.set_num_threads(1)
        try:   # Linux: niceness is per thread; elsewhere the thread simply keeps normal priority
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)
        except (AttributeError, OSError):
            pass
        try:
            for item in it:
                if not self._put((item, None)):
                    return
        except BaseException as e:   # noqa: BLE001 - handed to the consumer, raised there
            self._put((None, e))
            return
        self._put((_DONE, None))

    def __next__(self):
        if self._finished:
            raise StopIteration
        item, err = self._queue.get()
        if err is not None:
            self._finished = True
            raise err
        if item is _DONE:
            self._finished = True
            raise StopIteration
        return item

    def close(self) -> None:
        self._stop.set()
        self._finished = True
        self._thread.join(timeout=10)

    def __enter__(self) -> "ThreadPrefetcher":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def prefetched(loader) -> contextlib.AbstractContextManager:
    """`with prefetched(loader) as it:` iterates the loader's batches, through a ThreadPrefetcher when the
    loader has no worker processes. Not in a torchrun rank (process group initialized): there the thread
    is neither measured nor tested yet, so ranks load in line."""
    distributed = dist.is_available() and dist.is_initialized()
    if getattr(loader, "num_workers", 1) == 0 and not distributed:
        return ThreadPrefetcher(loader, depth=2)
    return contextlib.nullcontext(iter(loader))
