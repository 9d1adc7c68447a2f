"""``make bench``: every structure benchmark in turn, each against torch-struct and supar where they exist."""
import subprocess
import sys

SUITES = [
    ("Linear chains and non-projective trees", ["-m", "benchmarks.bench_structs"]),
    ("Projective trees, first and second order", ["-m", "benchmarks.bench_trees_projective"]),
    ("Labelled spans (NER as parsing)", ["-m", "benchmarks.bench_spans"]),
    ("Case 4 teacher marginals vs the reference's Decimal program", ["-m", "benchmarks.bench_span_marginals"]),
    ("The tagger's CRF vs Flair's ViterbiLoss / ViterbiDecoder", ["-m", "benchmarks.bench_flair_crf"]),
]

if __name__ == "__main__":
    for title, args in SUITES:
        print(f"\n=== {title} ===", flush=True)
        subprocess.run([sys.executable, *args], check=True)
