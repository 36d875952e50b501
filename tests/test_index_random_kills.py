"""kill -9 the `resrank index` command at random moments, re-run it: nothing lost, nothing duplicated."""

import json
import os
import random
import signal
import subprocess
import sys
import time

from resrank_rag import ResRank
from resrank_rag.index import ResRankIndex, point_id

DOCS = 48


def run_indexer(args, env, kill_after: float | None):
    child = subprocess.Popen(
        [sys.executable, "-m", "resrank_rag.cli", "index", *args],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
    )
    if kill_after is None:
        return child.wait(timeout=600)
    time.sleep(kill_after)
    child.send_signal(signal.SIGKILL)
    return child.wait(timeout=60)


def test_random_sigkills_then_a_rerun_leave_exactly_one_point_per_document(tmp_path, tiny):
    tiny.save_pretrained(tmp_path / "model")
    corpus = tmp_path / "corpus.jsonl"
    documents = {f"doc-{i}": f"passage {i} about topic {i % 7}" for i in range(DOCS)}
    corpus.write_text("".join(json.dumps({"_id": k, "title": "", "text": v}) + "\n" for k, v in documents.items()))
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false", "RESRANK_CACHE_DIR": str(tmp_path / "cache")}
    args = [str(corpus), "--collection", "kills", "--path", str(tmp_path / "qdrant"),
            "--model", str(tmp_path / "model"), "--batch-size", "2", "--no-cache"]
    rng = random.Random(9)
    for _ in range(3):  # kills land during start-up, collection creation or between/inside upserts
        run_indexer(args, env, kill_after=rng.uniform(1.0, 12.0))
    assert run_indexer(args, env, kill_after=None) == 0

    index = ResRankIndex(ResRank.from_pretrained(tmp_path / "model"), "kills", path=str(tmp_path / "qdrant"))
    assert index.count() == DOCS
    points = index.client.scroll("kills", limit=1000, with_payload=True)[0]
    assert sorted(str(p.id) for p in points) == sorted(point_id(k) for k in documents)
    assert {p.payload["doc_id"]: p.payload["text"] for p in points} == documents
    assert index.search("passage 5 about topic 5", k=10, top_n=3)
