"""Causal attention, written once: scores, the causal mask, softmax, the weighted sum.

Every model here attends the same way; only where q and k come from differs:
- GPT-2 (`models.gpt2`) and GPT-2 as MLA on its naive path call `causal_attention` on
  per-head q, k, v;
- the absorbed paths (`models.gpt2_to_mla`, `models.mla`) compute their scores from cached
  latents and call `causal_softmax` on them;
- the scene data asks `causal_attention` for every intermediate step of one head.

Positions: the Tq queries are the LAST Tq of the Tk positions the keys cover (Tq == Tk for a
whole prompt, Tq == 1 for one decode step with a cache), so query i sits at Tk - Tq + i.
"""

from __future__ import annotations

import math

import torch


def future_mask(n_queries: int, n_keys: int, device: torch.device | str | None = None):
    """[Tq, Tk] bool: True where query i would look at a later key (what the mask hides)."""
    return torch.ones(n_queries, n_keys, dtype=torch.bool, device=device).triu(
        diagonal=n_keys - n_queries + 1
    )


def causal_softmax(scores: torch.Tensor, query_axis: int = -2) -> tuple[torch.Tensor, torch.Tensor]:
    """(masked_scores, pattern) for scores [..., Tq, ..., Tk] (keys on the last axis).

    masked_scores is -inf where a query would see a later key; pattern is the softmax over
    keys, computed in at least float32 (fp16 overflows in MLA) and returned in the scores'
    dtype: rows sum to 1, exact zeros above the diagonal. `query_axis` says where the query
    axis is (-2 for [B, H, Tq, Tk]; -3 for DeepSeek's [B, Tq, H, Tk]).
    """
    n_queries, n_keys = scores.shape[query_axis], scores.shape[-1]
    mask = future_mask(n_queries, n_keys, scores.device)
    # one mask for every axis between the queries and the keys (heads in DeepSeek's layout)
    mask = mask.view(n_queries, *([1] * (-query_axis - 2)), n_keys)
    masked_scores = scores.masked_fill(mask, float("-inf"))
    compute_dtype = torch.promote_types(scores.dtype, torch.float32)
    pattern = masked_scores.softmax(dim=-1, dtype=compute_dtype).to(scores.dtype)
    return masked_scores, pattern


def causal_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float | None = None
) -> dict[str, torch.Tensor]:
    """Scaled dot-product attention with a causal mask, every step kept.

    q [..., Tq, D], k [..., Tk, D], v [..., Tk, Dv]. Returns q, k, v, scores = q k^T * scale
    (default 1 / sqrt(D)), masked_scores, pattern = softmax(masked_scores) and
    z = pattern @ v [..., Tq, Dv], the head outputs.
    """
    scale = 1.0 / math.sqrt(q.size(-1)) if scale is None else scale
    scores = q @ k.transpose(-2, -1) * scale  # [..., Tq, Tk]
    masked_scores, pattern = causal_softmax(scores)
    return {
        "q": q,
        "k": k,
        "v": v,
        "scores": scores,
        "masked_scores": masked_scores,
        "pattern": pattern,
        "z": pattern @ v,  # [..., Tq, Dv]
    }
