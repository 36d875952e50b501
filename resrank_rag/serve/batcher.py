"""Dynamic batching: concurrent requests of one kind grouped into one model call, behind a bounded queue."""

from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable

log = logging.getLogger(__name__)


class Overloaded(Exception):
    """The queue is full; the caller should answer 503 and ask the client to retry later."""


@dataclass
class Job:
    kind: str
    """Jobs are only batched with jobs of the same kind (e.g. 'rerank', 'passage', 'query')."""
    payload: Any
    cost: int
    """Reranker positions this job adds to a padded forward (its width)."""
    future: asyncio.Future = field(repr=False)


class Batcher:
    """Groups queued jobs into batches and runs ``run_batch(kind, payloads) -> results`` on one thread.

    A batch is the first waiting job plus whatever else of its kind is queued (after at most
    ``max_wait_s`` when nothing else is), up to ``max_batch`` jobs and ``max_cost`` padded positions.
    Results go back to each job's future in order. A job whose caller has gone is skipped; a failing
    batch is retried one job at a time so that only the bad job fails.
    """

    def __init__(
        self,
        run_batch: Callable[[str, list], list],
        max_batch: int = 32,
        max_cost: int = 16384,
        max_wait_s: float = 0.002,
        max_queue: int = 256,
        observe: Callable[[str, int, float], None] | None = None,
    ):
        self._run_batch = run_batch
        self.max_batch, self.max_cost, self.max_wait_s = max_batch, max_cost, max_wait_s
        self._queue: asyncio.Queue[Job] = asyncio.Queue(maxsize=max_queue)
        self._held: Job | None = None
        self._observe = observe or (lambda kind, size, seconds: None)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="resrank-model")
        self._task: asyncio.Task | None = None

    # ---------------------------------------------------------------- lifecycle
    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._loop(), name="resrank-batcher")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
        for job in self._drain():
            if not job.future.done():
                job.future.set_exception(RuntimeError("the server is shutting down; retry on another replica"))
        self._executor.shutdown(wait=False, cancel_futures=True)

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    @property
    def depth(self) -> int:
        """Jobs waiting for a forward."""
        return self._queue.qsize() + (self._held is not None)

    # ---------------------------------------------------------------- submitting
    def submit(self, kind: str, payload: Any, cost: int = 1) -> asyncio.Future:
        """Queue a job; raises Overloaded when the queue is full. Cancel the future to drop the job."""
        if not self.running:
            raise Overloaded("the batcher is not running")
        future = asyncio.get_running_loop().create_future()
        try:
            self._queue.put_nowait(Job(kind, payload, max(1, int(cost)), future))
        except asyncio.QueueFull:
            raise Overloaded(f"{self._queue.maxsize} requests are already waiting") from None
        return future

    # ---------------------------------------------------------------- the loop
    async def _loop(self) -> None:
        while True:
            first = self._held or await self._queue.get()
            self._held = None
            if self._queue.empty() and self.max_wait_s > 0 and self.max_batch > 1:
                await asyncio.sleep(self.max_wait_s)
            batch = self._collect(first)
            live = [job for job in batch if not job.future.done()]  # callers that left are skipped
            if live:
                await self._execute(live)

    def _collect(self, first: Job) -> list[Job]:
        batch, width = [first], first.cost
        while len(batch) < self.max_batch:
            try:
                job = self._queue.get_nowait()
            except asyncio.QueueEmpty:
                break
            if job.future.done():
                continue
            wider = max(width, job.cost)
            if job.kind != first.kind or wider * (len(batch) + 1) > self.max_cost:
                self._held = job
                break
            batch.append(job)
            width = wider
        return batch

    async def _execute(self, jobs: list[Job]) -> None:
        loop = asyncio.get_running_loop()
        kind = jobs[0].kind
        start = time.perf_counter()
        try:
            results = await loop.run_in_executor(self._executor, self._run_batch, kind, [j.payload for j in jobs])
        except asyncio.CancelledError:  # stop() while a forward runs: nobody is left waiting forever
            for job in jobs:
                _settle(job, error=RuntimeError("the server is shutting down; retry on another replica"))
            raise
        except Exception as error:
            if len(jobs) == 1:
                _settle(jobs[0], error=error)
                return
            log.info("a batch of %d %s jobs failed (%s); retrying them one at a time", len(jobs), kind, error)
            for job in jobs:
                if not job.future.done():
                    await self._execute([job])
            return
        self._observe(kind, len(jobs), time.perf_counter() - start)
        for job, result in zip(jobs, results):
            _settle(job, result=result)

    def _drain(self) -> list[Job]:
        jobs = [self._held] if self._held else []
        self._held = None
        while not self._queue.empty():
            jobs.append(self._queue.get_nowait())
        return jobs


def _settle(job: Job, result: Any = None, error: BaseException | None = None) -> None:
    if job.future.done():  # the caller disconnected and cancelled it
        return
    if error is None:
        job.future.set_result(result)
    else:
        job.future.set_exception(error)
