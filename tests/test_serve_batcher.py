"""The dynamic batcher on its own (no model, no HTTP): grouping, limits, order, failures, dropped callers."""

import asyncio
import time

import pytest

from resrank_rag.serve.batcher import Batcher, Overloaded


class Recorder:
    """A run_batch that records each batch and answers payload * 10 (or fails on payload 'bad')."""

    def __init__(self, delay=0.05):
        self.batches, self.delay = [], delay

    def __call__(self, kind, payloads):
        self.batches.append((kind, list(payloads)))
        time.sleep(self.delay)
        if "bad" in payloads:
            raise ValueError("bad payload")
        return [p * 10 for p in payloads]


async def started(run, **options):
    batcher = Batcher(run, **options)
    batcher.start()
    return batcher


async def test_requests_arriving_during_a_forward_share_the_next_one():
    run = Recorder()
    batcher = await started(run, max_batch=8)
    first = batcher.submit("rerank", 1)
    await asyncio.sleep(0.01)  # the first forward is running; these queue behind it
    rest = [batcher.submit("rerank", i) for i in range(2, 7)]
    assert await asyncio.gather(first, *rest) == [10, 20, 30, 40, 50, 60]
    assert [len(p) for _, p in run.batches] == [1, 5]
    await batcher.stop()


async def test_max_batch_and_the_position_budget_split_batches():
    run = Recorder(delay=0.02)
    batcher = await started(run, max_batch=3, max_cost=100, max_wait_s=0.01)
    futures = [batcher.submit("rerank", i, cost=30) for i in range(5)]
    futures.append(batcher.submit("rerank", 9, cost=60))  # 60 wide: only one such list fits 100 positions
    await asyncio.gather(*futures)
    assert [p for _, p in run.batches] == [[0, 1, 2], [3, 4], [9]]  # [3, 4, 9] would pad to 3 x 60 > 100
    await batcher.stop()


async def test_kinds_are_never_mixed():
    run = Recorder(delay=0.0)
    batcher = await started(run, max_batch=8, max_wait_s=0.01)
    futures = [batcher.submit(kind, i) for i, kind in enumerate(["rerank", "rerank", "query", "rerank"])]
    assert await asyncio.gather(*futures) == [0, 10, 20, 30]
    assert [(kind, len(p)) for kind, p in run.batches] == [("rerank", 2), ("query", 1), ("rerank", 1)]
    await batcher.stop()


async def test_a_bad_job_fails_alone():
    run = Recorder(delay=0.0)
    batcher = await started(run, max_batch=8, max_wait_s=0.01)
    futures = [batcher.submit("rerank", p) for p in (1, "bad", 3)]
    results = await asyncio.gather(*futures, return_exceptions=True)
    assert results[0] == 10 and results[2] == 30 and isinstance(results[1], ValueError)
    await batcher.stop()


async def test_a_full_queue_refuses_and_a_cancelled_job_is_skipped():
    run = Recorder(delay=0.1)
    batcher = await started(run, max_batch=1, max_queue=2)
    running = batcher.submit("rerank", 1)
    await asyncio.sleep(0.01)
    gone, waiting = batcher.submit("rerank", 2), batcher.submit("rerank", 3)
    with pytest.raises(Overloaded):
        batcher.submit("rerank", 4)
    gone.cancel()  # its caller disconnected
    assert await running == 10 and await waiting == 30
    assert [p for _, p in run.batches] == [[1], [3]]
    await batcher.stop()


async def test_stop_fails_waiting_jobs_instead_of_leaving_them_hanging():
    batcher = await started(Recorder(delay=0.2), max_batch=1)
    futures = [batcher.submit("rerank", i) for i in range(3)]
    await asyncio.sleep(0.01)
    await batcher.stop()
    results = await asyncio.gather(*futures, return_exceptions=True)
    assert all(isinstance(r, RuntimeError) and "shutting down" in str(r) for r in results)
    with pytest.raises(Overloaded):
        batcher.submit("rerank", 5)
