"""A semi-Markov CRF: labelled segments that tile the sentence, with transitions between neighbouring
segments' labels.

A structure is a segmentation of tokens ``0..n-1`` into consecutive segments, each with a label; it scores
``sum of segment scores + sum of transitions[label of a segment, label of the next]``. Segment scores come in
band layout ``[B, N, W, L]``: ``segments[b, j, c, a]`` scores the segment of width ``c + 1`` that ends at
token j (it starts at ``j - c``) with label a; ``-inf`` makes a segment impossible (for NER, the ``O`` label
is usually allowed at width 1 only, so every O token is its own segment, and entity segments are spans).

Substructures, which the KD loss needs marginals of: the labelled segments, and the label pairs at each
boundary (``boundaries[b, j, a, a']``: a segment labelled a ends at token j and one labelled a' starts at
``j + 1``). Recursion over segment starts: ``P[m, a']`` is the log weight of every labelled segmentation of
tokens ``0..m-1`` followed by a transition into label a' (``P[0] = 0``: the first segment has no
predecessor), and ``alpha[j + 1, a] = logsumexp_c(P[j - c, a] + segments[j, c, a])``. log Z sums ``alpha`` at
each sentence's length; marginals are the gradients of log Z (per-boundary transition scores make the
boundary marginals gradients too). Cost: N sequential steps of O(B W L + B L^2).
"""
from __future__ import annotations

from typing import List, Optional, Sequence, Tuple

import torch

from .base import Structure, weighted_sum
from ._checks import StructureInputError, as_lengths, check_scores, check_shape, length_mask

__all__ = ["SemiMarkovCRF", "Segment", "band_from_spans"]

Segment = Tuple[int, int, int]  # start, end (inclusive, 0-based), label
_NEG_INF = float("-inf")


