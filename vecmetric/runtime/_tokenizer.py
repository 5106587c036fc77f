"""CLIP's byte-level BPE tokenizer in plain Python, for text queries without torch.

It reproduces open_clip's ``SimpleTokenizer`` (the tokenizer of OpenAI CLIP and of every
open_clip architecture without a Hugging Face or SigLIP tokenizer) token for token: the same
cleaning (``ftfy.fix_text``, HTML unescaping, whitespace), the same pre-tokenising pattern, the
same merges, and the same truncation (the last kept token becomes end-of-text). ``ftfy`` and
``regex`` are what open_clip itself uses; neither imports torch.
"""

from __future__ import annotations

import gzip
import html
import string
from functools import lru_cache
from typing import Sequence

CLEAN_MODES = ("lower", "whitespace", "canonicalize")
SPECIAL_TOKENS = ("<start_of_text>", "<end_of_text>")
_MERGES = 49152 - 256 - 2  # the merges CLIP's vocabulary uses, after the 512 byte tokens


@lru_cache()
def _bytes_to_unicode() -> dict[int, str]:
    """A reversible map from bytes to printable characters (no whitespace or control codes)."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    chars = printable[:]
    extra = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + extra)
            extra += 1
    return dict(zip(printable, map(chr, chars)))


def _basic_clean(text: str) -> str:
    import ftfy

    return html.unescape(html.unescape(ftfy.fix_text(text))).strip()


def _clean(text: str, mode: str) -> str:
    text = _basic_clean(text)
    if mode == "canonicalize":
        text = text.replace("_", " ").translate(str.maketrans("", "", string.punctuation)).lower()
    text = " ".join(text.split())
    return text.lower() if mode == "lower" else text


class ClipTokenizer:
    """Text to CLIP token ids, identical to ``open_clip.get_tokenizer(arch)`` for SimpleTokenizer models.

    Args:
        bpe_gz: the gzipped merges file (open_clip's ``bpe_simple_vocab_16e6.txt.gz``).
        context_length: tokens per text; longer texts are truncated, shorter ones padded with 0.
        clean: ``lower`` (CLIP), ``whitespace`` or ``canonicalize`` (punctuation removed).

    Raises:
        ValueError: an unknown ``clean`` mode.
    """

    def __init__(self, bpe_gz: bytes, context_length: int = 77, clean: str = "lower"):
        import regex

        if clean not in CLEAN_MODES:
            raise ValueError(f"unknown clean mode {clean!r}; expected one of {CLEAN_MODES}")
        merges = [tuple(line.split()) for line in gzip.decompress(bpe_gz).decode("utf-8").split("\n")[1 : _MERGES + 1]]
        byte_chars = list(_bytes_to_unicode().values())
        vocab = byte_chars + [c + "</w>" for c in byte_chars] + ["".join(m) for m in merges] + list(SPECIAL_TOKENS)
        self.encoder = {token: i for i, token in enumerate(vocab)}
        self.bpe_ranks = {merge: i for i, merge in enumerate(merges)}
        self.sot_token_id, self.eot_token_id = (self.encoder[t] for t in SPECIAL_TOKENS)
        self.context_length = int(context_length)
        self.clean = clean
        self._byte_encoder = _bytes_to_unicode()
        self._cache = {t: t for t in SPECIAL_TOKENS}
        self._pattern = regex.compile(
            "|".join(SPECIAL_TOKENS) + r"""|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+""",
            regex.IGNORECASE,
        )

    def _bpe(self, token: str) -> list[str]:
        """Merge the characters of one pre-token, lowest-ranked pair first, as CLIP does."""
        if token in self._cache:
            return self._cache[token].split(" ")
        word = [*token[:-1], token[-1] + "</w>"]
        while len(word) > 1:
            pairs = {(a, b) for a, b in zip(word, word[1:])}
            best = min(pairs, key=lambda pair: self.bpe_ranks.get(pair, float("inf")))
            if best not in self.bpe_ranks:
                break
            merged, i = [], 0
            while i < len(word):
                if i < len(word) - 1 and (word[i], word[i + 1]) == best:
                    merged.append(word[i] + word[i + 1])
                    i += 2
                else:
                    merged.append(word[i])
                    i += 1
            word = merged
        self._cache[token] = " ".join(word)
        return word

    def encode(self, text: str) -> list[int]:
        """Token ids of one text, without start/end tokens or truncation."""
        ids: list[int] = []
        for token in self._pattern.findall(_clean(text, self.clean)):
            chars = "".join(self._byte_encoder[b] for b in token.encode("utf-8"))
            ids.extend(self.encoder[piece] for piece in self._bpe(chars))
        return ids

    def __call__(self, texts: str | Sequence[str]):
        """Token ids, int64 numpy (N, context_length): start, text, end, zero padding.

        A text longer than the context is cut to ``context_length`` tokens, the last of which
        becomes end-of-text (the text tower pools at that token).
        """
        import numpy as np

        texts = [texts] if isinstance(texts, str) else list(texts)
        out = np.zeros((len(texts), self.context_length), dtype=np.int64)
        for row, text in enumerate(texts):
            ids = [self.sot_token_id, *self.encode(text), self.eot_token_id][: self.context_length]
            ids[-1] = self.eot_token_id
            out[row, : len(ids)] = ids
        return out
