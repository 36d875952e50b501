"""Embedded Qdrant at scale: index throughput, disk, memory and first-stage latency vs points, extrapolated to 1M.

Builds one embedded collection per set with ResRankIndex's own indexing path (``ResRankIndex.index``:
batches, the up-to-date check, BM25 sparse vectors, upserts), taking every dense passage vector from the
EmbeddingCache (``ResRankIndex(embedding_cache=...)``), so no passage is encoded. It refuses to start when
the cache lacks a passage (``--allow-encode`` to encode the misses anyway). Then, in a fresh process (the
one a search service would be), it opens the folder and times top-``k`` first-stage retrieval with the
stored vectors returned (``retrieve_with_vectors``: the candidates a rerank needs), dense and hybrid
(dense + BM25 prefetch fused by RRF in one ``query_points`` call), with the query vector given
(query encoding excluded) and without it (encoding included), over real queries of the set's corpora.

    python benchmarks/qdrant_scale.py                                  # scifact (5,183), squad (20,958), all (62,456)
    python benchmarks/qdrant_scale.py --sets scifact:1000 scifact:2000 --queries 10 --out /tmp/qs   # a tiny run

A set is ``NAME[:N]``: a corpus folder of --data (``scifact``, ``squad``, ...) or ``all`` (every corpus
there, ids prefixed ``<corpus>/``), optionally only its first N passages. Writes ``qdrant_scale.json`` and
``qdrant_scale.png`` under --out, fits each measure as ``a + b * points`` (the embedded mode searches by
brute force, so linear growth is expected; the log-log slope is reported as a check) and extrapolates
the fits to --extrapolate-to points. The collections live in a temporary folder (--workdir to choose,
--keep to keep them). Figures depend on the machine and its load: the JSON records both.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

from instrument import PassageCounter, timed

REPO = Path(__file__).resolve().parents[1]
COLLECTION = "scale"
QUERY_SPLITS = ("test", "dev", "train")
"""The split whose judged queries a corpus contributes: the first of these it has."""
STAGES = ("dense", "hybrid")


# ---------------------------------------------------------------- data
def corpora(data: Path) -> list[str]:
    return sorted(p.name for p in data.iterdir() if (p / "corpus.jsonl").is_file())


def parse_set(spec: str, data: Path) -> tuple[str, list[str], int | None]:
    """``NAME[:N]`` -> (label, corpus names, passage limit)."""
    name, _, limit = spec.partition(":")
    names = corpora(data) if name == "all" else [name]
    for corpus in names:
        if not (data / corpus / "corpus.jsonl").is_file():
            raise SystemExit(
                f"--sets {spec!r}: {data / corpus / 'corpus.jsonl'} does not exist (corpora: {corpora(data)})"
            )
    if limit and (not limit.isdigit() or int(limit) < 1):
        raise SystemExit(f"--sets {spec!r}: N must be a positive integer")
    return spec, names, int(limit) if limit else None


def load_documents(data: Path, names: list[str], limit: int | None):
    """Documents in corpus order (corpora sorted by name), text = passage_text(row) as the cache is keyed."""
    from resrank_rag.evaluation.beir import passage_text, read_jsonl
    from resrank_rag.index import Document

    prefix = len(names) > 1
    documents = []
    for corpus in names:
        seen = set()
        for row in read_jsonl(data / corpus / "corpus.jsonl"):
            if row["_id"] in seen:
                continue
            seen.add(row["_id"])
            doc_id = f"{corpus}/{row['_id']}" if prefix else row["_id"]
            documents.append(Document(doc_id, passage_text(row)))
            if limit is not None and len(documents) >= limit:
                return documents
    return documents


def load_queries(data: Path, names: list[str], n: int) -> list[str]:
    """The first judged queries of each corpus's split, taken round-robin across the corpora."""
    from resrank_rag.evaluation.beir import read_jsonl, read_qrels

    per_corpus = []
    for corpus in names:
        split = next((s for s in QUERY_SPLITS if (data / corpus / "qrels" / f"{s}.tsv").is_file()), None)
        judged = read_qrels(data / corpus / "qrels" / f"{split}.tsv") if split else {}
        rows = read_jsonl(data / corpus / "queries.jsonl")
        per_corpus.append([r["text"] for r in rows if (not judged or r["_id"] in judged) and r["text"].strip()])
    queries = []
    while len(queries) < n and any(per_corpus):
        for texts in per_corpus:
            if texts and len(queries) < n:
                queries.append(texts.pop(0))
    return queries


