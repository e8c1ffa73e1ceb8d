"""Concurrent requests merged into one forward pass (docs/contract.md §9, --max-batch, --batch-timeout-ms).

Requests wait in a queue; one worker takes the first, waits at most `timeout` seconds for others
while the batch holds fewer than `max_rows` rows, and runs the model once for all of them in its
own thread (so the event loop keeps reading requests meanwhile). A request with more rows than
`max_rows` is a batch of its own; rows are never split across batches. One thread calls the model,
so its traced function is never run from two threads at once.
"""

from __future__ import annotations

import asyncio
import collections
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable


@dataclass
class _Job:
    x: object
    rows: int
    future: asyncio.Future


class Batcher:
    """`compute(list of inputs) -> list of outputs` runs in the model thread (an output that is an
    exception is raised to its request alone); `observe(requests, rows)` is told each batch's size
    (the /metrics histogram)."""

    def __init__(self, compute: Callable[[list], list], max_rows: int, timeout: float,
                 observe: Callable[[int, int], None] = lambda requests, rows: None):
        self.compute, self.max_rows, self.timeout, self.observe = compute, max_rows, timeout, observe
        self._pending: collections.deque[_Job] = collections.deque()
        self._arrived: asyncio.Event | None = None
        self._task: asyncio.Task | None = None
        self._thread: ThreadPoolExecutor | None = None

    async def start(self) -> None:
        """At the app's start-up (again after a stop: an app's lifespan may run more than once)."""
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="mlcli-model")
        self._arrived = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        """After the server has answered every request in flight (uvicorn's graceful shutdown)."""
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        if self._thread is not None:
            self._thread.shutdown(wait=True)

    async def submit(self, x, rows: int):
        """The model's outputs for `x` (`rows` rows), computed in a batch with other requests'."""
        future = asyncio.get_running_loop().create_future()
        self._pending.append(_Job(x, rows, future))
        self._arrived.set()
        return await future

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            while not self._pending:
                self._arrived.clear()
                await self._arrived.wait()
            deadline = loop.time() + self.timeout
            while sum(job.rows for job in self._pending) < self.max_rows:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                self._arrived.clear()
                try:
                    await asyncio.wait_for(self._arrived.wait(), remaining)
                except asyncio.TimeoutError:
                    break
            jobs = self._take()
            try:
                outputs = await loop.run_in_executor(self._thread, self.compute, [job.x for job in jobs])
            except Exception as exc:  # noqa: BLE001 — each waiting request answers it (500), the worker goes on
                for job in jobs:
                    if not job.future.done():
                        job.future.set_exception(exc)
                continue
            self.observe(len(jobs), sum(job.rows for job in jobs))
            for job, out in zip(jobs, outputs):
                if job.future.done():  # a client that went away was cancelled
                    continue
                if isinstance(out, Exception):  # that request's own error (a bad row): the others are answered
                    job.future.set_exception(out)
                else:
                    job.future.set_result(out)

    def _take(self) -> list[_Job]:
        """The oldest requests, up to max_rows rows (at least one request)."""
        jobs = [self._pending.popleft()]
        rows = jobs[0].rows
        while self._pending and rows + self._pending[0].rows <= self.max_rows:
            job = self._pending.popleft()
            jobs.append(job)
            rows += job.rows
        return jobs
