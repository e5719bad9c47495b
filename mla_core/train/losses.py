"""Losses measured on text: a token sequence, the validation stream, the held-out slice."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mla_core.models.gpt2 import GPT2

HELDOUT_FILE = "heldout_slice.json"
HELDOUT_TOKENS = 512  # "a few hundred tokens" of validation text shipped beside the model


@torch.no_grad()
def sequence_loss(model: nn.Module, ids: list[int] | np.ndarray, n_ctx: int | None = None) -> float:
    """Mean next-token cross-entropy (nats) over a token sequence, read in n_ctx-token chunks.

    Chunk c holds tokens [c*n_ctx, (c+1)*n_ctx) as inputs and predicts the token after each;
    every token but the first is predicted exactly once.
    """
    n_ctx = n_ctx or model.config.n_ctx  # GPT-2's config; other models pass n_ctx
    ids = torch.as_tensor(np.asarray(ids, dtype=np.int64))
    device = next(model.parameters()).device
    total, count = 0.0, 0
    for start in range(0, len(ids) - 1, n_ctx):
        inputs = ids[start : start + n_ctx]
        targets = ids[start + 1 : start + n_ctx + 1]
        inputs = inputs[: len(targets)]
        logits = model(inputs[None].to(device))[0].float()  # [T, V]
        total += F.cross_entropy(logits, targets.to(device), reduction="sum").item()
        count += len(targets)
    return total / count


@torch.no_grad()
def validation_loss(
    model: nn.Module, val_ids: np.ndarray, n_ctx: int, max_windows: int = 0
) -> float:
    """Mean loss over consecutive n_ctx windows of the validation stream (all, or the first N)."""
    n_windows = (len(val_ids) - 1) // n_ctx
    if max_windows:
        n_windows = min(n_windows, max_windows)
    return sequence_loss(model, val_ids[: n_windows * n_ctx + 1], n_ctx)


def heldout_slice_loss(model: GPT2, model_dir: str | Path) -> float:
    """The loss on the held-out slice shipped in `model_dir` (what the tests recompute)."""
    ids = heldout_slice_ids(model_dir)
    return sequence_loss(model, ids, model.config.n_ctx)


def heldout_slice_ids(model_dir: str | Path) -> list[int]:
    """Token ids of the shipped held-out slice: its documents, each ended by <|endoftext|>."""
    from mla_core.loading.tokenizer import ENDOFTEXT_ID, gpt2_tokenizer

    data = json.loads((Path(model_dir) / HELDOUT_FILE).read_text(encoding="utf-8"))
    tok = gpt2_tokenizer()
    ids: list[int] = []
    for doc in data["documents"]:
        ids += tok.encode(doc["text"]) + [ENDOFTEXT_ID]
    return ids[: data["n_tokens"]]


def make_heldout_slice(val_docs: list, n_tokens: int) -> dict:
    """The first validation documents (in split order) that give at least n_tokens tokens."""
    from mla_core.loading.corpus import CORPUS_ATTRIBUTION, CORPUS_LICENCE
    from mla_core.loading.tokenizer import gpt2_tokenizer

    tok = gpt2_tokenizer()
    docs, have = [], 0
    for doc in val_docs:
        docs.append({"title": doc.title, "text": doc.text})
        have += len(tok.encode(doc.text)) + 1
        if have >= n_tokens:
            break
    return {
        "about": "Validation documents held out of training; the tests recompute the loss on "
        "the first n_tokens tokens (each document followed by <|endoftext|>).",
        "licence": CORPUS_LICENCE,
        "attribution": CORPUS_ATTRIBUTION
        + " Titles name the Wikipedia articles; the text is their lead section.",
        "n_tokens": min(n_tokens, have),
        "documents": docs,
    }
