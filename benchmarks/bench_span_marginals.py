"""Speed of a span teacher's marginals (case 4): SpanScores.marginals -> BIOES token marginals, against a port
of the reference code's per-sentence Python ``Decimal`` dynamic program.

    python -m benchmarks.bench_span_marginals [--n 40] [--width 10] [--types 4] [--batch 32]

Both compute the teacher's per-token BIOES marginals of the distribution over sets of non-overlapping labelled
spans, in float64 on one CPU thread. The reference (Wang et al. 2021, case 4, ``distill_dp_transform``) works
in the probability domain with ``decimal.Decimal`` numbers to avoid overflow, one sentence at a time; the port
below follows its description (paper-and-reference-code.md, case 4) and only visits spans of width
``<= max_width``, which favours it (the reference scores every span). Its agreement with ours is checked on a
few sentences at T = 1 and at a local temperature (``w^(1/T)`` renormalised per token, as the reference does).
"""
from __future__ import annotations

import time
from decimal import Decimal
from typing import List, Sequence

import torch

from benchmarks.harness import SPAN_OPTIONS, parse_options, time_rounds
from skd_flair.distill import temper
from skd_flair.distill.span_scores import SpanScores
from skd_flair.structs.spans import LabelledSpans


def reference_token_marginals(scores: Sequence, n: int, num_types: int, max_width: int,
                              temperature: float = 1.0) -> List[List[float]]:
    """Per-token BIOES weights of one sentence by the reference's Decimal forward-backward.

    ``scores[i][j][r]`` (0-based, inclusive) is span (i, j, r)'s score relative to None, so
    ``psi(i, j, r) = exp(scores[i][j][r])``. Positions below are 1-based as in the description:
    ``alpha(1) = 1, alpha(m + 1) = alpha(m) + sum_r sum_{i <= m} alpha(i) psi(i, m, r)`` and
    ``beta(n) = 1, beta(m - 1) = beta(m) + sum_r sum_{j >= m} psi(m, j, r) beta(j)``. Rows are in
    ``LabelledSpans.bioes_tags`` order (O, then B, I, E, S per type), tempered ``w^(1/T)`` and normalised.
    """
    one, zero = Decimal(1), Decimal(0)
    psi = {}
    for i in range(1, n + 1):
        for j in range(i, min(n, i + max_width - 1) + 1):
            psi[i, j] = [Decimal(scores[i - 1][j - 1][r]).exp() for r in range(num_types)]
    alpha = [zero] * (n + 2)
    alpha[1] = one
    for m in range(1, n + 1):
        total = alpha[m]
        for i in range(max(1, m - max_width + 1), m + 1):
            for r in range(num_types):
                total += alpha[i] * psi[i, m][r]
        alpha[m + 1] = total
    beta = [zero] * (n + 1)
    beta[n] = one
    for m in range(n, 0, -1):
        total = beta[m]
        for j in range(m, min(n, m + max_width - 1) + 1):
            for r in range(num_types):
                total += psi[m, j][r] * beta[j]
        beta[m - 1] = total
    inside = [zero] * num_types  # running sum of I-r: spans (i, j) with i < m < j
    rows = []
    exponent = Decimal(1) / Decimal(repr(float(temperature)))
    for m in range(1, n + 1):
        if m > 1:  # spans starting at m - 1 now contain m; spans ending at m no longer contain it strictly
            for r in range(num_types):
                for j in range(m + 1, min(n, m - 1 + max_width - 1) + 1):
                    inside[r] += alpha[m - 1] * psi[m - 1, j][r] * beta[j]
                for i in range(max(1, m - max_width + 1), m - 1):
                    inside[r] -= alpha[i] * psi[i, m][r] * beta[m]
        weights = [alpha[m] * beta[m]]
        for r in range(num_types):
            begin = sum((alpha[m] * psi[m, j][r] * beta[j] for j in range(m + 1, min(n, m + max_width - 1) + 1)),
                        zero)
            end = sum((alpha[i] * psi[i, m][r] for i in range(max(1, m - max_width + 1), m)), zero) * beta[m]
            single = alpha[m] * psi[m, m][r] * beta[m]
            middle = inside[r] if 1 < m < n else zero  # impossible labels are zeroed
            weights += [begin if m < n else zero, middle, end if m > 1 else zero, single]
        if temperature != 1.0:
            weights = [w ** exponent if w > 0 else zero for w in weights]
        total = sum(weights, zero)
        rows.append([float(w / total) for w in weights])
    return rows


def run(n: int = 40, width: int = 10, types: int = 4, batch: int = 32, repeats: int = 7, reference_sentences: int = 8,
        check_sentences: int = 4, seed: int = 0) -> dict:
    torch.set_num_threads(1)
    g = torch.Generator().manual_seed(seed)
    # relative scores of a teacher that mostly says "no entity": negative on average, some spans likely
    spans = torch.randn(batch, n, n, types, generator=g, dtype=torch.float64) * 3 - 2
    lengths = torch.full((batch,), n)
    names = [f"T{e}" for e in range(types)]
    scores = SpanScores(spans, lengths, names, max_width=width)
    assert scores.labels == LabelledSpans.bioes_tags(names)

    ours_s = time_rounds(lambda: scores.marginals(), repeats)
    table = spans.tolist()
    count = min(reference_sentences, batch)
    t = time.perf_counter()
    for b in range(count):
        reference_token_marginals(table[b], n, types, width)
    ref_s = (time.perf_counter() - t) / count  # seconds per sentence

    diffs = {}
    for temperature in (1.0, 2.0):
        ours = temper(scores.marginals(), temperature).probs
        worst = 0.0
        for b in range(min(check_sentences, batch)):
            theirs = torch.tensor(reference_token_marginals(table[b], n, types, width, temperature),
                                  dtype=torch.float64)
            worst = max(worst, float((theirs - ours[b]).abs().max()))
        diffs[temperature] = worst
    ours_rate, ref_rate = batch / ours_s, 1.0 / ref_s
    return dict(ours_ms_per_batch=ours_s * 1e3, ours_sentences_per_s=ours_rate, reference_ms_per_sentence=ref_s * 1e3,
                reference_sentences_per_s=ref_rate, speedup=ours_rate / ref_rate, max_abs_diff=diffs)


def main(argv=None) -> None:
    args = parse_options(__doc__.splitlines()[0], argv, {
        **SPAN_OPTIONS, "reference_sentences": (8, "sentences timed for the Decimal port")})
    print(f"span teacher marginals (BIOES token marginals): n={args.n}, max_width={args.width}, {args.types} types, "
          f"batch {args.batch}, float64, 1 thread, torch {torch.__version__}")
    r = run(args.n, args.width, args.types, args.batch, args.repeats, args.reference_sentences)
    print(f"  SpanScores.marginals (vectorised log space) {r['ours_ms_per_batch']:9.2f} ms/batch "
          f"{r['ours_sentences_per_s']:10.1f} sentences/s")
    print(f"  reference Decimal DP (per sentence)         {r['reference_ms_per_sentence']:9.2f} ms/sentence "
          f"{r['reference_sentences_per_s']:10.1f} sentences/s")
    print(f"  ratio (ours / reference): {r['speedup']:.0f}x")
    print("  agreement, max |difference| of token marginals: "
          + ", ".join(f"T={t:g}: {d:.1e}" for t, d in r["max_abs_diff"].items()))


if __name__ == "__main__":
    main()
