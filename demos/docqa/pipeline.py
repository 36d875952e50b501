"""Document QA: index -> retrieve -> ResRank rerank (stored vectors, one pass) -> extractive answer -> generate,
each stage timed."""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from urllib.parse import quote

import numpy as np
from qdrant_client import models

from demos.docqa.citations import cite, source_label
from demos.docqa.extractive import ExtractedSentence, extract, warm
from demos.docqa.generate import SYSTEM_PROMPT, Generator, passages_prompt
from resrank_rag.access import admits
from resrank_rag.backbones import cache_dir
from resrank_rag.documents import FileProblem
from resrank_rag.embedding_cache import EmbeddingCache
from resrank_rag.feedback import FeedbackStore
from resrank_rag.feedback.memory import FeedbackMemory
from resrank_rag.results import RerankResult
from resrank_rag.index import Document, Principal, ResRankIndex, content_hash

MEMORY_STRENGTH = 0.05
"""How far one 👍 of an identical past query moves a passage (picked on SciFact's held-out feedback, docs/feedback.md)."""
BUILDER = Principal.unrestricted_access("demo builder")
"""The demo's own indexing code reads the whole collection; users never search as it."""


@dataclass
class Candidate:
    """One first-stage hit with its place in the retrieval order and in the ResRank order (1-based)."""

    id: str
    title: str
    text: str
    retrieval_rank: int
    retrieval_score: float
    resrank_rank: int
    resrank_score: float
    source: str = ""
    """The file (or document id) the passage comes from; ``page`` or ``section`` say where in it."""
    page: int | None = None
    section: str | None = None
    label: str = ""
    """How the answer cites it: ``travel.pdf p. 3``, ``leave.docx § Part-time staff``."""
    url: str | None = None
    """The source file on the demo server (PDFs open at the page), when the demo indexed a folder."""


@dataclass
class Answer:
    """What one question produced; ``passages`` are numbered [1].. as the generator saw them.

    ``extractive`` is there at once; ``answer`` (the generated text) only once ``generated``."""

    question: str
    search_query: str
    answer: str
    passages: list[Candidate]
    cited: list[int]
    citations: str
    """``generator`` (the LLM cited), ``attributed`` (added by encoder similarity), ``none``, or ``""`` before generation."""
    candidates: list[Candidate]
    timings_ms: dict[str, float]
    generator: str
    history: list[dict] = field(default_factory=list)
    extractive: list[ExtractedSentence] = field(default_factory=list)
    """The passages' sentences that best answer the question, best first (``extractive.extract``)."""
    generated: bool = False
    passage_vectors: np.ndarray | None = field(default=None, repr=False)
    """The passages' stored vectors, which citing the generated answer reads (not sent to the page)."""
    asked: str = field(default="", repr=False)
    """What the generator is asked: the question given to ``DocQA.ask`` (chat: the standalone one; not sent)."""

    @property
    def reply(self) -> str:
        """The generated answer, or the extractive one while there is none."""
        return self.answer if self.generated else " ".join(s.text for s in self.extractive)

    def to_dict(self) -> dict:
        whole = asdict(self)
        return {f.name: whole[f.name] for f in fields(self) if f.name not in ("passage_vectors", "asked")}


def collection_name(chunks: Sequence[Document], label: str) -> str:
    """A collection named after the corpus content, so an edited corpus gets a fresh, exact collection."""
    digest = hashlib.sha256()
    for chunk in chunks:
        digest.update(f"{chunk.id}\0{content_hash(chunk.text, chunk.metadata)}\n".encode())
    return f"demo-{label}-{digest.hexdigest()[:12]}"


def open_index(model, chunks: Sequence[Document], label: str, path: str | None = None) -> ResRankIndex:
    """The demo's index of ``chunks``: reused when already built, else encoded once (vectors cached).

    Building a new version of a corpus drops the collections of its earlier versions.
    """
    if not chunks:
        raise ValueError("no documents to index: the folder holds no .md, .txt, .jsonl, .html or .pdf files")
    path = path or str(cache_dir() / "demo" / "qdrant")
    cache = EmbeddingCache(model, ":memory:" if path == ":memory:" else None)
    index = ResRankIndex(model, collection_name(chunks, label), path=path, embedding_cache=cache)
    if index.count(principal=BUILDER) != len(chunks):
        index.index(chunks, show_progress_bar=len(chunks) > 64)
        for collection in index.client.get_collections().collections:  # earlier versions of this corpus
            if collection.name.startswith(f"demo-{label}-") and collection.name != index.collection:
                index.client.delete_collection(collection.name)
    return index


def _of_file(doc_id: str, path) -> bool:
    """Whether a document id is the file ``path`` itself or one of its chunks (``path#n``)."""
    if not isinstance(path, str):
        return False
    return doc_id == path or (doc_id.startswith(path + "#") and doc_id[len(path) + 1 :].isdigit())


