"""kill -9 `resrank index` (and `--sync`) in the middle of a Qdrant write, re-run it: nothing lost, stale or doubled.

The child runs the real command with embedded Qdrant instrumented: after a randomly chosen point of a
multi-point write (an upsert or a delete) has reached the SQLite file and before the next one does,
it reports and stalls, and the test kills it there. So every kill provably lands inside a write, on a
machine of any speed; a run that ends before its chosen point fails the test instead of passing
without testing anything. Each run is a process forked from a server that imported everything once
(``Runner``), so the twelve runs do not pay twelve interpreter starts.
"""

import json
import os
import random
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from resrank_rag import ResRank
from resrank_rag.documents import chunk_document, read_documents
from resrank_rag.index import ResRankIndex, point_id

CHILD = textwrap.dedent(
    """
    import json, os, sys, time
    from qdrant_client.local import local_collection, persistence

    state = {"target": 10**9, "size": 0, "done": 0, "inside": 0}

    def call(original, count):
        def wrapped(self, items, *args, **kwargs):
            state["size"], state["done"] = count(items), 0
            return original(self, items, *args, **kwargs)
        return wrapped

    def write(original, kind):
        def wrapped(self, *args, **kwargs):
            result = original(self, *args, **kwargs)
            state["done"] += 1
            if state["done"] < state["size"]:  # more points of this same call are still to be written
                state["inside"] += 1
                if state["inside"] == state["target"]:
                    print(f"stalled inside {kind} {state['done']}/{state['size']}", flush=True)
                    time.sleep(600)
            return result
        return wrapped

    collection = local_collection.LocalCollection
    collection.upsert = call(collection.upsert, len)
    collection._delete_ids = call(collection._delete_ids, len)
    store = persistence.CollectionPersistence
    store.persist, store.delete = write(store.persist, "upsert"), write(store.delete, "delete")

    import torch
    torch.set_num_threads(1)  # no thread pool exists when a run is forked
    from resrank_rag import ResRank
    from resrank_rag.cli import app
    ResRank.from_pretrained(sys.argv[1])  # every module a run loads, imported once; each run forks from here
    print("ready", flush=True)
    for line in sys.stdin:
        args, target = json.loads(line)
        pid = os.fork()
        if pid == 0:  # the run: the real `resrank index` in a process of its own, from a clean state
            state["target"], code = target, 1
            try:
                app(args, prog_name="resrank")
            except SystemExit as stop:
                code = stop.code if isinstance(stop.code, int) else 1
            finally:
                sys.stdout.flush()
                os._exit(code)
        print(f"pid {pid}", flush=True)
        print(f"exit {os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])}", flush=True)
    """
)


