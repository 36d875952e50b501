"""Request bodies of the four APIs, as their own clients send them (unknown fields are ignored).

Types are strict: ``true`` is not a count, ``"1"`` not a number and ``"yes"`` not a flag (a 422 says so).
``vectors`` and ``query_vector`` are ResRank's extension to the rerank bodies: the stored encoder
vectors of the documents (one per document, e.g. from Qdrant) and of the query, so nothing is re-encoded.
``input_type`` on /v1/embeddings (and TEI's own ``prompt_name``) picks query encoding.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, StrictBool, StrictFloat, StrictInt, StrictStr

Vector = list[StrictFloat]
Count = Annotated[StrictInt, Field(gt=0)]
Direction = Literal["right", "Right"]
"""TEI's ``truncation_direction``: texts are cut at their end (``Left`` is refused rather than ignored)."""


class StoredVectors(BaseModel):
    vectors: list[Vector] | None = Field(
        default=None, description="ResRank extension: one stored encoder vector per document; skips encoding them."
    )
    query_vector: Vector | None = Field(default=None, description="ResRank extension: the query's encoder vector.")


class CohereRerank(StoredVectors):
    """Cohere ``POST /v2/rerank`` (also accepted on /v1/rerank)."""

    model: StrictStr | None = None
    query: StrictStr
    documents: list[StrictStr] | None = None
    top_n: Count | None = None
    return_documents: StrictBool = False
    """Cohere v1 field: include each document's text in the results."""
    max_tokens_per_doc: Count | None = None
    """Cohere v2: each document is cut to this many tokens before ranking (never more than the encoder's window)."""


class TEIRerank(StoredVectors):
    """Text Embeddings Inference ``POST /rerank``."""

    query: StrictStr
    texts: list[StrictStr] | None = None
    return_text: StrictBool = False
    raw_scores: StrictBool = False
    """Accepted for compatibility; ResRank scores are always its raw cosine-plus-prior scores."""
    truncate: StrictBool | None = None
    """False: a text longer than the encoder's window is refused (413), as TEI does; true or left out: it is cut."""
    truncation_direction: Direction | None = None


class OpenAIEmbeddings(BaseModel):
    """OpenAI ``POST /v1/embeddings``."""

    input: Any
    """A string or a list of strings (token-id input is refused with a clear error)."""
    model: StrictStr | None = None
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: Count | None = None
    user: StrictStr | None = None
    input_type: Literal["query", "document"] = "document"
    """ResRank extension: 'query' encodes the inputs as queries (with the model's query prefix)."""


class TEIEmbed(BaseModel):
    """Text Embeddings Inference ``POST /embed``."""

    inputs: Any
    """A string or a list of strings."""
    normalize: StrictBool = True
    """Accepted for compatibility; ResRank vectors are always unit length."""
    truncate: StrictBool | None = None
    """False: an input longer than the encoder's window is refused (413), as TEI does; true or left out: it is cut."""
    truncation_direction: Direction | None = None
    prompt_name: StrictStr | None = None
    """'query' encodes the inputs as queries; None, 'document' or 'passage' as passages."""
    dimensions: Count | None = None
