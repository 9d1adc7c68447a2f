#!/bin/bash
# A new user's path on a corpus the bundled configurations never use (CoNLL-2002 Spanish from ../shared/data),
# with configurations written from the README and docs/configuration.md only. Every command must succeed;
# the output lands in $OUT (default /tmp/skd_new_user). Run from the repository root: bash experiments/new_user_transcript.sh
set -euo pipefail
OUT=${OUT:-/tmp/skd_new_user}
DATA=${DATA:-../shared/data/ner/conll02_es}
SKD=".venv/bin/skd-flair"
rm -rf "$OUT" && mkdir -p "$OUT"
cat > "$OUT/teacher.yaml" <<YAML
seed: 1
corpus: {type: column, data_folder: $DATA, column_format: {0: text, 1: pos, 2: ner},
         sample_train: 300, sample_dev: 100, sample_test: 100}
model: {type: tagger, tag_type: ner, use_crf: true, hidden_size: 64,
        embeddings: [{type: onehot, embedding_length: 32}, {type: char}]}
trainer: {base_path: $OUT/teacher, max_epochs: 20, mini_batch_size: 8}
YAML
cat > "$OUT/student.yaml" <<YAML
seed: 1
corpus: {type: column, data_folder: $DATA, column_format: {0: text, 1: pos, 2: ner},
         sample_train: 300, sample_dev: 100, sample_test: 100}
teacher: {path: $OUT/teacher}  # a run folder: the model it kept
model: {type: tagger, tag_type: ner, use_crf: true, hidden_size: 32,
        embeddings: [{type: onehot, embedding_length: 16, name: student-onehot}, {type: char, name: student-char}]}
kd: {objective: structural}
trainer: {base_path: $OUT/student, max_epochs: 20, mini_batch_size: 8, max_minutes: 8}
YAML
printf 'El presidente de Francia visitó Madrid .\n\nLa ONU y la UE firmaron en Bruselas .\n' > "$OUT/raw.txt"
$SKD check "$OUT/teacher.yaml"
$SKD train "$OUT/teacher.yaml" > "$OUT/teacher.json"
$SKD check "$OUT/student.yaml"
$SKD distill "$OUT/student.yaml" > "$OUT/student.json"
$SKD evaluate --model "$OUT/student" --config "$OUT/student.yaml" > "$OUT/evaluate.json"
$SKD evaluate --model "$OUT/teacher" --config "$OUT/teacher.yaml" > "$OUT/evaluate_teacher.json"
$SKD predict --model "$OUT/student" --input "$OUT/raw.txt" --output "$OUT/raw.jsonl" --output-format jsonl
$SKD plot "$OUT/student" > /dev/null
$SKD export "$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["model"])' "$OUT/student.json")" "$OUT/student-small.pt" --corpus "$OUT/student.yaml" > "$OUT/export.json"
# a changed corpus (fewer gold sentences): only what is new is annotated, the rest is reused
sed -i 's/sample_train: 300/sample_train: 250/' "$OUT/student.yaml"
$SKD annotate "$OUT/student.yaml" > "$OUT/annotate_changed.json"
python3 - "$OUT" <<'PY'
import json, sys
out = sys.argv[1]
for name, evaluated in (("teacher", "evaluate_teacher"), ("student", "evaluate")):
    r = json.load(open(f"{out}/{name}.json"))
    again = json.load(open(f"{out}/{evaluated}.json"))["main_score"]
    print(name, "test", round(r["test_score"], 4), "| skd-flair evaluate on the saved model", round(again, 4),
          "| epochs", r["epochs"], "best dev epoch", r["best_dev_epoch"], "stopped_early", r["stopped_early"])
    # the model a run keeps must score what the run reported (a reloaded one-hot stack once did not)
    assert abs(again - r["test_score"]) < 1e-6, (name, again, r["test_score"])
print("annotation after the change:", json.load(open(f"{out}/annotate_changed.json"))["stats"])
print("predict:", [len(json.loads(l)["tokens"]) for l in open(f"{out}/raw.jsonl")])
print("export:", json.load(open(f"{out}/export.json")))
PY