class Stopwatch:
    """Milliseconds per named stage (added to ``timings_ms`` when given)."""

    def __init__(self, timings_ms: dict[str, float] | None = None):
        self.timings_ms: dict[str, float] = timings_ms if timings_ms is not None else {}

    def add_total(self) -> None:
        """Set ``total`` (last): the sum of the stages."""
        self.timings_ms.pop("total", None)
        self.timings_ms["total"] = round(sum(self.timings_ms.values()), 1)

    @contextmanager
    def stage(self, name: str):
        start = time.perf_counter()
        try:
            yield
        finally:
            self.timings_ms[name] = round(self.timings_ms.get(name, 0.0) + (time.perf_counter() - start) * 1000, 1)


class DocQA:
    """Question answering over a ``ResRankIndex``; safe to call from several threads (one at a time)."""

    def __init__(
        self,
        index: ResRankIndex,
        generator: Generator | None,
        k: int = 20,
        context_passages: int = 3,
        first_stage: str = "hybrid",
        users: dict[str, list[str]] | None = None,
        source_root: Path | None = None,
        problems: Sequence[FileProblem] = (),
        feedback: FeedbackStore | None = None,
        learn_from_feedback: bool = True,
    ):
        """``generator`` None answers with the extractive answer only; ``users`` maps demo user names to their
        groups; ``source_root`` is the indexed folder (source links); ``problems`` the files that could not be
        read (each user sees those of files they may read); ``feedback`` where users' 👍/👎 on shown passages go
        (default: an in-memory store). With ``learn_from_feedback`` the ranking uses them at once through a
        ``FeedbackMemory`` (strength ``MEMORY_STRENGTH``): it matched the adapted LM on SciFact
        (benchmarks/feedback_loop.py), needs no training, and only reorders the candidates a user may read."""
        if not 1 <= context_passages <= k:
            raise ValueError(f"need 1 <= context_passages <= k, got {context_passages} and {k}")
        self.index = index
        self.generator = generator
        self.k = k
        self.context_passages = context_passages
        self.first_stage = first_stage
        self.users = {name: sorted(groups) for name, groups in (users or {}).items()}
        self.source_root = source_root
        self.problems = list(problems)
        self.feedback = feedback if feedback is not None else FeedbackStore(":memory:")
        self.learn_from_feedback = learn_from_feedback
        self._query_vectors: dict[str, np.ndarray] = {}
        self._memory: tuple[tuple, FeedbackMemory] | None = None
        self.lock = threading.Lock()

    def principal(self, user: str | None) -> Principal | None:
        """Whom to search for: None while no document has an access list, else ``user`` (unknown: an error),
        or an anonymous principal who sees only public (``"*"``) documents."""
        if not self.index.access_controlled():
            return None
        if user is None:
            return Principal("anonymous")
        if user not in self.users:
            raise PermissionError(f"unknown user {user!r}; the demo knows {', '.join(sorted(self.users)) or 'none'}")
        return Principal(user, self.users[user])

    def source_url(self, hit) -> str | None:
        """The link to the file a hit was read from, when the hit is that file or a chunk of it: from ``path``
        (set by the reader, whatever a JSONL row says), never from a free-text field such as ``source``."""
        path = hit.metadata.get("path")
        if self.source_root is None or not _of_file(hit.doc_id, path):
            return None
        page = hit.metadata.get("page")
        return f"/api/source/{quote(path)}" + (f"#page={page}" if page else "")

    def readable(self, path: str, principal: Principal | None) -> bool:
        """Whether ``principal`` may read the file ``path``: it was indexed, and every chunk read from it is
        one they may read (a JSONL file whose rows have narrower lists stays closed)."""
        read_from = models.Filter(must=[models.FieldCondition(key="metadata.path", match=models.MatchValue(value=path))])
        indexed = self.index.count(read_from, principal=BUILDER)
        return indexed > 0 and self.index.count(read_from, principal=principal) == indexed

    def view(self, user: str | None) -> dict:
        """What ``user`` may know of the corpus: how many chunks they may read, and the problems of their files."""
        principal = self.principal(user)
        viewer = principal or Principal("anonymous")

        def shown(problem: FileProblem) -> bool:
            if problem.allowed_groups is None:  # no list: seen by all only while no document has one
                return principal is None
            return admits(viewer, problem.allowed_groups)

        return {
            "documents": self.index.count(principal=principal),
            "problems": [str(problem) for problem in self.problems if shown(problem)],
        }

    def rank(self, query: str, watch: Stopwatch, principal: Principal | None = None,
             query_vector: np.ndarray | None = None) -> tuple[list[Candidate], np.ndarray]:
        """First-stage top-k reranked by ResRank from their stored vectors: candidates and vectors, ResRank order.

        Only chunks ``principal`` may read are candidates (Qdrant filters them in the first stage).
        ``query_vector`` is ``query``'s (encoded here when None).
        """
        with watch.stage("retrieve"):
            if query_vector is None:
                query_vector = self.index.model.encode_queries([query])[0]
            hits, vectors = self.index.retrieve_with_vectors(query, self.k, first_stage=self.first_stage, principal=principal,
                                                             query_vector=query_vector)
        with watch.stage("rerank"):
            ranked = (self.index.model.rerank(query, [h.text for h in hits], vectors=vectors, query_vector=query_vector)
                      if hits else [])
            memory = self.memory() if self.learn_from_feedback and ranked else None
            if memory is not None and len(memory):
                scores = memory.rerank(query_vector, [hits[r.index].id for r in ranked], [r.score for r in ranked])
                ranked = [RerankResult(ranked[i].index, float(scores[i])) for i in np.argsort(-scores, kind="stable")]
        candidates = [
            Candidate(
                id=hits[r.index].id,
                title=str(hits[r.index].metadata.get("title", hits[r.index].id)),
                text=hits[r.index].text,
                retrieval_rank=r.index + 1,
                retrieval_score=float(hits[r.index].retrieval_score),
                resrank_rank=place,
                resrank_score=float(r.score),
                source=str(hits[r.index].metadata.get("source", hits[r.index].doc_id)),
                page=hits[r.index].metadata.get("page"),
                section=hits[r.index].metadata.get("section"),
                label=source_label(hits[r.index].metadata, hits[r.index].doc_id),
                url=self.source_url(hits[r.index]),
            )
            for place, r in enumerate(ranked, 1)
        ]
        return candidates, vectors[[r.index for r in ranked]]

    def memory(self) -> FeedbackMemory:
        """Every rated list so far as a ``FeedbackMemory``, rebuilt only when a rating changed; each list's
        query is encoded once."""
        version = self.feedback.ratings_version()
        if self._memory is not None and self._memory[0] == version:
            return self._memory[1]
        lists = self.feedback.lists()
        new = [item for item in lists if item.list_id not in self._query_vectors]
        if new:
            self._query_vectors.update(zip([item.list_id for item in new],
                                           self.index.model.encode_queries([item.query for item in new])))
        vectors = np.stack([self._query_vectors[item.list_id] for item in lists]) if lists else np.zeros((0, 1))
        memory = FeedbackMemory(vectors, [item.ratings for item in lists], strength=MEMORY_STRENGTH)
        self._memory = (version, memory)
        return memory

    def warm_extractive(self) -> int:
        """Encode every chunk's answerable sentences into the index's embedding cache (kept on disk beside the
        corpus vectors), so extractive answers encode nothing; returns how many sentences were new."""
        if self.index.embedding_cache is None:
            return 0
        with self.lock:
            chunks = list(self.index.scroll(principal=BUILDER))
        return warm(chunks, self.index.embedding_cache)

    def ask(
        self, question: str, search_query: str | None = None, watch: Stopwatch | None = None, user: str | None = None,
        generate: bool = True,
    ) -> Answer:
        """Answer ``question`` from the passages ResRank puts first for ``search_query`` (default: the question),
        among those ``user`` may read: the extractive answer, then (``generate`` and a generator) the generated one."""
        if not question.strip():
            raise ValueError("the question is empty")
        watch = watch or Stopwatch()
        search_query = search_query or question
        principal = self.principal(user)
        with self.lock:
            with watch.stage("retrieve"):
                query_vector = self.index.model.encode_queries([search_query])[0]
            ranked, vectors = self.rank(search_query, watch, principal, query_vector)
            passages = ranked[: self.context_passages]
            with watch.stage("extract"):
                extractive = extract(question, passages, self.index.model, encoder=self.index.embedding_cache,
                                     query_vector=query_vector if question == search_query else None) if passages else []
        watch.add_total()
        answer = Answer(
            question=question,
            search_query=search_query,
            answer="",
            passages=passages,
            cited=[],
            citations="",
            candidates=sorted(ranked, key=lambda c: c.retrieval_rank),
            timings_ms=watch.timings_ms,
            generator=self.generator.name if self.generator is not None else "",
            extractive=extractive,
            passage_vectors=vectors[: len(passages)],
            asked=question,
        )
        return self.complete(answer) if generate and self.generator is not None else answer

    def complete(self, answer: Answer) -> Answer:
        """Generate ``answer``'s text from its passages and cite them (a chat answer's last turn becomes it)."""
        if self.generator is None:
            raise ValueError("this demo generates no answers (--no-generate); the extractive answer is the answer")
        if answer.generated:
            return answer
        watch = Stopwatch(answer.timings_ms)
        passages = [p.text for p in answer.passages]
        with self.lock:
            with watch.stage("generate"):
                text = self.generator.generate(SYSTEM_PROMPT, passages_prompt(answer.asked or answer.question, passages))
            with watch.stage("cite"):
                answer.answer, answer.cited, answer.citations = cite(text, answer.passage_vectors, self.index.model)
        answer.generated = True
        watch.add_total()
        if answer.history and answer.history[-1]["role"] == "assistant":
            answer.history[-1] = {"role": "assistant", "content": answer.answer}
        return answer
