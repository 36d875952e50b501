"""The extractive answer: sentence spans, which sentences can answer, and the choice (a word-count encoder,
then the packaged one on a real page)."""

import re
from types import SimpleNamespace

import numpy as np
import pytest

from demos.docqa.extractive import answerable, extract, sentence_spans

WORDS = ["cafeteria", "opens", "noon", "visitors", "reception", "laptops", "library", "week", "badge", "lost"]


class WordCounts:
    """An encoder whose vector counts a few known words: cosine is word overlap, so the best sentence is known."""

    def encode(self, texts, **options):
        vectors = np.array([[len(re.findall(rf"\b{w}", t.lower())) for w in WORDS] for t in texts], dtype=np.float32)
        return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-9)

    def encode_queries(self, texts, **options):
        return self.encode(texts)


def passage(id, text, title="", label=""):
    return SimpleNamespace(id=id, text=text, title=title, label=label)


def spans_of(text, title=""):
    return [text[start:end] for start, end in sentence_spans(text, title)]


def test_spans_split_sentences_lists_headings_and_rules_and_index_the_text():
    text = "# Guide\n\nThe first one. E.g. this stays whole! Then \"quoted.\" Next\n1. An item here.\n2. Another. Rule ~~~~ After it"
    assert spans_of(text) == ["# Guide", "The first one.", "E.g. this stays whole!", 'Then "quoted."', "Next",
                              "1. An item here.", "2. Another.", "Rule", "After it"]
    for start, end in sentence_spans(text):
        assert text[start:end] == text[start:end].strip() and text[start:end]
    assert spans_of("Travel\nbooking rules apply. Trains.", "Travel") == ["Travel", "booking rules apply.", "Trains."]
    assert spans_of("a lowercase start. still one.") == ["a lowercase start. still one."]  # no sentence starts in lower case


def test_answerable_keeps_whole_prose_sentences_only():
    assert answerable("The library lends laptops for a week.")
    assert answerable('"pass" is a null operation: nothing happens.')
    assert not answerable("Too short.")
    assert not answerable("# The pass statement is here.")  # a heading
    assert not answerable("The pass statement and its grammar")  # no end: a heading, or a sentence cut by chunking
    assert not answerable("are lent for a week by the library.")  # the tail of a sentence cut by chunking
    assert not answerable('with_stmt ::= "with" ( "(" with_stmt_contents ","? ")" ) ok.')
    assert not answerable('del_stmt ::= "del" target_list.')
    assert not answerable(".md .txt files are read by the demo, too.")  # the rest of a code line
    assert answerable("2. Then the suite is executed.") and answerable("`make demo` installs the demo.")


def test_extract_picks_the_best_sentence_with_its_passage_offsets_and_citation():
    passages = [
        passage("a#1", "Cafeteria\nare served hot. The cafeteria opens at noon on weekdays. Visitors sign in at reception.",
                title="Cafeteria", label="handbook.pdf p. 2"),
        passage("b", "The library lends laptops for a week. Lost badges go to reception.", title="Library", label="library.md"),
    ]
    answer = extract("When does the cafeteria open at noon?", passages, WordCounts(), max_sentences=2)
    assert [s.text for s in answer] == ["The cafeteria opens at noon on weekdays."]  # the other sentences score far lower
    best = answer[0]
    assert (best.passage, best.chunk_id, best.label) == (1, "a#1", "handbook.pdf p. 2")
    assert passages[0].text[best.start : best.end] == best.text
    laptops = extract("laptops library week", passages, WordCounts())[0]
    assert (laptops.passage, laptops.text, laptops.label) == (2, "The library lends laptops for a week.", "library.md")


def test_extract_returns_close_runners_up_and_falls_back_to_short_sentences():
    passages = [passage("a", "Visitors wait at reception. Visitors sign in at reception."), passage("b", "Lost badge.")]
    two = extract("visitors reception", passages, WordCounts(), max_sentences=2)
    assert len(two) == 2 and {s.text for s in two} == {"Visitors wait at reception.", "Visitors sign in at reception."}
    assert [s.text for s in extract("lost badge", [passages[1]], WordCounts())] == ["Lost badge."]  # no sentence of 4 words
    assert extract("anything", [], WordCounts()) == []
    with pytest.raises(ValueError, match="max_sentences"):
        extract("x", passages, WordCounts(), max_sentences=0)


def test_the_packaged_encoder_finds_the_answer_sentence_on_a_real_page(packaged_model):
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "demos" / "docs_corpus" / "python_topics" / "pass.md").read_text()
    answer = extract("What does the pass statement do?", [passage("pass.md", text, title="The pass statement")],
                     packaged_model, max_sentences=1)
    assert "null operation" in answer[0].text, answer[0].text
