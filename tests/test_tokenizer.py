"""The GPT-2 tokenizer against transformers' GPT2TokenizerFast built from the SAME files."""

from __future__ import annotations

import json

import pytest

from mla_core.errors import UserError
from mla_core.loading import tokenizer as tokenizer_module
from mla_core.loading.tokenizer import ENDOFTEXT_ID, SPACE_MARK, bpe_files, gpt2_tokenizer

FLAG_PROMPT = " The American flag is red, white, and"

VARIED_TEXTS = [
    FLAG_PROMPT,
    " blue",
    "I'm sure you're right; we'll see, they've said it's done and I'd go.",
    "DON'T SHOUT'S 'quoted' ''double''",
    "a  b   c    d\te\t\tf",
    "line one\nline two\n\n\n  indented\r\nwindows",
    "   leading spaces",
    "trailing spaces   ",
    " \n \t ",
    "naïve café résumé, Zürich, São Paulo, Ελληνικά, русский",
    "日本語のテキスト、中文文本，한국어 텍스트",
    "emoji 🤖🎉👍🏽 and flags 🇺🇸",
    "numbers 1234567890 3.14159 -42 1e-5 0x1F",
    "code: def f(x):\n    return x**2  # comment",
    "punctuation!!! ??? ... --- *** ### @@@",
    "mixedCASE camelCase snake_case kebab-case",
    "\u00a0non-breaking\u2009thin\u200bzero-width",
]


@pytest.fixture(scope="module")
def hf_tokenizer():
    """transformers' GPT-2 tokenizer, from the vocab and merges our tokenizer reads."""
    from transformers import GPT2TokenizerFast

    encoder_json, vocab_bpe = bpe_files()
    vocab = json.loads(encoder_json.read_text(encoding="utf-8"))
    lines = vocab_bpe.read_text(encoding="utf-8").split("\n")[1:]  # line 0 is a version header
    merges = [tuple(line.split()) for line in lines if line.strip()]
    return GPT2TokenizerFast(vocab=vocab, merges=merges)


def test_flag_prompt_ids() -> None:
    tok = gpt2_tokenizer()
    assert tok.encode(FLAG_PROMPT) == [383, 1605, 6056, 318, 2266, 11, 2330, 11, 290]
    assert tok.encode(" blue") == [4171]


@pytest.mark.parametrize("text", VARIED_TEXTS)
def test_encode_decode_match_transformers(hf_tokenizer, text: str) -> None:
    tok = gpt2_tokenizer()
    ids = tok.encode(text)
    assert ids == hf_tokenizer.encode(text)
    assert tok.decode(ids) == hf_tokenizer.decode(ids) == text


def test_token_bytes_match_transformers_vocabulary(hf_tokenizer) -> None:
    tok = gpt2_tokenizer()
    ids = tok.encode(" ".join(VARIED_TEXTS))
    for i in ids:
        assert tok.token_bytes(i).decode("utf-8", errors="replace") == hf_tokenizer.decode([i])


def test_display_tokens_show_spaces() -> None:
    tok = gpt2_tokenizer()
    ids = tok.encode(FLAG_PROMPT)
    shown = tok.display_tokens(ids)
    assert shown[0] == SPACE_MARK + "The"
    assert shown[5] == ","
    assert all(" " not in s for s in shown)
    assert tok.display_tokens(tok.encode("a\n\tb")) == ["a", "\\n", "\\t", "b"]
    assert tok.display_token(ENDOFTEXT_ID) == "<|endoftext|>"
    # A token holding part of a UTF-8 character is shown with escapes, not an exception.
    partial = [i for i in tok.encode("🤖") if tok.token_bytes(i).decode("utf-8", "ignore") == ""]
    assert partial and all("\\x" in tok.display_token(i) for i in partial)


def test_out_of_range_id_is_a_user_error() -> None:
    with pytest.raises(UserError, match="50257"):
        gpt2_tokenizer().decode([50257])


def test_bpe_file_checksum_is_enforced(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tokenizer_module, "VOCAB_BPE_SHA256", "0" * 64)
    with pytest.raises(UserError, match="sha256"):
        bpe_files()