class Runner:
    """Runs `resrank index` in processes forked from one that has imported everything once (a run starts in
    milliseconds, not the seconds a fresh interpreter takes to import torch, transformers and
    sentence-transformers); each run is its own process, killed with SIGKILL like any other."""

    def __init__(self, script, model_folder, env):
        self.server = subprocess.Popen([sys.executable, str(script), str(model_folder)], stdin=subprocess.PIPE,
                                       stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
        assert self.server.stdout.readline().strip() == "ready", "the fork server did not start"

    def __call__(self, args, stall_at: int | None) -> str | None:
        """Run the command; with ``stall_at``, SIGKILL it at that mid-write point and return the report line."""
        self.server.stdin.write(json.dumps([["index", *args], stall_at or 10**9]) + "\n")
        self.server.stdin.flush()
        pid, stalled, killed = None, None, False
        for line in self.server.stdout:
            if line.startswith("pid "):
                pid = int(line.split()[1])
            elif line.startswith("stalled inside"):
                stalled = line.strip()
            elif line.startswith("exit "):
                code = int(line.split()[1])
                if stall_at is None:
                    assert code == 0, f"the clean run failed ({code})"
                    return None
                assert killed, f"the command ended before mid-write point {stall_at}; nothing was killed"
                assert code == -signal.SIGKILL, f"the killed run ended with {code}, not by SIGKILL"
                return stalled
            if stall_at is not None and not killed and pid is not None and stalled is not None:
                os.kill(pid, signal.SIGKILL)
                killed = True
        raise AssertionError("the fork server stopped")

    def close(self):
        self.server.stdin.close()
        try:
            self.server.wait(timeout=60)
        finally:
            self.server.kill()


def collection_state(model_folder, store_folder, collection) -> dict[str, tuple[str, str, np.ndarray]]:
    """chunk id -> (document id, text, dense vector) of every point."""
    with ResRankIndex(ResRank.from_pretrained(model_folder), collection, path=str(store_folder)) as index:
        found = index.client.scroll(collection, limit=10_000, with_payload=True, with_vectors=True)[0]
        assert all(str(p.id) == point_id(p.payload["chunk_id"]) for p in found)
        assert all(p.vector["bm25"] is not None for p in found)
        return {p.payload["chunk_id"]: (p.payload["doc_id"], p.payload["text"], np.asarray(p.vector[""])) for p in found}


@pytest.fixture
def run(tmp_path, tiny):
    """``run(args, stall_at)``: `resrank index ARGS` with the tiny model saved at tmp_path/model."""
    tiny.save_pretrained(tmp_path / "model")
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false", "RESRANK_CACHE_DIR": str(tmp_path / "cache")}
    runner = Runner(script, tmp_path / "model", env)
    yield runner
    runner.close()


def test_random_sigkills_inside_writes_then_a_rerun_leave_exactly_one_point_per_document(tmp_path, tiny, run):
    documents = {f"doc-{i}": f"passage {i} about topic {i % 7}" for i in range(48)}
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("".join(json.dumps({"_id": k, "title": "", "text": v}) + "\n" for k, v in documents.items()))
    args = [str(corpus), "--collection", "kills", "--path", str(tmp_path / "qdrant"),
            "--model", str(tmp_path / "model"), "--batch-size", "2", "--no-cache"]
    rng = random.Random(9)
    for _ in range(3):  # 48 documents in batches of 2: 24 upserts with one mid-write point each
        assert run(args, stall_at=rng.randint(1, 6)).startswith("stalled inside upsert")
    run(args, stall_at=None)

    state = collection_state(tmp_path / "model", tmp_path / "qdrant", "kills")
    assert {chunk: text for chunk, (_, text, _) in state.items()} == documents
    with ResRankIndex(ResRank.from_pretrained(tmp_path / "model"), "kills", path=str(tmp_path / "qdrant")) as index:
        assert index.search("passage 5 about topic 5", k=10, top_n=3)


def write_version(folder, files: dict[str, str]) -> None:
    for old in folder.glob("*.txt"):
        old.unlink()
    for name, text in files.items():
        (folder / name).write_text(text)


def words(tag: str, n: int) -> str:
    return " ".join(f"{tag}{i}" for i in range(n))


VERSIONS = [
    {"a.txt": words("a", 5), "b.txt": words("b", 30), "c.txt": words("c", 14), "d.txt": "d stays short",
     "e.txt": words("e", 20)},
    # a is split (1 -> 4 chunks), b shrinks to its head (4 -> 2), c is edited, d is deleted, f is new
    {"a.txt": words("a", 30), "b.txt": words("b", 14), "c.txt": words("c", 14).replace("c3", "edited"),
     "e.txt": words("e", 20), "f.txt": words("f", 22)},
    # a shrinks to one chunk, b regrows, e is deleted, c is split further, d comes back
    {"a.txt": "a is tiny again", "b.txt": words("b", 38), "c.txt": words("c", 30), "d.txt": "d returns",
     "f.txt": words("f", 22)},
]


def test_sync_follows_edits_splits_shrinks_and_deletes_through_random_sigkills(tmp_path, tiny, run):
    source = tmp_path / "docs"
    source.mkdir()
    args = [str(source), "--sync", "--collection", "sync", "--path", str(tmp_path / "qdrant"),
            "--model", str(tmp_path / "model"), "--chunk-size", "8", "--overlap", "2", "--batch-size", "3",
            "--no-cache"]
    rng = random.Random(16)
    kinds = set()
    for version in VERSIONS:
        write_version(source, version)
        for _ in range(2):
            kinds.add(run(args, stall_at=rng.randint(1, 4)).split()[2])
        run(args, stall_at=None)

        expected = {c.id: (d.id, c.text) for d in read_documents(source) for c in chunk_document(d, 8, 2)}
        state = collection_state(tmp_path / "model", tmp_path / "qdrant", "sync")
        assert {chunk: (doc, text) for chunk, (doc, text, _) in state.items()} == expected
        ids = sorted(expected)
        np.testing.assert_allclose(
            np.stack([state[c][2] for c in ids]), tiny.encode([expected[c][1] for c in ids]), atol=1e-5
        )
    assert "upsert" in kinds
