"""experiments/resources.py on a tiny input: a fake ``shared/data`` tree made from the bundled WikiANN slice,
everything written into temporary folders, LM time budget of a second. One test reads the real WikiANN pt
file and skips when ../shared/data is absent."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

torch.set_num_threads(1)

from experiments import resources  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
WIKIANN = REPO / "resources" / "data" / "wikiann_en"
SHARED = REPO.parent / "shared" / "data"


def _sentences(path: Path):
    return [s for s in resources.read_column(path, tab=True)]


def _write(path: Path, text: str):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def _prefixed(sentences, prefix):
    return "".join("".join(f"{prefix}{t}\t{tag}\n" for t, tag in s) + "\n" for s in sentences)


def _spaced(sentences, docstart):
    head = "-DOCSTART- -DOCSTART- O\n\n" if docstart else ""
    return head + "".join("".join(f"{t} X {tag}\n" for t, tag in s) + "\n" for s in sentences)


@pytest.fixture
def fake(tmp_path, monkeypatch):
    """A fake shared data tree (WikiANN de/en/nl/pt with prefixes, CoNLL-2002 nl/es train files) built from
    the bundled English slice; CACHE, RESULTS and the sizes point at small values in tmp_path."""
    shared = tmp_path / "shared"
    splits = {s: _sentences(WIKIANN / f"{s}.txt") for s in ("train", "dev", "test")}
    for lang in ("de", "en", "nl"):
        for split, sentences in splits.items():
            _write(shared / "ner" / "wikiann" / lang / f"{split}.txt", _prefixed(sentences, f"{lang}:"))
    every = splits["train"] + splits["dev"] + splits["test"]
    _write(shared / "ner" / "wikiann" / "pt" / "all.txt", _prefixed(every, "pt:"))
    clean = [s for s in splits["train"] if all(" " not in t for t, _ in s)]
    _write(shared / "ner" / "conll02_nl" / "train.txt", _spaced(clean, docstart=True))
    _write(shared / "ner" / "conll02_nl" / "test.txt", _spaced(splits["test"][:5], docstart=False))
    _write(shared / "ner" / "conll02_es" / "train.txt", _spaced(clean[:300], docstart=False))
    monkeypatch.setattr(resources, "SHARED", shared)
    monkeypatch.setattr(resources, "CACHE", tmp_path / "cache")
    monkeypatch.setattr(resources, "RESULTS", tmp_path / "results")
    monkeypatch.setattr(resources, "PT_SPLIT", {"train": 450, "dev": 50, "test": 100})
    monkeypatch.setattr(resources, "WIKIANN_SLICE", {"train": 40, "dev": 20, "test": 10})
    monkeypatch.setattr(resources, "FASTTEXT", {**resources.FASTTEXT, "bucket": 5000, "epochs": 3})
    monkeypatch.setattr(resources, "LM_SPLIT_CHARS", 8000)
    return {"shared": shared, "splits": splits, "clean": clean, "tmp": tmp_path}


def test_resource_path_kinds(tmp_path, monkeypatch):
    monkeypatch.setattr(resources, "CACHE", tmp_path)
    base = tmp_path / "experiments"
    assert resources.resource_path("de", "fasttext") == str(base / "fasttext-de.kv")
    assert resources.resource_path("nl", "lm-forward") == str(base / "lm-nl-forward.pt")
    assert resources.resource_path("nl", "lm-backward") == str(base / "lm-nl-backward.pt")
    assert resources.resource_path("es", "text") == str(base / "text" / "es.txt")
    assert resources.resource_path("pt", "wikiann_pt") == str(base / "data" / "wikiann_pt")
    assert resources.resource_path(None, "wikiann_de") == resources.resource_path("de", "wikiann")
    with pytest.raises(ValueError, match="for language 'de'"):
        resources.resource_path("pt", "wikiann_de")
    with pytest.raises(ValueError, match="unknown resource kind"):
        resources.resource_path("pt", "glove")


def test_build_all_loads_in_flair_and_resumes(fake, capsys):
    from flair.data import Sentence
    from flair.embeddings import FlairEmbeddings

    from skd_flair.training.corpora import load_corpus
    from skd_flair.training.embeddings import build_embeddings

    figures = resources.main(["--langs", "pt", "--lm-minutes", "0"])
    results = json.loads((fake["tmp"] / "results" / "resources.json").read_text())
    assert results == figures
    assert set(results) == {"de", "en", "nl", "pt"}
    assert set(results["pt"]) == {"wikiann_pt", "text", "fasttext", "lm-forward", "lm-backward"}
    assert set(results["en"]) == {"wikiann_en"}

    # 1. the pt split: sizes, prefixes stripped, a partition of all.txt, loads as a column corpus
    pt = Path(resources.resource_path("pt", "wikiann"))
    corpus = load_corpus({"type": "column", "data_folder": str(pt), "column_format": {0: "text", 1: "ner"}})
    assert (len(corpus.train), len(corpus.dev), len(corpus.test)) == (450, 50, 100)
    assert results["pt"]["wikiann_pt"]["train_sentences"] == 450
    texts = [" ".join(t for t, _ in s) for split in ("train", "dev", "test") for s in _sentences(pt / f"{split}.txt")]
    source = [" ".join(t for t, _ in s) for s in fake["splits"]["train"] + fake["splits"]["dev"] + fake["splits"]["test"]]
    assert sorted(texts) == sorted(source) and not any(t.startswith("pt:") for line in texts for t in line.split())
    de = Path(resources.resource_path("de", "wikiann"))
    assert [len(_sentences(de / f"{s}.txt")) for s in ("train", "dev", "test")] == [40, 20, 10]
    assert _sentences(de / "train.txt") == fake["splits"]["train"][:40]  # the first k, prefix stripped

    # 2. the pt text is the train split only, one sentence a line
    lines = Path(resources.resource_path("pt", "text")).read_text(encoding="utf-8").splitlines()
    assert lines == [" ".join(t for t, _ in s) for s in _sentences(pt / "train.txt")]
    assert results["pt"]["text"]["sentences"] == 450

    # 3. fastText: our embedding type loads the .kv, with subword vectors for unseen words
    ft = results["pt"]["fasttext"]
    assert ft["sentences"] == 450 and ft["vocabulary"] > 100 and ft["train_seconds"] >= 0
    emb = build_embeddings({"type": "fasttext", "embeddings": resources.resource_path("pt", "fasttext")})
    sentence = Sentence("Saunders Zzyzxqw")
    emb.embed(sentence)
    assert emb.embedding_length == 100 and all(t.get_embedding().norm() > 0 for t in sentence)
    wide = resources.build_fasttext("pt", 300)  # the larger table, its own file and figures
    assert wide["dim"] == 300 and wide["vocabulary"] == ft["vocabulary"]
    emb300 = build_embeddings({"type": "fasttext", "embeddings": resources.resource_path("pt", "fasttext300")})
    assert emb300.embedding_length == 300 and results["pt"]["fasttext"]["dim"] == 100
    assert resources.resource_path("pt", "fasttext300") != resources.resource_path("pt", "fasttext")
    results["pt"]["fasttext300"] = wide  # published beside the 100-d figures

    # 4. char LMs: Flair embeddings of 256 dims each; budget 0 stops after the first epoch
    for direction in ("forward", "backward"):
        lm = results["pt"][f"lm-{direction}"]
        assert lm["epochs"] == 1 and lm["validations"] == lm["train_splits"] > 1
        assert 1 < lm["valid_ppl"] < 1000 and 1 < lm["test_ppl"] < 1000 and lm["train_chars"] > 10_000
        path = resources.resource_path("pt", f"lm-{direction}")
        flair_emb = FlairEmbeddings(path)
        assert flair_emb.is_forward_lm == (direction == "forward") and flair_emb.embedding_length == 256
        sentence = Sentence("Ana mora em Lisboa .")
        flair_emb.embed(sentence)
        assert sentence[3].get_embedding().shape == (256,)
    corpus_dir = Path(resources.root()) / "lm" / "pt-corpus"
    assert (corpus_dir / "valid.txt").exists() and (corpus_dir / "test.txt").exists()
    assert len(list((corpus_dir / "train").iterdir())) == results["pt"]["lm-forward"]["train_splits"]
    assert not list(Path(resources.root()).rglob("*.part"))  # no temporary leftovers

    # resumable: nothing rebuilt on a second run ...
    artefacts = [Path(resources.resource_path("pt", k)) for k in ("fasttext", "lm-forward", "lm-backward", "text")]
    artefacts += [pt / "train.txt", de / "train.txt"]
    stamps = [p.stat().st_mtime_ns for p in artefacts]
    capsys.readouterr()
    assert resources.main(["--langs", "pt", "--lm-minutes", "0"]) == results
    assert [p.stat().st_mtime_ns for p in artefacts] == stamps
    assert "training" not in capsys.readouterr().out
    # ... but a resource whose build settings changed, or whose marker is missing, is
    resources.FASTTEXT["epochs"] = 2  # (the fixture's monkeypatch restores the dict object)
    (Path(resources.root()) / "figures" / "pt.lm-backward.json").unlink()
    resources.main(["--langs", "pt", "--lm-minutes", "0"])
    after = [p.stat().st_mtime_ns for p in artefacts]
    assert after[0] != stamps[0] and after[1] == stamps[1] and after[2] != stamps[2] and after[3:] == stamps[3:]


def test_text_is_training_portions_only(fake):
    for lang in ("nl", "es", "de"):
        resources.build_text(lang)
    nl = Path(resources.resource_path("nl", "text")).read_text(encoding="utf-8").splitlines()
    assert nl == [" ".join(t for t, _ in s) for s in fake["clean"]]  # -DOCSTART- skipped, test.txt unused
    assert len(Path(resources.resource_path("es", "text")).read_text(encoding="utf-8").splitlines()) == 300
    de = Path(resources.resource_path("de", "text")).read_text(encoding="utf-8").splitlines()
    assert de == [" ".join(t for t, _ in s) for s in fake["splits"]["train"]]  # all of train, prefix stripped
    with pytest.raises(ValueError, match="no training text"):
        resources.build_text("fr")


def test_lm_epochs_and_time_box(fake):
    resources.build_text("es")
    lines = Path(resources.resource_path("es", "text")).read_text(encoding="utf-8").splitlines()
    folder = fake["tmp"] / "lm" / "corpus"
    layout = resources.make_lm_corpus(lines, folder)
    assert layout["valid_lines"] + layout["test_lines"] == len(lines) // 20 + (len(lines) % 20 > 10)
    assert layout["train_lines"] + layout["valid_lines"] + layout["test_lines"] == len(lines)
    figures = resources.train_lm(folder, fake["tmp"] / "lm" / "out", forward=False, minutes=10, max_epochs=2)
    assert figures["epochs"] == 2 and figures["validations"] == 2 * layout["splits"]
    out = fake["tmp"] / "lm" / "out"
    assert (out / "best-lm.pt").exists() and (out / "loss.txt").exists() and not list(out.glob("epoch_*.pt"))
    assert "epoch   2" in (out / "loss.txt").read_text()


def test_an_lm_without_a_time_budget_is_the_same_lm_when_trained_again(fake):
    """No budget (the default): the epoch count alone decides, so a lost LM can be trained again exactly."""
    import torch

    resources.build_text("es")
    lines = Path(resources.resource_path("es", "text")).read_text(encoding="utf-8").splitlines()
    folder = fake["tmp"] / "lm" / "corpus"
    resources.make_lm_corpus(lines, folder)
    weights = []
    for name in ("a", "b"):
        figures = resources.train_lm(folder, fake["tmp"] / "lm" / name, forward=True, minutes=None, max_epochs=1)
        assert figures["epochs"] == 1
        weights.append(torch.load(fake["tmp"] / "lm" / name / "best-lm.pt", map_location="cpu",
                                  weights_only=False)["state_dict"])
    assert weights[0].keys() == weights[1].keys()
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])


@pytest.mark.data
@pytest.mark.skipif(not (SHARED / "ner" / "wikiann" / "pt" / "all.txt").is_file(),
                    reason="../shared/data/ner/wikiann/pt/all.txt is absent (the real WikiANN Portuguese file)")
def test_real_wikiann_pt_split(tmp_path, monkeypatch):
    monkeypatch.setattr(resources, "SHARED", SHARED)
    monkeypatch.setattr(resources, "CACHE", tmp_path / "cache")
    monkeypatch.setattr(resources, "RESULTS", tmp_path / "results")
    figures = resources.build_wikiann_pt()
    assert (figures["train_sentences"], figures["dev_sentences"], figures["test_sentences"]) == (16000, 1000, 3000)
    folder = Path(resources.resource_path("pt", "wikiann"))
    tokens = [t for split in ("train", "dev", "test") for s in _sentences(folder / f"{split}.txt") for t, _ in s]
    assert len(tokens) == sum(figures[f"{s}_tokens"] for s in ("train", "dev", "test"))
    assert not any(t.startswith("pt:") for t in tokens)
    first = (folder / "train.txt").read_bytes()
    (resources.root() / "figures" / "pt.wikiann_pt.json").unlink()
    resources.build_wikiann_pt()
    assert (folder / "train.txt").read_bytes() == first  # deterministic
