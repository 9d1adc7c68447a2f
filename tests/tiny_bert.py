"""A tiny BERT saved in a folder, with a word-piece vocabulary of the given words, their characters and
`more_chars`."""
from __future__ import annotations

from pathlib import Path
from typing import Iterable

import torch


def save_tiny_bert(folder: Path, words: Iterable[str], more_chars: str = "", hidden: int = 16, layers: int = 2, positions: int = 64,
                   dtype: torch.dtype = torch.float32) -> Path:
    from transformers import BertConfig, BertModel, BertTokenizerFast

    words = list(dict.fromkeys(words))
    folder.mkdir(parents=True)
    chars = sorted({c for w in words for c in w.lower() + w} | set(more_chars.replace(" ", "")))
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + words + chars + [f"##{c}" for c in chars]
    vocab_file = folder.parent / f"{folder.name}-vocab.txt"
    vocab_file.write_text("\n".join(dict.fromkeys(vocab)) + "\n", encoding="utf-8")
    tokenizer = BertTokenizerFast(vocab_file=str(vocab_file), do_lower_case=False)
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=hidden, num_hidden_layers=layers,
                        num_attention_heads=2, intermediate_size=2 * hidden, max_position_embeddings=positions)
    torch.manual_seed(0)
    BertModel(config).to(dtype).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
