"""The extractive answer: the sentences of the context passages that best answer the query, found in milliseconds.

Each sentence is scored by the encoder's cosine with the query (``encode_queries`` for the query,
``encode`` for sentences, as retrieval does) plus ``LEXICAL_WEIGHT`` times the IDF-weighted share of the
query's terms it holds (``resrank_rag.features.lexical_features`` over the sentences). At most
``MAX_ENCODED`` sentences, those with most query terms, are scored; an embedding cache makes repeats free,
and ``warm`` fills it ahead of questions (the web demo does so in the background). The answer is the best
sentence and up to ``max_sentences - 1`` more within ``MARGIN`` of it; each comes with the passage it is
in, its character offsets there (the page highlights it) and the passage's citation.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from resrank_rag.features import lexical_features

LEXICAL_WEIGHT = 0.3
MARGIN = 0.05
MAX_ENCODED = 16
"""Sentences scored per question at most (3 shipped chunks hold about 16): the encoder's time bound when none is cached."""
BATCH = 8
"""Sentences per encoder batch: sentences of like length pad less (about 20% faster than one batch on 2 cores)."""
MIN_WORDS = 4
MIN_LETTER_SHARE = 0.7
"""Below this share of letters among its non-space characters a "sentence" is code, a grammar rule or a table row."""
MAX_CHARS = 500
BREAK = re.compile(
    r"(?<=[.!?])\s+(?=[^\sa-z])"  # a sentence end before a word that does not start in lower case
    r"|(?<=[.!?][\"'”’)\]])\s+(?=[^\sa-z])"  # the same after a closing quote or bracket
    r"|\s*\n\s*\n\s*"  # a blank line
    r"|\s*\n(?=\s*(?:[-*+>#]|\d+[.)])\s)"  # a line that starts a list item, quote or heading
    r"|\s*(?:[~=^\-]{4,}|`{3,})\s*"  # an underline, rule or code fence (chunking flattens these into the text)
)
ENDS_A_SENTENCE = re.compile(r"[.!?:][\"'”’)\]]?$")
OPENERS = "0123456789\"'“‘(`["
"""What a sentence may start with besides a capital letter."""


@dataclass
class ExtractedSentence:
    """One sentence of the extractive answer: ``text == passage_text[start:end]`` of passage ``passage`` (1-based)."""

    passage: int
    start: int
    end: int
    text: str
    chunk_id: str
    label: str
    """The passage's citation: ``travel.pdf p. 3``, ``leave.docx § Part-time staff``."""
    score: float


def sentence_spans(text: str, title: str = "") -> list[tuple[int, int]]:
    """(start, end) offsets of the sentences of ``text``, without surrounding whitespace; a first line equal to
    ``title`` (chunks after a document's first start with it) or starting with ``#`` is a span of its own."""
    cuts = [(m.start(), m.end()) for m in BREAK.finditer(text)]
    first_line = text.find("\n")
    if first_line > 0 and (text[:first_line].strip() == title.strip() or text.lstrip().startswith("#")):
        cuts.append((first_line, first_line + 1))
    spans, start = [], 0
    for cut_start, cut_end in sorted(cuts):
        if cut_start >= start:
            spans.append((start, cut_start))
            start = cut_end
    spans.append((start, len(text)))
    out: list[tuple[int, int]] = []
    for start, end in spans:
        while start < end and text[start].isspace():
            start += 1
        while end > start and text[end - 1].isspace():
            end -= 1
        if end <= start:
            continue
        if out and _marker(text[out[-1][0] : out[-1][1]]):  # "1." or "E.g." ended no sentence
            start = out.pop()[0]
        out.append((start, end))
    return out


def _marker(span: str) -> bool:
    """A list number or an abbreviation (``2.``, ``e.g.``, ``etc.``) that the sentence-end rule cut at."""
    return len(span) <= 5 and span.endswith(".") and " " not in span


