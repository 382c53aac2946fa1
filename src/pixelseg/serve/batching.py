"""Dynamic batching: one model thread, fed batches of whatever requests are waiting.

Why this shape: the model is one object that is not safe to call from many threads at once, and on a
CPU one call already uses every intra-op thread, so parallel calls would only fight over the cores.
So all images go through one worker thread. Requests that arrive while it is busy wait in a bounded
queue and are taken together (up to max_batch) when it is free: at low load a request runs alone at
once (no added latency), under load the batches grow by themselves and the per-image overhead of a
model call is shared. A full queue refuses at once (429) rather than growing without bound.
"""
from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from pixelseg.serve.errors import ApiError
from pixelseg.serve.settings import Batching, Limits


@dataclass
class _Job:
    image: np.ndarray
    future: asyncio.Future
    queued_at: float = field(default_factory=time.perf_counter)


@dataclass(frozen=True)
class Done:
    label: np.ndarray
    model_s: float          # the model call that labeled it (its whole batch), without the wait before


class Batcher:
    def __init__(self, predict: Callable[[list[np.ndarray]], list[np.ndarray]], batching: Batching, limits: Limits,
                 observe: Callable[[int, float, float], None] | None = None):
        """predict: images -> label maps (runs in the model thread).
        observe(batch_size, seconds in the model, seconds the oldest job waited): for metrics."""
        self._predict = predict
        self._batching = batching
        self._limits = limits
        self._observe = observe
        self._queue: asyncio.Queue[_Job] | None = None
        self._task: asyncio.Task | None = None
        self._executor: ThreadPoolExecutor | None = None
        self.pending = 0                        # queued, not yet handed to the model

    async def start(self) -> None:
        self._queue = asyncio.Queue()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="pixelseg-model")
        self._task = asyncio.create_task(self._run(), name="pixelseg-batcher")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        if self._executor is not None:
            self._executor.shutdown(wait=True)

    def check_capacity(self) -> None:
        """Raise ApiError(429) when the queue is full (handlers also call it before reading an upload, so
        an overloaded server does not spend memory and CPU on bodies it will refuse anyway)."""
        if self.pending >= self._limits.max_queue:
            raise ApiError(429, "busy", f"{self.pending} images are already waiting for the model; retry shortly",
                           "max_queue", self._limits.max_queue, headers={"Retry-After": "1"})

    async def submit(self, image: np.ndarray) -> np.ndarray:
        """The label map for one image; raises ApiError(429) when the queue is full."""
        return (await self.run(image)).label

    async def run(self, image: np.ndarray) -> Done:
        """submit, with the model's own time."""
        if self._queue is None:
            raise RuntimeError("Batcher.start() was not awaited (the app's lifespan did not run)")
        self.check_capacity()
        job = _Job(image, asyncio.get_running_loop().create_future())
        self.pending += 1
        self._queue.put_nowait(job)
        return await job.future              # a timeout cancels the future; _run then skips the job

    async def _take_batch(self) -> list[_Job]:
        assert self._queue is not None
        batch = [await self._queue.get()]
        wait = self._batching.max_wait_ms / 1000.0
        deadline = time.perf_counter() + wait
        while len(batch) < self._batching.max_batch:
            try:
                batch.append(self._queue.get_nowait())
                continue
            except asyncio.QueueEmpty:
                pass
            left = deadline - time.perf_counter()
            if left <= 0:
                break
            try:
                batch.append(await asyncio.wait_for(self._queue.get(), left))
            except TimeoutError:
                break
        self.pending -= len(batch)
        return batch

    async def _run(self) -> None:
        while True:
            await self._run_batch(await self._take_batch())

    async def _run_batch(self, jobs: list[_Job]) -> None:
        # a method of its own so that the batch's images are freed when it returns: held in _run's
        # frame they would stay alive until the next request arrived (memory the pixel budget has
        # already handed to other requests)
        batch = [job for job in jobs if not job.future.done()]
        if not batch:
            return
        waited = time.perf_counter() - min(job.queued_at for job in batch)
        t0 = time.perf_counter()
        try:
            labels = await asyncio.get_running_loop().run_in_executor(
                self._executor, self._predict, [job.image for job in batch])
        except Exception as e:          # handed to each request; the handler decides the status
            for job in batch:
                if not job.future.done():
                    job.future.set_exception(e)
            return
        model_s = time.perf_counter() - t0
        if self._observe is not None:
            self._observe(len(batch), model_s, waited)
        for job, label in zip(batch, labels):
            if not job.future.done():
                job.future.set_result(Done(label, model_s))
