"""Graph-based dependency parsers as Flair models: first-order biaffine (Dozat & Manning 2017) and second
order with adjacent-sibling scores, trained locally or as tree CRFs, decoded into well-formed trees.

Input: Flair `Sentence`s whose tokens carry ``head_id`` (1-based, 0 = root) and a relation label (type
``"dependency"``, as `UniversalDependenciesCorpus` reads them). Words keep their Flair embeddings; a
learned ROOT vector is put in front of every sentence, and a BiLSTM runs over ``[ROOT, w1..wn]``. MLPs then
feed a biaffine arc scorer ``arcs[b, h, d]`` (the score of head h -> dependent d, 0 = ROOT), a biaffine
relation scorer ``rels[b, h, d, r]`` and, for second order, a triaffine sibling scorer ``sibs[b, h, s, d]``
(h takes d right after s on the same side; s = h for its closest dependent: `SiblingTree`'s layout).

Training (``objective``):
- ``"local"``: per word, cross-entropy of the softmax over its possible heads (second order: of the
  mean-field posterior ``Q`` after ``mfvi_iterations`` updates, as the reference code trains);
- ``"crf"``: ``log Z - score(gold tree)`` over all trees (`DependencyTree`: Matrix-Tree or Eisner;
  second order: `SiblingTree`, projective). A gold tree outside the model's support (non-projective for a
  projective model, several roots for a single-root model, missing heads) gets no arc term; the number of
  such sentences is counted in ``skipped_trees``.
plus the cross-entropy of the gold relation on the gold arc.

Decoding always gives a well-formed tree: MST (Chu-Liu-Edmonds, single root) or Eisner over the arc scores;
exact second-order Eisner (`SiblingTree.argmax`) with ``inference="exact"``; MST/Eisner over the mean-field
logits with ``inference="mfvi"``. Relations are the best relation on the chosen arc, never ``<unk>``, and,
with ``root_relation`` set, "root" exactly for the word attached to ROOT.

Teaching: `teacher_scores(sentences)` returns `TreeScores` (first order, exact second order) or
`MeanFieldTreeScores` (``inference="mfvi"``); `marginals` gives arc marginals and relation distributions.
"""
from __future__ import annotations

import copy
import inspect
import logging
from pathlib import Path
from typing import List, Optional, Tuple, Union, cast

import flair
import numpy as np
import torch
import torch.nn.functional as F
from flair.data import Dictionary, Sentence
from flair.embeddings import TokenEmbeddings
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from ..distill.mean_field import MeanFieldTreeScores
from ..distill.scores import TreeScores
from ..distill.targets import ArcMarginals
from ..structs import DependencyTree
from ..structs.dependency import arc_mask
from ..structs.mean_field import mean_field_logits
from ..structs.second_order import SiblingTree
from .dependency_eval import EvaluatesTrees, gold_tree, is_well_formed, main_metric_name
from .embedding_names import KeepsStackNames
from .frozen_embeddings import FrozenEmbeddingsStayEval
from .eval_loop import eval_mode, inference_batches
from .layers import MLP, Biaffine, Triaffine

log = logging.getLogger("flair")

__all__ = ["BiaffineParser", "is_projective"]

_MASKED = -1e9  # finite "impossible" logit for losses (no NaN in gradients)


def is_projective(heads) -> bool:
    """True when no two arcs of ``heads`` (``heads[i-1]`` = head of word i, 0 = root) cross."""
    h = np.asarray(heads, dtype=np.int64)
    d = np.arange(1, len(h) + 1)
    lo, hi = np.minimum(h, d), np.maximum(h, d)
    a_lo, a_hi = lo[:, None], hi[:, None]
    b_lo, b_hi = lo[None, :], hi[None, :]
    cross = (a_lo < b_lo) & (b_lo < a_hi) & (a_hi < b_hi)
    return not bool(cross.any())


