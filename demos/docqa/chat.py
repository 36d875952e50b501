"""Chatbot: condense a follow-up question with the chat history, then answer it like document QA.

Two ways to condense: ``"llm"`` asks the generator to rewrite the follow-up as a standalone question;
``"history"`` prefixes the follow-up with the user's recent questions. ``"auto"`` uses ``"history"``
for the packaged 135M model (asked to rewrite, it answers instead) or without a generator, and ``"llm"``
for a plugged LLM.
"""

from __future__ import annotations

from collections.abc import Sequence

from demos.docqa.generate import SmolLM2Generator
from demos.docqa.pipeline import Answer, DocQA, Stopwatch

CONDENSE_PROMPT = (
    "Rewrite the follow-up question as one standalone question that can be understood without the "
    "conversation. Reply with the question only."
)
HISTORY_TURNS = 2
"""How many earlier user questions the ``history`` condenser keeps."""
MAX_STANDALONE_WORDS = 60


def _check_history(history: Sequence[dict]) -> list[dict]:
    for i, turn in enumerate(history):
        if not isinstance(turn, dict) or turn.get("role") not in ("user", "assistant") or not isinstance(turn.get("content"), str):
            raise ValueError(f"history[{i}] must be {{'role': 'user' | 'assistant', 'content': str}}")
    return list(history)


def condense_with_history(history: Sequence[dict], message: str) -> str:
    """The user's last ``HISTORY_TURNS`` questions followed by the follow-up, as one search query."""
    earlier = [turn["content"].strip() for turn in history if turn["role"] == "user"][-HISTORY_TURNS:]
    return " ".join([*earlier, message.strip()])


def condense_with_llm(generator, history: Sequence[dict], message: str) -> str:
    """The generator's standalone rewrite; falls back to ``condense_with_history`` on an unusable reply."""
    conversation = "\n".join(f"{turn['role'].capitalize()}: {turn['content']}" for turn in history[-2 * HISTORY_TURNS :])
    rewrite = generator.generate(CONDENSE_PROMPT, f"Conversation:\n{conversation}\n\nFollow-up question: {message}")
    rewrite = rewrite.strip().splitlines()[0].strip() if rewrite.strip() else ""
    if not rewrite or len(rewrite.split()) > MAX_STANDALONE_WORDS:
        return condense_with_history(history, message)
    return rewrite


def chat_turn(
    qa: DocQA, history: Sequence[dict], message: str, condense: str = "auto", user: str | None = None,
    generate: bool = True,
) -> Answer:
    """Answer ``message`` given the earlier turns, from what ``user`` may read; the answer carries the extended
    history, whose last turn is the reply (the extractive answer until ``qa.complete`` generates one)."""
    if condense not in ("auto", "llm", "history"):
        raise ValueError(f"condense must be 'auto', 'llm' or 'history', got {condense!r}")
    history = _check_history(history)
    watch = Stopwatch()
    standalone = message
    if history:
        if condense == "auto":
            condense = "history" if qa.generator is None or isinstance(qa.generator, SmolLM2Generator) else "llm"
        with watch.stage("condense"):
            if condense == "llm" and qa.generator is not None:
                with qa.lock:
                    standalone = condense_with_llm(qa.generator, history, message)
            else:
                standalone = condense_with_history(history, message)
    answer = qa.ask(standalone, search_query=standalone, watch=watch, user=user, generate=generate)
    answer.question = message
    answer.history = [*history, {"role": "user", "content": message}, {"role": "assistant", "content": answer.reply}]
    return answer
