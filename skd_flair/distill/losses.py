"""Student-side KD losses. Each returns per-sentence losses ``[B]`` (sums over tokens, like Flair's losses),
already multiplied by ``T^2``; the caller sums or mixes them."""
from __future__ import annotations

import torch

from .scores import ChainScores
from .targets import ChainMarginals, SequenceTargets, TokenMarginals

__all__ = ["crf_structural_loss", "token_cross_entropy", "crf_posterior_loss", "crf_sequence_loss",
           "token_sequence_loss"]


def _cross_entropy(q: torch.Tensor, logp: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """-sum q log p per sentence; q = 0 contributes 0 even where log p = -inf."""
    prod = q * logp
    prod = torch.where((q == 0) | ~mask.unsqueeze(-1), prod.new_zeros(()), prod)
    return -prod.sum((1, 2))


def crf_structural_loss(student: ChainScores, target: ChainMarginals, temperature: float = 1.0) -> torch.Tensor:
    """Cases 1a and 3: ``T^2 (log Z_s(s/T) - sum_u q(u) s(u)/T)`` = the cross-entropy between the teacher's and
    the student's distributions over whole sequences (exactly, when q are a teacher's true marginals)."""
    crf = student.crf(temperature)
    q_unary, q_pair = target.unary.to(crf.emissions.dtype), target.pairwise.to(crf.emissions.dtype)
    return temperature ** 2 * (crf.log_partition - crf.expected_score(q_unary, q_pair))


def token_cross_entropy(student: ChainScores, target: TokenMarginals, temperature: float = 1.0) -> torch.Tensor:
    """Locally normalised students (1b, 2a, 2b, 4) and token-level KD: per-token cross-entropy of the
    softmax of the student's emissions at T against q."""
    logp = student.log_softmax(temperature)
    return temperature ** 2 * _cross_entropy(target.probs.to(logp.dtype), logp, student.mask)


def crf_posterior_loss(student: ChainScores, target: TokenMarginals, temperature: float = 1.0) -> torch.Tensor:
    """Posterior KD: per-token cross-entropy of the student CRF's own (differentiable) marginals against q."""
    crf = student.crf(temperature)
    return temperature ** 2 * _cross_entropy(target.probs.to(crf.emissions.dtype), crf.log_marginals, crf.mask)


def crf_sequence_loss(student: ChainScores, target: SequenceTargets) -> torch.Tensor:
    """Top-K KD for a CRF student: the weighted negative log-likelihood of the teacher's k best sequences."""
    crf = student.crf()
    nll = crf.log_partition.unsqueeze(1) - crf.score(target.tags)
    w = target.weights.to(nll.dtype)
    return torch.where(w > 0, w * nll, nll.new_zeros(())).sum(1)


def token_sequence_loss(student: ChainScores, target: SequenceTargets) -> torch.Tensor:
    """Top-K KD for a MaxEnt student: the weighted per-token negative log-likelihood of the k sequences."""
    logp = student.log_softmax()  # [B, N, L]
    picked = logp.unsqueeze(1).expand(-1, target.tags.shape[1], -1, -1).gather(
        3, target.tags.clamp(min=0).unsqueeze(-1)).squeeze(-1)  # [B, K, N]
    picked = torch.where(student.mask.unsqueeze(1), picked, picked.new_zeros(()))
    w = target.weights.to(logp.dtype)
    return -torch.where(w > 0, w * picked.sum(-1), picked.new_zeros(())).sum(1)
