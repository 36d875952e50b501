"""Each training loss on a case small enough to check by hand."""

import math

import pytest
import torch

from resrank_rag.training import losses


def test_ranknet_single_pair_is_softplus_of_negative_difference():
    loss = losses.ranknet(torch.tensor([1.0, 0.0]), torch.tensor([1, 0]), temperature=1.0)
    assert loss.item() == pytest.approx(math.log(1 + math.exp(-1)))


def test_ranknet_uses_every_graded_pair_and_temperature():
    scores, labels = torch.tensor([0.3, 0.2, 0.1]), torch.tensor([2, 1, 0])
    expected = sum(math.log(1 + math.exp(-d / 0.1)) for d in (0.1, 0.2, 0.1)) / 3
    assert losses.ranknet(scores, labels, temperature=0.1).item() == pytest.approx(expected, rel=1e-5)


def test_ranknet_without_pairs_is_zero_and_differentiable():
    scores = torch.tensor([0.5, 0.1], requires_grad=True)
    loss = losses.ranknet(scores, torch.tensor([0, 0]))
    loss.backward()
    assert loss.item() == 0.0 and scores.grad is not None


def test_listnet_targets_gain_distribution():
    # one relevant passage, equal scores: cross-entropy is log(2)
    assert losses.listnet(torch.zeros(2), torch.tensor([1, 0]), 1.0).item() == pytest.approx(math.log(2))
    # grades 2 and 1 have gains 3 and 1: target (0.75, 0.25)
    expected = -(0.75 * math.log(0.5) + 0.25 * math.log(0.5))
    assert losses.listnet(torch.zeros(2), torch.tensor([2, 1]), 1.0).item() == pytest.approx(expected)


def test_listmle_places_relevant_passages_first():
    loss = losses.listmle(torch.zeros(3), torch.tensor([0, 2, 1]), temperature=1.0)
    assert loss.item() == pytest.approx((math.log(3) + math.log(2)) / 2)
    good = losses.listmle(torch.tensor([0.0, 5.0, 3.0]), torch.tensor([0, 2, 1]), 1.0)
    bad = losses.listmle(torch.tensor([5.0, 0.0, 3.0]), torch.tensor([0, 2, 1]), 1.0)
    assert good < bad


def test_info_nce_one_query_one_negative():
    query = torch.tensor([[1.0, 0.0]])
    loss = losses.info_nce(query, torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 1.0]]), temperature=1.0)
    assert loss.item() == pytest.approx(math.log(1 + math.exp(-1)))


def test_info_nce_uses_in_batch_positives_as_negatives():
    queries = torch.eye(2)
    matched = losses.info_nce(queries, torch.eye(2), temperature=0.1)
    swapped = losses.info_nce(queries, torch.eye(2).flip(0), temperature=0.1)
    assert matched.item() < 1e-3 < swapped.item()


def test_dense_distillation_is_zero_at_the_teacher_and_positive_elsewhere():
    dense = torch.tensor([0.5, 0.2, 0.1])
    assert losses.dense_distillation(dense.clone(), dense).item() == pytest.approx(0.0, abs=1e-6)
    assert losses.dense_distillation(dense.flip(0), dense).item() > 0.1


def test_dense_margin_penalises_only_pairs_separated_less_than_dense():
    labels, dense = torch.tensor([1, 0]), torch.tensor([0.5, 0.1])
    assert losses.dense_margin(torch.tensor([0.2, 0.2]), dense, labels).item() == pytest.approx(0.4)
    assert losses.dense_margin(torch.tensor([0.9, 0.1]), dense, labels).item() == 0.0
