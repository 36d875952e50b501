"""Request bodies of the four APIs, as their own clients send them (unknown fields are ignored).

``vectors`` and ``query_vector`` are ResRank's extension to the rerank bodies: the stored encoder
vectors of the documents (one per document, e.g. from Qdrant) and of the query, so nothing is re-encoded.
``input_type`` on /v1/embeddings (and TEI's own ``prompt_name``) picks query encoding.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field, PositiveInt, StrictStr

Vector = list[float]


class StoredVectors(BaseModel):
    vectors: list[Vector] | None = Field(
        default=None, description="ResRank extension: one stored encoder vector per document; skips encoding them."
    )
    query_vector: Vector | None = Field(default=None, description="ResRank extension: the query's encoder vector.")


class CohereRerank(StoredVectors):
    """Cohere ``POST /v2/rerank`` (also accepted on /v1/rerank)."""

    model: str | None = None
    query: StrictStr
    documents: list[StrictStr] | None = None
    top_n: PositiveInt | None = None
    return_documents: bool = False
    """Cohere v1 field: include each document's text in the results."""


class TEIRerank(StoredVectors):
    """Text Embeddings Inference ``POST /rerank``."""

    query: StrictStr
    texts: list[StrictStr] | None = None
    return_text: bool = False
    raw_scores: bool = False
    """Accepted for compatibility; ResRank scores are always its raw cosine-plus-prior scores."""
    truncate: bool | None = None


class OpenAIEmbeddings(BaseModel):
    """OpenAI ``POST /v1/embeddings``."""

    input: Any
    """A string or a list of strings (token-id input is refused with a clear error)."""
    model: str | None = None
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: PositiveInt | None = None
    user: str | None = None
    input_type: Literal["query", "document"] = "document"
    """ResRank extension: 'query' encodes the inputs as queries (with the model's query prefix)."""


class TEIEmbed(BaseModel):
    """Text Embeddings Inference ``POST /embed``."""

    inputs: Any
    """A string or a list of strings."""
    normalize: bool = True
    """Accepted for compatibility; ResRank vectors are always unit length."""
    truncate: bool | None = None
    truncation_direction: str | None = None
    prompt_name: str | None = None
    """'query' encodes the inputs as queries; None, 'document' or 'passage' as passages."""
    dimensions: PositiveInt | None = None