class BiaffineParser(FrozenEmbeddingsStayEval, EvaluatesTrees, KeepsStackNames, flair.nn.Model[Sentence]):
    """A biaffine dependency parser (first or second order) that trains with Flair's `ModelTrainer`.

    Args:
        embeddings: Flair token embeddings.
        relation_dictionary: the relation labels (``corpus.make_label_dictionary("dependency")``; with
            ``add_unk=True`` unseen relations train as ``<unk>``, which is never predicted).
        relation_type: the token label type that holds relations (read as gold, written by `predict`).
        hidden_size: BiLSTM size per direction; lstm_layers: its depth (0: MLPs straight on the embeddings).
        arc_mlp, rel_mlp, sibling_mlp: MLP sizes of the arc, relation and sibling scorers.
        dropout: on embeddings, between and after LSTM layers, and in the MLPs.
        objective: ``"crf"`` (tree CRF) or ``"local"`` (head selection; mean field for second order).
        projective: projective trees (Eisner) instead of non-projective (Matrix-Tree, MST).
        second_order: add adjacent-sibling scores.
        inference: second order only: ``"exact"`` (second-order Eisner: projective) or ``"mfvi"`` (mean-field
            marginals and decoding over the mean-field logits, the reference's approximation).
        mfvi_iterations: mean-field updates.
        single_root: trees have exactly one word attached to ROOT.
        root_relation: the relation of the word attached to ROOT (UD: ``"root"``); None: no constraint.
        main_metric: what `evaluate` reports as main score (``las``, ``uas``, ``las_nopunct``, ``uas_nopunct``).
    """

    def __init__(self, embeddings: TokenEmbeddings, relation_dictionary: Dictionary, relation_type: str = "dependency",
                 hidden_size: int = 400, lstm_layers: int = 3, arc_mlp: int = 500, rel_mlp: int = 100,
                 dropout: float = 0.33, objective: str = "crf", projective: bool = False, second_order: bool = False,
                 sibling_mlp: int = 100, inference: str = "exact", mfvi_iterations: int = 3, single_root: bool = True,
                 root_relation: Optional[str] = "root", main_metric: str = "las"):
        super().__init__()
        if objective not in ("crf", "local"):
            raise ValueError(f"objective must be 'crf' or 'local', got {objective!r}")
        if inference not in ("exact", "mfvi"):
            raise ValueError(f"inference must be 'exact' or 'mfvi', got {inference!r}")
        if not second_order and inference != "exact":
            raise ValueError("inference='mfvi' needs second_order=True (a first-order parser is always exact)")
        if second_order and inference == "exact" and not projective:
            raise ValueError("exact second-order inference is projective (second-order Eisner): set projective=True "
                             "or use inference='mfvi'")
        if second_order and objective == "local" and inference == "exact":
            raise ValueError("a second-order parser trained locally learns through mean field: use inference='mfvi' "
                             "(or objective='crf' for the exact tree CRF)")
        if second_order and objective == "crf" and not projective:
            raise ValueError("the second-order tree CRF is projective: set projective=True or objective='local'")
        main_metric_name(None, main_metric)
        self.embeddings = embeddings
        self.relation_dictionary = copy.deepcopy(relation_dictionary)  # never the caller's object
        self.relation_type = relation_type
        self.hidden_size, self.lstm_layers = hidden_size, lstm_layers
        self.arc_mlp, self.rel_mlp, self.sibling_mlp = arc_mlp, rel_mlp, sibling_mlp
        self.dropout_rate = dropout
        self.objective, self.projective, self.second_order = objective, projective, second_order
        self.inference, self.mfvi_iterations = inference, mfvi_iterations
        self.single_root, self.root_relation, self.main_metric = single_root, root_relation, main_metric
        self.skipped_trees = 0

        names = relation_dictionary.get_items()
        if not [r for r in names if r != "<unk>"]:
            raise ValueError("the relation dictionary holds no relation")
        self._relation_index = {name: i for i, name in enumerate(names)}

        emb = embeddings.embedding_length
        self.root = nn.Parameter(torch.randn(emb) * 0.1)
        self.dropout = nn.Dropout(dropout)
        if lstm_layers > 0:
            self.lstm = nn.LSTM(emb, hidden_size, num_layers=lstm_layers, bidirectional=True, batch_first=True,
                                dropout=dropout if lstm_layers > 1 else 0.0)
            out = 2 * hidden_size
        else:
            self.lstm = None
            out = emb
        self.arc_head, self.arc_dep = MLP(out, arc_mlp, dropout), MLP(out, arc_mlp, dropout)
        self.rel_head, self.rel_dep = MLP(out, rel_mlp, dropout), MLP(out, rel_mlp, dropout)
        self.arc_attn = Biaffine(arc_mlp, 1, bias_x=True, bias_y=False)  # x = dependent: + a head prior
        self.rel_attn = Biaffine(rel_mlp, len(names), bias_x=True, bias_y=True)
        if second_order:
            self.sib_head, self.sib_sib, self.sib_dep = (MLP(out, sibling_mlp, dropout) for _ in range(3))
            self.sib_attn = Triaffine(sibling_mlp)
        self.to(flair.device)

    # ------------------------------------------------------------------ basics
    @property
    def label_type(self) -> str:
        return self.relation_type

    @property
    def relation_names(self) -> List[str]:
        return self.relation_dictionary.get_items()

    def _config(self) -> dict:
        """The constructor's settings as they are now (``dropout`` is kept as ``dropout_rate``)."""
        return {key: getattr(self, "dropout_rate" if key == "dropout" else key) for key in _CONFIG_KEYS}

    def teacher_config(self) -> dict:
        """What, besides the weights, decides this teacher's targets (inference, projectivity, constraints)."""
        return self._config()

    # ------------------------------------------------------------------ scores
    def _represent(self, sentences: List[Sentence]) -> Tuple[torch.Tensor, torch.Tensor]:
        """``[B, N+1, H]`` contextual vectors of ``[ROOT, w1..wn]`` and ``[B]`` lengths (words, on CPU)."""
        self.embeddings.embed(sentences)
        names = self.embeddings.get_names()
        lengths = torch.tensor([len(s) for s in sentences], dtype=torch.long)
        size = int(lengths.max()) + 1
        dim = self.embeddings.embedding_length
        rows = []
        for s in sentences:
            words = torch.stack([t.get_embedding(names) for t in s]).to(flair.device)
            pad = words.new_zeros(size - 1 - len(s), dim)
            rows.append(torch.cat([self.root.unsqueeze(0), words, pad]))
        x = self.dropout(torch.stack(rows))
        if self.lstm is not None:
            packed = pack_padded_sequence(x, lengths + 1, batch_first=True, enforce_sorted=False)
            out, _ = self.lstm(packed)
            x, _ = pad_packed_sequence(out, batch_first=True, total_length=size)
            x = self.dropout(x)
        return x, lengths

    def _arc_scores(self, hidden: torch.Tensor) -> torch.Tensor:
        """``[B, S, S]`` with ``[b, h, d]``."""
        return self.arc_attn(self.arc_dep(hidden), self.arc_head(hidden)).squeeze(1).transpose(1, 2)

    def _sib_scores(self, hidden: torch.Tensor) -> Optional[torch.Tensor]:
        if not self.second_order:
            return None
        return self.sib_attn(self.sib_head(hidden), self.sib_sib(hidden), self.sib_dep(hidden))

    def _rel_full(self, hidden: torch.Tensor) -> torch.Tensor:
        """``[B, S, S, R]`` relation logits of every arc ``[b, h, d]``."""
        return self.rel_attn(self.rel_dep(hidden), self.rel_head(hidden)).permute(0, 3, 2, 1)

    def _rel_at(self, hidden: torch.Tensor, heads: torch.Tensor) -> torch.Tensor:
        """``[B, S, R]`` relation logits of the arcs ``heads[b, d] -> d`` (heads < 0 read as 0)."""
        head_vecs = self.rel_head(hidden)
        idx = heads.clamp(min=0).to(hidden.device).unsqueeze(-1).expand(-1, -1, head_vecs.shape[-1])
        return self.rel_attn.pairs(self.rel_dep(hidden), head_vecs.gather(1, idx))

    def _relation_mask(self, from_root: torch.Tensor) -> torch.Tensor:
        """True for relations an arc may take at inference; `from_root` is True for arcs from ROOT
        (any shape; the relation axis is appended)."""
        names = self.relation_names
        allowed = torch.tensor([n != "<unk>" for n in names], device=from_root.device)
        mask = allowed.expand(*from_root.shape, len(names))
        root = self._relation_index.get(self.root_relation) if self.root_relation else None
        others = allowed.clone()
        if root is not None:
            others[root] = False
        if root is not None and bool(others.any()):
            only_root = torch.zeros_like(allowed)
            only_root[root] = True
            mask = torch.where(from_root.unsqueeze(-1), only_root, others)
        return mask

    def _mf_logits(self, arcs, sibs, lengths):
        return mean_field_logits(arcs, sibs, lengths, self.mfvi_iterations)

    # ------------------------------------------------------------------ gold
    def _gold(self, sentences: List[Sentence], size: int):
        """(heads ``[B, S]`` (-1: none), relations ``[B, S]`` (-100: not scored), complete ``[B]``: the gold
        tree lies in the model's support)."""
        batch = len(sentences)
        heads = torch.full((batch, size), -1, dtype=torch.long)
        rels = torch.full((batch, size), -100, dtype=torch.long)
        complete = torch.zeros(batch, dtype=torch.bool)
        unk = self._relation_index.get("<unk>", -100)
        for b, s in enumerate(sentences):
            h, r = gold_tree(s, self.relation_type)
            for i, (hi, ri) in enumerate(zip(h, r), start=1):
                if hi is not None:
                    heads[b, i] = hi
                    if ri is not None:
                        rels[b, i] = self._relation_index.get(ri, unk)
            complete[b] = (all(x is not None for x in h) and is_well_formed(h, self.single_root)
                           and (not self.projective or is_projective(h)))
        return heads.to(flair.device), rels.to(flair.device), complete

    def _loss(self, hidden, arcs, sibs, lengths, sentences) -> torch.Tensor:
        size = arcs.shape[1]
        heads, rels, complete = self._gold(sentences, size)
        words = heads >= 0
        dev_lengths = lengths.to(arcs.device)
        if self.objective == "local":
            logits = self._mf_logits(arcs, sibs, dev_lengths) if self.second_order else arcs
            valid = arc_mask(dev_lengths, size)
            logp = torch.log_softmax(logits.masked_fill(~valid, _MASKED), dim=1)
            picked = logp.gather(1, heads.clamp(min=0).unsqueeze(1)).squeeze(1)  # [b, d] = logp[b, heads[d], d]
            arc_loss = -torch.where(words, picked, picked.new_zeros(())).sum()
        else:
            arc_loss = arcs.new_zeros(())
            idx = complete.nonzero().squeeze(1).to(arcs.device)
            if self.training and not bool(complete.all()):
                if self.skipped_trees == 0:
                    log.warning("BiaffineParser: some gold trees lie outside the model's support (missing heads, "
                                "several roots for a single-root model, or non-projective for a projective one); "
                                "they get no arc loss (counted in skipped_trees)")
                self.skipped_trees += int((~complete).sum())
            if len(idx):
                if self.second_order:
                    tree = SiblingTree(arcs[idx], sibs[idx], dev_lengths[idx], single_root=self.single_root)
                else:
                    tree = DependencyTree(arcs[idx], dev_lengths[idx], projective=self.projective,
                                          single_root=self.single_root)
                arc_loss = (tree.log_partition - tree.score(heads[idx])).sum()
        rel_logits = self._rel_at(hidden, heads)
        rel_loss = F.cross_entropy(rel_logits.reshape(-1, rel_logits.shape[-1]), rels.reshape(-1),
                                   ignore_index=-100, reduction="sum")
        return arc_loss + rel_loss

    def forward_loss(self, sentences: List[Sentence]) -> Tuple[torch.Tensor, int]:
        sentences = [s for s in sentences if len(s) > 0]
        if not sentences:
            return torch.tensor(0.0, device=flair.device, requires_grad=True), 0
        hidden, lengths = self._represent(sentences)
        arcs = self._arc_scores(hidden)
        sibs = self._sib_scores(hidden)
        return self._loss(hidden, arcs, sibs, lengths, sentences), int(lengths.sum())

    # ------------------------------------------------------------------ decoding
    def _decode_heads(self, arcs, sibs, lengths) -> torch.Tensor:
        """``[B, S]`` heads of the best tree under the model's inference (-1 at 0 and on padding)."""
        lengths = lengths.to(arcs.device)
        if self.second_order and self.inference == "exact":
            return SiblingTree(arcs, sibs, lengths, single_root=self.single_root).argmax
        scores = self._mf_logits(arcs, sibs, lengths) if self.second_order else arcs
        return DependencyTree(scores, lengths, projective=self.projective, single_root=self.single_root).argmax

    def _parse(self, hidden, arcs, sibs, lengths):
        """(heads ``[B, S]``, relation indices ``[B, S]``, relation probabilities ``[B, S]``)."""
        heads = self._decode_heads(arcs, sibs, lengths).to(hidden.device)
        logits = self._rel_at(hidden, heads)
        logits = logits.masked_fill(~self._relation_mask(heads == 0), float("-inf"))
        probs = torch.softmax(logits, -1)
        best = probs.argmax(-1)
        return heads, best, probs.gather(-1, best.unsqueeze(-1)).squeeze(-1)

    def predict(self, sentences: Union[List[Sentence], Sentence], mini_batch_size: int = 32, verbose: bool = False,
                label_name: Optional[str] = None, return_loss: bool = False, embedding_storage_mode="none"):
        """Parse: every token gets ``head_id`` (0 = root) and a relation label of type `label_name` (default:
        the relation type) with the relation's probability on the chosen arc as score."""
        label_name = label_name or self.relation_type
        names = self.relation_names
        total_loss, count = torch.zeros(1, device=flair.device), 0
        with eval_mode(self):
            for batch in inference_batches(sentences, mini_batch_size, verbose, embedding_storage_mode,
                                           desc="parsing"):
                hidden, lengths = self._represent(batch)
                arcs, sibs = self._arc_scores(hidden), self._sib_scores(hidden)
                if return_loss:
                    total_loss += self._loss(hidden, arcs, sibs, lengths, batch)
                    count += int(lengths.sum())
                heads, rels, probs = (x.cpu() for x in self._parse(hidden, arcs, sibs, lengths))
                for b, s in enumerate(batch):
                    for i, token in enumerate(s, start=1):
                        token.head_id = int(heads[b, i])
                        token.set_label(label_name, names[int(rels[b, i])], float(probs[b, i]))
        if return_loss:
            return total_loss, count
        return None

    # ------------------------------------------------------------------ evaluation (EvaluatesTrees)
    def _evaluation_modes(self, repairs) -> List[str]:
        return ["tree"]  # the parser's output is always a tree: nothing to repair

    def _evaluate_batch(self, batch, modes, return_loss):
        hidden, lengths = self._represent(batch)
        arcs, sibs = self._arc_scores(hidden), self._sib_scores(hidden)
        loss = float(self._loss(hidden, arcs, sibs, lengths, batch)) if return_loss else 0.0
        heads, rels, _ = (x.cpu() for x in self._parse(hidden, arcs, sibs, lengths))
        names = self.relation_names
        trees = [(heads[b, 1:len(s) + 1].tolist(), [names[i] for i in rels[b, 1:len(s) + 1].tolist()])
                 for b, s in enumerate(batch)]
        return loss, int(lengths.sum()), {"tree": trees}, {}

    # ------------------------------------------------------------------ teaching
    @torch.no_grad()
    def teacher_scores(self, sentences: List[Sentence]) -> TreeScores:
        """The parser's scores for teaching (eval mode, no graph): arcs, relation logits (``<unk>`` and, with a
        root relation, the ROOT constraint masked to -inf), sibling scores for second order."""
        with eval_mode(self):
            hidden, lengths = self._represent(list(sentences))
            arcs, sibs = self._arc_scores(hidden), self._sib_scores(hidden)
            rels = self._rel_full(hidden)
        size = arcs.shape[1]
        from_root = torch.zeros(arcs.shape[0], size, size, dtype=torch.bool, device=arcs.device)
        from_root[:, 0] = True
        rels = rels.masked_fill(~self._relation_mask(from_root), float("-inf"))
        lengths = lengths.to(arcs.device)
        if self.second_order and self.inference == "mfvi":
            return MeanFieldTreeScores(arcs, lengths, rels, self.relation_names, projective=self.projective,
                                       single_root=self.single_root, sib_scores=sibs,
                                       iterations=self.mfvi_iterations)
        return TreeScores(arcs, lengths, rels, self.relation_names, projective=self.projective,
                          single_root=self.single_root, siblings=sibs)

    def marginals(self, sentences: List[Sentence], arc_marginals: str = "tree", temperature: float = 1.0
                  ) -> ArcMarginals:
        """Arc marginals ``P(head(d) = h)`` (exact tree marginals, mean field, or ``"local"`` per-word softmax)
        and the relation distribution of every arc, float64."""
        return self.teacher_scores(sentences).marginals(temperature, arc_marginals)

    # ------------------------------------------------------------------ save / load
    def _get_state_dict(self):
        return {**super()._get_state_dict(), "embeddings": self.embeddings.save_embeddings(use_state_dict=False),
                "relation_dictionary": self.relation_dictionary, **self._config()}

    @classmethod
    def _init_model_with_state_dict(cls, state, **kwargs):
        for key in _CONFIG_KEYS:
            if key in state:
                kwargs.setdefault(key, state[key])
        return super()._init_model_with_state_dict(state, embeddings=state["embeddings"],
                                                   relation_dictionary=state["relation_dictionary"], **kwargs)

    @staticmethod
    def _fetch_model(model_name):
        """A local file as it is; an ``organisation/name`` hub id through Flair's hub download (which reads a
        pre-populated Flair cache offline, see `skd_flair.training.hub`)."""
        name = str(model_name) if isinstance(model_name, (str, Path)) else ""
        if (name and not Path(name).exists() and name.split("@")[0].count("/") == 1
                and not name.startswith((".", "/", "~")) and not name.endswith((".pt", ".bin"))):
            from flair.file_utils import hf_download

            return hf_download(name)
        return model_name

    @classmethod
    def load(cls, model_path) -> "BiaffineParser":
        return cast("BiaffineParser", super().load(model_path=model_path))

    def __str__(self):
        order = "second-order" if self.second_order else "first-order"
        return (f"{type(self).__name__}({order}, objective={self.objective}, projective={self.projective}, "
                f"inference={self.inference}, relations={len(self.relation_names)})\n" + super().__str__())


# the settings saved with a model and given back to the constructor on load: every constructor argument but the
# embeddings and the relation dictionary, which are saved on their own
_CONFIG_KEYS = tuple(inspect.signature(BiaffineParser.__init__).parameters)[3:]
