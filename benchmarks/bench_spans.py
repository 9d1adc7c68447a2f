"""Speed of the labelled-span structure (NER as parsing): sentences per second on one CPU thread.

    python -m benchmarks.bench_spans [--n 40] [--width 10] [--types 4] [--batch 32]

Reports, for float64 (the teachers' dtype) and float32: log Z + BIOES token marginals without a graph (the
teacher-annotation path), log Z with its gradient (a span teacher's structured loss), and decoding. When
torch-struct is installed, also its ``SemiMarkovCRF`` log Z on the same model (O as a width-1 label,
types as labels, no transitions) and the largest difference between the two.
"""
from __future__ import annotations

import time
import warnings
from typing import Dict, List

import torch

from benchmarks.harness import SPAN_OPTIONS, parse_options, time_rounds
from skd_flair.structs.spans import LabelledSpans


def torch_struct_potentials(scores: torch.Tensor, width: int) -> torch.Tensor:
    """``[B, N, N, E]`` span scores (all sentences of length N) -> torch-struct semi-Markov potentials.

    ``edge[b, i, w, c, c_prev]`` scores the segment of width w starting at i with label c (0 = O, only
    width 1, score 0; 1 + e = type e); the previous label is free (no transitions) except at the first
    position, where it is pinned to 0 so that the start state is not counted C times.
    """
    batch, n, _, num_types = scores.shape
    labels = num_types + 1
    edge = scores.new_full((batch, n, width + 1, labels, labels), float("-inf"))
    start = torch.arange(n).view(n, 1)
    end = start + torch.arange(width).view(1, width)  # [N, W]: width w = column + 1
    spans = scores[:, start.expand(n, width), end.clamp(max=n - 1)]  # [B, N, W, E]
    spans = spans.masked_fill((end >= n).view(1, n, width, 1), float("-inf"))
    edge[:, :, 1:, 1:, :] = spans.unsqueeze(-1)
    edge[:, :, 1, 0, :] = 0.0
    edge[:, 0, :, :, 1:] = float("-inf")
    return edge


def run(n: int = 40, width: int = 10, types: int = 4, batch: int = 32, repeats: int = 7,
        seed: int = 0, compare: bool = True) -> List[Dict[str, object]]:
    torch.set_num_threads(1)
    rows = []
    for dtype in (torch.float64, torch.float32):
        g = torch.Generator().manual_seed(seed)
        scores = (torch.randn(batch, n, n, types, generator=g, dtype=torch.float64) * 3 - 2).to(dtype)
        lengths = torch.full((batch,), n)

        def log_z():
            with torch.no_grad():
                LabelledSpans(scores, lengths, width).log_partition

        def marginals():
            with torch.no_grad():
                spans = LabelledSpans(scores, lengths, width)
                spans.log_partition
                spans.token_marginals

        grad_scores = scores.clone().requires_grad_(True)

        def log_z_grad():
            LabelledSpans(grad_scores, lengths, width).log_partition.sum().backward()

        def decode():
            LabelledSpans(scores, lengths, width).decode()

        label = str(dtype).replace("torch.", "")
        cases = [("log Z", log_z), ("log Z + token marginals", marginals), ("log Z + gradient", log_z_grad),
                 ("decode", decode)]
        for name, fn in cases:
            seconds = time_rounds(fn, repeats)
            rows.append(dict(dtype=label, case=name, ms=seconds * 1e3, sentences_per_s=batch / seconds))
        if not compare:
            continue
        try:
            from torch_struct import SemiMarkovCRF
        except ImportError:
            continue
        # its log-semiring matmul broadcasts [B, ~N/2, W(E+1), W(E+1), W(E+1)]: skip it where that cannot fit
        if batch * n / 2 * (width * (types + 1)) ** 3 * scores.element_size() > 4e9:
            rows.append(dict(dtype=label, case="torch-struct SemiMarkovCRF log Z", skipped="needs > 4 GB"))
            continue
        edge = torch_struct_potentials(scores, width)
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # its missing arg_constraints
            t = time.perf_counter()  # one call: it takes seconds, so one is a fair measure
            theirs = SemiMarkovCRF(edge).partition.detach()
            seconds = time.perf_counter() - t
            ours = LabelledSpans(scores, lengths, width).log_partition
        rows.append(dict(dtype=label, case="torch-struct SemiMarkovCRF log Z", ms=seconds * 1e3,
                         sentences_per_s=batch / seconds, max_abs_diff_vs_ours=float((theirs - ours).abs().max())))
    return rows


def main(argv=None) -> None:
    args = parse_options(__doc__.splitlines()[0], argv, {
        **SPAN_OPTIONS, "no_torch_struct": (False, "skip the torch-struct comparison")})
    print(f"LabelledSpans: n={args.n}, max_width={args.width}, {args.types} types, batch {args.batch}, "
          f"1 thread, torch {torch.__version__}")
    for row in run(args.n, args.width, args.types, args.batch, args.repeats, compare=not args.no_torch_struct):
        if "skipped" in row:
            print(f"  {row['dtype']:8s} {row['case']:34s} skipped: {row['skipped']}")
            continue
        extra = f"   |diff| vs ours {row['max_abs_diff_vs_ours']:.1e}" if "max_abs_diff_vs_ours" in row else ""
        print(f"  {row['dtype']:8s} {row['case']:34s} {row['ms']:8.2f} ms/batch {row['sentences_per_s']:9.0f} "
              f"sentences/s{extra}")

if __name__ == "__main__":
    main()
