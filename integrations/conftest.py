"""Fixtures the integration packages' tests share (LlamaIndex and LangChain; frameworks imported inside the fixtures)."""

import os
from pathlib import Path
from typing import Any, List

import pytest

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"


class EncodeCounter:
    """Counts the texts that ``model.encode`` (passages) and ``model.encode_queries`` receive."""

    def __init__(self, model, monkeypatch):
        self.passages = 0
        self.queries = 0
        original_encode, original_queries = model.encode, model.encode_queries

        def encode(texts, *args, **kwargs):
            self.passages += len(texts)
            return original_encode(texts, *args, **kwargs)

        def encode_queries(texts, *args, **kwargs):
            self.queries += len(texts)
            return original_queries(texts, *args, **kwargs)

        monkeypatch.setattr(model, "encode", encode)
        monkeypatch.setattr(model, "encode_queries", encode_queries)


@pytest.fixture(scope="session")
def tiny():
    """A tiny random ResRank shared by the session (tests patch it only through monkeypatch)."""
    from resrank_rag.testing import tiny_resrank

    return tiny_resrank()


@pytest.fixture(scope="module")
def trained():
    """A tiny model that behaves like a trained one: residual heads and the rank prior are non-zero."""
    import torch

    from resrank_rag.testing import perturb_heads, tiny_resrank

    model = tiny_resrank(seed=4)
    perturb_heads(model)
    with torch.no_grad():
        model.rank_prior_weight.fill_(0.3)
    return model


@pytest.fixture(scope="session")
def packaged_model():
    from resrank_rag import ResRank

    return ResRank.from_pretrained("resrank-minilm-smollm2", precision="fp32")  # compared with fp32 references


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data not found at {SHARED_DATA} (expected ../shared/data beside the repo)")
    return SHARED_DATA


@pytest.fixture
def rerank_events():
    """ReRankStartEvent / ReRankEndEvent instances fired on the root instrumentation dispatcher."""
    from llama_index.core.instrumentation import get_dispatcher
    from llama_index.core.instrumentation.event_handlers import BaseEventHandler
    from llama_index.core.instrumentation.events.rerank import ReRankEndEvent, ReRankStartEvent

    seen: List[Any] = []

    class Collector(BaseEventHandler):
        def handle(self, event, **kwargs) -> None:
            if isinstance(event, (ReRankStartEvent, ReRankEndEvent)):
                seen.append(event)

    root = get_dispatcher()
    handler = Collector()
    root.add_event_handler(handler)
    yield seen
    root.event_handlers.remove(handler)


PASSAGES = [
    ("The Eiffel Tower in Paris was completed in 1889 for the World's Fair.", {"topic": "landmarks"}),
    ("Photosynthesis converts light energy into chemical energy in plants.", {"topic": "biology"}),
    ("The Great Wall of China stretches for thousands of kilometres.", {"topic": "landmarks"}),
    ("Mitochondria produce most of the cell's supply of ATP.", {"topic": "biology"}),
    ("Python is a programming language that emphasises readability.", {"topic": "computing"}),
    ("Qdrant is a vector database written in Rust.", {"topic": "computing"}),
    ("The Amazon river carries more water than any other river.", {"topic": "geography"}),
    ("Mount Everest is the highest mountain above sea level.", {"topic": "geography"}),
]


@pytest.fixture
def documents():
    from llama_index.core import Document

    return [Document(text=text, metadata=dict(meta, rank=i)) for i, (text, meta) in enumerate(PASSAGES)]


def build_qdrant_index(documents, embed_model, collection="docs"):
    """A VectorStoreIndex over an in-memory embedded Qdrant; returns (index, vector_store)."""
    from llama_index.core import StorageContext, VectorStoreIndex
    from llama_index.core.node_parser import SentenceSplitter
    from llama_index.vector_stores.qdrant import QdrantVectorStore
    from qdrant_client import QdrantClient

    store = QdrantVectorStore(collection_name=collection, client=QdrantClient(location=":memory:"))
    index = VectorStoreIndex.from_documents(
        documents,
        storage_context=StorageContext.from_defaults(vector_store=store),
        embed_model=embed_model,
        transformations=[SentenceSplitter(chunk_size=512)],
    )
    return index, store


@pytest.fixture
def make_qdrant_index():
    return build_qdrant_index


@pytest.fixture
def count_encodes(monkeypatch):
    """``count_encodes(model)`` starts counting encoder inputs; the wrappers are removed after the test."""
    return lambda model: EncodeCounter(model, monkeypatch)
