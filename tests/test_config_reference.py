"""docs/configuration.md is generated from the code (`python -m skd_flair.docs`): it names every registered key,
every key has a meaning, and the committed file is what the generator writes today."""
import inspect
import re
from pathlib import Path

import pytest

from skd_flair import docs

ROOT = Path(__file__).resolve().parents[1]
COMMITTED = ROOT / "docs" / "configuration.md"


@pytest.fixture(scope="module")
def generated():
    return docs.reference()


def _blocks(text):
    """heading -> the key names in the table under it."""
    out, heading = {}, None
    for line in text.splitlines():
        if line.startswith("#"):
            heading = line.lstrip("#").strip()
            out.setdefault(heading, [])
        elif line.startswith("| `") and heading is not None:
            out[heading].append(line.split("`")[1])
    return out


def _registries():
    from skd_flair.distill import MIX_SCHEDULES, OBJECTIVES
    from skd_flair.training.corpora import CORPORA
    from skd_flair.training.embeddings import EMBEDDINGS
    from skd_flair.training.models import MODELS

    return {"corpus": CORPORA, "model": MODELS, "embeddings[i]": EMBEDDINGS, "kd.objective": OBJECTIVES,
            "kd.mix": MIX_SCHEDULES}


@pytest.mark.parametrize("text_of", ["generated", "committed"])
def test_every_registered_key_is_in_the_reference(generated, text_of):
    text = generated if text_of == "generated" else COMMITTED.read_text(encoding="utf-8")
    blocks = _blocks(text)
    missing = []
    for path, registry in _registries().items():
        for name, keys in docs.registry_keys(registry).items():
            listed = blocks.get(f"`{path}: {{type: {name}}}`")
            if listed is None:
                missing.append(f"{path} type {name}")
                continue
            missing += [f"{path} type {name}: {key}" for key in keys if key not in listed]
    assert not missing, f"not in the {text_of} reference (run python -m skd_flair.docs): {missing}"


def test_sections_kd_and_trainer_keys_are_in_the_reference(generated):
    from flair.trainers import ModelTrainer

    from skd_flair.training.pipeline import KD_KEYS, SECTIONS, TEACHER_KEYS, _trainer_arguments, trainer_keys

    blocks = _blocks(generated)
    assert set(blocks["Sections"]) == set(SECTIONS)
    assert list(blocks["kd"]) == list(KD_KEYS)
    trainer = set(_trainer_arguments("train")) | set(_trainer_arguments("fine_tune")) | set(
        inspect.signature(trainer_keys).parameters)
    assert set(blocks["trainer"]) == trainer
    assert set(TEACHER_KEYS) == set(blocks["teacher"])
    assert "max_epochs" in inspect.signature(ModelTrainer.train).parameters


def test_every_key_has_a_type_default_and_meaning(generated):
    assert docs.missing_meanings(generated) == []
    rows = [line for line in generated.splitlines() if line.startswith("| `")]
    assert len(rows) > 150
    for row in rows:
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", row)[1:-1]]
        assert all(cells), row


def test_types_and_defaults_read_as_yaml(generated):
    assert '| `hidden_size` | int ≥ 1 | `256` |' in generated  # tagger: Count
    assert '| `weight` | float in [0, 1] | `0.5` |' in generated  # constant mix: Probability
    assert '| `dropout` | float in [0, 1) | `0.0` |' in generated  # tagger: Dropout
    assert '| `temperature_mode` | "local" or "global" | `"local"` |' in generated
    assert '`0.1` (train), `5e-05` (fine_tune)' in generated  # Flair's two methods' learning rates
    assert '`0.1` (fine_tune only)' in generated  # warmup_fraction
    assert "| `data_folder` | str | **required** |" in generated


def test_the_committed_reference_is_not_stale(generated, tmp_path):
    assert COMMITTED.read_text(encoding="utf-8") == generated, (
        "docs/configuration.md is stale: run python -m skd_flair.docs")
    out = tmp_path / "configuration.md"
    assert docs.main(["-o", str(out)]) == 0 and out.read_text(encoding="utf-8") == generated
    assert docs.main(["--check", "-o", str(out)]) == 0
    out.write_text(generated.replace("| `seed`", "| `sead`", 1), encoding="utf-8")
    assert docs.main(["--check", "-o", str(out)]) == 1


def test_a_newly_registered_key_without_a_meaning_is_reported(monkeypatch):
    from skd_flair.distill import MIX_SCHEDULES

    def stepped(weight: float = 0.5, every: int = 2):
        """A made-up schedule."""

    monkeypatch.setitem(MIX_SCHEDULES._items, "stepped", stepped)
    text = docs.reference()
    assert "`kd.mix: {type: stepped}`" in text and "| `every` | int | `2` |" in text
    assert any("`every`" in row for row in docs.missing_meanings(text))
    assert text != COMMITTED.read_text(encoding="utf-8")  # the staleness test catches it


def test_readme_links_the_reference():
    assert "(docs/configuration.md)" in (ROOT / "README.md").read_text(encoding="utf-8")