# ---------------------------------------------------------------- measuring
def rss_mb() -> float:
    """Resident memory of this process now (Linux /proc; else the peak)."""
    try:
        with open("/proc/self/statm") as handle:
            return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:
        return peak_rss_mb()


def peak_rss_mb() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10


def folder_mb(folder: Path) -> float:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) / 2**20


def sqlite_commit_ms(folder: Path, n: int = 30) -> float:
    """Median time of one small SQLite commit in ``folder``: the embedded mode commits every point on its own,
    so this disk latency bounds its indexing throughput."""
    import sqlite3

    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "commit_probe.sqlite"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE probe (value BLOB)")
    times = []
    for _ in range(n):
        began = time.perf_counter()
        with db:
            db.execute("INSERT INTO probe VALUES (?)", (os.urandom(3000),))
        times.append((time.perf_counter() - began) * 1000)
    db.close()
    path.unlink()
    return statistics.median(times)


def summary(ms: list[float]) -> dict:
    return {
        "median_ms": float(np.median(ms)),
        "p95_ms": float(np.percentile(ms, 95)),
        "mean_ms": float(np.mean(ms)),
        "n": len(ms),
    }


def load_model(name: str):
    from resrank_rag import ResRank

    # The first stage needs only the encoder; fp32 and no warm-up keep loading cheap and comparable.
    return ResRank.from_pretrained(name, precision="fp32", warm_start=False)


def build(args) -> dict:
    """Worker: index the set into a fresh embedded folder, vectors from the cache; throughput, split, disk, RSS."""
    from resrank_rag.index import sparse
    from resrank_rag.embedding_cache import EmbeddingCache
    from resrank_rag.index import ResRankIndex

    _, names, limit = parse_set(args.set, args.data)
    model = load_model(args.model)
    rss_model = rss_mb()
    cache = EmbeddingCache(model, path=args.cache)
    documents = load_documents(args.data, names, limit)
    texts = [d.text for d in documents]
    missing = sum(v is None for v in cache.get(texts))
    if missing and not args.allow_encode:
        raise SystemExit(
            f"{missing} of {len(texts)} passages of {args.set} are not in the embedding cache {cache.path}; copy "
            "../shared/cache/embeddings/*.sqlite into ~/.cache/resrank_rag/embeddings/ (../shared/cache/README.md), "
            "or pass --allow-encode to encode them (slow, and then not a measure of indexing alone)"
        )
    totals: dict[str, float] = defaultdict(float)
    cache.encode = timed(totals, "dense vectors from the cache", cache.encode)
    sparse.bm25_vectors = timed(totals, "BM25 sparse vectors", sparse.bm25_vectors)  # writing.py calls it through the module
    folder = Path(args.folder)
    commit_ms = sqlite_commit_ms(folder.parent)
    index = ResRankIndex(model, COLLECTION, path=str(folder), embedding_cache=cache)
    index.client.upsert = timed(totals, "Qdrant upsert", index.client.upsert)
    index.client.retrieve = timed(totals, "Qdrant up-to-date check", index.client.retrieve)
    start = time.perf_counter()
    written = index.index(iter(documents), batch_size=args.batch_size, show_progress_bar=False)
    seconds = time.perf_counter() - start
    points = index.count()
    rss_built = rss_mb()
    index.close()
    cache.close()
    split = {part: round(s, 3) for part, s in totals.items()}
    split["other (payload hashes, batching)"] = round(seconds - sum(totals.values()), 3)
    return {
        "points": points,
        "written": written,
        "passages_encoded": cache.encoded_count,
        "index_s": seconds,
        "points_per_s": points / seconds,
        "index_split_s": split,
        "disk_mb": folder_mb(folder),
        "sqlite_commit_ms": commit_ms,
        "build_rss_model_mb": rss_model,
        "build_rss_mb": rss_built,
        "build_peak_rss_mb": peak_rss_mb(),
    }


