"""langchain-tests standard integration suite for ResRankEmbeddings, on the real packaged model."""

from langchain_resrank import ResRankEmbeddings
from langchain_tests.integration_tests import EmbeddingsIntegrationTests


class TestResRankEmbeddingsIntegration(EmbeddingsIntegrationTests):
    @property
    def embeddings_class(self) -> type[ResRankEmbeddings]:
        return ResRankEmbeddings  # default model_name: the packaged resrank-minilm-smollm2, loaded once
