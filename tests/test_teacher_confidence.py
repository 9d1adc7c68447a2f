"""How a teacher's best spans meet the gold spans (experiments/teacher_confidence._span_agreement)."""
from flair.data import Sentence

from experiments.teacher_confidence import _span_agreement


class _Teacher:
    """Predicts fixed spans per sentence (by text), as a trained teacher's predict writes them."""
    label_type = "ner"

    def __init__(self, spans):
        self.spans = spans

    def predict(self, sentences, mini_batch_size, label_name):
        for sentence in sentences:
            for a, b, tag in self.spans[sentence.to_tokenized_string()]:
                sentence[a:b].add_label(label_name, tag)


def _sentence(text, spans):
    sentence = Sentence(text.split())
    for a, b, tag in spans:
        sentence[a:b].add_label("ner", tag)
    return sentence


def test_every_gold_span_is_exact_wrong_type_wrong_boundary_or_missed():
    one = _sentence("Anna met Bob in New York today", [(0, 1, "PER"), (2, 3, "PER"), (4, 6, "LOC")])
    two = _sentence("Acme Inc hired Carla", [(0, 2, "ORG"), (3, 4, "PER")])
    teacher = _Teacher({one.to_tokenized_string(): [(0, 1, "PER"), (2, 3, "ORG"), (5, 6, "LOC"), (6, 7, "MISC")],
                        two.to_tokenized_string(): [(0, 2, "ORG")]})
    counts = _span_agreement(teacher, [one, two])
    assert counts == {"gold": 5, "predicted": 5, "exact": 2, "wrong_type": 1, "wrong_boundary": 1, "missed": 1,
                      "spurious": 1}
    assert not one.get_spans("skd_teacher_best")  # the teacher's labels are not left on the sentences
