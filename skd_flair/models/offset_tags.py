"""Offset tags for dependency parsing as sequence labelling: encoding trees as tags and decoding tags into trees.

Each word i (1-based) gets the tag ``"{h - i}_{rel}"``, h its head (0 = ROOT, so the root word's tag is
``"{-i}_root"``), rel its relation. Decoding must give a tree: the per-word head distribution is the tagger's
softmax summed over relations per offset (offsets outside the sentence, ``<unk>`` and unparseable tags get no
mass); then ``repair="mst"`` (the best single-root tree under those distributions), ``"eisner"`` (the same over
projective trees), ``"top3"`` (the reference code's heuristic over the top-3 tags, Strzyz et al.'s
post-processing) or ``"none"`` (each word's best tag as it is; heads outside the sentence become None).
"""
from __future__ import annotations

from typing import Dict, Iterable, List, Optional, Sequence, Tuple, Union, cast

import torch
from flair.data import Corpus, Dictionary, Sentence

from ..distill.labels import SPECIAL_LABELS
from ..distill.maps import parse_offset_tag
from ..structs import DependencyTree
from .dependency_eval import gold_tree

__all__ = ["OffsetTagCodec", "DEFAULT_TAG_TYPE", "REPAIRS", "offset_tag", "encode_sentence", "encode_corpus",
           "make_tag_dictionary", "decode_offset_tags", "tree_heads"]

DEFAULT_TAG_TYPE = "dependency_sl"
REPAIRS = ("mst", "eisner", "top3", "none")
_FLOOR = -1e4  # log head probability of an arc no tag can express: below any real log probability


def offset_tag(word: int, head: int, relation: str) -> str:
    """The tag of word `word` (1-based) with head `head` (0 = ROOT): ``"{head - word}_{relation}"``."""
    return f"{head - word}_{relation}"


def encode_sentence(sentence: Sentence, tag_type: str = DEFAULT_TAG_TYPE, relation_type: str = "dependency"
                    ) -> List[Optional[str]]:
    """Give every token with a head (``token.head_id``) and a relation its offset tag (token label of type
    `tag_type`); returns the tags (None for tokens without a head or relation, which get no tag)."""
    heads, rels = gold_tree(sentence, relation_type)
    tags = []
    for token, h, r in zip(sentence, heads, rels):
        tag = offset_tag(token.idx, h, r) if h is not None and r is not None else None
        token.remove_labels(tag_type)
        if tag is not None:
            token.set_label(tag_type, tag)
        tags.append(tag)
    return tags


def _sentences(data) -> Iterable[Sentence]:
    if isinstance(data, Corpus):
        return data.get_all_sentences()
    if isinstance(data, Sentence):
        return [data]
    return data


def encode_corpus(data: Union[Corpus, Iterable[Sentence]], tag_type: str = DEFAULT_TAG_TYPE,
                  relation_type: str = "dependency") -> None:
    """`encode_sentence` on every sentence (all splits of a corpus)."""
    for sentence in _sentences(data):
        encode_sentence(sentence, tag_type, relation_type)


def make_tag_dictionary(data: Union[Corpus, Iterable[Sentence]], tag_type: str = DEFAULT_TAG_TYPE,
                        relation_type: str = "dependency", add_unk: bool = True) -> Dictionary:
    """The offset tags of the training sentences (a corpus' train split), encoded on the way."""
    sentences = data.train if isinstance(data, Corpus) else data
    dictionary = Dictionary(add_unk=add_unk)
    for sentence in sentences:
        for tag in encode_sentence(sentence, tag_type, relation_type):
            if tag is not None:
                dictionary.add_item(tag)
    return dictionary


