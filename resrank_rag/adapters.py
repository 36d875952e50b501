"""What the LlamaIndex and LangChain adapters share: loading the model and cache, reading stored vectors.

Framework-free: only the core and qdrant-client. The adapters call these and hold no logic of their own;
every read of a store goes through ``resrank_rag.access.read_filter`` here, so the adapters only pass the
principal through.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from qdrant_client import models

from resrank_rag.access import AccessError, astore_read_filter, check_points, store_read_filter
from resrank_rag.embedding_cache import EmbeddingCache
from resrank_rag.model import DEFAULT_MODEL, ResRank

SAME_ENCODER_COSINE = 0.999
"""A stored vector and a fresh encoding of the same text agree at least this well when one encoder made both."""
REMEMBERED_QUERIES = 256
"""Query vectors ``encode_query`` keeps, so that a framework's copy of one can be recognised as this encoder's."""
_query_vectors: OrderedDict[tuple[str, str], np.ndarray] = OrderedDict()
_query_vectors_lock = threading.Lock()


def load_model(model: ResRank | str | Path | None = None, device: str | None = None, **options: Any) -> ResRank:
    """``model`` itself when it is a loaded ``ResRank``, else the model it names, loaded once per process.

    ``device`` and ``options`` (``from_pretrained`` keywords; None values are left out) apply only when
    loading by name; given with a loaded model they raise, since the model is already placed.
    """
    options = {key: value for key, value in options.items() if value is not None}
    if isinstance(model, ResRank):
        given = (["device"] if device is not None else []) + sorted(options)
        if given:
            raise ValueError(
                f"{', '.join(given)} only applies when loading by model_name (a name); "
                "prepare a loaded model yourself (model.to(device), ResRank.from_pretrained(name, precision=...))"
            )
        return model
    if model is None:
        model = DEFAULT_MODEL
    if not isinstance(model, (str, Path)):
        raise TypeError(f"model must be a resrank_rag.ResRank or a model name / folder, got {type(model).__name__}")
    return _load_named(str(model), device, tuple(sorted(options.items())))


@lru_cache(maxsize=4)
def _load_named(name: str, device: str | None, options: tuple) -> ResRank:
    return ResRank.from_pretrained(name, device=device, **dict(options))


def open_cache(model: ResRank, cache: EmbeddingCache | str | Path | None = None) -> EmbeddingCache:
    """The given ``EmbeddingCache`` (checked against ``model``), one at a path (":memory:" too), or the default."""
    if isinstance(cache, EmbeddingCache):
        if cache.model.encoder_fingerprint != model.encoder_fingerprint:
            raise ValueError(
                f"the EmbeddingCache encodes with encoder {cache.model.encoder_fingerprint} but the model's encoder "
                f"is {model.encoder_fingerprint} (another encoder); build the cache with the same model: EmbeddingCache(model)"
            )
        return cache
    if cache is not None and not isinstance(cache, (str, Path)):
        raise TypeError(f"cache must be an EmbeddingCache, a file path or None, got {type(cache).__name__}")
    return EmbeddingCache(model, cache)


def encode_query(model: ResRank, query: str) -> np.ndarray:
    """``model.encode_query(query)``, remembered (by encoder and text) so that ``query_vector`` can prove it is ours."""
    vector = model.encode_query(query)
    with _query_vectors_lock:
        _query_vectors[(model.encoder_fingerprint, query)] = vector.copy()
        _query_vectors.move_to_end((model.encoder_fingerprint, query))
        while len(_query_vectors) > REMEMBERED_QUERIES:
            _query_vectors.popitem(last=False)
    return vector


def query_vector(model: ResRank, query: str, embedding: Sequence[float] | None) -> np.ndarray:
    """The query vector to rerank with: ``embedding`` (a framework's ``QueryBundle.embedding``) only when it
    is provably this encoder's vector of ``query`` (``encode_query`` made it in this process), else ``query``
    encoded. A vector of another embedder, even of the same dimension, would score nonsense."""
    if embedding is not None:
        with _query_vectors_lock:
            ours = _query_vectors.get((model.encoder_fingerprint, query))
        given = np.asarray(embedding, dtype=np.float32)
        if ours is not None and given.shape == ours.shape and np.allclose(given, ours, atol=1e-6):
            return given
    return encode_query(model, query)


def positive_int(value: Any, name: str) -> int:
    """``value`` when it is a positive integer (not a bool), else a ValueError naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return value


# ---------------------------------------------------------------- stored vectors in Qdrant
def point_vector(point: Any, vector_name: str | None) -> list[float] | None:
    """A Qdrant point's dense vector: the named one, or the only one."""
    vector = point.vector
    if isinstance(vector, dict):
        return vector.get(vector_name or "")
    return vector


def retrieve_request(collection: str, ids: Sequence[Any], vector_name: str | None) -> dict:
    """``client.retrieve`` arguments that fetch the stored dense vectors of these point ids, without payloads."""
    return dict(
        collection_name=collection,
        ids=list(dict.fromkeys(ids)),
        with_payload=False,
        with_vectors=[vector_name] if vector_name else True,
    )


def search_request(collection: str, query_vector: np.ndarray, vector_name: str | None, limit: int, **options) -> dict:
    """``client.query_points`` arguments for a dense top ``limit`` that also returns payloads and vectors."""
    return dict(
        collection_name=collection,
        query=np.asarray(query_vector, dtype=np.float32).tolist(),
        using=vector_name or None,
        limit=limit,
        with_payload=True,
        with_vectors=[vector_name] if vector_name else True,
        **options,
    )


def vectors_by_id(points: Sequence[Any], vector_name: str | None) -> dict[str, list[float]]:
    """Each retrieved point's dense vector, keyed by its id as a string."""
    found = {}
    for point in points:
        vector = point_vector(point, vector_name)
        if vector is not None:
            found[str(point.id)] = vector
    return found


def _readable_ids(ids: Sequence[Any], rule: models.Filter) -> models.Filter:
    return models.Filter(must=[models.HasIdCondition(has_id=list(dict.fromkeys(ids))), rule])


def _vector_request(collection: str, ids: Sequence[Any], vector_name: str | None, rule: models.Filter) -> dict:
    return dict(
        collection_name=collection, scroll_filter=_readable_ids(ids, rule), limit=max(1, len(ids)),
        with_payload=False, with_vectors=[vector_name] if vector_name else True,
    )


def fetch_vectors(
    client: Any, collection: str, ids: Sequence[Any], vector_name: str | None, *, principal, access_key: str
) -> dict[str, list[float]]:
    """The dense vectors Qdrant stores for these point ids, of the points ``principal`` may read.

    None of a store that holds access lists, read without a principal: the caller then encodes the texts
    it holds (a reranker never needs a stored vector to rank what it was given). ``access_key`` is where
    the store's points hold their access list.
    """
    try:
        rule = store_read_filter(client, collection, principal, key=access_key)
    except AccessError:
        return {}
    if rule is None:
        return vectors_by_id(client.retrieve(**retrieve_request(collection, ids, vector_name)), vector_name)
    return vectors_by_id(client.scroll(**_vector_request(collection, ids, vector_name, rule))[0], vector_name)


async def afetch_vectors(
    aclient: Any, collection: str, ids: Sequence[Any], vector_name: str | None, *, principal, access_key: str
) -> dict:
    """``fetch_vectors`` through an ``AsyncQdrantClient``."""
    try:
        rule = await astore_read_filter(aclient, collection, principal, key=access_key)
    except AccessError:
        return {}
    if rule is None:
        return vectors_by_id(await aclient.retrieve(**retrieve_request(collection, ids, vector_name)), vector_name)
    return vectors_by_id((await aclient.scroll(**_vector_request(collection, ids, vector_name, rule)))[0], vector_name)


def query_readable(client: Any, principal, access_key: str, request: dict) -> list:
    """``client.query_points(**request).points`` (a ``search_request``) within what ``principal`` may read.

    A store holding access lists refuses a search without a principal (``AccessError``), as ``ResRankIndex``
    does; ``access_key`` is where its points hold their list (``allowed_groups`` in a LlamaIndex store,
    ``metadata.allowed_groups`` in a langchain-qdrant one).
    """
    collection = request["collection_name"]
    rule = store_read_filter(client, collection, principal, request.get("query_filter"), key=access_key)
    points = client.query_points(**{**request, "query_filter": rule}).points
    check_points(principal, (p.payload for p in points), access_key, collection)
    return points


async def aquery_readable(aclient: Any, principal, access_key: str, request: dict) -> list:
    """``query_readable`` through an ``AsyncQdrantClient``."""
    collection = request["collection_name"]
    rule = await astore_read_filter(aclient, collection, principal, request.get("query_filter"), key=access_key)
    points = (await aclient.query_points(**{**request, "query_filter": rule})).points
    check_points(principal, (p.payload for p in points), access_key, collection)
    return points


def collection_fingerprint(client: Any, collection: str) -> str | None:
    """The encoder fingerprint in a collection's model record (``ResRankIndex`` writes one), None without one."""
    return ((client.get_collection(collection).config.metadata) or {}).get("encoder_fingerprint")


async def acollection_fingerprint(aclient: Any, collection: str) -> str | None:
    """``collection_fingerprint`` through an ``AsyncQdrantClient``."""
    return ((await aclient.get_collection(collection)).config.metadata or {}).get("encoder_fingerprint")


def made_by(cache: EmbeddingCache, text: str, vector: Sequence[float]) -> bool:
    """Whether ``vector`` is the cache's encoder's vector of ``text`` (at most one encode, then cached).

    Tells a store written by this encoder from one of another encoder of the same dimension.
    """
    stored = np.asarray(vector, dtype=np.float32)
    ours = cache.encode([text])[0]
    if stored.shape != ours.shape:
        return False
    norm = float(np.linalg.norm(stored) * np.linalg.norm(ours))
    return norm > 0 and float(stored @ ours) / norm >= SAME_ENCODER_COSINE
