"""A character-level tokenizer for tiny models trained from scratch (the CPU demos).

Every printable ASCII character is one token and the reasoning tags are single special tokens, so a
model of a few hundred thousand parameters sees arithmetic digit by digit. Any other character is
`<unk>`, a token of its own that decodes as that text (the last id, so earlier tokenizers' ids hold). Written as a standard
`tokenizer.json`, it loads through `r1jax.tokenizer.load_tokenizer` like any Hugging Face tokenizer.
"""

from __future__ import annotations

import json
import os
import string

from tokenizers import Regex, decoders, models, pre_tokenizers
from tokenizers import Tokenizer as HFTokenizer

PAD, EOS, UNK = "<pad>", "<|endoftext|>", "<unk>"
SPECIAL_TOKENS = (PAD, EOS, "<think>", "</think>", "<answer>", "</answer>")
CHARACTERS = tuple(c for c in string.printable if c not in "\t\r\x0b\x0c")


def write_char_tokenizer(directory: str) -> str:
    """Writes `tokenizer.json` and `tokenizer_config.json` into `directory` and returns it."""
    os.makedirs(directory, exist_ok=True)
    vocab = {token: i for i, token in enumerate(SPECIAL_TOKENS + CHARACTERS + (UNK,))}
    tokenizer = HFTokenizer(models.WordLevel(vocab, unk_token=UNK))
    tokenizer.pre_tokenizer = pre_tokenizers.Split(Regex(r".|\n"), behavior="isolated")
    tokenizer.decoder = decoders.Fuse()
    tokenizer.add_special_tokens(list(SPECIAL_TOKENS))
    tokenizer.save(os.path.join(directory, "tokenizer.json"))
    with open(os.path.join(directory, "tokenizer_config.json"), "w") as f:
        json.dump({"eos_token": EOS, "pad_token": PAD, "bos_token": None}, f, indent=2)
    return directory


def vocab_size() -> int:
    return len(SPECIAL_TOKENS) + len(CHARACTERS) + 1  # <unk>
