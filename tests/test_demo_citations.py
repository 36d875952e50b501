"""Citations: kept when the generator writes them, else attributed to the closest passage per sentence."""

import numpy as np

from demos.docqa.citations import attribute, cite

PASSAGES = np.eye(3, dtype=np.float32)  # passage n's vector is the n-th unit vector


class KeywordEncoder:
    """Encodes a sentence as its counts of 'trains', 'hotels', 'meals', L2-normalised (zeros if none)."""

    def encode(self, sentences):
        rows = np.array([[s.lower().count(w) for w in ("train", "hotel", "meal")] for s in sentences], np.float32)
        norms = np.linalg.norm(rows, axis=1, keepdims=True)
        return np.divide(rows, norms, out=np.zeros_like(rows), where=norms > 0)


def test_generator_citations_are_kept_verbatim():
    answer = "Take the train [2]. Hotels are capped [9]."
    assert cite(answer, PASSAGES, KeywordEncoder()) == (answer, [2], "generator")


def test_uncited_sentences_are_attributed_to_their_closest_passage():
    answer = "Meals cost up to 40 euros a day. Book a train for short trips! Ok then."
    text, cited = attribute(answer, PASSAGES, KeywordEncoder())
    assert text == "Meals cost up to 40 euros a day [3]. Book a train for short trips [1]! Ok then."
    assert cited == [3, 1]
    assert cite(answer, PASSAGES, KeywordEncoder())[2] == "attributed"


def test_sentences_far_from_every_passage_stay_uncited():
    answer = "I do not know the answer to that question."
    assert cite(answer, PASSAGES, KeywordEncoder()) == (answer, [], "none")
    assert attribute("", PASSAGES, KeywordEncoder()) == ("", [])
