"""The collection under a ResRankIndex: the Qdrant client, the model record in the collection's metadata,
the layout of an existing collection (and what an older one lacks), server version checks, and the read
filter every read goes through."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TypeVar

import numpy as np
from qdrant_client import QdrantClient, models

from resrank_rag.access import ACCESS_MARK, Principal, read_filter
from resrank_rag.index import sparse
from resrank_rag.index.filters import check_filter
from resrank_rag.index.points import SPARSE

DEFAULT_PATH = "./.resrank/qdrant"
MIN_QDRANT = (1, 16)
"""Collection metadata (the model record) and RRF with a chosen constant need Qdrant 1.16."""
_Self = TypeVar("_Self", bound="Collection")


class ModelMismatchError(ValueError):
    """The collection holds vectors from another encoder than the model it was opened with."""


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.lstrip("v").split("-")[0].split(".")[:2] if part.isdigit())


class Collection:
    """A ResRankIndex's Qdrant client and collection: opening, creating and checking it (see ``ResRankIndex``)."""

    def __init__(
        self,
        model,
        collection: str,
        path: str | None = None,
        url: str | None = None,
        api_key: str | None = None,
        *,
        embedding_cache=None,
    ):
        if not collection or not isinstance(collection, str):
            raise ValueError("collection must be a non-empty string, e.g. 'docs'")
        if url is not None and path is not None:
            raise ValueError("pass either path= (embedded Qdrant) or url= (Qdrant server), not both")
        self.model = model
        self.collection = collection
        self.embedding_cache = embedding_cache
        self._remote = url is not None
        if url is not None:
            self.client = QdrantClient(url=url, api_key=api_key)
        elif path == ":memory:":
            self.client = QdrantClient(location=":memory:")
        else:
            folder = Path(path or DEFAULT_PATH).expanduser()
            folder.mkdir(parents=True, exist_ok=True)
            try:
                self.client = QdrantClient(path=str(folder))
            except RuntimeError as error:
                raise RuntimeError(
                    f"{error} Close the other ResRankIndex on {folder} (index.close()), or run a "
                    "Qdrant server and pass url= (see docs/qdrant.md)."
                ) from None
        self._layout: dict | None = None  # {"avgdl": float, "sparse": bool} once the collection is known
        if self.client.collection_exists(collection):
            self._open()

    def close(self) -> None:
        """Release the Qdrant client (and with it the lock on an embedded folder)."""
        self.client.close()

    def __enter__(self: _Self) -> _Self:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _model_record(self) -> dict:
        return {
            "resrank_model": self.model.name,
            "encoder_fingerprint": self.model.encoder_fingerprint,
            "vector_size": int(self.model.embedding_dim),
        }

    def _check_server(self) -> None:
        """Raise a clear error when the Qdrant server is older than the features this index needs."""
        try:
            version = self.client.info().version
        except Exception:  # noqa: BLE001 - an unreadable version is no proof of an old server
            return
        if _version(version) < MIN_QDRANT:
            raise RuntimeError(
                f"the Qdrant server is version {version}, but ResRankIndex needs Qdrant "
                f"{'.'.join(map(str, MIN_QDRANT))} or newer (collection metadata holds the model record); "
                "upgrade the server, e.g. `docker pull qdrant/qdrant`"
            )

    def _open(self) -> dict:
        """Check the collection's model record and read its layout (once)."""
        if self._layout is not None:
            return self._layout
        info = self.client.get_collection(self.collection)
        recorded = info.config.metadata or {}
        if "encoder_fingerprint" not in recorded:
            self._check_server()
            raise ModelMismatchError(
                f"Qdrant collection {self.collection!r} was not created by ResRankIndex (no model record); "
                "index into a new collection name"
            )
        expected = self._model_record()
        if (recorded["encoder_fingerprint"], recorded.get("vector_size")) != (
            expected["encoder_fingerprint"],
            expected["vector_size"],
        ):
            raise ModelMismatchError(
                f"Qdrant collection {self.collection!r} holds vectors of model {recorded.get('resrank_model')!r} "
                f"(encoder {recorded['encoder_fingerprint']}, {recorded.get('vector_size')} dims) but was opened "
                f"with {expected['resrank_model']!r} (encoder {expected['encoder_fingerprint']}, "
                f"{expected['vector_size']} dims). Open it with the model that built it, or index into a new "
                "collection name."
            )
        if self._remote and "doc_id" not in (info.payload_schema or {}):
            self._index_doc_id()
        has_sparse = SPARSE in (info.config.params.sparse_vectors or {})
        self._layout = {
            "avgdl": float(recorded.get("bm25_avgdl", 1.0)),
            "sparse": has_sparse,
            ACCESS_MARK: bool(recorded.get(ACCESS_MARK)),  # documents with allowed_groups were written
        }
        return self._layout

    def _index_doc_id(self) -> None:
        """A keyword index on ``doc_id`` keeps a server's delete and sync filters fast (embedded mode has none)."""
        self.client.create_payload_index(self.collection, "doc_id", models.PayloadSchemaType.KEYWORD, wait=True)

    def _ensure_collection(self, first_texts: list[str]) -> dict:
        """Open the collection, creating it when missing; BM25's average length comes from the first batch."""
        if self._layout is not None:
            return self._writable(self._layout)
        if self.client.collection_exists(self.collection):
            return self._writable(self._open())
        lengths = [sum(bag.values()) for bag in sparse.tokenize(first_texts)]
        avgdl = max(1.0, float(np.mean(lengths))) if lengths else 1.0
        self.client.create_collection(
            self.collection,
            vectors_config=models.VectorParams(size=int(self.model.embedding_dim), distance=models.Distance.COSINE),
            sparse_vectors_config={SPARSE: models.SparseVectorParams(modifier=models.Modifier.IDF)},
            metadata={**self._model_record(), "bm25_avgdl": avgdl},
        )
        if "encoder_fingerprint" not in (self.client.get_collection(self.collection).config.metadata or {}):
            self.client.delete_collection(self.collection)  # the server dropped the metadata: too old
            self._check_server()
            raise RuntimeError(f"Qdrant did not keep the metadata of collection {self.collection!r}")
        if self._remote:
            self._index_doc_id()
        return self._open()

    def _writable(self, layout: dict) -> dict:
        if not layout["sparse"]:
            raise ValueError(
                f"Qdrant collection {self.collection!r} was built by an older resrank-rag, without the BM25 sparse "
                f"vector this version writes and searches; index into a new collection "
                f"(`resrank index SOURCE --collection NEW_NAME`)"
            )
        return layout

    def _require_collection(self) -> dict:
        if self._layout is None and not self.client.collection_exists(self.collection):
            raise ValueError(
                f"Qdrant collection {self.collection!r} does not exist yet; index documents first "
                f"(ResRankIndex.index or `resrank index PATH --collection {self.collection}`)"
            )
        return self._open()

    def access_controlled(self) -> bool:
        """Whether any document written into the collection carried ``allowed_groups`` (read fresh from Qdrant)."""
        if self._layout is not None and self._layout[ACCESS_MARK]:
            return True
        if not self.client.collection_exists(self.collection):
            return False
        recorded = self.client.get_collection(self.collection).config.metadata or {}
        if recorded.get(ACCESS_MARK) and self._layout is not None:
            self._layout[ACCESS_MARK] = True
        return bool(recorded.get(ACCESS_MARK))

    def _readable(self, filter, principal: Principal | None) -> models.Filter | None:  # noqa: A002
        """``filter`` (checked) within what ``principal`` may read; the access mark is read fresh from Qdrant."""
        controlled = principal is None and self.access_controlled()
        return read_filter(principal, check_filter(filter), access_controlled=controlled, collection=self.collection)

    def _count(self, selector: models.Filter | None) -> int:
        return int(self.client.count(self.collection, count_filter=selector, exact=True).count)

    def _pages(self, selector: models.Filter | None, payload: list[str] | bool, page_size: int) -> Iterator[list]:
        """The points within ``selector``, one Qdrant scroll page at a time (the caller applies any access rule)."""
        offset = None
        while True:
            page, offset = self.client.scroll(
                self.collection, scroll_filter=selector, limit=page_size, offset=offset, with_payload=payload,
                with_vectors=False,
            )
            yield page
            if offset is None:
                return
