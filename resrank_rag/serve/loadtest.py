"""A bounded load test of a ResRank server on loopback: throughput, latency percentiles, wrong answers.

    python -m resrank_rag.serve.loadtest --model resrank-minilm-smollm2 --clients 1,8,32 --k 20,100 --seconds 20

With ``--model`` it loads the model once and starts two servers on it in this process, one with dynamic
batching and one with ``max_batch=1`` (one forward per request, the same code path), and measures each
cell on both, one right after the other, in the same run. The clients run in a separate process, as real
clients do, so that they do not hold this process's GIL while the servers work. With ``--url`` it
measures a running server. Requests carry stored vectors (as a caller holding Qdrant vectors does), so
the reranker forward is what is measured. Every response is checked against the same request answered
alone.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import multiprocessing
import os
import platform
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

import httpx
import numpy as np

QUERIES = 16
TOLERANCE = 1e-3


@dataclass
class Cell:
    server: str
    clients: int
    k: int
    requests: int
    seconds: float
    latencies_ms: list[float]
    failed: int
    mismatched: int

    @property
    def throughput(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def percentile(self, q: float) -> float:
        return float(np.percentile(self.latencies_ms, q)) if self.latencies_ms else float("nan")


def bodies(dim: int, k: int, seed: int = 0) -> list[dict]:
    """QUERIES distinct TEI rerank bodies of K candidates with random unit vectors (deterministic)."""
    rng = np.random.default_rng(seed + k)
    out = []
    for q in range(QUERIES):
        vectors = rng.standard_normal((k, dim)).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        out.append({"query": f"load test question number {q}", "texts": [f"passage {q}-{i}" for i in range(k)],
                    "vectors": vectors.round(6).tolist()})
    return out


def _same(response: list[dict], reference: list[dict]) -> bool:
    return [r["index"] for r in response] == [r["index"] for r in reference] and all(
        abs(a["score"] - b["score"]) <= TOLERANCE for a, b in zip(response, reference)
    )


async def measure(url: str, clients: int, k: int, seconds: float, server: str = "server", headers: dict | None = None) -> Cell:
    """``clients`` concurrent callers sending rerank requests of K candidates for ``seconds``."""
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=120,
                                 limits=httpx.Limits(max_connections=clients + 1)) as http:
        dim = (await http.get("/info")).json()["embedding_dim"]
        # serialised once: the client's own JSON encoding (~5 ms per K = 20 body) is not what is measured
        requests = [json.dumps(body).encode() for body in bodies(dim, k)]
        kwargs = {"headers": {"Content-Type": "application/json"}}
        references = []
        for body in requests:  # each request answered alone: the expected result under load
            response = await http.post("/rerank", content=body, **kwargs)
            response.raise_for_status()
            references.append(response.json())
        latencies: list[float] = []
        counts = {"failed": 0, "mismatched": 0}
        stop_at = time.perf_counter() + seconds

        async def caller(offset: int) -> None:
            i = offset
            while time.perf_counter() < stop_at:
                start = time.perf_counter()
                try:
                    response = await http.post("/rerank", content=requests[i % QUERIES], **kwargs)
                except httpx.HTTPError:
                    counts["failed"] += 1
                    continue
                latencies.append((time.perf_counter() - start) * 1000)
                if response.status_code != 200:
                    counts["failed"] += 1
                elif not _same(response.json(), references[i % QUERIES]):
                    counts["mismatched"] += 1
                i += 1

        start = time.perf_counter()
        await asyncio.gather(*(caller(c) for c in range(clients)))
        elapsed = time.perf_counter() - start
    return Cell(server, clients, k, len(latencies), elapsed, latencies, counts["failed"], counts["mismatched"])


def table(cells: list[Cell]) -> str:
    """Markdown table of the cells, plus the batching gain where both servers were measured."""
    lines = ["| server | clients | K | requests | req/s | p50 ms | p95 ms | p99 ms | failed | mixed up |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for c in cells:
        lines.append(f"| {c.server} | {c.clients} | {c.k} | {c.requests} | {c.throughput:.1f} | {c.percentile(50):.0f} "
                     f"| {c.percentile(95):.0f} | {c.percentile(99):.0f} | {c.failed} | {c.mismatched} |")
    pairs = {(c.clients, c.k): {} for c in cells}
    for c in cells:
        pairs[(c.clients, c.k)][c.server] = c.throughput
    gains = [(key, p["batched"] / p["one forward per request"]) for key, p in pairs.items()
             if p.get("batched") and p.get("one forward per request")]
    if gains:
        lines += ["", "| clients | K | batching gain (req/s batched / one forward per request) |", "|---|---|---|"]
        lines += [f"| {clients} | {k} | {gain:.2f}x |" for (clients, k), gain in gains]
    return "\n".join(lines)


async def _measure_all(url: str, server: str, clients: list[int], ks: list[int], seconds: float, headers=None) -> list[Cell]:
    return [await measure(url, c, k, seconds, server, headers) for k in ks for c in clients]


def _measure_sync(url: str, clients: int, k: int, seconds: float, server: str) -> Cell:
    """``measure`` run to completion (the entry point of the client process)."""
    return asyncio.run(measure(url, clients, k, seconds, server))


def _print(line: str) -> None:
    print(line, flush=True)


def run_local(model_name: str, clients: list[int], ks: list[int], seconds: float, max_batch: int = 32,
              log=_print, **options) -> list[Cell]:
    """Measure the model behind two in-process servers, batched and one forward per request, cell by cell.

    ``options`` are further ServeSettings (precision, threads, max_batch_tokens, max_wait_ms) of both servers.
    The clients run in a spawned process; each cell is measured on the batched server, then at once on the
    other, so that both see the same machine.
    """
    from resrank_rag.serve.app import create_app
    from resrank_rag.serve.server import load_model, serving_in_thread
    from resrank_rag.serve.settings import ServeSettings

    settings = ServeSettings(model=model_name, max_batch=max_batch, max_queue=max(256, 2 * max(clients)), **options)
    model = load_model(settings)
    import torch

    tokens = settings.batch_tokens(model.device)
    log(f"model {model.name} ({model_name}), precision {model.precision}, device {model.device}, "
        f"torch {torch.__version__} with {torch.get_num_threads()} threads, {os.cpu_count()} CPUs "
        f"({platform.processor() or platform.machine()}); batched: max_batch {max_batch}, max_batch_tokens {tokens}, "
        f"max_wait_ms {settings.max_wait_ms:g}; {seconds:g} s per cell; clients in a separate process")
    cells = []
    servers = (("batched", max_batch), ("one forward per request", 1))
    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as clients_process:
        with serving_in_thread(create_app(model, dataclasses.replace(settings, max_batch=servers[0][1]))) as batched, \
                serving_in_thread(create_app(model, dataclasses.replace(settings, max_batch=servers[1][1]))) as single:
            for k in ks:
                for c in clients:
                    for (server, _), url in zip(servers, (batched, single)):
                        cell = clients_process.submit(_measure_sync, url, c, k, seconds, server).result()
                        log(f"  {server}, {c} clients, K = {k}: {cell.throughput:.2f} req/s, p50 {cell.percentile(50):.0f} ms, "
                            f"{cell.failed} failed, {cell.mismatched} mixed up")
                        cells.append(cell)
    return cells


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="resrank-minilm-smollm2", help="Model to serve in-process (batched vs not).")
    parser.add_argument("--url", help="Measure this running server instead (loopback only, e.g. http://127.0.0.1:8080).")
    parser.add_argument("--api-key", help="Bearer key of the server at --url.")
    parser.add_argument("--clients", default="1,8,32")
    parser.add_argument("--k", default="20,100")
    parser.add_argument("--seconds", type=float, default=20.0, help="Duration of each cell.")
    parser.add_argument("--precision", default="auto", help="With --model: the reranker LM's precision (docs/precision.md).")
    parser.add_argument("--threads", type=int, help="With --model: torch threads (default: torch's, all cores).")
    parser.add_argument("--max-batch", type=int, default=32, help="With --model: the batched server's --max-batch.")
    parser.add_argument("--max-batch-tokens", type=int, help="With --model: positions per forward (default: the device's).")
    parser.add_argument("--max-wait-ms", type=float, default=2.0, help="With --model: the servers' --max-wait-ms.")
    parser.add_argument("--json", help="Also write every cell, latencies included, to this JSON file.")
    args = parser.parse_args()
    clients = [int(c) for c in args.clients.split(",")]
    ks = [int(k) for k in args.k.split(",")]
    if args.url:
        if httpx.URL(args.url).host not in ("127.0.0.1", "localhost", "::1"):
            parser.error("--url must be a loopback address; this tool does not load-test other machines")
        headers = {"Authorization": f"Bearer {args.api_key}"} if args.api_key else None
        cells = asyncio.run(_measure_all(args.url, "server", clients, ks, args.seconds, headers))
    else:
        cells = run_local(args.model, clients, ks, args.seconds, args.max_batch, precision=args.precision,
                          threads=args.threads, max_batch_tokens=args.max_batch_tokens, max_wait_ms=args.max_wait_ms)
    print(table(cells))
    if args.json:
        with open(args.json, "w") as out:
            json.dump([dataclasses.asdict(c) | {"throughput": c.throughput} for c in cells], out)


if __name__ == "__main__":
    main()