def search(args) -> dict:
    """Worker: a fresh process opens the folder (as a service would), then times first-stage retrieval."""
    from resrank_rag.index import ResRankIndex

    _, names, _ = parse_set(args.set, args.data)
    queries = load_queries(args.data, names, args.queries)
    model = load_model(args.model)
    counter = PassageCounter(model)
    rss_model = rss_mb()
    start = time.perf_counter()
    index = ResRankIndex(model, COLLECTION, path=str(args.folder))
    points = index.count()  # the embedded client has read every point into memory when it opened
    open_s = time.perf_counter() - start
    rss_open = rss_mb()

    encode_ms, vectors = [], []
    for query in queries:
        began = time.perf_counter()
        vectors.append(model.encode_query(query))
        encode_ms.append((time.perf_counter() - began) * 1000)
    for stage in STAGES:  # warm-up: first calls pay for lazy imports and caches
        for query, vector in list(zip(queries, vectors))[:3]:
            index.retrieve_with_vectors(query, k=args.k, first_stage=stage, query_vector=vector)
            index.retrieve_with_vectors(query, k=args.k, first_stage=stage)

    qdrant: dict[str, float] = defaultdict(float)
    index.client.query_points = timed(qdrant, "query_points", index.client.query_points)
    latency = {}
    for stage in STAGES:
        excluded, included, returned = [], [], []
        qdrant.clear()
        for query, vector in zip(queries, vectors):  # interleaved, so both see the same machine load
            began = time.perf_counter()
            hits, stored = index.retrieve_with_vectors(query, k=args.k, first_stage=stage, query_vector=vector)
            excluded.append((time.perf_counter() - began) * 1000)
            returned.append(len(hits))
            assert stored.shape == (len(hits), model.embedding_dim)
            began = time.perf_counter()
            index.retrieve_with_vectors(query, k=args.k, first_stage=stage)
            included.append((time.perf_counter() - began) * 1000)
        latency[stage] = {
            "encode_excluded": summary(excluded),
            "encode_included": summary(included),
            "qdrant_query_points_mean_ms": qdrant["query_points"] * 1000 / (2 * len(queries)),
            "hits_returned_min": min(returned),
        }
    index.close()
    return {
        "points_opened": points,
        "queries": len(queries),
        "query_encode": summary(encode_ms),
        "passages_encoded_at_query_time": counter.passages,
        "open_s": open_s,
        "search_rss_model_mb": rss_model,
        "search_rss_open_mb": rss_open,
        "collection_rss_mb": rss_open - rss_model,
        "search_peak_rss_mb": peak_rss_mb(),
        "latency": latency,
    }


# ---------------------------------------------------------------- fitting, reporting
def fit(points: list[int], values: list[float], target: int) -> dict | None:
    """Least squares ``a + b * points``, its value at ``target``, and the log-log slope (1 = linear)."""
    if len(set(points)) < 2:
        return None
    x, y = np.asarray(points, float), np.asarray(values, float)
    b, a = np.polyfit(x, y, 1)
    result = {"intercept": float(a), "per_point": float(b), "at_target": float(a + b * target)}
    if (y > 0).all():
        result["loglog_slope"] = float(np.polyfit(np.log(x), np.log(y), 1)[0])
    return result


def crossing(f: dict | None, budget: float) -> float | None:
    """Points at which a linear fit reaches ``budget``."""
    if f is None or f["per_point"] <= 0:
        return None
    return max(0.0, (budget - f["intercept"]) / f["per_point"])


SERIES = {  # name -> how to read it from one result
    "dense_excl_median_ms": lambda r: r["latency"]["dense"]["encode_excluded"]["median_ms"],
    "dense_excl_p95_ms": lambda r: r["latency"]["dense"]["encode_excluded"]["p95_ms"],
    "dense_incl_median_ms": lambda r: r["latency"]["dense"]["encode_included"]["median_ms"],
    "hybrid_excl_median_ms": lambda r: r["latency"]["hybrid"]["encode_excluded"]["median_ms"],
    "hybrid_excl_p95_ms": lambda r: r["latency"]["hybrid"]["encode_excluded"]["p95_ms"],
    "hybrid_incl_median_ms": lambda r: r["latency"]["hybrid"]["encode_included"]["median_ms"],
    "index_s": lambda r: r["index_s"],
    "disk_mb": lambda r: r["disk_mb"],
    "collection_rss_mb": lambda r: r["collection_rss_mb"],
    "open_s": lambda r: r["open_s"],
}


