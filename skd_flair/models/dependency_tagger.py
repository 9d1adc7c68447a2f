"""Dependency parsing as sequence labelling (Strzyz et al. 2019; the student of cases 1b and 2b).

Each word i (1-based) gets the tag ``"{h - i}_{rel}"``, h its head (0 = ROOT, so the root word's tag is
``"{-i}_root"``), rel its relation, and a MaxEnt (per-token softmax) `DistillableTagger` learns the tags.

Decoding must give a tree. The per-word head distribution is the tagger's softmax summed over relations
per offset (offsets outside the sentence, ``<unk>`` and unparseable tags get no mass); then

- ``repair="mst"``: the maximum spanning tree (single root) over the log head probabilities: the best
  tree under the tagger's own head distributions, the principled repair;
- ``repair="eisner"``: the same over projective trees;
- ``repair="top3"``: the reference code's heuristic (Strzyz et al.'s post-processing) over the top-3 tags;
- ``repair="none"``: each word's best tag as it is (heads outside the sentence become None).

The relation of a word is its best relation for the chosen offset. Tags never seen in training never
crash anything: with ``<unk>`` in the tag dictionary an unseen gold tag is ``<unk>``'s, without it the
nearest known offset with the same relation.
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence, Tuple, Union, cast

import flair
import torch
from flair.data import Corpus, Dictionary, Sentence
from flair.datasets import DataLoader, FlairDatapointDataset
from flair.embeddings import TokenEmbeddings
from flair.training_utils import Result, store_embeddings
from tqdm import tqdm

from ..distill.labels import SPECIAL_LABELS
from ..distill.maps import parse_offset_tag
from ..structs import DependencyTree
from .dependency_eval import AttachmentScores, attachment_result, gold_tree, main_metric_name, write_parses
from .tagger import DistillableTagger

__all__ = ["DependencyTagger", "OffsetTagCodec", "DEFAULT_TAG_TYPE", "REPAIRS", "offset_tag", "encode_sentence",
           "encode_corpus", "make_tag_dictionary", "decode_offset_tags"]

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

    def best_relation(self, log_probs: torch.Tensor, word: int, head: int) -> Tuple[Optional[str], float]:
        """The best relation of `word` (1-based) for `head` and its tag probability (``log_probs`` ``[n, K]``);
        with a root relation, arcs from ROOT take only it and other arcs never. (None, 0) when no tag with
        mass names that arc."""
        match = self.usable & (self.offsets == head - word)
        if self.root_relation:
            match &= self.is_root if head == 0 else ~self.is_root
        if not bool(match.any()):
            return None, 0.0
        row = log_probs[word - 1].masked_fill(~match.to(log_probs.device), float("-inf"))
        k = int(row.argmax())
        if not bool(torch.isfinite(row[k])):
            return None, 0.0
        return self.relations[k], float(row[k].exp())

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


def decode_offset_tags(log_probs: torch.Tensor, lengths, codec: OffsetTagCodec, repair: str = "mst"
                       ) -> List[Tuple[List[Optional[int]], List[Optional[str]]]]:
    """Trees from per-word tag log probabilities ``[B, N, K]``: one (heads, relations) per sentence, heads
    1-based lists with 0 = ROOT. Every repair but ``"none"`` gives a single-rooted tree."""
    if repair not in REPAIRS:
        raise ValueError(f"repair must be one of {REPAIRS}, got {repair!r}")
    logp = log_probs.detach().double().cpu()
    lengths = torch.as_tensor(lengths, dtype=torch.long).cpu()
    out = []
    if repair in ("none", "top3"):
        for b, n in enumerate(lengths.tolist()):
            if repair == "top3":
                out.append(_top3(codec, logp[b], n))
                continue
            best = logp[b, :n].argmax(-1).tolist()
            out.append(([codec.tag_head(k, i, n) for i, k in enumerate(best, start=1)],
                        [codec.relations[k] for k in best]))
        return out
    arcs = codec.head_log_probs(logp, lengths)
    size = arcs.shape[1]
    valid = torch.ones(size, size, dtype=torch.bool)
    valid.fill_diagonal_(False)
    valid[:, 0] = False
    arcs = torch.where(valid & torch.isneginf(arcs), torch.full_like(arcs, _FLOOR), arcs)
    heads = DependencyTree(arcs, lengths, projective=repair == "eisner", single_root=True).argmax
    for b, n in enumerate(lengths.tolist()):
        hs = heads[b, 1:n + 1].tolist()
        rels = []
        for i, h in enumerate(hs, start=1):
            rel, _ = codec.best_relation(logp[b], i, h)
            rels.append(rel if rel is not None else _fallback_relation(codec, logp[b], i, h))
        out.append((hs, rels))
    return out


class DependencyTagger(DistillableTagger):
    """A MaxEnt `DistillableTagger` over offset tags that predicts dependency trees.

    Args:
        embeddings, tag_dictionary: as for `DistillableTagger` (`make_tag_dictionary` builds the tags).
        tag_type: the token label type of the offset tags (derived from ``head_id`` and the relation when a
            token lacks it, so encoding the corpus beforehand is optional).
        repair: how `predict` and `evaluate` turn tags into trees (``mst``, ``eisner``, ``top3``, ``none``).
        relation_type: the token label type of relations (gold for evaluation, written by `predict`).
        root_relation: the relation of the word attached to ROOT.
        main_metric: `evaluate`'s main score (``las``, ``uas``, ``las_nopunct``, ``uas_nopunct``).
        Other arguments go to `DistillableTagger` / Flair's `SequenceTagger`; ``use_crf`` must stay False.
    """

    def __init__(self, embeddings: TokenEmbeddings, tag_dictionary: Dictionary, tag_type: str = DEFAULT_TAG_TYPE,
                 repair: str = "mst", relation_type: str = "dependency", root_relation: Optional[str] = "root",
                 main_metric: str = "las", **kwargs):
        if kwargs.get("use_crf", False):
            raise ValueError("DependencyTagger is a MaxEnt (per-token softmax) tagger: use_crf must be False")
        if repair not in REPAIRS:
            raise ValueError(f"repair must be one of {REPAIRS}, got {repair!r}")
        main_metric_name(None, main_metric)
        kwargs["use_crf"] = False
        super().__init__(embeddings, tag_dictionary, tag_type, **kwargs)
        self.repair, self.relation_type = repair, relation_type
        self.root_relation, self.main_metric = root_relation, main_metric
        self.codec = OffsetTagCodec(self.label_names, root_relation)

    # ------------------------------------------------------------------ gold tags
    def _get_gold_labels(self, sentences: List[Sentence]) -> List[str]:
        labels = []
        for sentence in sentences:
            heads, rels = None, None
            for token in sentence:
                own = token.get_labels(self.tag_type)
                if own:
                    labels.append(own[0].value)
                    continue
                if heads is None:
                    heads, rels = gold_tree(sentence, self.relation_type)
                h, r = heads[token.idx - 1], rels[token.idx - 1]
                labels.append(offset_tag(token.idx, h, r) if h is not None and r is not None else "<unk>")
        return labels

    def _prepare_label_tensor(self, sentences: List[Sentence]) -> torch.Tensor:
        return torch.tensor([self.codec.lookup(tag) for tag in self._get_gold_labels(sentences)], dtype=torch.long,
                            device=flair.device)

    # ------------------------------------------------------------------ decoding
    def decode(self, log_probs: torch.Tensor, lengths, repair: Optional[str] = None):
        """Trees (heads, relations) from tag log probabilities ``[B, N, K]`` (see `decode_offset_tags`)."""
        return decode_offset_tags(log_probs, lengths, self.codec, repair or self.repair)

    def _log_probs(self, batch: List[Sentence]):
        features, lengths = self._features(batch)
        scores = self.chain_scores(features, lengths)
        return scores, scores.log_softmax()

    def _batches(self, sentences, mini_batch_size, verbose=False):
        if isinstance(sentences, Sentence):
            sentences = [sentences]
        if isinstance(sentences, list):
            dataset = FlairDatapointDataset([s for s in sentences if len(s) > 0])
        else:
            dataset = sentences
        loader = DataLoader(dataset, batch_size=mini_batch_size)
        return tqdm(loader, desc="parsing") if verbose else loader

    def predict(self, sentences: Union[List[Sentence], Sentence], mini_batch_size: int = 32,
                return_probabilities_for_all_classes: bool = False, verbose: bool = False,
                label_name: Optional[str] = None, return_loss=False, embedding_storage_mode="none",
                force_token_predictions: bool = False, repair: Optional[str] = None,
                tag_label_name: Optional[str] = None):
        """Parse: every token gets ``head_id`` (0 = ROOT; None only with ``repair="none"`` for a head outside
        the sentence) and a relation label of type `label_name` (default: the relation type) whose score is
        the probability of the chosen tag. With `tag_label_name`, the best raw tag is stored too."""
        label_name = label_name or self.relation_type
        repair = repair or self.repair
        total_loss, count = torch.zeros(1, device=flair.device), 0
        was_training = self.training
        self.eval()
        try:
            with torch.no_grad():
                for batch in self._batches(sentences, mini_batch_size, verbose):
                    batch = [s for s in batch if len(s) > 0]
                    if not batch:
                        continue
                    scores, logp = self._log_probs(batch)
                    if return_loss:
                        total_loss += self._gold_loss(scores, self._gold_tags(batch, logp.shape[1])).sum()
                        count += int(scores.lengths.sum())
                    trees = self.decode(logp, scores.lengths, repair)
                    logp = logp.double().cpu()
                    for b, (sentence, (heads, rels)) in enumerate(zip(batch, trees)):
                        for i, (token, h, r) in enumerate(zip(sentence, heads, rels), start=1):
                            token.head_id = h
                            prob = 0.0
                            if h is not None:
                                prob = self.codec.best_relation(logp[b], i, h)[1]
                            token.set_label(label_name, r if r is not None else "dep", prob)
                        if tag_label_name is not None:
                            best = logp[b, :len(sentence)].argmax(-1).tolist()
                            for token, k in zip(sentence, best):
                                token.set_label(tag_label_name, self.label_names[k], float(logp[b, token.idx - 1,
                                                                                                 k].exp()))
                    store_embeddings(batch, storage_mode=embedding_storage_mode)
        finally:
            self.train(was_training)
        if return_loss:
            return total_loss, count
        return None

    def evaluate(self, data_points, gold_label_type: Optional[str] = None, out_path: Union[str, Path, None] = None,
                 embedding_storage_mode="none", mini_batch_size: int = 32,
                 main_evaluation_metric: Tuple[str, str] = ("micro avg", "f1-score"),
                 exclude_labels: Optional[List[str]] = None, gold_label_dictionary: Optional[Dictionary] = None,
                 return_loss: bool = True, repairs: Optional[Sequence[str]] = None, **kwargs) -> Result:
        """UAS / LAS (with and without punctuation) of the trees decoded with this tagger's repair (the main
        scores) and without repair (``norepair_*``), plus any other `repairs` asked for; tag accuracy.
        The gold annotation is left untouched."""
        modes = [self.repair] + [m for m in (repairs if repairs is not None else ("none",)) if m != self.repair]
        scorers = {m: AttachmentScores() for m in modes}
        total_loss, count, tag_hits, tag_total = 0.0, 0, 0, 0
        rows = []
        was_training = self.training
        self.eval()
        try:
            with torch.no_grad():
                for batch in self._batches(data_points, mini_batch_size):
                    batch = [s for s in batch if len(s) > 0]
                    if not batch:
                        continue
                    scores, logp = self._log_probs(batch)
                    if return_loss:
                        total_loss += float(self._gold_loss(scores, self._gold_tags(batch, logp.shape[1])).sum())
                        count += int(scores.lengths.sum())
                    best = logp.argmax(-1).cpu()
                    gold_strings = iter(self._get_gold_labels(batch))
                    for b, sentence in enumerate(batch):
                        for i in range(len(sentence)):
                            tag_hits += self.label_names[int(best[b, i])] == next(gold_strings)
                            tag_total += 1
                    for mode in modes:
                        trees = self.decode(logp, scores.lengths, mode)
                        for sentence, (heads, rels) in zip(batch, trees):
                            scorers[mode].add(sentence, heads, rels, self.relation_type)
                            if mode == self.repair and out_path is not None:
                                gh, gr = gold_tree(sentence, self.relation_type)
                                rows.append([(i, t.text, gh[i - 1], gr[i - 1], heads[i - 1], rels[i - 1])
                                             for i, t in enumerate(sentence, start=1)])
                    store_embeddings(batch, embedding_storage_mode)
        finally:
            self.train(was_training)
        if out_path is not None:
            write_parses(out_path, rows)
        metric = main_metric_name(main_evaluation_metric, self.main_metric)
        others = {("norepair" if m == "none" else m): scorers[m] for m in modes[1:]}
        return attachment_result(scorers[self.repair], total_loss / max(count, 1), metric, others,
                                 title=f"{type(self).__name__} (repair: {self.repair})",
                                 extra={"tag_accuracy": tag_hits / max(tag_total, 1)})

    # ------------------------------------------------------------------ save / load
    def _get_state_dict(self):
        return {**super()._get_state_dict(), "repair": self.repair, "relation_type": self.relation_type,
                "root_relation": self.root_relation, "main_metric": self.main_metric}

    @classmethod
    def _init_model_with_state_dict(cls, state, **kwargs):
        for key, default in (("repair", "mst"), ("relation_type", "dependency"), ("root_relation", "root"),
                             ("main_metric", "las")):
            kwargs.setdefault(key, state.get(key, default))
        return super()._init_model_with_state_dict(state, **kwargs)
