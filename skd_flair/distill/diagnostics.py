"""KD diagnostics per batch: how far the student is from its targets, token by token."""
from __future__ import annotations

import torch

__all__ = ["teacher_token_probs", "token_diagnostics"]


def teacher_token_probs(targets) -> torch.Tensor:
    """``[B, N, L]`` per-token distribution the targets imply (``Targets.token_probs``)."""
    return targets.token_probs()


@torch.no_grad()
def token_diagnostics(student_log_probs: torch.Tensor, mask: torch.Tensor, targets) -> dict:
    """Sums over the batch's tokens: KL(teacher || student) of per-token marginals, teacher entropy, and how
    many tokens have the same argmax (divide by ``tokens`` for means). `student_log_probs` ``[B, N, L]`` are the
    student's per-token log marginals at the objective's temperature (its factorisation's
    ``token_log_probs``); the teacher's are the targets as the loss uses them (tempered, when the objective
    tempers)."""
    q = targets.token_probs().to(student_log_probs.dtype)
    logp = student_log_probs
    logq = torch.log(q)
    entropy = -torch.where(q > 0, q * logq, q.new_zeros(())).sum(-1)
    kl = torch.where(q > 0, q * (logq - logp), q.new_zeros(())).sum(-1)
    agree = (q.argmax(-1) == logp.argmax(-1)) & mask
    return {"kl_sum": float(kl[mask].sum()), "teacher_entropy_sum": float(entropy[mask].sum()),
            "agree": int(agree.sum()), "tokens": int(mask.sum())}
