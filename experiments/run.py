"""Run experiment suites, resumably: ``python -m experiments.run SUITE [SUITE ...] [--seeds 1 2 3]``.

Per suite, in one process: train (or reload) the teacher, keeping its embeddings on the training sentences;
annotate the targets of every KD student while they are still there (cached on disk); then train every
student for every seed. A run whose result JSON exists is skipped, so an interrupted suite resumes.
Results: ``experiments/results/<suite>/*.json`` (committed); models and logs: ``experiments/runs/``.
"""
from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # every model here is local; never wait on a hub
os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse
import logging
import shutil
import sys
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Dict, List, Optional

import flair

from skd_flair.models.frozen_embeddings import frozen_dropout_as_before
from skd_flair.training.annotate import annotate
from skd_flair.training.cache import fingerprint_model
from skd_flair.training.corpora import load_corpus, part_of
from skd_flair.training.mixture import TeacherMixture
from skd_flair.training.models import MODEL_CLASSES, build_model, kept_model
from skd_flair.training.pipeline import measure_speed, run_trainer, training_corpus
from skd_flair.training.plugin import DistillationPlugin
from skd_flair.training.resume import RUN_FILE, config_hash

from .common import CACHE, RESULTS, RUNS, claim, model_facts, read_json, suites_to_run, write_json
from .final_scores import FinalModelScores
from .gold_targets import gold_targets, teacher_path_targets
from .leaks import refuse_leaks
from .suites import HARD_TARGETS, KEEP_BEST_DEV_EPOCH, SUITES, Student, Suite
from .zeroshot import zero_shot_scores

log = logging.getLogger("skd_flair")
SPEED_SENTENCES = 200
# records from before 2026-12-02 lack this: their runs chose the best epoch and annealed on dev scores computed
# with epoch-1 character vectors (skd_flair.training.fresh_embeddings); test scores were computed afresh
DEV_EMBEDDINGS = "fresh"


def _best(base: Path) -> Path:
    """The model a run folder kept (``kept_model``); its best-model.pt path, not yet written, when it holds none."""
    return kept_model(base) or base / "best-model.pt"


def _trained(base: Path) -> bool:
    """A finished training's model is in `base`: not the best epoch so far of a run that was killed (it resumes)."""
    run = read_json(base / RUN_FILE)
    return _best(base).exists() and (run is None or run.get("finished") is True)


def _scores(model, corpus, metric: str, split=None) -> Dict:
    result = model.evaluate(corpus.test if split is None else split, gold_label_type=model.label_type,
                            mini_batch_size=64)
    scores = {"/".join(k) if isinstance(k, tuple) else str(k): v for k, v in result.scores.items()
              if isinstance(v, (int, float))}
    return {"main": result.main_score, **scores}


def _part_scores(model, corpus, metric: str, parts) -> Dict:
    """Test scores of each `concat` part on its own (a multilingual student, per language); a part without test
    sentences (cross-fitting: a training half that brings no test split) has none."""
    test = list(corpus.test)
    shares = {part: [s for s in test if part_of(s) == part] for part in parts}
    return {part: _scores(model, corpus, metric, share) for part, share in shares.items() if share}


def _facts(model, model_file: Path, kind: str, corpus) -> Dict:
    test = list(corpus.test)[:SPEED_SENTENCES]
    facts = model_facts(model_file, MODEL_CLASSES[kind].load)
    facts["sentences_per_second"] = measure_speed(model, test, batch_size=32)
    return facts


# The mean test loss sums floats in an order the CPU's kernels choose: two trainings with the same predictions on
# every test sentence differed in its 7th digit on two machines (ner_en, 2026-12-04: 0.102907 against 0.102906)
LOSS_RTOL = 1e-5


def _teacher_run_hash(suite: Suite, trainer: Dict, dropout_as_before: bool) -> str:
    """The hash a teacher's unfinished run resumes under; a training with the old frozen-transformer dropout hashes
    apart, so a killed ``--reproduce`` never resumes as an ordinary training, nor the other way round."""
    parts = [suite.corpus, suite.teacher, trainer]
    return config_hash(parts + [{"frozen_transformer_dropout": True}] if dropout_as_before else parts)


