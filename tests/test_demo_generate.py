"""Answer generation: citations, prompts, plugged LLMs (LlamaIndex, LangChain, callables), packaged SmolLM2."""

import pytest

from demos.docqa.generate import (
    SYSTEM_PROMPT,
    PluggedGenerator,
    SmolLM2Generator,
    cited_numbers,
    make_generator,
    passages_prompt,
)


def shouting_llm():
    """A zero-argument factory, as `--llm tests.test_demo_generate:shouting_llm` names it."""
    return lambda prompt: prompt.upper()


def test_cited_numbers_keep_first_order_and_drop_unknown_passages():
    assert cited_numbers("See [2], then [1] and [2] again; [7] and [0] do not exist.", 3) == [2, 1]
    assert cited_numbers("No citation here.", 3) == []


def test_prompt_numbers_passages_in_the_order_given():
    prompt = passages_prompt("Who?", ["alpha", "beta"])
    assert prompt.index("[1] alpha") < prompt.index("[2] beta") < prompt.index("Question: Who?")


def test_llama_index_llm_is_pluggable():
    from llama_index.core.llms import MockLLM

    generator = make_generator(MockLLM(max_tokens=None))  # MockLLM echoes the prompt
    reply = generator.generate(SYSTEM_PROMPT, "Question: ping")
    assert reply.startswith(SYSTEM_PROMPT) and reply.endswith("Question: ping")


def test_langchain_llm_and_chat_model_are_pluggable():
    from langchain_core.language_models import FakeListChatModel, FakeListLLM

    assert make_generator(FakeListLLM(responses=["plain [1]"])).generate("s", "u") == "plain [1]"
    assert make_generator(FakeListChatModel(responses=["chat [2]"])).generate("s", "u") == "chat [2]"


def test_callables_and_import_paths_are_pluggable():
    assert make_generator(lambda prompt: f"{len(prompt)} chars").generate("ab", "cd") == "6 chars"
    generator = make_generator("tests.test_demo_generate:shouting_llm")
    assert isinstance(generator, PluggedGenerator)
    assert generator.generate("system", "question") == "SYSTEM\n\nQUESTION"


def test_bad_llm_specs_say_what_to_do():
    with pytest.raises(ValueError, match="module:attribute"):
        make_generator("no_colon_here")
    with pytest.raises(ValueError, match="could not be imported"):
        make_generator("no_such_module_xyz:llm")
    with pytest.raises(TypeError, match="LlamaIndex or LangChain"):
        make_generator(42)


def test_packaged_smollm2_answers_offline_within_the_token_limit():
    generator = SmolLM2Generator(max_new_tokens=12)
    user = passages_prompt("What colour is the sky on a clear day?", ["On a clear day the sky is blue."])
    reply = generator.generate(SYSTEM_PROMPT, user)
    tokens = generator.tokenizer(reply, add_special_tokens=False).input_ids
    assert reply and 0 < len(tokens) <= 13
    with pytest.raises(ValueError, match="fewer or shorter passages"):
        generator.generate(SYSTEM_PROMPT, passages_prompt("q", ["word " * 2000]))