class OffsetTagCodec:
    """What each tag of a dictionary means: its offset and relation, and whether it can name a head."""

    def __init__(self, tags: Sequence[str], root_relation: Optional[str] = "root"):
        self.tags = list(tags)
        self.root_relation = root_relation
        parsed = [None if t in SPECIAL_LABELS else parse_offset_tag(t) for t in self.tags]
        self.usable = torch.tensor([p is not None and p[0] != 0 for p in parsed], dtype=torch.bool)
        self.offsets = torch.tensor([p[0] if p is not None else 0 for p in parsed], dtype=torch.long)
        self.relations: List[Optional[str]] = [p[1] if p is not None else None for p in parsed]
        self.index = {t: k for k, t in enumerate(self.tags)}
        self.is_root = torch.tensor([r is not None and r == root_relation for r in self.relations], dtype=torch.bool)
        self._nearest: Dict[str, int] = {}

    def __len__(self):
        return len(self.tags)

    # ------------------------------------------------------------------ unseen tags
    def lookup(self, tag: str) -> int:
        """The index of `tag`; an unknown tag maps to ``<unk>`` when the dictionary has it, else to the
        known tag with the same relation and the nearest offset (any relation when none has it)."""
        k = self.index.get(tag)
        if k is not None:
            return k
        if tag not in self._nearest:
            self._nearest[tag] = self._nearest_index(tag)
        return self._nearest[tag]

    def _nearest_index(self, tag: str) -> int:
        if "<unk>" in self.index:
            return self.index["<unk>"]
        parsed = parse_offset_tag(tag)
        usable = self.usable.nonzero().squeeze(1).tolist()
        if parsed is None or not usable:
            return usable[0] if usable else 0
        offset, rel = parsed
        same = [k for k in usable if self.relations[k] == rel] or usable
        return min(same, key=lambda k: (abs(int(self.offsets[k]) - offset), abs(int(self.offsets[k]))))

    # ------------------------------------------------------------------ heads
    def head_log_probs(self, log_probs: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """``[B, N+1, N+1]`` arc scores ``[b, h, d]`` = log P(head(d) = h) from per-word tag log probabilities
        ``[B, N, K]``: tag mass summed per head, -inf where no tag points (float64)."""
        logp = log_probs.double()
        batch, n, _ = logp.shape
        device = logp.device
        words = torch.arange(1, n + 1, device=device).view(1, n, 1)
        heads = words + self.offsets.to(device).view(1, 1, -1)  # [1, N, K]
        ok = (self.usable.to(device).view(1, 1, -1) & (heads >= 0) & (heads != words)
              & (heads <= lengths.to(device).view(-1, 1, 1)))  # [B, N, K]
        probs = torch.where(ok, logp.exp(), logp.new_zeros(()))
        mass = logp.new_zeros(batch, n, n + 1).scatter_add_(2, heads.clamp(0, n).expand(batch, -1, -1), probs)
        arcs = logp.new_full((batch, n + 1, n + 1), float("-inf"))
        arcs[:, :, 1:] = torch.log(mass).transpose(1, 2)
        return arcs

    def best_relations(self, log_probs: torch.Tensor, heads: Sequence[Optional[int]]
                       ) -> List[Tuple[Optional[str], float]]:
        """Each word's best relation for its head and that tag's probability (``log_probs`` ``[n, K]``, 1-based
        `heads`): with a root relation, arcs from ROOT take only it and other arcs never. (None, 0) where no tag
        with mass names that arc, or the head is None."""
        n = len(heads)
        if n == 0:
            return []
        device = log_probs.device
        known = torch.tensor([h is not None for h in heads], device=device)
        hs = torch.tensor([h if h is not None else 0 for h in heads], dtype=torch.long, device=device)
        match = known.unsqueeze(1) & self.usable.to(device).unsqueeze(0) & (
            self.offsets.to(device).unsqueeze(0) == (hs - torch.arange(1, n + 1, device=device)).unsqueeze(1))
        if self.root_relation:
            is_root = self.is_root.to(device).unsqueeze(0)
            match &= torch.where((hs == 0).unsqueeze(1), is_root, ~is_root)
        rows = log_probs[:n].masked_fill(~match, float("-inf"))
        best = rows.argmax(1)
        top = rows.gather(1, best.unsqueeze(1)).squeeze(1)
        return [(self.relations[k], p) if ok else (None, 0.0)
                for k, ok, p in zip(best.tolist(), torch.isfinite(top).tolist(), top.exp().tolist())]

    def tag_head(self, k: int, word: int, n: int) -> Optional[int]:
        """The head that tag k gives `word` in a sentence of n words, or None when it names none."""
        if not bool(self.usable[k]):
            return None
        h = word + int(self.offsets[k])
        return h if 0 <= h <= n and h != word else None


def _fallback_relation(codec: OffsetTagCodec, log_probs: torch.Tensor, word: int, head: int) -> str:
    """A relation for an arc no tag names: the root relation on ROOT, else the word's best relation."""
    if head == 0 and codec.root_relation:
        return codec.root_relation
    order = torch.argsort(log_probs[word - 1], descending=True).tolist()
    for k in order:
        rel = codec.relations[k]
        if rel is not None and bool(codec.usable[k]) and rel != codec.root_relation:
            return rel
    return "dep"


def _find_cycle(heads: List[Optional[int]]) -> Optional[List[int]]:
    n = len(heads)
    state = [0] * (n + 1)
    state[0] = 2
    for start in range(1, n + 1):
        path, v = [], start
        while v is not None and state[v] == 0:
            state[v] = 1
            path.append(v)
            v = heads[v - 1]
        if v is not None and state[v] == 1:
            return path[path.index(v):]
        for u in path:
            state[u] = 2
    return None


def _top3(codec: OffsetTagCodec, log_probs: torch.Tensor, n: int) -> Tuple[List[int], List[str]]:
    """The reference code's post-processing (Strzyz et al. 2019) over each word's three best tags:

    1. each word takes its best tag; the head is valid when it is a word of the sentence, or ROOT with the
       root relation; otherwise the word is homeless;
    2. no root: the most probable root tag among the 2nd and 3rd best tags of all words becomes the root;
       failing that, word 1;
    3. several roots: the most probable stays; the others take their 2nd best tag when it is a valid non-root
       one, else attach to the root word;
    4. homeless words attach to the root word;
    5. each cycle is broken by attaching its least confident word to the root word.

    Tags of probability 0 are never candidates. Relations end as in the other repairs: the root relation
    exactly on the arc from ROOT (a word re-attached elsewhere keeps a non-root relation).
    """
    probs = log_probs[:n].exp()
    k = min(3, probs.shape[1])
    top_p, top_k = probs.topk(k, dim=-1)
    top_p, top_k = top_p.tolist(), top_k.tolist()
    root_rel = codec.root_relation

    def candidate(i, rank):  # (head, relation, prob) or None; word i is 1-based
        if rank >= k:
            return None
        tag = top_k[i - 1][rank]
        h = codec.tag_head(tag, i, n)
        rel = codec.relations[tag]
        if h is None or top_p[i - 1][rank] <= 0 or (h == 0 and root_rel is not None and rel != root_rel):
            return None
        return h, rel, top_p[i - 1][rank]

    heads: List[Optional[int]] = [None] * n
    rels: List[Optional[str]] = [None] * n
    conf = [0.0] * n
    for i in range(1, n + 1):
        c = candidate(i, 0)
        first = top_k[i - 1][0]
        rels[i - 1] = codec.relations[first]
        if c is not None:
            heads[i - 1], rels[i - 1], conf[i - 1] = c
    roots = [i for i in range(1, n + 1) if heads[i - 1] == 0]
    if not roots:  # the most probable root tag among the 2nd and 3rd best; else word 1
        best = None
        for i in range(1, n + 1):
            for rank in (1, 2):
                c = candidate(i, rank)
                if c is not None and c[0] == 0 and (best is None or c[2] > best[1][2]):
                    best = (i, c)
        if best is not None:
            i, c = best
            heads[i - 1], rels[i - 1], conf[i - 1] = c
        else:
            heads[0], rels[0], conf[0] = 0, root_rel or rels[0] or "root", 0.0
        root = best[0] if best is not None else 1
    else:
        root = max(roots, key=lambda i: conf[i - 1])
        for i in roots:
            if i == root:
                continue
            c = candidate(i, 1)
            if c is not None and c[0] != 0:
                heads[i - 1], rels[i - 1], conf[i - 1] = c
            else:
                heads[i - 1], conf[i - 1] = root, 0.0
                second = top_k[i - 1][1] if k > 1 else None
                rel = codec.relations[second] if second is not None else None
                rels[i - 1] = rel if rel is not None and rel != root_rel else "dep"
    for i in range(1, n + 1):  # homeless words attach to the root word
        if heads[i - 1] is None:
            heads[i - 1], conf[i - 1] = root, 0.0
            if rels[i - 1] is None or rels[i - 1] == root_rel:
                rels[i - 1] = _fallback_relation(codec, log_probs, i, root)
    while True:  # break cycles at their least confident arc, attaching that word to the root word
        cycle = _find_cycle(heads)
        if cycle is None:
            break
        weakest = min(cycle, key=lambda i: conf[i - 1])
        heads[weakest - 1], conf[weakest - 1] = root, 0.0
    if root_rel is not None:  # the root relation exactly on the arc from ROOT
        for i in range(1, n + 1):
            if heads[i - 1] == 0:
                rels[i - 1] = root_rel
            elif rels[i - 1] == root_rel or rels[i - 1] is None:
                rels[i - 1] = _fallback_relation(codec, log_probs, i, heads[i - 1])
    return cast(List[int], heads), cast(List[str], rels)


def tree_heads(arcs: torch.Tensor, lengths: torch.Tensor, repair: str) -> torch.Tensor:
    """``[B, N+1]`` heads of the best single-rooted tree (MST, or Eisner for ``repair="eisner"``) under arc log
    probabilities ``[B, N+1, N+1]`` (``[b, h, d]``); arcs no tag names (-inf) stay possible at a floor score."""
    size = arcs.shape[1]
    valid = torch.ones(size, size, dtype=torch.bool)
    valid.fill_diagonal_(False)
    valid[:, 0] = False
    arcs = torch.where(valid & torch.isneginf(arcs), torch.full_like(arcs, _FLOOR), arcs)
    return DependencyTree(arcs, lengths, projective=repair == "eisner", single_root=True).argmax


def decode_offset_tags(log_probs: torch.Tensor, lengths, codec: OffsetTagCodec, repair: str = "mst",
                       probabilities: bool = False) -> List[tuple]:
    """Trees from per-word tag log probabilities ``[B, N, K]``: one (heads, relations) per sentence, heads
    1-based lists with 0 = ROOT. Every repair but ``"none"`` gives a single-rooted tree. With `probabilities`,
    (heads, relations, p) where p is each word's best tag probability for its head (0.0 where none names it)."""
    if repair not in REPAIRS:
        raise ValueError(f"repair must be one of {REPAIRS}, got {repair!r}")
    logp = log_probs.detach().double().cpu()
    lengths = torch.as_tensor(lengths, dtype=torch.long).cpu()
    out = []
    if repair in ("none", "top3"):
        for b, n in enumerate(lengths.tolist()):
            if repair == "top3":
                tree = _top3(codec, logp[b], n)
            else:
                best = logp[b, :n].argmax(-1).tolist()
                tree = ([codec.tag_head(k, i, n) for i, k in enumerate(best, start=1)],
                        [codec.relations[k] for k in best])
            out.append((*tree, [p for _, p in codec.best_relations(logp[b], tree[0])]) if probabilities else tree)
        return out
    heads = tree_heads(codec.head_log_probs(logp, lengths), lengths, repair)
    for b, n in enumerate(lengths.tolist()):
        hs = heads[b, 1:n + 1].tolist()
        best = codec.best_relations(logp[b], hs)
        rels = [rel if rel is not None else _fallback_relation(codec, logp[b], i, h)
                for i, (h, (rel, _)) in enumerate(zip(hs, best), start=1)]
        out.append((hs, rels, [p for _, p in best]) if probabilities else (hs, rels))
    return out