def answerable(sentence: str) -> bool:
    """Whether a sentence can stand as an answer: a whole sentence (a capital, digit or quote first, punctuation
    last, so no heading, code line or piece cut by chunking) of mostly prose words."""
    words = sentence.split()
    if len(words) < MIN_WORDS or len(sentence) > MAX_CHARS or not (sentence[0].isupper() or sentence[0] in OPENERS):
        return False
    if not ENDS_A_SENTENCE.search(sentence) or sum(w.strip("\"'“”‘’()[],.;:!?").isalpha() for w in words) < MIN_WORDS - 1:
        return False
    visible = [c for c in sentence if not c.isspace()]
    return sum(c.isalpha() for c in visible) / len(visible) >= MIN_LETTER_SHARE


def answer_spans(text: str, title: str = "") -> list[tuple[int, int]]:
    """The spans of ``text`` whose sentences are ``answerable``."""
    return [(start, end) for start, end in sentence_spans(text, title) if answerable(text[start:end])]


def warm(passages: Sequence, cache, batch_size: int = 2 * BATCH) -> int:
    """Encode the answerable sentences of ``passages`` (``text``, ``metadata`` or ``title``) into ``cache``
    (an ``EmbeddingCache``) in small batches, so questions wait little for the encoder; returns how many were new."""
    texts = sorted({p.text[start:end] for p in passages for start, end in answer_spans(p.text, _title(p))})
    missing = [text for text, vector in zip(texts, cache.get(texts)) if vector is None]
    for start in range(0, len(missing), batch_size):
        cache.encode(missing[start : start + batch_size], show_progress_bar=False)
    return len(missing)


def _title(passage) -> str:
    title = getattr(passage, "title", None)
    return str(title if title is not None else getattr(passage, "metadata", {}).get("title", ""))


def extract(query: str, passages: Sequence, model, max_sentences: int = 2, encoder=None,
            query_vector: np.ndarray | None = None) -> list[ExtractedSentence]:
    """The sentences of ``passages`` (``Candidate``s: ``id``, ``text``, ``title``, ``label``) that best answer
    ``query``, best first (sentences that do not read like prose only when no passage has another); [] without text.

    ``encoder`` encodes the sentences (default ``model``; an ``EmbeddingCache`` of it encodes each sentence once);
    ``query_vector`` is ``query``'s ``encode_queries`` vector when the caller has it already."""
    if max_sentences < 1:
        raise ValueError(f"max_sentences must be at least 1, got {max_sentences}")
    encoder = encoder if encoder is not None else model
    found = []  # (passage number, start, end, passage)
    for number, passage in enumerate(passages, 1):
        found += [(number, start, end, passage) for start, end in answer_spans(passage.text, passage.title)]
    if not found:  # nothing reads like prose: fall back to every sentence
        found = [(number, start, end, passage) for number, passage in enumerate(passages, 1)
                 for start, end in sentence_spans(passage.text, passage.title)]
    if not found:
        return []
    lexical = lexical_features(query, [p.text[start:end] for _, start, end, p in found])[:, 2]
    keep = np.sort(np.argsort(-lexical, kind="stable")[:MAX_ENCODED])
    found, lexical = [found[i] for i in keep], lexical[keep]
    texts = [p.text[start:end] for _, start, end, p in found]
    if query_vector is None:
        query_vector = model.encode_queries([query], show_progress_bar=False)[0]
    scores = encoder.encode(texts, batch_size=BATCH, show_progress_bar=False) @ query_vector + LEXICAL_WEIGHT * lexical
    order = np.argsort(-scores, kind="stable")
    best = float(scores[order[0]])
    chosen = [i for i in order[:max_sentences] if scores[i] >= best - MARGIN]
    answer = []
    for i in chosen:
        number, start, end, passage = found[i]
        answer.append(ExtractedSentence(number, start, end, texts[i], passage.id, passage.label or passage.title,
                                        round(float(scores[i]), 4)))
    return answer
