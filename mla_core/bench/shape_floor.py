"""The floor of a decode path set by the shape of its matrix products, measured.

The roofline floor (`roofline.py`) assumes every FLOP runs at the rate of a large square
matrix product. GQA, MQA and absorbed MLA do their arithmetic in products of one fixed,
lopsided shape: a block of cached rows [c, d] times the queries that share them [d, rows]
(16 rows for GQA-8, 128 for MQA and absorbed MLA), then the weights [rows, c] times the
values [c, d_v]. BLAS may not reach the square rate on that shape (GQA's 16 columns are too
few to fill the matrix units), and no attention kernel built on those products can beat
the products alone. So the shape floor of a path is measured: the best time of exactly
its two products (all blocks of the context, no softmax, no casts, nothing else), over
block lengths and the two orientations of the score product, plus for absorbed MLA the
W_UK and W_UV reads at the memory bandwidth. A path's floor is then
max(roofline floor, shape floor); `eff*` in the table is measured against it.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from mla_core.bench.roofline import Roofline
from mla_core.bench.timer import WALL, Clock, time_calls

SHAPE_FLOOR_VARIANTS = ("gqa", "mqa", "mla_absorbed")
BLOCKS = (1024, 2048, 4096, None)  # None: the whole context as one block


def _products(
    keys: torch.Tensor,
    values: torch.Tensor,
    queries_t: torch.Tensor,
    rope_keys: torch.Tensor | None,
    rope_queries_t: torch.Tensor | None,
    block: int | None,
    keys_first: bool,
) -> Callable[[], None]:
    """The two products of every block: scores (keys @ queries or queries^T @ keys^T, plus
    the RoPE part) and weights @ values, with weights of the right shape made once."""
    t, rows = keys.shape[-2], queries_t.shape[-1]
    block = block or t
    weights_t = torch.ones(*keys.shape[:-2], rows, min(block, t), dtype=keys.dtype)
    queries = queries_t.transpose(-1, -2).contiguous()
    rope_queries = None if rope_queries_t is None else rope_queries_t.transpose(-1, -2).contiguous()

    def run() -> None:
        for start in range(0, t, block):
            tokens = slice(start, start + block)
            k, v = keys[..., tokens, :], values[..., tokens, :]
            if keys_first:
                torch.matmul(k, queries_t)
                if rope_keys is not None:
                    torch.matmul(rope_keys[..., tokens, :], rope_queries_t)
            else:
                torch.matmul(queries, k.transpose(-1, -2))
                if rope_keys is not None:
                    torch.matmul(rope_queries, rope_keys[..., tokens, :].transpose(-1, -2))
            torch.matmul(weights_t[..., : k.shape[-2]], v)

    return run


def shape_floor_seconds(
    variant: str,
    args: tuple,
    roofline: Roofline,
    quick: bool = False,
    clock: Clock = WALL,
) -> dict | None:
    """{"seconds", "products_s", "weights_s", "block"} for GQA, MQA and absorbed MLA (the
    kernel arguments of `decode.build_case`); None for the other variants (MHA and naive
    MLA are matrix-vector shaped and memory-bound: the roofline floor is theirs)."""
    if variant not in SHAPE_FLOOR_VARIANTS:
        return None
    weights_bytes = 0
    if variant in ("gqa", "mqa"):
        q, k_cache, v_cache, _ = args
        batch, n_heads, head_dim = q.shape
        groups = k_cache.shape[1]
        queries_t = q.view(batch, groups, n_heads // groups, head_dim).transpose(-1, -2)
        keys, values, rope_keys, rope_queries_t = k_cache, v_cache, None, None
    else:
        q_nope, q_rope, c_kv_cache, k_rope_cache, w_uk_t, w_uv, _ = args
        batch, n_heads = q_nope.shape[:2]
        # the query folded into latent space: [B, d_c, H] (values do not matter for the time)
        queries_t = torch.ones(batch, c_kv_cache.shape[-1], n_heads, dtype=q_nope.dtype)
        rope_queries_t = q_rope.transpose(-1, -2)
        keys = values = c_kv_cache
        rope_keys = k_rope_cache
        weights_bytes = (w_uk_t.numel() + w_uv.numel()) * w_uk_t.element_size()
    best, best_block = float("inf"), None
    for block in BLOCKS:
        if block is not None and block >= keys.shape[-2]:
            continue  # the same as the whole context
        for keys_first in (True, False):
            run = _products(keys, values, queries_t, rope_keys, rope_queries_t, block, keys_first)
            seconds = time_calls(
                run, 3, warmup=1, clock=clock, max_repeats=5 if quick else 9, stable_within=0.03
            ).best
            if seconds < best:
                best, best_block = seconds, block or keys.shape[-2]
    weights_seconds = weights_bytes / roofline.bandwidth
    return {
        "seconds": best + weights_seconds,
        "products_s": best,
        "weights_s": weights_seconds,
        "block": best_block,
    }
