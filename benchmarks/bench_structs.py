"""Linear-chain CRFs and non-projective trees on CPU, one thread: skd_flair vs torch-struct 0.5 vs supar 1.1.4.

    python -m benchmarks.bench_structs [--batch 32 --min-len 20 --max-len 40 --reps 15] [--no-memory]

Cases (mixed lengths in one padded batch, one sentence at the maximum length; L = 19 labels as a BIOES CRF
over 4 entity types has, <START>/<STOP> included):

    chain         log Z + unary marginals (teacher, 2a)   log Z + pairwise marginals (teacher, 1a)
                  log Z + backward (CRF student training)
    nonproj       log Z + arc marginals (single root)     log Z + backward

skd_flair: ``LinearChainCRF`` and ``DependencyTree(projective=False)``. torch-struct: ``LinearChainCRF``
(edge potentials [B, N-1, C, C] built from the same emissions, transitions, start and end scores) and
``NonProjectiveDependencyCRF`` (root scores on the diagonal, ``multiroot=False``). supar: ``LinearChainCRF``
(start/end in the extra row and column of ``trans``) and ``MatrixTree`` (scores [dependent, head]).
Marginals of the libraries come from autograd through their log Z, as they compute them.
"""
from __future__ import annotations

import torch

CASES = ["chain unary", "chain pairwise", "chain train", "nonproj marginals", "nonproj train"]
LIBS = ["skd_flair", "torch-struct", "supar"]
LABELS = 19


def make_inputs(batch: int, min_len: int, max_len: int, dtype: torch.dtype, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(min_len, max_len + 1, (batch,), generator=g)
    lengths[0] = max_len
    em = torch.randn(batch, max_len, LABELS, generator=g, dtype=torch.float64).to(dtype)
    trans = torch.randn(LABELS, LABELS, generator=g, dtype=torch.float64).to(dtype)
    start_end = torch.randn(2, LABELS, generator=g, dtype=torch.float64).to(dtype)
    arcs = torch.randn(batch, max_len + 1, max_len + 1, generator=g, dtype=torch.float64).to(dtype)
    return em, trans, start_end, arcs, lengths


def ours(case):
    from skd_flair.structs import DependencyTree, LinearChainCRF

    def run(em, trans, start_end, arcs, lengths):
        if case.startswith("chain"):
            if case == "chain train":
                em = em.clone().requires_grad_(True)
                crf = LinearChainCRF(em, trans, lengths, start_end[0], start_end[1])
                crf.log_partition.sum().backward()
                return crf.log_partition.detach()
            crf = LinearChainCRF(em, trans, lengths, start_end[0], start_end[1])
            crf.marginals if case == "chain unary" else crf.pairwise_marginals
            return crf.log_partition
        if case == "nonproj train":
            x = arcs.clone().requires_grad_(True)
            log_z = DependencyTree(x, lengths).log_partition
            log_z.sum().backward()
            return log_z.detach()
        tree = DependencyTree(arcs, lengths)
        tree.marginals
        return tree.log_partition
    return run


def torch_struct(case):
    import torch_struct

    def edges(em, trans, start_end, lengths):
        edge = trans.t().unsqueeze(0).unsqueeze(0) + em[:, 1:].unsqueeze(-1)  # [B, N-1, to, from]
        edge = edge.clone()
        edge[:, 0] += (em[:, 0] + start_end[0]).unsqueeze(1)
        edge[torch.arange(len(lengths)), lengths - 2] += start_end[1].view(-1, 1)
        return edge.requires_grad_(True)

    def run(em, trans, start_end, arcs, lengths):
        if case.startswith("chain"):
            dist = torch_struct.LinearChainCRF(edges(em, trans, start_end, lengths), lengths=lengths)
            if case == "chain train":
                dist.partition.sum().backward()
            else:
                dist.marginals  # pairwise; unary marginals are their sums
            return dist.partition.detach()
        lp = arcs[:, 1:, 1:].clone()
        lp.diagonal(0, 1, 2).copy_(arcs[:, 0, 1:])
        dist = torch_struct.NonProjectiveDependencyCRF(lp.requires_grad_(True), lengths=lengths, multiroot=False)
        if case == "nonproj train":
            dist.partition.sum().backward()
        else:
            dist.marginals
        return dist.partition.detach()
    return run


def supar(case):
    from supar.structs import LinearChainCRF, MatrixTree

    def run(em, trans, start_end, arcs, lengths):
        if case.startswith("chain"):
            if case == "chain pairwise":
                return None
            full = trans.new_zeros(LABELS + 1, LABELS + 1)
            full[:LABELS, :LABELS], full[-1, :LABELS], full[:LABELS, -1] = trans, start_end[0], start_end[1]
            scores = em.clone().requires_grad_(True)
            dist = LinearChainCRF(scores, full, lengths)
            if case == "chain train":
                dist.log_partition.sum().backward()
            else:
                dist.marginals
            return dist.log_partition.detach()
        dist = MatrixTree(arcs.transpose(1, 2).clone().requires_grad_(True), lengths, multiroot=False)
        if case == "nonproj train":
            dist.log_partition.sum().backward()
        else:
            dist.marginals
        return dist.log_partition.detach()
    return run


def _supar(case):
    return None if case == "chain pairwise" else supar(case)  # supar gives unary marginals only


CONTENDERS = {"skd_flair": ours, "torch-struct": torch_struct, "supar": _supar}


def agreement(case, ref, other, lengths) -> str:
    return f"|dlogZ| {float((ref.double() - other.double()).abs().max()):.1e}"


if __name__ == "__main__":
    import sys

    from benchmarks.harness import main

    main(sys.modules[__name__])