def table(results: list[dict]) -> str:
    head = (
        "| set | points | index s | points/s | disk MB | RSS model / +collection MB | open s | query encode ms "
        "| dense excl. med / p95 | dense incl. med / p95 | hybrid excl. med / p95 | hybrid incl. med / p95 |"
    )
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in results:
        cells = [
            r["set"], f"{r['points']:,}", f"{r['index_s']:.1f}", f"{r['points_per_s']:,.0f}", f"{r['disk_mb']:.0f}",
            f"{r['search_rss_model_mb']:.0f} / +{r['collection_rss_mb']:.0f}", f"{r['open_s']:.1f}",
            f"{r['query_encode']['median_ms']:.1f}",
        ]
        for stage in STAGES:
            for part in ("encode_excluded", "encode_included"):
                s = r["latency"][stage][part]
                cells.append(f"{s['median_ms']:.1f} / {s['p95_ms']:.1f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(results: list[dict], fits: dict, target: int, budget: float, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points = [r["points"] for r in results]
    grid = np.geomspace(min(points), max(target, max(points)), 50)
    figure, (left, right) = plt.subplots(1, 2, figsize=(12, 4.8))
    for name, colour, label in (
        ("dense_excl_median_ms", "tab:blue", "dense, median"),
        ("dense_excl_p95_ms", "tab:cyan", "dense, p95"),
        ("hybrid_excl_median_ms", "tab:red", "hybrid (RRF), median"),
        ("hybrid_excl_p95_ms", "tab:orange", "hybrid (RRF), p95"),
    ):
        left.plot(points, [SERIES[name](r) for r in results], "o", color=colour, label=label)
        if fits.get(name):
            f = fits[name]
            left.plot(grid, np.maximum(f["intercept"] + f["per_point"] * grid, 1e-3), "--", color=colour, lw=1)
    left.axhline(budget, color="grey", lw=0.8, ls=":", label=f"{budget:g} ms budget")
    left.set(xscale="log", yscale="log", xlabel="points in the embedded collection",
             ylabel="ms per query (top-k with vectors, encode excluded)",
             title="Embedded Qdrant search latency (dashed: linear fit)")
    left.legend(fontsize=8)
    for name, colour, label in (("collection_rss_mb", "tab:green", "RSS of the open collection, MB"),
                                ("disk_mb", "tab:purple", "disk, MB"),
                                ("index_s", "tab:brown", "index time, s")):
        right.plot(points, [SERIES[name](r) for r in results], "o", color=colour, label=label)
        if fits.get(name):
            f = fits[name]
            right.plot(grid, np.maximum(f["intercept"] + f["per_point"] * grid, 1e-3), "--", color=colour, lw=1)
    right.set(xscale="log", yscale="log", xlabel="points in the embedded collection",
              title="Memory, disk, indexing (dashed: linear fit)")
    right.legend(fontsize=8)
    for axis in (left, right):
        axis.axvline(target, color="black", lw=0.5, ls=":")
        axis.grid(True, which="both", lw=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=120)


def environment() -> dict:
    import importlib.metadata as metadata

    import torch

    def version(package):
        try:
            return metadata.version(package)
        except metadata.PackageNotFoundError:
            return None

    try:
        git = ["git", "rev-parse", "--short", "HEAD"]
        commit = subprocess.run(git, cwd=REPO, capture_output=True, text=True).stdout.strip()
    except OSError:
        commit = None
    return {
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "git_commit": commit,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
        "niceness": os.nice(0),
        "qdrant_client": version("qdrant-client"),
        "bm25s": version("bm25s"),
        "numpy": np.__version__,
    }


def worker(args, phase: str, spec: str, folder: Path) -> dict:
    """Run one phase in a fresh interpreter (clean RSS and a cold open); return its JSON."""
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as handle:
        out = Path(handle.name)
    command = [
        sys.executable, __file__, "--_phase", phase, "--_set", spec, "--_folder", str(folder), "--_json", str(out),
        "--data", str(args.data), "--model", args.model, "--k", str(args.k), "--queries", str(args.queries),
        "--batch-size", str(args.batch_size),
    ] + (["--cache", str(args.cache)] if args.cache else []) + (["--allow-encode"] if args.allow_encode else [])
    try:
        subprocess.run(command, check=True)
        return json.loads(out.read_text())
    finally:
        out.unlink(missing_ok=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sets", nargs="+", default=["scifact", "squad", "all"], help="NAME[:N] each (see above)")
    parser.add_argument("--queries", type=int, default=100, help="queries per set (round-robin over its corpora)")
    parser.add_argument("--k", type=int, default=100, help="first-stage candidates, returned with their vectors")
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--model", default="resrank-minilm-smollm2")
    parser.add_argument("--cache", type=Path, default=None, help="EmbeddingCache file (default: the user cache)")
    parser.add_argument("--allow-encode", action="store_true", help="encode passages the cache lacks")
    parser.add_argument(
        "--batch-size", type=int, default=64, help="ResRankIndex.index batch size (its default, and resrank index's)"
    )
    parser.add_argument("--workdir", type=Path, default=None, help="where the collections go (default: a temp folder)")
    parser.add_argument("--keep", action="store_true", help="keep the collections")
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "qdrant_scale")
    parser.add_argument("--extrapolate-to", type=int, default=1_000_000)
    parser.add_argument("--budget-ms", type=float, default=100.0, help="latency budget whose crossing is reported")
    for hidden in ("--_phase", "--_set", "--_folder", "--_json"):
        parser.add_argument(hidden, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args._phase:
        args.set, args.folder = args._set, Path(args._folder)
        result = (build if args._phase == "build" else search)(args)
        Path(args._json).write_text(json.dumps(result))
        return

    specs = [parse_set(spec, args.data)[0] for spec in args.sets]
    args.out.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="qdrant_scale_", dir=args.workdir))
    env = environment()
    results = []
    try:
        for spec in specs:
            folder = workdir / spec.replace(":", "_")
            load_before = os.getloadavg()[0]
            print(f"[{spec}] indexing into {folder} ...", flush=True)
            built = worker(args, "build", spec, folder)
            print(f"[{spec}] {built['points']:,} points in {built['index_s']:.1f} s ({built['points_per_s']:,.0f}/s), "
                  f"{built['passages_encoded']} passages encoded; split {built['index_split_s']}; "
                  f"one SQLite commit on this disk {built['sqlite_commit_ms']:.1f} ms", flush=True)
            searched = worker(args, "search", spec, folder)
            load = [load_before, os.getloadavg()[0]]
            results.append({"set": spec, **built, **searched, "loadavg_1min_before_after": load})
            if not args.keep:
                shutil.rmtree(folder, ignore_errors=True)
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)

    points = [r["points"] for r in results]
    fits = {name: fit(points, [read(r) for r in results], args.extrapolate_to) for name, read in SERIES.items()}
    crossings = {
        name: crossing(fits[name], args.budget_ms)
        for name in ("dense_excl_median_ms", "dense_excl_p95_ms", "hybrid_excl_median_ms", "hybrid_excl_p95_ms")
    }
    print()
    print(table(results))
    print(f"\nlinear fits a + b * points, extrapolated to {args.extrapolate_to:,} points "
          f"(log-log slope 1 = linear growth):")
    for name, f in fits.items():
        if f is None:
            print(f"  {name}: needs two or more sizes")
            continue
        slope = f" (log-log slope {f['loglog_slope']:.2f})" if "loglog_slope" in f else ""
        print(f"  {name}: {f['intercept']:.3g} + {f['per_point'] * 1000:.4g} per 1k points -> "
              f"{f['at_target']:,.1f} at {args.extrapolate_to:,}{slope}")
    for name, n in crossings.items():
        if n is not None:
            print(f"  {name} reaches {args.budget_ms:g} ms at about {n:,.0f} points")
    report = {
        "environment": env,
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items() if not k.startswith("_")},
        "results": results,
        "fits": fits,
        "budget_crossings_points": crossings,
    }
    (args.out / "qdrant_scale.json").write_text(json.dumps(report, indent=2))
    plot(results, fits, args.extrapolate_to, args.budget_ms, args.out / "qdrant_scale.png")
    print(f"\nwrote {args.out / 'qdrant_scale.json'} and {args.out / 'qdrant_scale.png'}")


if __name__ == "__main__":
    main()
