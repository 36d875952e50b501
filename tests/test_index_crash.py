"""Killing the indexer mid-run loses at most the batch being encoded; a re-run ends with one point per document."""

import os
import signal
import subprocess
import sys
import textwrap

from resrank_rag import ResRank
from resrank_rag.index import Document, ResRankIndex, point_id

BATCH = 4
DOCS = 40
KILL_AFTER_BATCHES = 3

CHILD = textwrap.dedent(
    """
    import sys, time
    from resrank_rag import ResRank
    from resrank_rag.index import Document, ResRankIndex

    model_folder, store_folder = sys.argv[1], sys.argv[2]
    batch, docs, stall_at = int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
    model = ResRank.from_pretrained(model_folder)
    index = ResRankIndex(model, "crash", path=store_folder)
    upsert, encode = index.client.upsert, model.encode

    def reporting_upsert(*args, **kwargs):
        result = upsert(*args, **kwargs)
        print("upserted", flush=True)
        return result

    calls = []

    def stalling_encode(*args, **kwargs):
        calls.append(1)
        if len(calls) == stall_at:
            time.sleep(60)  # the kill lands while this batch is being encoded
        return encode(*args, **kwargs)

    index.client.upsert, model.encode = reporting_upsert, stalling_encode
    index.index([Document(f"doc-{i}", f"passage number {i}") for i in range(docs)], batch_size=batch)
    print("finished", flush=True)
    """
)


def test_killed_indexer_resumes_to_exactly_one_point_per_document(tmp_path, tiny):
    model_folder, store_folder = tmp_path / "model", tmp_path / "qdrant"
    tiny.save_pretrained(model_folder)
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false"}
    child = subprocess.Popen(
        [sys.executable, str(script), str(model_folder), str(store_folder)]
        + [str(n) for n in (BATCH, DOCS, KILL_AFTER_BATCHES + 1)],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env,
    )
    upserts = 0
    try:
        for line in child.stdout:
            assert line.strip() != "finished", "the indexer finished before it could be killed"
            upserts += line.strip() == "upserted"
            if upserts == KILL_AFTER_BATCHES:
                child.send_signal(signal.SIGKILL)
                break
    finally:
        child.kill()
        child.wait(timeout=60)
    assert upserts == KILL_AFTER_BATCHES, "the indexer died before upserting three batches"

    model = ResRank.from_pretrained(model_folder)
    index = ResRankIndex(model, "crash", path=str(store_folder))
    assert index.count() == KILL_AFTER_BATCHES * BATCH  # only the batch under encoding was lost
    documents = [Document(f"doc-{i}", f"passage number {i}") for i in range(DOCS)]
    assert index.index(documents, batch_size=BATCH) == DOCS - KILL_AFTER_BATCHES * BATCH
    assert index.count() == DOCS
    points = index.client.scroll("crash", limit=1000, with_payload=["doc_id"])[0]
    assert sorted(str(p.id) for p in points) == sorted(point_id(d.id) for d in documents)
    assert sorted(p.payload["doc_id"] for p in points) == sorted(d.id for d in documents)
