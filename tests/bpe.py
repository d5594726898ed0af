"""Byte-level BPE tokenizers (Qwen2 / Llama 3 style) trained on a small corpus, for tests."""
from collections.abc import Sequence

import tokenizers


def train_byte_level_bpe(corpus: Sequence[str], *, vocab_size: int,
                         special_tokens: Sequence[str]) -> tokenizers.Tokenizer:
    bpe = tokenizers.Tokenizer(tokenizers.models.BPE())
    bpe.pre_tokenizer = tokenizers.pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = tokenizers.decoders.ByteLevel()
    trainer = tokenizers.trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(special_tokens),
        # Every byte is in the vocabulary, so any text round-trips.
        initial_alphabet=tokenizers.pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(corpus, trainer)
    return bpe
