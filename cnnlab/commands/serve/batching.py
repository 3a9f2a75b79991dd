"""Requests that arrive together, predicted as one batch.

One worker task takes the first waiting request, then every request already queued and those
that arrive within `wait_s`, up to `max_batch` images, and runs the model once on all of them in
its own thread (the event loop keeps accepting and decoding meanwhile). `max_batch=1` predicts
one request at a time.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np


class Batcher:
    """`await batcher.predict(images)`: the rows of one model call that also served whatever
    other requests were waiting; `run` is that call, on a list of decoded images."""

    def __init__(self, run: Callable[[list], np.ndarray], max_batch: int, wait_s: float):
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        self._run, self.max_batch, self.wait_s = run, max_batch, wait_s
        self._queue: asyncio.Queue | None = None
        self._task: asyncio.Task | None = None
        # One thread: the model is called by one caller at a time, its own threads do the rest.
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="cnnlab-predict")
        self.batches = 0  # model calls made, and the images they took: /health shows both
        self.images = 0

    def start(self) -> None:
        self._queue = asyncio.Queue()
        self._task = asyncio.get_running_loop().create_task(self._work())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        self._thread.shutdown(wait=True)

    async def predict(self, images: list) -> np.ndarray:
        """(len(images), classes) probabilities; raises what the model call raised."""
        future = asyncio.get_running_loop().create_future()
        await self._queue.put((images, future))
        return await future

    async def _gather(self) -> list[tuple[list, asyncio.Future]]:
        first = await self._queue.get()
        waiting, count = [first], len(first[0])
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.wait_s
        while count < self.max_batch:
            try:
                item = self._queue.get_nowait()
            except asyncio.QueueEmpty:
                left = deadline - loop.time()
                if left <= 0:
                    break
                try:
                    item = await asyncio.wait_for(self._queue.get(), left)
                except TimeoutError:
                    break
            waiting.append(item)
            count += len(item[0])
        return waiting

    async def _work(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            waiting = await self._gather()
            # A client that went away while its request waited needs no prediction.
            waiting = [(images, f) for images, f in waiting if not f.done()]
            if not waiting:
                continue
            flat = [image for images, _ in waiting for image in images]
            try:
                probs = await loop.run_in_executor(self._thread, self._run, flat)
            except Exception as e:  # the model failed: every request of the batch says so
                for _, future in waiting:
                    if not future.done():
                        future.set_exception(e)
                continue
            self.batches += 1
            self.images += len(flat)
            start = 0
            for images, future in waiting:
                if not future.done():
                    future.set_result(probs[start : start + len(images)])
                start += len(images)
