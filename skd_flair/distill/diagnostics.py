"""KD diagnostics per batch: how far the student is from its targets, token by token."""
from __future__ import annotations

import torch

from .scores import ChainScores
from .targets import ChainMarginals, SequenceTargets, TokenMarginals

__all__ = ["teacher_token_probs", "token_diagnostics"]


def teacher_token_probs(targets) -> torch.Tensor:
    """``[B, N, L]`` per-token distribution the targets imply (unary marginals; a weighted vote of sequences)."""
    if isinstance(targets, TokenMarginals):
        return targets.probs
    if isinstance(targets, ChainMarginals):
        return targets.unary
    if isinstance(targets, SequenceTargets):
        size = len(targets.labels) if targets.labels is not None else int(targets.tags.max()) + 1
        onehot = torch.nn.functional.one_hot(targets.tags.clamp(min=0), size).to(targets.weights.dtype)
        onehot = onehot * (targets.tags >= 0).unsqueeze(-1)
        return (onehot * targets.weights.view(*targets.weights.shape, 1, 1)).sum(1)
    raise TypeError(f"no token distribution for {type(targets).__name__}")


@torch.no_grad()
def token_diagnostics(student: ChainScores, targets, temperature: float = 1.0) -> dict:
    """Sums over the batch's tokens: KL(teacher || student) of per-token marginals, teacher entropy, and how
    many tokens have the same argmax (divide by ``tokens`` for means). The student's token marginals are
    forward-backward marginals for a CRF, the softmax for a MaxEnt tagger, both at the objective's temperature;
    the teacher's are the targets as the loss uses them (tempered, when the objective tempers)."""
    q = teacher_token_probs(targets).to(student.emissions.dtype)
    mask = student.mask
    logp = student.crf(temperature).log_marginals if student.is_crf else student.log_softmax(temperature)
    logq = torch.log(q)
    entropy = -torch.where(q > 0, q * logq, q.new_zeros(())).sum(-1)
    kl = torch.where(q > 0, q * (logq - logp), q.new_zeros(())).sum(-1)
    agree = (q.argmax(-1) == logp.argmax(-1)) & mask
    return {"kl_sum": float(kl[mask].sum()), "teacher_entropy_sum": float(entropy[mask].sum()),
            "agree": int(agree.sum()), "tokens": int(mask.sum())}
