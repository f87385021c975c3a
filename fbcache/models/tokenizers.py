"""CLIP and T5 tokenizers built in memory from a word list: no hub, no files.

T5 gets one unigram piece per vocabulary word, CLIP works on characters; anything outside the
vocabulary falls back to characters, so every prompt still tokenizes.
"""

from __future__ import annotations

import string

from tokenizers import normalizers
from transformers import CLIPTokenizer, T5Tokenizer

#: the caption vocabulary of the tiny model, plus the seed's prompt
WORDS: tuple[str, ...] = tuple(sorted(set(
    "a an the cute panda holding sign that says hello world and with on of in at"
    " red green blue yellow white black orange purple cyan magenta"
    " circle square triangle ring cross bar dot star"
    " small big large top bottom left right center middle upper lower corner"
    " background scene picture image photo".split()
)))

CLIP_MAX_LENGTH = 77


def _clip_byte_vocab() -> dict[str, int]:
    """Byte-level symbols, alone and word-final: CLIP becomes a character-level tokenizer.

    Characters keep the vocabulary tiny and deterministic; the words themselves reach the
    transformer through T5, as in FLUX, where CLIP only contributes a pooled vector.
    """
    from tokenizers import pre_tokenizers

    vocab: dict[str, int] = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    for suffix in ("", "</w>"):
        for char in alphabet:
            vocab[char + suffix] = len(vocab)
    return vocab


def build_clip_tokenizer() -> CLIPTokenizer:
    return CLIPTokenizer(vocab=_clip_byte_vocab(), merges=[], model_max_length=CLIP_MAX_LENGTH)


def build_t5_tokenizer(words: tuple[str, ...] = WORDS, max_length: int = 512) -> T5Tokenizer:
    pieces: list[tuple[str, float]] = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("\u2581", -4.0)]
    pieces += [("\u2581" + word, -1.0) for word in words]
    pieces += [(char, -6.0) for char in string.ascii_lowercase + string.digits + string.punctuation]
    tokenizer = T5Tokenizer(vocab=pieces, extra_ids=0)
    tokenizer.backend_tokenizer.normalizer = normalizers.Lowercase()
    tokenizer.model_max_length = max_length
    return tokenizer
