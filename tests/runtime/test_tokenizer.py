"""The pure-Python CLIP tokenizer gives open_clip's token ids exactly."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

TEXTS = [
    "a photo of a cat",
    "",
    "   ",
    "Hello, World!!! ...? (parentheses) [brackets] {braces} #hash @at $100 50% a&b",
    "Crème brûlée, naïve café, façade, Ångström, ÆØÅ, straße, İstanbul",
    "emoji 🚲🐈\u200d⬛ 👍🏽 🇫🇷 flags",
    "&amp; &lt;b&gt;html&lt;/b&gt; &quot;quoted&quot; &#39;",
    "mojibake: Ã©tÃ© and smart “quotes” ‘single’ – dash",
    "numbers 3.14159 1,000,000 2024-11-28 007",
    "don't you'll we've I'm she'd they're it's",
    "日本語のテキスト、中文文本，한국어 텍스트",
    "tab\tnew\nline\r\nmixed   whitespace",
    "<start_of_text> and <end_of_text> written by a user",
    "under_score CamelCase kebab-case dot.case",
    " ".join(["a long caption that needs truncating"] * 30),
    "x" * 1000,
]


@pytest.fixture(scope="module")
def reference():
    import open_clip

    return open_clip.get_tokenizer("ViT-B-32")


@pytest.fixture(scope="module")
def tokenizer():
    from open_clip.tokenizer import default_bpe

    from vecmetric.runtime import ClipTokenizer

    with open(default_bpe(), "rb") as fh:
        return ClipTokenizer(fh.read())


def test_ids_equal_open_clip(tokenizer, reference):
    ids = tokenizer(TEXTS)
    assert ids.dtype == np.int64 and ids.shape == (len(TEXTS), 77)
    np.testing.assert_array_equal(ids, reference(TEXTS).numpy())


def test_truncation_and_padding(tokenizer):
    sot, eot = tokenizer.sot_token_id, tokenizer.eot_token_id
    assert (sot, eot) == (49406, 49407)
    empty, long_text = tokenizer(["", TEXTS[-2]])
    assert list(empty[:3]) == [sot, eot, 0] and not empty[3:].any()
    assert long_text[0] == sot and long_text[-1] == eot and (long_text[1:-1] != eot).all() and long_text.all()


@pytest.mark.parametrize("clean", ["whitespace", "canonicalize"])
def test_other_clean_modes_equal_open_clip(clean):
    from open_clip.tokenizer import SimpleTokenizer, default_bpe

    from vecmetric.runtime import ClipTokenizer

    with open(default_bpe(), "rb") as fh:
        ours = ClipTokenizer(fh.read(), context_length=32, clean=clean)
    np.testing.assert_array_equal(ours(TEXTS), SimpleTokenizer(context_length=32, clean=clean)(TEXTS).numpy())
    with pytest.raises(ValueError, match="clean"):
        ClipTokenizer(b"", clean="strip")


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.text(max_size=120))
def test_any_text_equals_open_clip(tokenizer, reference, text):
    np.testing.assert_array_equal(tokenizer([text]), reference([text]).numpy())