def _reproduces(scores: Dict, recorded: Dict) -> bool:
    """Every test number of the record that counts predictions (F1, precision, recall, accuracy) to the last digit,
    so the same predictions on every test sentence, and the mean loss to LOSS_RTOL."""
    def same(key, value):
        if key == "loss" and isinstance(value, float):
            return key in scores and abs(scores[key] - value) <= LOSS_RTOL * abs(value)
        return key in scores and scores[key] == value
    return bool(recorded) and all(same(key, value) for key, value in recorded.items())


def _dropout_as_before(record: Dict) -> bool:
    """Whether the training a record describes ran a frozen transformer's dropout (every training before
    2026-12-03 23:12, when frozen transformers started to stay in eval mode). Records say so since 2026-12-04;
    before, a record without a weights fingerprint (fingerprints came 44 minutes before the fix, and no teacher was
    trained in between) or one reproduced as before is of a training with it."""
    if "frozen_transformer_dropout" in record:
        return bool(record["frozen_transformer_dropout"])
    return not record.get("fingerprint") or bool(record.get("reproduced"))


class SuiteRunner:
    def __init__(self, suite: Suite, seeds, only: Optional[List[str]] = None, reproduce: bool = False):
        self.suite, self.seeds, self.only, self.reproduce = suite, list(seeds), only, reproduce
        self.results = RESULTS / suite.name
        self.corpora: Dict[str, object] = {}
        self.overlaps: Dict[str, Dict] = {}
        self.teachers: Dict[str, object] = {}
        self.fingerprints: Dict[str, str] = {}  # owner -> weights hash of the teacher this process uses

    def corpus(self, overrides: Dict = None, spec: Dict = None):
        spec = spec or {**self.suite.corpus, **(overrides or {})}
        key = repr(sorted(spec.items()))
        if key not in self.corpora:
            self.corpora[key] = load_corpus(spec)
        return self.corpora[key]

    def command(self, extra: str = "") -> str:
        return f"python -m experiments.run {self.suite.name}{extra}"

    # ------------------------------------------------------------------ teacher
    def teacher(self, owner: Optional[str] = None):
        """The teacher of suite ``owner`` (default: this suite's own or borrowed one), trained if it is this
        suite's and missing."""
        owner = owner or self.suite.teacher_from or self.suite.name
        if owner in self.teachers:
            return self.teachers[owner]
        base = RUNS / owner / "teacher"
        record = RESULTS / owner / "teacher.json"
        kind = self.suite.teacher_type
        earlier = read_json(record)
        if earlier and _trained(base):
            log.info(f"[{owner}] teacher: reusing {_best(base)}")
            model = self.teachers[owner] = MODEL_CLASSES[kind].load(str(_best(base)))
            self.fingerprints[owner] = fingerprint_model(model)
            if earlier.get("fingerprint") not in (None, self.fingerprints[owner]):
                log.warning(f"[{owner}] teacher: {_best(base)} is not the model {record} describes (its weights "
                            f"differ); students trained now record its fingerprint")
            return model
        if owner != self.suite.name:
            raise SystemExit(f"suite {self.suite.name} needs the teacher of suite {owner}: run that suite first")
        if self.reproduce and not earlier:
            raise SystemExit(f"[{owner}] teacher: --reproduce needs {record}, the record of the training to reproduce")
        corpus = self.corpus()
        flair.set_seed(1)
        model = build_model(self.suite.teacher, corpus)
        trainer = {**self.suite.teacher_trainer, "base_path": str(base)}
        as_before = self.reproduce and _dropout_as_before(earlier)
        with frozen_dropout_as_before() if as_before else nullcontext():
            # the dropout mode is part of the training: a checkpoint of one mode must not resume in the other
            out = run_trainer(model, corpus, {**trainer, **KEEP_BEST_DEV_EPOCH}, plugins=[], overwrite=True,
                              run_hash=_teacher_run_hash(self.suite, trainer, as_before))
        scores = _scores(model, corpus, self.suite.metric)
        if self.reproduce:
            return self._adopt_reproduction(owner, model, earlier, scores, out, base, record, as_before)
        self.teachers[owner], self.fingerprints[owner] = model, fingerprint_model(model)
        # a teacher retrained (its model lost) keeps its predecessor's scores in view: students trained with the
        # earlier one are compared against the record of this one
        # (nested: the trainings it replaced in turn, so students of each stay read against their own)
        previous = {"test": earlier["test"], "fingerprint": earlier.get("fingerprint"),
                    "train_seconds": earlier.get("train_seconds"),
                    "previous_training": earlier.get("previous_training")} if earlier else None
        write_json(record, {"suite": owner, "run": "teacher", "role": "teacher", "method": "teacher", "seed": 1,
                            "fingerprint": self.fingerprints[owner], "previous_training": previous,
                            "frozen_transformer_dropout": False,
                            "test": scores, "train_seconds": out["train_seconds"], "sizes": self.sizes(corpus),
                            **_facts(model, _best(base), kind, corpus), "config": {
                                "corpus": self.suite.corpus, "model": self.suite.teacher,
                                "trainer": self.suite.teacher_trainer}, "command": self.command(),
                            "flair_test_score": out["test_score"], "epochs": out["epochs"],
                            "best_dev_epoch": out["best_dev_epoch"], "dev_score_history": out["dev_score_history"]})
        return model

    def _adopt_reproduction(self, owner: str, model, earlier: Dict, scores: Dict, out: Dict, base: Path,
                            record: Path, as_before: bool):
        """A lost teacher trained again as it was first trained (``as_before``: with a frozen transformer's dropout)
        is that teacher only if it reproduces its record's test scores (``_reproduces``); then its students' rows stay
        its rows (the record gains the weights' fingerprint).
        Otherwise it is moved aside and the record is left alone: nothing is read against a teacher it did not have."""
        if not _reproduces(scores, earlier["test"]):
            aside = base.with_name(f"teacher_not_reproduced_{time.strftime('%Y-%m-%d')}")
            shutil.rmtree(aside, ignore_errors=True)
            base.rename(aside)
            write_json(RESULTS / owner / "teacher_reproduction.json",
                       {"reproduced": False, "test": scores, "recorded_test": earlier["test"], "model": str(aside),
                        "train_seconds": out["train_seconds"], "command": self.command(" --teacher-only --reproduce")})
            raise SystemExit(f"[{owner}] teacher: not reproduced (test {scores['main']:.4f} against the record's "
                             f"{earlier['test']['main']:.4f}); model moved to {aside}, {record} unchanged; "
                             f"'--teacher-only' alone trains a new teacher")
        self.teachers[owner], self.fingerprints[owner] = model, fingerprint_model(model)
        # the weights of an earlier reproduction of the same training: its students stay this teacher's rows too
        same = sorted({*earlier.get("same_training_fingerprints", []), earlier.get("fingerprint")} - {None})
        adopted = {**earlier, "fingerprint": self.fingerprints[owner], "same_training_fingerprints": same,
                   "test_reproduced": scores, "frozen_transformer_dropout": as_before,
                   "earlier_reproductions": earlier.get("earlier_reproductions", []) + (
                       [{**earlier["reproduced"], "fingerprint": earlier.get("fingerprint")}]
                       if earlier.get("reproduced") else []),
                   "reproduced": {
            "train_seconds": out["train_seconds"], "command": self.command(" --teacher-only --reproduce"),
            "date": time.strftime("%Y-%m-%d")}}
        for key in ("epochs", "best_dev_epoch", "dev_score_history"):  # the same training: its facts are the record's
            adopted.setdefault(key, out[key])
        write_json(record, adopted)
        log.info(f"[{owner}] teacher: reproduced (the same test predictions, the loss to {LOSS_RTOL:g}); its students "
                 f"stay its rows")
        return model

    @staticmethod
    def sizes(corpus, unlabelled=None) -> Dict[str, int]:
        def count(split) -> int:  # a missing split (zero-shot target: no train) counts 0
            return len(split) if split else 0
        return {"train": count(corpus.train), "unlabelled": count(unlabelled.train) if unlabelled else 0,
                "dev": count(corpus.dev), "test": count(corpus.test)}

    # ------------------------------------------------------------------ students
    def wanted(self) -> List[Student]:
        return [s for s in self.suite.students if not self.only or s.name in self.only]

    def record_path(self, student: Student, seed: int) -> Path:
        return self.results / f"{student.name}-seed{seed}.json"

    def run_dir(self, student: Student, seed: int) -> Path:
        return RUNS / self.suite.name / f"{student.name}-seed{seed}"

    def data(self, student: Student):
        corpus = self.corpus(student.corpus, student.corpus_spec)
        # the same sentence objects for every student, so the teacher's embeddings computed for one objective's
        # targets are reused by the next instead of recomputed (the character LMs dominate annotation time)
        unlabelled = self.corpus(spec=student.unlabelled) if student.unlabelled else None
        return corpus, unlabelled, training_corpus(corpus, unlabelled)

    def targets(self, teacher, student: Student, model, train_corpus):
        sentences = list(train_corpus.train)
        if student.hard_targets == "gold":
            return gold_targets(sentences, model, student.objective)
        if student.hard_targets == "teacher":
            return teacher_path_targets(teacher, sentences, model, student.objective)
        if self.suite.ensemble:  # every teacher on every sentence, weighted equally
            return TeacherMixture([(annotate(self.teacher(owner), sentences, model, student.objective,
                                             cache_dir=CACHE / "experiments" / "targets", clear_embeddings=False), 1.0)
                                   for owner in self.suite.ensemble])
        if not self.suite.routes:
            return annotate(teacher, sentences, model, student.objective,
                            cache_dir=CACHE / "experiments" / "targets", clear_embeddings=False)
        # routing: each part's sentences get their own language's teacher; the mixture holds each sentence once
        missed = sum(part_of(s) not in self.suite.routes for s in sentences)
        if missed:
            raise SystemExit(f"suite {self.suite.name}: {missed} training sentences belong to no routed part")
        members = []
        for name, owner in self.suite.routes.items():
            share = [s for s in sentences if part_of(s) == name]
            if not share:
                raise SystemExit(f"suite {self.suite.name}: no training sentence of part {name!r}")
            members.append((annotate(self.teacher(owner), share, model, student.objective,
                                     cache_dir=CACHE / "experiments" / "targets", clear_embeddings=False), 1.0))
        return TeacherMixture(members)

    def run(self):
        todo = [(s, seed) for s in self.wanted() for seed in self.seeds if not self.record_path(s, seed).exists()]
        if not todo:
            log.info(f"[{self.suite.name}] nothing to do")
            return
        if self.suite.prepare is not None:
            self.suite.prepare()
        for overlap in refuse_leaks(self.suite, SUITES, load_corpus, self.only):  # before any training
            log.info(f"[{self.suite.name}] leak check: {overlap}")
            self.overlaps[overlap.student] = {"teacher_gold_sentences_in_unlabelled": overlap.shared,
                                              "unlabelled": overlap.unlabelled}
        # students without KD that take their labels from the corpus never need the teacher (it may not exist yet)
        needs_teacher = self.suite.transfer is not None or any(
            (s.objective is not None and s.hard_targets != "gold") or s.model.get("tag_dictionary") == "teacher"
            for s, _ in todo)
        teacher = self.teacher() if needs_teacher else None
        prepared = {}
        if teacher is not None:
            self.transfer(teacher)
        for student, _ in todo:  # every annotation while the teacher's embeddings are on the sentences
            if student.objective is not None and student.name not in prepared:
                corpus, unlabelled, train_corpus = self.data(student)
                stub = build_model(student.model, train_corpus, teacher=teacher)
                prepared[student.name] = self.targets(teacher, student, stub, train_corpus)
        if teacher is not None:
            teacher.cpu()
        for student, seed in todo:
            if self.record_path(student, seed).exists():  # another runner process finished it meanwhile
                continue
            with claim(self.run_dir(student, seed).with_suffix(".lock")) as mine:
                if not mine:
                    log.info(f"[{self.suite.name}] {student.name} seed {seed}: another process is training it")
                    continue
                self.train_student(student, seed, prepared.get(student.name), teacher)

    def transfer(self, teacher):
        """The teacher applied directly to another corpus (zero-shot: the student's language)."""
        record = self.results / "teacher_transfer.json"
        if self.suite.transfer is None or record.exists():
            return
        corpus = self.corpus(spec=self.suite.transfer)
        write_json(record, {"suite": self.suite.name, "run": "teacher_transfer", "role": "teacher",
                            "method": "teacher (applied directly)", "seed": 1, "test": _scores(teacher, corpus, "f1"),
                            "sizes": self.sizes(corpus), "config": {"corpus": self.suite.transfer},
                            "command": self.command()})

    def train_student(self, student: Student, seed: int, targets, teacher):
        corpus, unlabelled, train_corpus = self.data(student)
        for sentence in train_corpus.get_all_sentences():
            sentence.clear_embeddings()
        flair.set_seed(seed)
        model = build_model(student.model, train_corpus, teacher=teacher)
        base = self.run_dir(student, seed)
        plugins = [DistillationPlugin(targets, mix=student.mix, probe_gradients=student.probe_gradients)
                   ] if targets is not None else []
        final = FinalModelScores(lambda trained: _scores(trained, corpus, self.suite.metric))
        trainer = {**self.suite.student_trainer, **student.trainer, "base_path": str(base)}
        # a run killed part-way resumes from its last epoch; a finished one is skipped above (its record exists)
        out = run_trainer(model, train_corpus, {**trainer, **KEEP_BEST_DEV_EPOCH}, plugins=[*plugins, final],
                          overwrite=True,
                          run_hash=config_hash([student.model, student.objective, student.mix, student.corpus,
                                                student.corpus_spec, student.unlabelled, trainer, seed]))
        record = {"suite": self.suite.name, "run": student.name, "role": "student", "method": student.method,
                  "case": student.case, "seed": seed, "test": _scores(model, corpus, self.suite.metric),
                  "test_final": final.scores,  # the weights training ended with; "test" is the best dev epoch's
                  **({"test_parts": _part_scores(model, corpus, self.suite.metric, self.suite.compare
                                                 or self.suite.routes)}
                     if self.suite.routes or self.suite.compare else {}),
                  # span F1 over the types the other language's test set annotates (experiments/zeroshot.py)
                  **({"test_zero_shot": zero_shot_scores(model, list(self.corpus(spec=self.suite.zero_shot).test))}
                     if self.suite.zero_shot else {}),
                  "train_seconds": out["train_seconds"], "sizes": self.sizes(corpus, unlabelled),
                  "kd": None if targets is None else {"objective": student.objective, "mix": student.mix,
                                                      "history": plugins[0].history},
                  "leak_check": self.overlaps.get(student.name),
                  # which teacher weights made the targets (a teacher retrained after its model was lost differs)
                  "teacher_fingerprints": dict(self.fingerprints)
                  if targets is not None and student.hard_targets != "gold" else None,
                  **({"targets": HARD_TARGETS[student.hard_targets]} if student.hard_targets else {}),
                  "config": {"corpus": student.corpus_spec or {**self.suite.corpus, **student.corpus},
                             "unlabelled": student.unlabelled,
                             "model": student.model, "trainer": trainer},
                  "command": self.command(f" --only {student.name} --seeds {seed}"),
                  "flair_test_score": out["test_score"], "epochs": out["epochs"], "best_dev_epoch": out["best_dev_epoch"],
                  "dev_score_history": out["dev_score_history"], "dev_embeddings": DEV_EMBEDDINGS}
        # speed and size once per student, on the suite's first seed: a later `--seeds 2 3` run would only
        # re-time the same architecture, often while a second process shares the cores
        if seed == self.suite.seeds[0]:
            kind = student.model["type"]
            record.update(_facts(model, _best(base), kind, corpus))
        write_json(self.record_path(student, seed), record)
        log.info(f"[{self.suite.name}] {student.name} seed {seed}: test {record['test']['main']:.4f}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("suites", nargs="*", help=f"suites to run: {', '.join(SUITES)}")
    parser.add_argument("--seeds", type=int, nargs="+", default=None)
    parser.add_argument("--only", nargs="+", help="only these student runs")
    parser.add_argument("--teacher-only", action="store_true",
                        help="train (or find) the suite's teacher and stop, even when every student has a record")
    parser.add_argument("--reproduce", action="store_true",
                        help="train a lost teacher again as it was first trained (frozen transformers' dropout on, "
                             "as before 2026-12-04) and adopt it only if it scores its record's every test number")
    parser.add_argument("--list", action="store_true")
    args = parser.parse_args(argv)
    if args.list or not args.suites:
        for name, suite in SUITES.items():
            print(f"{name:14s} {suite.title} ({len(suite.students)} students)")
        return
    for suite in suites_to_run(args.suites, SUITES):
        runner = SuiteRunner(suite, args.seeds or suite.seeds, args.only, reproduce=args.reproduce)
        runner.teacher() if args.teacher_only else runner.run()


if __name__ == "__main__":
    sys.exit(main())
