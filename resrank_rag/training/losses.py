"""Training losses on cosine scores: InfoNCE, RankNet, ListNet, ListMLE, dense distillation and margin.

Listwise losses take one list at a time: ``scores`` (K,) cosine scores, ``labels`` (K,) graded
relevance (0 = not relevant). Scores are divided by ``temperature`` before any softmax or sigmoid.
"""

from __future__ import annotations

import torch
from torch import nn


def info_nce(queries: torch.Tensor, positives: torch.Tensor, negatives: torch.Tensor | None = None, temperature: float = 0.05) -> torch.Tensor:
    """Contrastive retrieval loss: query i must pick positive i among all positives and the negatives.

    ``queries`` and ``positives`` are (B, d), ``negatives`` (N, d); all L2-normalised.
    """
    candidates = positives if negatives is None or not len(negatives) else torch.cat([positives, negatives])
    logits = queries @ candidates.T / temperature
    return nn.functional.cross_entropy(logits, torch.arange(queries.size(0), device=queries.device))


def _better_pairs(labels: torch.Tensor) -> torch.Tensor:
    """(K, K) mask of pairs (i, j) where passage i is more relevant than passage j."""
    return labels.unsqueeze(1) > labels.unsqueeze(0)


def ranknet(scores: torch.Tensor, labels: torch.Tensor, temperature: float = 0.05,
            weights: torch.Tensor | None = None) -> torch.Tensor:
    """Mean over ordered pairs (i more relevant than j) of -log sigmoid((s_i - s_j) / T).

    ``weights`` (K,) weigh each pair by its less relevant passage's weight (a weighted mean; weight 0 leaves
    the passage out as a negative): how sure the label "not relevant" is, as with feedback."""
    pairs = _better_pairs(labels)
    if weights is not None:
        pairs = pairs & (weights.unsqueeze(0) > 0)
    if not pairs.any():
        return scores.sum() * 0.0
    differences = (scores.unsqueeze(1) - scores.unsqueeze(0)) / temperature
    if weights is None:
        return nn.functional.softplus(-differences[pairs]).mean()
    pair_weights = weights.to(scores.dtype).unsqueeze(0).expand_as(differences)[pairs]
    return (nn.functional.softplus(-differences[pairs]) * pair_weights).sum() / pair_weights.sum()


def listnet(scores: torch.Tensor, labels: torch.Tensor, temperature: float = 0.05) -> torch.Tensor:
    """Cross-entropy from the gain distribution (2^label - 1, normalised) to softmax(scores / T)."""
    gains = torch.pow(2.0, labels.to(scores.dtype)) - 1
    if gains.sum() <= 0:
        return scores.sum() * 0.0
    target = gains / gains.sum()
    return -(target * torch.log_softmax(scores / temperature, dim=0)).sum()


def listmle(scores: torch.Tensor, labels: torch.Tensor, temperature: float = 0.05) -> torch.Tensor:
    """Plackett-Luce likelihood of placing the relevant passages first, by grade (top-P ListMLE).

    With P relevant passages, sums -log P(pick the i-th best among those not yet picked) for i < P,
    averaged over P; passages of equal grade keep their list order.
    """
    order = torch.argsort(labels, descending=True, stable=True)
    relevant = int((labels > 0).sum())
    if relevant == 0:
        return scores.sum() * 0.0
    ordered = scores[order] / temperature
    suffix_logsumexp = torch.logcumsumexp(ordered.flip(0), dim=0).flip(0)
    return (suffix_logsumexp[:relevant] - ordered[:relevant]).mean()


LISTWISE = {"ranknet": ranknet, "listnet": listnet, "listmle": listmle}


def dense_distillation(scores: torch.Tensor, dense_scores: torch.Tensor, temperature: float = 0.05) -> torch.Tensor:
    """KL(softmax(dense / T) || softmax(scores / T)): pulls the list distribution towards the retriever's."""
    target = torch.softmax(dense_scores.detach() / temperature, dim=0)
    log_model = torch.log_softmax(scores / temperature, dim=0)
    return (target * (torch.log(target.clamp_min(1e-12)) - log_model)).sum()


def dense_margin(scores: torch.Tensor, dense_scores: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean over judged pairs (i more relevant than j) of max(0, dense margin - model margin).

    Zero when the model separates every such pair at least as well as the dense retriever does.
    """
    pairs = _better_pairs(labels)
    if not pairs.any():
        return scores.sum() * 0.0
    model_margin = scores.unsqueeze(1) - scores.unsqueeze(0)
    dense = dense_scores.detach()
    dense_margin_ = dense.unsqueeze(1) - dense.unsqueeze(0)
    return torch.relu(dense_margin_ - model_margin)[pairs].mean()
