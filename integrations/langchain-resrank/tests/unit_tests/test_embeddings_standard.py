"""langchain-tests standard unit suite for ResRankEmbeddings, on the tiny random model."""

from functools import cache

from langchain_resrank import ResRankEmbeddings
from langchain_tests.unit_tests import EmbeddingsUnitTests

from resrank_rag.testing import tiny_resrank


@cache
def _tiny():
    return tiny_resrank()


class TestResRankEmbeddingsUnit(EmbeddingsUnitTests):
    @property
    def embeddings_class(self) -> type[ResRankEmbeddings]:
        return ResRankEmbeddings

    @property
    def embedding_model_params(self) -> dict:
        return {"model": _tiny()}
