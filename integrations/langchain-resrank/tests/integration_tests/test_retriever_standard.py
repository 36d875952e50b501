"""langchain-tests standard retriever suite for ResRankRetriever over a QdrantVectorStore, real model."""

from functools import cache

from langchain_qdrant import QdrantVectorStore
from langchain_resrank import ResRankEmbeddings, ResRankRetriever
from langchain_tests.integration_tests import RetrieversIntegrationTests

PASSAGES = [
    "ResRank reranks a whole candidate list in one forward pass.",
    "Each passage enters the reranker as a single vector.",
    "The encoder vector is the one the vector store already holds.",
    "Qdrant is a vector database written in Rust.",
    "LangChain composes retrievers, prompts and chat models.",
]


@cache
def _store() -> QdrantVectorStore:
    return QdrantVectorStore.from_texts(PASSAGES, ResRankEmbeddings(), location=":memory:", collection_name="standard")


class TestResRankRetrieverStandard(RetrieversIntegrationTests):
    @property
    def retriever_constructor(self) -> type[ResRankRetriever]:
        return ResRankRetriever

    @property
    def retriever_constructor_params(self) -> dict:
        return {"vector_store": _store(), "k": 4}

    @property
    def retriever_query_example(self) -> str:
        return "how does a listwise reranker read passages?"
