"""Answer generation: offline with the packaged SmolLM2-135M-Instruct, or any LLM the user plugs in.

A plugged LLM may be a plain callable ``prompt -> str``, a LlamaIndex LLM (``.complete``), a LangChain
LLM or chat model (``.invoke``), or an import path ``"package.module:attribute"`` naming one of these
(or a zero-argument factory returning one).
"""

from __future__ import annotations

import importlib
import inspect
import re
import threading
from collections.abc import Sequence
from typing import Protocol

SYSTEM_PROMPT = (
    "You answer questions using only the numbered passages given. Cite the passages you use like [1] or [2]. "
    "If the passages do not contain the answer, say that you do not know."
)
CITATION = re.compile(r"\[(\d+)\]")


class Generator(Protocol):
    """Anything the demo can ask: ``generate(system, user) -> text``."""

    name: str

    def generate(self, system: str, user: str) -> str: ...


def passages_prompt(question: str, passages: Sequence[str]) -> str:
    """The user message: numbered passages, then the question."""
    numbered = "\n\n".join(f"[{i}] {text}" for i, text in enumerate(passages, 1))
    return f"Passages:\n{numbered}\n\nQuestion: {question}\nAnswer (cite passages like [1]):"


def cited_numbers(answer: str, passage_count: int) -> list[int]:
    """Passage numbers (1-based, in order of first citation) that the answer cites and that exist."""
    seen: list[int] = []
    for match in CITATION.finditer(answer):
        number = int(match.group(1))
        if 1 <= number <= passage_count and number not in seen:
            seen.append(number)
    return seen


class SmolLM2Generator:
    """The packaged SmolLM2-135M-Instruct, greedy decoding through its chat template (offline, CPU)."""

    name = "SmolLM2-135M-Instruct (packaged, offline)"

    def __init__(self, max_new_tokens: int = 96, max_prompt_tokens: int = 1536):
        from resrank_rag import backbones

        self.model, self.tokenizer = backbones.load_reranker(backbones.SMOLLM2_ID, causal_lm=True)
        self.model.eval()
        self.max_new_tokens = max_new_tokens
        self.max_prompt_tokens = max_prompt_tokens
        self._lock = threading.Lock()

    def generate(self, system: str, user: str) -> str:
        import torch

        messages = [{"role": "system", "content": system}, {"role": "user", "content": user}]
        inputs = self.tokenizer.apply_chat_template(
            messages, add_generation_prompt=True, return_tensors="pt", return_dict=True
        )
        if inputs["input_ids"].shape[1] > self.max_prompt_tokens:
            raise ValueError(
                f"the prompt has {inputs['input_ids'].shape[1]} tokens, more than {self.max_prompt_tokens}; "
                "give fewer or shorter passages to the generator"
            )
        with self._lock, torch.inference_mode():
            output = self.model.generate(
                **inputs,
                max_new_tokens=self.max_new_tokens,
                do_sample=False,
                repetition_penalty=1.1,
                pad_token_id=self.tokenizer.eos_token_id,
            )
        return self.tokenizer.decode(output[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True).strip()


class PluggedGenerator:
    """A user's LLM behind the same interface; system and user messages are joined into one prompt."""

    def __init__(self, llm, name: str | None = None):
        self.llm = llm
        self.name = name or type(llm).__name__

    def generate(self, system: str, user: str) -> str:
        prompt = f"{system}\n\n{user}"
        if hasattr(self.llm, "complete"):  # LlamaIndex LLM
            return str(self.llm.complete(prompt).text).strip()
        if hasattr(self.llm, "invoke"):  # LangChain LLM or chat model
            reply = self.llm.invoke(prompt)
            return str(getattr(reply, "content", reply)).strip()
        return str(self.llm(prompt)).strip()


def _import_object(spec: str):
    """The object an import path names; a function without required arguments is called as a factory."""
    module_name, _, attribute = spec.partition(":")
    if not attribute:
        raise ValueError(f"--llm {spec!r} must look like 'package.module:attribute'")
    try:
        found = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError) as error:
        raise ValueError(f"--llm {spec!r} could not be imported ({error})") from None
    if inspect.isfunction(found) and not any(p.default is p.empty for p in inspect.signature(found).parameters.values()):
        return found()
    return found


def make_generator(llm=None, max_new_tokens: int = 96) -> Generator:
    """The packaged SmolLM2 when ``llm`` is None, else the plugged LLM (object, callable or import path)."""
    if llm is None:
        return SmolLM2Generator(max_new_tokens=max_new_tokens)
    if isinstance(llm, str):
        return PluggedGenerator(_import_object(llm), name=llm)
    if not (hasattr(llm, "complete") or hasattr(llm, "invoke") or callable(llm)):
        raise TypeError(f"llm must be a callable, a LlamaIndex or LangChain LLM, or 'module:attribute', got {type(llm).__name__}")
    return PluggedGenerator(llm)