class SemiMarkovCRF(Structure):
    """A batch of distributions over labelled segmentations.

    Args:
        segments: ``[B, N, W, L]`` band-layout segment scores (see the module); entries whose segment would
            start before token 0 or end past the sentence are ignored.
        transitions: ``[L, L]`` score of label a followed by label a'.
        lengths: ``[B]`` sentence lengths in ``1..N`` (default: all N).

    Results are differentiable in both inputs; ``marginals``/``boundary_marginals`` are computed without a
    graph, in the inputs' dtype.
    """

    def __init__(self, segments: torch.Tensor, transitions: torch.Tensor, lengths=None):
        check_scores(segments, "segments", 4)
        batch, n, width, size = segments.shape
        check_scores(transitions, "transitions", 2)
        check_shape(transitions, "transitions", [size, size])
        self.lengths = as_lengths(lengths, batch, n, segments.device)
        self.mask = length_mask(self.lengths, n)
        self.batch_size, self.max_len, self.max_width, self.num_labels = batch, n, width, size
        starts = torch.arange(n, device=segments.device).unsqueeze(1) - torch.arange(width, device=segments.device)
        #: ``[B, N, W]`` True where the segment of width ``c + 1`` ending at token j lies inside the sentence
        self.band_mask = (starts >= 0) & self.mask.unsqueeze(-1)
        # past its length an item continues with width-1 segments of score 0, which keeps every prefix weight
        # finite (an all -inf logsumexp has a NaN gradient) and changes no weight read at the length
        padding = ~self.mask.unsqueeze(-1) & (torch.arange(width, device=segments.device) == 0)
        self.segments = segments.masked_fill(~self.band_mask.unsqueeze(-1), _NEG_INF).masked_fill(
            padding.unsqueeze(-1), 0.0)
        self.transitions = transitions

    # ------------------------------------------------------------------ inference
    def _log_partition(self, segments: torch.Tensor, boundary_scores: torch.Tensor) -> torch.Tensor:
        """log Z with per-boundary transition scores ``[B, N-1, L, L]`` (boundary j: after token j)."""
        batch, n, width, size = segments.shape
        blocked = segments.new_full((batch, size), _NEG_INF)
        prev: List[torch.Tensor] = [segments.new_zeros(batch, size)]  # prev[m] = P[m]
        alphas = []
        for j in range(n):
            window = [prev[j - c] if j - c >= 0 else blocked for c in range(width)]
            alpha = torch.logsumexp(torch.stack(window, 1) + segments[:, j], 1)  # [B, L]
            alphas.append(alpha)
            if j + 1 < n:
                prev.append(torch.logsumexp(alpha.unsqueeze(-1) + boundary_scores[:, j], 1))
        alphas = torch.stack(alphas, 1)  # [B, N, L]: alpha[j + 1]
        last = alphas.gather(1, (self.lengths - 1).view(-1, 1, 1).expand(-1, 1, size)).squeeze(1)
        return torch.logsumexp(last, -1)

    def _boundary_scores(self) -> torch.Tensor:
        return self.transitions.expand(self.batch_size, max(self.max_len - 1, 0), -1, -1)

    @property
    def log_partition(self) -> torch.Tensor:
        """``[B]`` log Z."""
        return self._log_partition(self.segments, self._boundary_scores())

    def _marginals(self) -> Tuple[torch.Tensor, torch.Tensor]:
        if not hasattr(self, "_cached_marginals"):
            with torch.enable_grad():
                segments = self.segments.detach().requires_grad_(True)
                boundaries = self._boundary_scores().detach().clone().requires_grad_(True)
                log_z = self._log_partition(segments, boundaries)
                seg, bound = torch.autograd.grad(log_z.sum(), [segments, boundaries], allow_unused=True)
            bound = torch.zeros_like(boundaries) if bound is None else bound
            self._cached_marginals = (seg.masked_fill(~self.band_mask.unsqueeze(-1), 0.0), bound)
        return self._cached_marginals

    @property
    def marginals(self) -> torch.Tensor:
        """``[B, N, W, L]`` P(the segment of width ``c + 1`` ending at token j has label a), band layout."""
        return self._marginals()[0]

    @property
    def boundary_marginals(self) -> torch.Tensor:
        """``[B, N-1, L, L]`` P(a segment labelled a ends at token j and one labelled a' starts at j + 1)."""
        return self._marginals()[1]

    @property
    def part_marginals(self) -> Tuple[torch.Tensor, torch.Tensor]:
        """(segments ``[B, N, W, L]``, boundary label pairs ``[B, N-1, L, L]``)."""
        return self.marginals, self.boundary_marginals

    @staticmethod
    def coverage(segment_weights: torch.Tensor) -> torch.Tensor:
        """``[B, N, L]`` from band-layout weights ``[B, N, W, L]``: the summed weight of the segments labelled a
        that cover token m (with marginals: P(token m lies in a segment labelled a))."""
        out = torch.zeros_like(segment_weights[:, :, 0])
        n = segment_weights.shape[1]
        for c in range(segment_weights.shape[2]):
            for d in range(min(c + 1, n)):  # a segment of width c + 1 ending at j covers j - d
                out[:, :n - d] += segment_weights[:, d:, c]
        return out

    @property
    def token_marginals(self) -> torch.Tensor:
        return self.coverage(self.marginals)

    def expected_score(self, segment_weights: torch.Tensor, boundary_weights: torch.Tensor) -> torch.Tensor:
        """``[B]`` ``sum_u q(u) s(u)`` over segments and boundary label pairs (differentiable in the scores);
        with one-hot weights of a segmentation, its score."""
        segment_weights = segment_weights.masked_fill(~self.band_mask.unsqueeze(-1), 0.0)
        total = weighted_sum(segment_weights, self.segments, (1, 2, 3))
        if self.max_len > 1:
            total = total + weighted_sum(boundary_weights, self.transitions.expand_as(boundary_weights), (1, 2, 3))
        return total

    def indicators(self, segmentations: Sequence[Sequence[Segment]]) -> Tuple[torch.Tensor, torch.Tensor]:
        """One-hot segment and boundary weights of one segmentation per batch item."""
        seg = self.segments.new_zeros(self.segments.shape)
        bound = self.segments.new_zeros(self.batch_size, max(self.max_len - 1, 0), self.num_labels, self.num_labels)
        for b, segmentation in enumerate(segmentations):
            segmentation = sorted(segmentation)
            covered = 0
            for start, end, label in segmentation:
                if start != covered or end < start or end - start >= self.max_width:
                    raise StructureInputError(f"item {b}: {segmentation} is not a segmentation of the sentence "
                                              f"into segments of at most {self.max_width} tokens")
                seg[b, end, end - start, label] = 1.0
                covered = end + 1
            if covered != int(self.lengths[b]):
                raise StructureInputError(f"item {b}: the segments cover {covered} tokens, not {int(self.lengths[b])}")
            for (_, end, a), (_, _, a2) in zip(segmentation, segmentation[1:]):
                bound[b, end, a, a2] = 1.0
        return seg, bound

    def score(self, segmentations: Sequence[Sequence[Segment]]) -> torch.Tensor:
        """``[B]`` the score of one segmentation per item (a list of ``(start, end inclusive, label)``)."""
        return self.expected_score(*self.indicators(segmentations))

    # ------------------------------------------------------------------ decoding
    @torch.no_grad()
    def decode(self) -> List[List[Segment]]:
        """The best segmentation of each item (Viterbi over segment starts)."""
        out = []
        segments, trans = self.segments.double(), self.transitions.double()
        for b in range(self.batch_size):
            n = int(self.lengths[b])
            best = [segments.new_zeros(self.num_labels)]  # best[m][a']: best prefix 0..m-1 then into a'
            came = [None]
            alpha_back = []
            for j in range(n):
                cands = torch.stack([best[j - c] + segments[b, j, c] if j - c >= 0 else
                                     segments.new_full((self.num_labels,), _NEG_INF) for c in range(self.max_width)])
                value, width = cands.max(0)  # [L]
                alpha_back.append((value, width))
                if j + 1 < n:
                    into, from_label = (value.unsqueeze(-1) + trans).max(0)
                    best.append(into)
                    came.append(from_label)
            label = int(alpha_back[n - 1][0].argmax())
            end, result = n - 1, []
            while end >= 0:
                c = int(alpha_back[end][1][label])
                start = end - c
                result.append((start, end, label))
                if start > 0:
                    label = int(came[start][label])
                end = start - 1
            out.append(result[::-1])
        return out


def band_from_spans(span_scores: torch.Tensor, max_width: Optional[int] = None) -> torch.Tensor:
    """``[B, N, N, L]`` start/end span scores (``[b, i, j, a]``) in band layout ``[B, N, W, L]``."""
    batch, n = span_scores.shape[:2]
    width = n if max_width is None else min(int(max_width), n)
    if width < 1:
        raise StructureInputError(f"max_width must be >= 1, got {max_width}")
    end = torch.arange(n, device=span_scores.device).unsqueeze(1)
    start = end - torch.arange(width, device=span_scores.device)
    band = span_scores[:, start.clamp(min=0), end.expand(n, width)]
    return band.masked_fill((start < 0).view(1, n, width, 1), _NEG_INF)
