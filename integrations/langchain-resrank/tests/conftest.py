"""Shared fixtures: a tiny random ResRank, stores and caches built on it, and the real packaged model."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

FIXTURES = Path(__file__).parent / "fixtures"
TEXTS = [
    "Qdrant stores vectors and their payloads.",
    "ResRank reranks a whole candidate list in one forward pass.",
    "LangChain chains retrievers, prompts and chat models.",
    "Bread rises because yeast releases carbon dioxide.",
    "The heart pumps blood through the lungs and the body.",
    "Earthquakes release stress built up along a fault.",
]


@pytest.fixture(scope="session")
def tiny_model():
    from resrank_rag.testing import tiny_resrank

    return tiny_resrank()


@pytest.fixture
def memory_cache(tiny_model):
    from resrank_rag.embedding_cache import EmbeddingCache

    return EmbeddingCache(tiny_model, ":memory:")


@pytest.fixture
def tiny_store(tiny_model):
    """A langchain-qdrant store (in memory) built with ResRankEmbeddings over the tiny model."""
    from langchain_qdrant import QdrantVectorStore
    from langchain_resrank import ResRankEmbeddings

    return QdrantVectorStore.from_texts(
        TEXTS,
        ResRankEmbeddings(model=tiny_model),
        metadatas=[{"source": f"doc-{i}", "tags": ["fixture"]} for i in range(len(TEXTS))],
        location=":memory:",
        collection_name="tiny",
    )


@pytest.fixture(scope="session")
def real_model():
    """The packaged ResRank, loaded once through the same cache the components use by default."""
    from langchain_resrank._models import load_model

    from resrank_rag import DEFAULT_MODEL

    return load_model(DEFAULT_MODEL)


@pytest.fixture(scope="session")
def judged():
    """Hand-written judged queries: {"passages": {id: text}, "queries": {id: text}, "qrels": {qid: {pid: grade}}}."""
    return json.loads((FIXTURES / "judged_queries.json").read_text())


@pytest.fixture
def count_passage_encodes(monkeypatch):
    """``count_passage_encodes(model)`` returns a list recording how many passages each later
    ``model.encode`` call receives (the core may call it with none)."""

    def start(model) -> list[int]:
        calls: list[int] = []
        original = model.encode

        def counting(texts, *args, **kwargs):
            calls.append(len(texts))
            return original(texts, *args, **kwargs)

        monkeypatch.setattr(model, "encode", counting)
        return calls

    return start
