"""The tagger's CRF against Flair's own (``ViterbiLoss`` / ``ViterbiDecoder``), one thread, CPU.

    python -m benchmarks.bench_flair_crf [--batch 32 --max-len 40 --reps 15]

Both sides get the same emissions and transitions in Flair's layout (``crf_scores[b, t, to, from]``,
``<START>``/``<STOP>`` the last two of 19 tags), lengths 20..40 sorted longest first as Flair requires.
Cases: the gold-sequence negative log-likelihood (forward + backward, what training pays per batch) and
decoding (Viterbi). The losses and the decoded tags are checked to agree.
"""
from __future__ import annotations


import torch
from flair.data import Dictionary
from flair.models.sequence_tagger_utils.viterbi import ViterbiDecoder, ViterbiLoss

from benchmarks.harness import parse_options, time_it
from skd_flair.structs import LinearChainCRF

TAGS = 19


def make(batch: int, max_len: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(20, max_len + 1, (batch,), generator=g).sort(descending=True).values
    lengths[0] = max_len
    features = torch.randn(batch, max_len, TAGS, generator=g)
    transitions = torch.randn(TAGS, TAGS, generator=g)  # [to, from]
    transitions[TAGS - 2, :] = -10000.0  # nothing goes into <START>
    transitions[:, TAGS - 1] = -10000.0  # nothing leaves <STOP>
    gold = torch.cat([torch.randint(0, TAGS - 2, (int(n),), generator=g) for n in lengths])
    dictionary = Dictionary(add_unk=False)
    for i in range(TAGS - 2):
        dictionary.add_item(f"T{i}")
    dictionary.set_start_stop_tags()
    return features, transitions, lengths, gold, dictionary


def ours_crf(features, transitions, lengths):
    return LinearChainCRF(features, transitions.t(), lengths, start=transitions[:, TAGS - 2],
                          end=transitions[TAGS - 1, :])


def padded(gold, lengths):
    tags = torch.zeros(len(lengths), int(lengths.max()), dtype=torch.long)
    offset = 0
    for b, n in enumerate(lengths.tolist()):
        tags[b, :n] = gold[offset:offset + n]
        offset += n
    return tags


def main(argv=None):
    opts = parse_options(__doc__, argv, {"batch": (32, None), "max_len": (40, None), "reps": (15, None)})
    features, transitions, lengths, gold, dictionary = make(opts.batch, opts.max_len)
    tags = padded(gold, lengths)
    flair_loss, decoder = ViterbiLoss(dictionary), ViterbiDecoder(dictionary)

    def ours_nll(f, t):
        f, t = f.clone().requires_grad_(True), t.clone().requires_grad_(True)
        crf = ours_crf(f, t, lengths)
        loss = (crf.log_partition - crf.score(tags)).sum()
        loss.backward()
        return loss.detach()

    def flair_nll(f, t):
        f, t = f.clone().requires_grad_(True), t.clone().requires_grad_(True)
        scores = f.unsqueeze(-1) + t.unsqueeze(0).unsqueeze(0)  # Flair's CRF.forward
        loss = flair_loss((scores, lengths, t), gold)
        loss.backward()
        return loss.detach()

    def ours_decode(f, t):
        return ours_crf(f, t, lengths).argmax

    def flair_decode(f, t):
        scores = f.unsqueeze(-1) + t.unsqueeze(0).unsqueeze(0)
        return decoder.decode((scores, lengths, t), False, None)[0]

    print(f"B={opts.batch}, lengths 20..{opts.max_len}, {TAGS} tags, one thread; ms = min (median) of {opts.reps}")
    for name, ours, theirs in (("gold NLL, forward + backward", ours_nll, flair_nll),
                               ("Viterbi decoding", ours_decode, flair_decode)):
        a, b = ours(features, transitions), theirs(features, transitions)
        if name.startswith("gold"):
            check = f"|loss difference| {abs(float(a) - float(b)):.1e} (loss {float(a):.2f})"
        else:
            names = dictionary.get_items()
            same = all([names[i] for i in a[s, :int(n)].tolist()] == [tag for tag, _ in b[s]]
                       for s, n in enumerate(lengths))
            check = f"same tags: {same}"
        ours_ms, ours_med = time_it(ours, (features, transitions), opts.reps)
        flair_ms, flair_med = time_it(theirs, (features, transitions), opts.reps)
        print(f"{name:30s} skd_flair {ours_ms:7.2f} ({ours_med:7.2f})   flair {flair_ms:7.2f} ({flair_med:7.2f})"
              f"   speed-up {flair_ms / ours_ms:5.1f}x   {check}")


if __name__ == "__main__":
    main()
