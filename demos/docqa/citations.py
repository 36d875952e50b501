"""Citations an answer carries: those the generator wrote, else attributed by encoder similarity.

Small generators often ignore the instruction to cite. Attribution then marks each answer sentence
with the passage its encoder vector is closest to (cosine with the passage's stored vector), when that
closeness reaches ``MIN_SIMILARITY``; the answer says which of the two kinds its citations are.
"""

from __future__ import annotations

import re

import numpy as np

from demos.docqa.generate import cited_numbers

SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
MIN_SIMILARITY = 0.35
MIN_SENTENCE_WORDS = 3


def source_label(metadata: dict, fallback: str) -> str:
    """How an answer cites a passage: ``travel.pdf p. 3``, ``leave.docx § Part-time staff``, or the file."""
    source = str(metadata.get("source") or fallback)
    if metadata.get("page"):
        return f"{source} p. {metadata['page']}"
    if metadata.get("section"):
        return f"{source} § {metadata['section']}"
    return source


def attribute(answer: str, passage_vectors: np.ndarray, model, min_similarity: float = MIN_SIMILARITY) -> tuple[str, list[int]]:
    """(answer with ``[n]`` after each sentence attributed to passage n, cited numbers in first-use order)."""
    sentences = [s for s in SENTENCE_END.split(answer.strip()) if s.strip()]
    if not sentences or not len(passage_vectors):
        return answer, []
    similarity = model.encode(sentences) @ np.asarray(passage_vectors, dtype=np.float32).T
    marked, cited = [], []
    for sentence, row in zip(sentences, similarity):
        best = int(row.argmax())
        if len(sentence.split()) >= MIN_SENTENCE_WORDS and row[best] >= min_similarity:
            body, end = re.match(r"(.*?)([.!?]*)$", sentence, re.DOTALL).groups()
            sentence = f"{body} [{best + 1}]{end}"
            if best + 1 not in cited:
                cited.append(best + 1)
        marked.append(sentence)
    return " ".join(marked), cited


def cite(answer: str, passage_vectors: np.ndarray, model) -> tuple[str, list[int], str]:
    """(answer, cited passage numbers, ``"generator"`` | ``"attributed"`` | ``"none"``)."""
    cited = cited_numbers(answer, len(passage_vectors))
    if cited:
        return answer, cited, "generator"
    answer, cited = attribute(answer, passage_vectors, model)
    return answer, cited, "attributed" if cited else "none"
