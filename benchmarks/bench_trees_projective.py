"""Projective dependency trees on CPU, one thread: skd_flair vs torch-struct 0.5 vs supar 1.1.4.

    python -m benchmarks.bench_trees_projective [--batch 32 --min-len 20 --max-len 40 --reps 15] [--no-memory]

Cases (single root; mixed lengths in one padded batch, one sentence at the maximum length):

    first-order   log Z + arc marginals (teacher)      log Z + backward (training)      argmax (decoding)
    sibling       log Z + arc/sibling marginals        log Z + backward                 argmax

skd_flair: ``eisner_log_partition_and_marginals`` / ``eisner_log_partition`` / ``eisner_argmax`` and
``SiblingTree``. torch-struct: ``DependencyCRF`` (root scores on the diagonal, ``multiroot=False``; it has
no second-order model). supar: ``DependencyCRF`` / ``Dependency2oCRF`` (scores indexed [dependent, head],
sibling scores [dependent, head, sibling], ``multiroot=False``, ``lens`` = number of words). supar gives the
closest dependent no sibling score, so the sibling inputs here have ``sib[:, h, h, :] = 0``, which makes the
two models identical; agreement of log Z (and of the decoded heads) is checked and printed.

Times are the minimum over ``--reps`` runs after one warm-up (the median is printed too). Memory is the peak
resident-set growth of one run in a fresh process (glibc told to return freed blocks of 64 KiB and more to
the system, so the resident set follows the live tensors), after a warm-up on a tiny batch.
"""
from __future__ import annotations

import torch

CASES = ["1o marginals", "1o train", "1o argmax", "2o marginals", "2o train", "2o argmax"]
LIBS = ["skd_flair", "torch-struct", "supar"]


def make_inputs(batch: int, min_len: int, max_len: int, dtype: torch.dtype, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(min_len, max_len + 1, (batch,), generator=g)
    lengths[0] = max_len
    size = max_len + 1
    arcs = torch.randn(batch, size, size, generator=g, dtype=torch.float64).to(dtype)
    sibs = torch.randn(batch, size, size, size, generator=g, dtype=torch.float64).to(dtype)
    sibs.diagonal(0, 1, 2).zero_()  # no score for the closest dependent (supar's model has none)
    return arcs, sibs, lengths


# ------------------------------------------------------------------------------------------ the contenders
def ours(case):
    from skd_flair.structs.eisner import eisner_argmax, eisner_log_partition, eisner_log_partition_and_marginals
    from skd_flair.structs.second_order import SiblingTree

    def run(arcs, sibs, lengths):
        if case == "1o marginals":
            return eisner_log_partition_and_marginals(arcs, lengths)[0]
        if case == "1o train":
            x = arcs.clone().requires_grad_(True)
            log_z = eisner_log_partition(x, lengths)
            log_z.sum().backward()
            return log_z.detach()
        if case == "1o argmax":
            return eisner_argmax(arcs, lengths)
        if case == "2o marginals":
            tree = SiblingTree(arcs, sibs, lengths)
            tree.marginals, tree.sibling_marginals
            return tree.log_partition
        if case == "2o train":
            x, y = arcs.clone().requires_grad_(True), sibs.clone().requires_grad_(True)
            log_z = SiblingTree(x, y, lengths).log_partition
            log_z.sum().backward()
            return log_z.detach()
        return SiblingTree(arcs, sibs, lengths).argmax
    return run


def torch_struct(case):
    if case.startswith("2o"):
        return None
    import torch_struct

    def potentials(arcs):
        lp = arcs[:, 1:, 1:].clone()
        lp.diagonal(0, 1, 2).copy_(arcs[:, 0, 1:])  # root scores on the diagonal
        return lp.requires_grad_(True)  # torch-struct 0.5 needs a graph even for the forward pass

    def run(arcs, sibs, lengths):
        dist = torch_struct.DependencyCRF(potentials(arcs), lengths=lengths, multiroot=False)
        if case == "1o marginals":
            dist.marginals
            return dist.partition.detach()
        if case == "1o train":
            dist.partition.sum().backward()
            return dist.partition.detach()
        one_hot = dist.argmax.detach()  # [B, N, N] head-1, dep-1 with root on the diagonal
        heads = one_hot.argmax(1) + 1
        heads = torch.where(one_hot.diagonal(0, 1, 2) > 0, torch.zeros_like(heads), heads)
        return torch.cat([torch.zeros_like(heads[:, :1]), heads], 1)
    return run


def supar(case):
    from supar.structs import Dependency2oCRF, DependencyCRF

    def run(arcs, sibs, lengths):
        s_arc = arcs.clone().requires_grad_(True)
        if case.startswith("1o"):
            dist = DependencyCRF(s_arc.transpose(1, 2), lengths, multiroot=False)
        else:
            s_sib = sibs.clone().requires_grad_(True)
            dist = Dependency2oCRF((s_arc.transpose(1, 2), s_sib.permute(0, 3, 1, 2)), lengths, multiroot=False)
        if case.endswith("marginals"):
            dist.marginals
            return dist.log_partition.detach()
        if case.endswith("train"):
            dist.log_partition.sum().backward()
            return dist.log_partition.detach()
        return dist.argmax.detach()
    return run


CONTENDERS = {"skd_flair": ours, "torch-struct": torch_struct, "supar": supar}


def agreement(case, ref, other, lengths) -> str:
    if "argmax" in case:
        words = (torch.arange(ref.shape[1]) >= 1) & (torch.arange(ref.shape[1]).unsqueeze(0) <= lengths.unsqueeze(1))
        same = (ref == other) | ~words
        return f"heads {int(same.all(1).sum())}/{len(lengths)} equal"
    return f"|dlogZ| {float((ref.double() - other.double()).abs().max()):.1e}"


if __name__ == "__main__":
    import sys

    from benchmarks.harness import main

    main(sys.modules[__name__])
