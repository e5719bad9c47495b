"""The floor of a decode path set by the shape of its work, measured.

The roofline floor (`roofline.py`) assumes every FLOP runs at the rate of a large square
matrix product. GQA, MQA and absorbed MLA do their arithmetic in products of one fixed,
lopsided shape: a block of cached rows [c, d] times the queries that share them [d, rows]
(16 rows for GQA-8, 128 for MQA and absorbed MLA), then the weights [rows, c] times the
values [c, d_v]. BLAS may not reach the square rate on that shape (GQA's 16 columns are too
few to fill the matrix units), and no attention kernel built on those products can beat
the products alone. Between the two products, an exact softmax takes one exponential per
score (T x rows of them, in float32), on the same two cores. So the shape floor of a path
is measured: the best time of exactly its two products (all blocks of the context, no
softmax, no casts, nothing else), over block lengths and the two orientations of the score
product, and, where they build, the C kernels' own products with the softmax left
out (`native_kernels.shared_keys_attention(..., softmax=False)`): whichever is faster is
the best rate this machine has for that shape (`bench decode` times both beside the kernel
and takes the faster in each round). Plus one float32 exp pass over as many scores, alone
(torch's exp or the C kernels', the faster); plus for absorbed MLA the W_UK and W_UV reads
at the memory bandwidth. A path's floor is then max(roofline floor, shape
floor); `eff*` in the table is measured against it.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

import torch

from mla_core.bench import native_kernels
from mla_core.bench.decode_attention import BLOCK_CHOICES, shared_key_operands
from mla_core.bench.roofline import Roofline
from mla_core.bench.timer import WALL, Clock, time_calls

SHAPE_FLOOR_VARIANTS = ("gqa", "mqa", "mla_absorbed")


@dataclass(frozen=True)
class ShapeFloor:
    """A path's two products and the softmax's exponentials, each by every implementation
    this machine has ("torch", and "C" where the C kernels take the shape)."""

    products: dict[str, Callable[[], None]]  # run them again (to time them beside the kernel)
    products_s: float  # the best time of any of them in the search
    exps: dict[str, Callable[[], None]]  # one float32 exp per score, alone
    exps_s: float  # the best time of any of them
    weights_s: float  # W_UK and W_UV read at the roofline's bandwidth (absorbed MLA), else 0
    block: int  # tokens per block of torch's products, where they ran fastest
    keys_first: bool  # torch's scores as keys @ queries (else queries^T @ keys^T)

    def as_dict(
        self,
        products_s: float | None = None,
        exps_s: float | None = None,
        products_by: str | None = None,
        exps_by: str | None = None,
    ) -> dict:
        """JSON-ready; the arguments replace the search's times (e.g. medians of the rounds
        timed beside the kernel) and say whose products and exponentials they were."""
        products_s = self.products_s if products_s is None else products_s
        exps_s = self.exps_s if exps_s is None else exps_s
        return {
            "seconds": products_s + exps_s + self.weights_s,
            "products_s": products_s,
            "exps_s": exps_s,
            "weights_s": self.weights_s,
            "block": self.block,
            "keys_first": self.keys_first,
            "products_by": products_by,
            "exps_by": exps_by,
        }


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


def find_shape_floor(
    variant: str,
    args: tuple,
    roofline: Roofline,
    quick: bool = False,
    clock: Clock = WALL,
) -> ShapeFloor | None:
    """The shape floor of GQA, MQA or absorbed MLA (the kernel arguments of
    `decode.build_case`): their products timed over BLOCK_CHOICES and both orientations;
    None for the other variants (MHA and naive MLA are matrix-vector shaped and
    memory-bound: the roofline floor is theirs)."""
    if variant not in SHAPE_FLOOR_VARIANTS:
        return None
    queries_t, keys, values, rope_queries_t, rope_keys = shared_key_operands(variant, args)
    weights_bytes = 0
    if variant == "mla_absorbed":  # W_UK^T and W_UV, read once per step
        w_uk_t, w_uv = args[4:6]
        weights_bytes = (w_uk_t.numel() + w_uv.numel()) * w_uk_t.element_size()
    t, rows = keys.shape[-2], queries_t.shape[-1]
    best_run, best_s, best_block, best_keys_first = None, float("inf"), t, True
    for block in BLOCK_CHOICES:
        if block is not None and block >= t:
            continue  # the same as the whole context
        for keys_first in (True, False):
            run = _products(keys, values, queries_t, rope_keys, rope_queries_t, block, keys_first)
            seconds = _best_time(run, quick, clock)
            if seconds < best_s:
                best_run, best_s, best_block, best_keys_first = run, seconds, block or t, keys_first
    products = {"torch": best_run}
    native = (queries_t, keys, values, rope_queries_t, rope_keys)
    if native_kernels.available() and native_kernels.handles_shared_keys(*native):
        products["C"] = functools.partial(
            native_kernels.shared_keys_attention, *native, softmax=False
        )
        best_s = min(best_s, _best_time(products["C"], quick, clock))
    exps = _exponentials(keys.shape[:-2], t, rows)
    return ShapeFloor(
        products=products,
        products_s=best_s,
        exps=exps,
        exps_s=min(_best_time(run, quick, clock) for run in exps.values()),
        weights_s=weights_bytes / roofline.bandwidth,
        block=best_block,
        keys_first=best_keys_first,
    )


def _best_time(run: Callable[[], None], quick: bool, clock: Clock) -> float:
    return time_calls(
        run, 3, warmup=1, clock=clock, max_repeats=5 if quick else 9, stable_within=0.03
    ).best


def _exponentials(lead: tuple[int, ...], tokens: int, rows: int) -> dict[str, Callable[[], None]]:
    """One float32 exp per score of a whole step ([*lead, tokens, rows]), into a buffer made
    once: what an exact softmax must compute between the two products, whatever the kernel.
    By whom: torch's exp, and the C kernels' where they build."""
    scores = torch.randn(*lead, tokens, rows, generator=torch.Generator().manual_seed(0))
    out = torch.empty_like(scores)
    runs = {"torch": functools.partial(torch.exp, scores, out=out)}
    if native_kernels.available():
        runs["C"] = functools.partial(native_kernels.exp_into, scores, out)
    return runs
