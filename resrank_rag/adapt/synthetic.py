"""Pseudo-queries from a collection's own chunks (``resrank adapt --synthetic``): no labelled questions needed."""

from __future__ import annotations

import math
import random
import re
from collections import Counter
from collections.abc import Callable, Collection

from resrank_rag.adapt.queries import LabelledQuery

KINDS = ("title", "sentence", "keyphrases", "questions")
DEFAULT_KINDS = ("title", "sentence", "keyphrases")
"""``title``: a document's title, relevant to all its chunks; ``sentence``: one sentence of a chunk (inverse
cloze); ``keyphrases``: a chunk's most distinctive words (tf-idf over the collection); ``questions``: a
question the packaged SmolLM2 writes about the chunk (slow: about a second a chunk on a CPU)."""
QuestionWriter = Callable[[list[str]], list[str]]
WORD = re.compile(r"[^\W\d_][\w'-]*", re.UNICODE)


def pseudo_queries(index, count: int, kinds=DEFAULT_KINDS, seed: int = 0,
                   write_questions: QuestionWriter | None = None,
                   chunk_ids: Collection[str] | None = None) -> list[LabelledQuery]:
    """Up to ``count`` pseudo-queries, one per sampled chunk (of ``chunk_ids`` only, when given), the kinds
    taken in turn (a chunk that cannot give one kind, e.g. has no title, gives the next)."""
    bad = [k for k in kinds if k not in KINDS]
    if bad or not kinds:
        raise ValueError(f"unknown synthetic query kinds {bad}; choose from {KINDS}")
    from resrank_rag.adapt.queries import _scroll

    chunks = [p.payload for p in _scroll(index, None, ["chunk_id", "doc_id", "text", "metadata"])]
    frequency = Counter(w for c in chunks for w in set(_words(c["text"])))  # over the whole collection
    if chunk_ids is not None:
        wanted_ids = set(chunk_ids)
        chunks = [c for c in chunks if c["chunk_id"] in wanted_ids]
        if not chunks:
            raise ValueError(f"none of the {len(wanted_ids)} chunks to make pseudo-queries from is in collection "
                             f"{index.collection!r}: was the log recorded on another collection?")
    rng = random.Random(seed)
    sample = rng.sample(chunks, min(count, len(chunks)))
    wanted = [kinds[i % len(kinds)] for i in range(len(sample))]
    questions = {}
    if "questions" in kinds:
        asked = [c["text"] for c, k in zip(sample, wanted) if k == "questions"]
        questions = dict(zip(asked, (write_questions or smollm2_questions)(asked)))
    queries, titles = [], set()
    for position, (chunk, kind) in enumerate(zip(sample, wanted)):
        for tried in range(len(kinds)):
            kind = kinds[(kinds.index(kind) + tried) % len(kinds)]
            text = _make(kind, chunk, rng, frequency, len(chunks), questions)
            if kind == "title" and text in titles:
                text = None  # one title query per document
            if text:
                titles |= {text} if kind == "title" else set()
                relevant = {chunk["doc_id"]: 1} if kind == "title" else {chunk["chunk_id"]: 1}
                queries.append(LabelledQuery(text, relevant, where=f"synthetic {kind} query {position}"))
                break
    return queries


def _words(text: str) -> list[str]:
    from bm25s.stopwords import STOPWORDS_EN

    return [w for w in (m.group().lower() for m in WORD.finditer(text)) if len(w) > 2 and w not in STOPWORDS_EN]


def _make(kind: str, chunk: dict, rng: random.Random, frequency: Counter, total: int, questions: dict) -> str | None:
    text = chunk["text"]
    if kind == "title":
        title = str((chunk.get("metadata") or {}).get("title") or "").strip()
        return title if len(title.split()) >= 3 else None
    if kind == "sentence":
        sentences = [s for s in re.split(r"(?<=[.!?])\s+", text) if 5 <= len(s.split()) <= 40]
        return rng.choice(sentences[1:] or sentences) if sentences else None  # the first is often a title
    if kind == "keyphrases":
        counts = Counter(_words(text))
        ranked = sorted(counts, key=lambda w: -counts[w] * math.log(total / frequency[w]))
        return " ".join(ranked[:4]) if len(ranked) >= 3 else None
    question = questions.get(text, "")
    return question if len(question.split()) >= 3 else None


def shown_chunks(path, top: int = 3) -> list[str]:
    """The chunks that users' questions logged in ``path`` (a feedback store or its JSONL export, rated or not)
    showed in their ``top`` positions, most often shown first: where pseudo-queries pay (docs/feedback.md)."""
    from resrank_rag.feedback import read_feedback

    lists = read_feedback(path, rated_only=False)
    if not lists:
        raise ValueError(f"{path} holds no shown lists: ask the demo some questions first")
    counts = Counter(s.chunk_id for item in lists for s in item.shown if s.position <= top)
    return [chunk for chunk, _ in counts.most_common()]


def smollm2_questions(texts: list[str], max_new_tokens: int = 32) -> list[str]:
    """One question per passage, written greedily by the packaged SmolLM2-135M-Instruct."""
    import torch
    from tqdm.auto import tqdm

    from resrank_rag import backbones

    model, tokenizer = backbones.load_reranker(backbones.SMOLLM2_ID, causal_lm=True)
    model.eval()
    questions = []
    for text in tqdm(texts, desc="Writing questions", unit="passage", disable=len(texts) < 8):
        messages = [{"role": "user", "content": f"Write one short question that this passage answers.\n\n{text[:1500]}"}]
        prompt = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt")
        with torch.inference_mode():
            output = model.generate(prompt, max_new_tokens=max_new_tokens, do_sample=False,
                                    pad_token_id=tokenizer.eos_token_id)
        answer = tokenizer.decode(output[0, prompt.shape[1]:], skip_special_tokens=True).strip()
        questions.append(answer.split("\n")[0].strip())
    return questions
