"""The FastAPI app: Cohere, TEI and OpenAI routes over one ResRank and its batcher."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import uuid
from contextlib import asynccontextmanager
from functools import partial

import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from resrank_rag import __version__
from resrank_rag.model import ResRank
from resrank_rag.results import RerankResult
from resrank_rag.serve import errors
from resrank_rag.serve.auth import api_key_auth
from resrank_rag.serve.batcher import Batcher, Overloaded
from resrank_rag.serve.body_limit import BodyLimits, body_limit
from resrank_rag.serve.errors import APIError
from resrank_rag.serve.metrics import Metrics
from resrank_rag.serve.schemas import CohereRerank, OpenAIEmbeddings, TEIEmbed, TEIRerank
from resrank_rag.serve.settings import ServeSettings
from resrank_rag.serve.tokens import TokenWindow
from resrank_rag.serve.work import RerankJob, run_batch

ROUTES = {"/v2/rerank", "/v1/rerank", "/rerank", "/v1/embeddings", "/embed", "/health", "/info", "/metrics"}
RETRY_AFTER_S = 1


class Service:
    """Checks one request against the limits and the model, queues it, and waits for its result."""

    def __init__(self, model: ResRank, settings: ServeSettings, metrics: Metrics):
        self.model, self.settings, self.metrics = model, settings, metrics
        self.batcher: Batcher | None = None
        self.batch_tokens = settings.batch_tokens(model.device)
        """Position budget of one forward (``--max-batch-tokens``, or the device's default)."""
        self.window = TokenWindow(model)

    def start(self) -> None:
        s = self.settings
        self.batcher = Batcher(partial(run_batch, self.model), s.max_batch, self.batch_tokens, s.max_wait_ms / 1000,
                               s.max_queue, observe=self.metrics.observe_batch)
        self.batcher.start()

    async def stop(self) -> None:
        if self.batcher is not None:
            await self.batcher.stop()

    # ---------------------------------------------------------------- rerank
    async def rerank(
        self, request: Request, body, texts: list[str] | None, field: str, top_n: int | None,
        truncate: bool | None = None, max_tokens: int | None = None,
    ) -> list[RerankResult]:
        """``truncate`` False (TEI): a query or text the encoder's window would cut is refused (413);
        ``max_tokens`` (Cohere ``max_tokens_per_doc``): each text is cut to that many tokens first."""
        job = self._rerank_job(body.query, texts, field, body.vectors, body.query_vector, top_n)
        if truncate is False:
            await self._fits(job.texts or [], field)
            await self._fits([job.query], "query", kind="query")
        if max_tokens is not None and max_tokens < self.window.limit:
            if job.texts is None or job.vectors is not None:
                raise APIError(422, "max_tokens_per_doc cannot apply to stored vectors; send the documents' texts "
                                    f"alone, or leave max_tokens_per_doc out (or at least {self.window.limit})")
            try:
                job = dataclasses.replace(job, texts=await asyncio.to_thread(self.window.cut, job.texts, max_tokens))
            except ValueError as error:
                raise APIError(422, str(error)) from None
        cost = self.model.reranker_input_length(job.query, len(job.texts if job.vectors is None else job.vectors))
        return await self._run(request, "rerank", job, cost)

    async def _fits(self, texts: list[str], field: str, kind: str = "passage") -> None:
        """As TEI answers ``truncate: false``: 413 for the first text the encoder's window would cut."""
        over = await asyncio.to_thread(self.window.first_over, texts, kind)
        if over is not None:
            where = field if kind == "query" else f"{field}[{over[0]}]"
            raise APIError(413, f"Input validation error: `{where}` must have less than {self.window.limit + 1} tokens. "
                                f"Given: {over[1]}. Send truncate: true to cut it, or chunk long documents")

    def _rerank_job(self, query, texts, field, vectors, query_vector, top_n) -> RerankJob:
        if not query.strip():
            raise APIError(422, "query is empty or whitespace; send the user's question text")
        if texts is None and vectors is None:
            raise APIError(422, f"send the candidates as {field} (strings) or as the ResRank extension field vectors")
        count = len(texts) if texts is not None else len(vectors)
        if count == 0:
            raise APIError(422, f"{field} is empty; send at least one candidate")
        limit = min(self.settings.max_candidates, self.model.max_candidates(query))
        if count > limit:
            raise APIError(413, f"{count} candidates is more than the {limit} this server ranks per request; "
                                "send the first-stage top-k, or split the list")
        self._check_chars(len(query) + sum(map(len, texts or ())))
        if vectors is not None:
            if texts is not None and len(vectors) != len(texts):
                raise APIError(422, f"got {len(texts)} {field} but {len(vectors)} vectors; send one vector per candidate")
            vectors = self._vectors(vectors, "vectors")
        if query_vector is not None:
            query_vector = self._vectors([query_vector], "query_vector")[0]
        return RerankJob(query, texts, vectors, query_vector, top_n)

    def _vectors(self, rows: list[list[float]], field: str) -> np.ndarray:
        dim = self.model.embedding_dim
        for i, row in enumerate(rows):
            if len(row) != dim:
                where = field if field == "query_vector" else f"{field}[{i}]"
                raise APIError(422, f"{where} has {len(row)} numbers but this model's vectors have {dim}; send the "
                                    f"vectors of encoder {self.model.encoder_fingerprint} (see GET /info)")
        array = np.asarray(rows, dtype=np.float32).reshape(len(rows), dim)
        if not np.isfinite(array).all():
            raise APIError(422, f"{field} contain NaN or infinite values")
        return array

    # ---------------------------------------------------------------- embed
    async def embed(
        self, request: Request, inputs, field: str, as_query: bool, dimensions: int | None, truncate: bool | None = None
    ) -> np.ndarray:
        texts = _input_texts(inputs, field)
        if len(texts) > self.settings.max_candidates:
            raise APIError(413, f"{len(texts)} inputs is more than the {self.settings.max_candidates} this server "
                                "embeds per request; split them into several requests")
        self._check_chars(sum(map(len, texts)))
        dim = self.model.embedding_dim
        if dimensions is not None and dimensions != dim:
            raise APIError(422, f"this model's vectors have {dim} dimensions; leave dimensions out or set it to {dim}")
        if truncate is False:
            await self._fits(texts, field, kind="query" if as_query else "passage")
        return await self._run(request, "query" if as_query else "passage", texts)

    # ---------------------------------------------------------------- shared
    def _check_chars(self, chars: int) -> None:
        if chars > self.settings.max_chars:
            raise APIError(413, f"the request holds {chars} characters of text, more than this server's limit of "
                                f"{self.settings.max_chars}; send fewer or shorter texts (chunk long documents)")

    async def _run(self, request: Request, kind: str, payload, cost: int = 1):
        try:
            future = self.batcher.submit(kind, payload, cost)
        except Overloaded as error:
            self.metrics.rejected.inc()
            raise APIError(503, f"the server is busy ({error}); retry after {RETRY_AFTER_S} s or add replicas",
                           {"Retry-After": str(RETRY_AFTER_S)}) from None
        self.metrics.queue_depth.set(self.batcher.depth)
        listener = asyncio.ensure_future(_disconnected(request))
        try:
            await asyncio.wait({future, listener}, return_when=asyncio.FIRST_COMPLETED)
        finally:  # also when this handler is cancelled: the job is dropped, the other callers are unaffected
            listener.cancel()
            if not future.done():
                future.cancel()
                self.metrics.disconnects.inc()
        if future.cancelled():
            raise APIError(499, "the client closed the request")
        error = future.exception()
        if isinstance(error, (ValueError, TypeError)):
            raise APIError(422, str(error)) from None
        if isinstance(error, RuntimeError) and "shutting down" in str(error):
            raise APIError(503, str(error), {"Retry-After": str(RETRY_AFTER_S)}) from None
        return future.result()

    def info(self) -> dict:
        model, s = self.model, self.settings
        dtype = "none (no LM)" if model.reranker is None else str(next(model.reranker.parameters()).dtype).removeprefix("torch.")
        return {
            "model_id": model.name, "model": model.name, "version": __version__,
            "encoder_fingerprint": model.encoder_fingerprint, "embedding_dim": model.embedding_dim,
            "precision": model.precision, "model_dtype": dtype, "device": str(model.device),
            "rank_prior": model.config.rank_prior, "rank_prior_weight": float(model.rank_prior_weight.detach()),
            "max_batch": s.max_batch, "max_batch_tokens": self.batch_tokens, "max_wait_ms": s.max_wait_ms,
            "max_queue": s.max_queue, "max_candidates": s.max_candidates, "max_client_batch_size": s.max_candidates,
            "max_chars": s.max_chars, "auth": s.api_key is not None,
        }


async def _disconnected(request: Request) -> None:
    """Returns when the client has gone (the body is already read, so receive() waits for the disconnect)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


def _input_texts(inputs, field: str) -> list[str]:
    if isinstance(inputs, str):
        return [inputs]
    if isinstance(inputs, list) and inputs and all(isinstance(item, str) for item in inputs):
        return inputs
    if isinstance(inputs, list) and not inputs:
        raise APIError(422, f"{field} is empty; send a string or a list of strings")
    if isinstance(inputs, list) and all(isinstance(item, (int, list)) for item in inputs):
        raise APIError(422, f"{field} holds token ids, which this server does not take; send the text itself")
    raise APIError(422, f"{field} must be a string or a list of strings")


def create_app(model: ResRank, settings: ServeSettings | None = None) -> FastAPI:
    """The service around an already loaded model (tests pass ``tiny_resrank()``)."""
    settings = settings or ServeSettings()
    metrics = Metrics(ROUTES)
    service = Service(model, settings, metrics)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        service.start()
        yield
        await service.stop()

    app = FastAPI(title="ResRank reranking and embedding service", version=__version__, lifespan=lifespan)
    app.state.service = service
    errors.install(app)
    app.add_middleware(body_limit, limits=BodyLimits.of(settings, model.embedding_dim))
    app.add_middleware(api_key_auth, api_key=settings.api_key)
    app.add_middleware(metrics.middleware)

    @app.post("/v2/rerank")
    @app.post("/v1/rerank")
    async def cohere_rerank(body: CohereRerank, request: Request) -> JSONResponse:
        """Cohere rerank: ``results`` of ``index`` and ``relevance_score``, best first."""
        ranked = await service.rerank(request, body, body.documents, "documents", body.top_n,
                                      max_tokens=body.max_tokens_per_doc)
        results = []
        for r in ranked:
            item = {"index": r.index, "relevance_score": r.score}
            if body.return_documents and body.documents is not None:
                item["document"] = {"text": body.documents[r.index]}  # as sent, even when max_tokens_per_doc cut it
            results.append(item)
        meta = {"api_version": {"version": "2"}, "billed_units": {"search_units": 1}}
        return JSONResponse({"id": str(uuid.uuid4()), "results": results, "meta": meta})

    @app.post("/rerank")
    async def tei_rerank(body: TEIRerank, request: Request) -> JSONResponse:
        """TEI rerank: a list of ``index`` and ``score`` (and ``text`` with ``return_text``), best first."""
        ranked = await service.rerank(request, body, body.texts, "texts", None, truncate=body.truncate)
        return JSONResponse([
            {"index": r.index, "score": r.score, **({"text": r.text} if body.return_text and r.text is not None else {})}
            for r in ranked
        ])

    @app.post("/v1/embeddings")
    async def openai_embeddings(body: OpenAIEmbeddings, request: Request) -> JSONResponse:
        """OpenAI embeddings: float lists, or base64 little-endian float32 (the openai client's default)."""
        vectors = await service.embed(request, body.input, "input", body.input_type == "query", body.dimensions)
        if body.encoding_format == "base64":
            encoded = [base64.b64encode(v.astype("<f4").tobytes()).decode("ascii") for v in vectors]
        else:
            encoded = vectors.tolist()
        data = [{"object": "embedding", "index": i, "embedding": e} for i, e in enumerate(encoded)]
        usage = {"prompt_tokens": 0, "total_tokens": 0}
        return JSONResponse({"object": "list", "data": data, "model": body.model or model.name, "usage": usage})

    @app.post("/embed")
    async def tei_embed(body: TEIEmbed, request: Request) -> JSONResponse:
        """TEI embed: a list of float lists; ``prompt_name='query'`` encodes queries."""
        if body.prompt_name not in (None, "query", "document", "passage"):
            raise APIError(422, f"prompt_name {body.prompt_name!r} is unknown; use 'query', 'document' or leave it out")
        vectors = await service.embed(request, body.inputs, "inputs", body.prompt_name == "query", body.dimensions,
                                      truncate=body.truncate)
        return JSONResponse(vectors.tolist())

    @app.get("/health")
    async def health() -> JSONResponse:
        ok = service.batcher is not None and service.batcher.running
        return JSONResponse({"status": "ok" if ok else "starting"}, status_code=200 if ok else 503)

    @app.get("/info")
    async def info() -> JSONResponse:
        return JSONResponse(service.info())

    @app.get("/metrics")
    async def prometheus() -> Response:
        if service.batcher is not None:
            metrics.queue_depth.set(service.batcher.depth)
        return Response(metrics.render(), media_type=metrics.content_type)

    return app
