"""One decode step of attention: one new token attends over a cache of T earlier tokens.

Generating a token reads the whole KV cache once, so a decode step is usually limited by
memory bandwidth, not arithmetic. The five kinds below differ only in what they cache
and therefore in how many bytes they read per step (`step_cost` counts them):

    MHA          every head reads its own keys and values        [B, H, T, d] (values blocked)
    GQA-g        groups of H/g heads share a key/value head      [B, g, T, d]
    MQA          all heads share one key/value head              [B, 1, T, d]
    MLA naive    per-head keys (nope + rope) and values, expanded from the latent and cached
    MLA absorbed only the latent c_KV and the shared RoPE key are cached  [B, T, d_c], [B, T, d_R]

Every function takes the new token's queries (already projected, RoPE applied) and returns
the per-head attention output o [B, H, d_v], before the output projection W_O. Softmax runs
in float32 whatever the cache dtype.

Layout and kernel choices, measured on a 2-core AMD EPYC (Zen 4) with plain torch:
- Heads-major caches [B, H, T, d]: each head's keys are one contiguous [T, d] block, so the
  scores of a head are one matrix-vector product over memory read front to back.
- MHA and naive MLA are matrix-vector shaped (one query row per key head). Eager torch sends
  them to BLAS: float32 bmm to MKL's gemv, bfloat16 bmm to oneDNN's brgemm matmul with a
  single column; on this AMD CPU both read the cache at 4-7 GB/s per core, a quarter of the
  bandwidth. Written as a product and a sum (`_fused_dot_over_last`, `_fused_weighted_sum`),
  `torch.compile` turns them into loops that stream the cache at close to full bandwidth;
  the benchmark switches them on with `use_compiled_matvec()`. Off (the default, the tests,
  `--no-compile`), the same products are matmuls: correct, but slow on this CPU.
- The weighted sum over tokens, sum_t p_t v_t, reduces over T, not over the contiguous d:
  compiled on a [T, d] cache it walks each head's values d / 16 times with a stride and
  reaches a third of the bandwidth. So MHA and naive MLA keep values in blocks of 128 tokens
  stored transposed (`value_blocks`: [B, H, T / 128, d, 128]), where it is short contiguous
  dot products again.
- GQA, MQA and absorbed MLA share each key row between many query rows (16, 128, 128), so
  they are matrix-matrix products: plain matmul, where BLAS is fast, on [B, G, T, d] caches,
  block by block over T for MQA and MLA (`_attend_shared_keys`). In bfloat16 the scores are
  rounded to bfloat16 by the matmul before the float32 softmax. Eagerly, the max, the
  exponentials, the sum and the cast between the two products are five passes over the
  scores; compiled (`use_compiled_matvec`), each block is one graph in which they fuse.
- On a CPU with AVX-512 BF16, with `use_compiled_matvec` on, every kind's whole step runs in
  one pass of C instead (`native_kernels`, float32 and bfloat16): the torch passes above
  write every intermediate to memory and, in bfloat16, leave a third of the machine unused.
  MHA and naive MLA stream each head's keys, softmax and values (0.93-0.99 of the speed at
  which the same bytes can be read); GQA, MQA and absorbed MLA run flash-decoding with both
  products as register tiles (bfloat16: 300-340 GFLOP/s with 128 query rows, 1.3-2.5x
  faster than the torch passes; float32: 1.3-1.7x).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from mla_core.analysis.cache_size import CacheDims, elements_per_token_per_layer
from mla_core.bench import native_kernels
from mla_core.errors import UserError
from mla_core.models.configs import DeepSeekConfig, builtin_config

VARIANTS = ("mha", "gqa", "mqa", "mla_naive", "mla_absorbed")
VARIANT_LABELS = {
    "mha": "MHA",
    "gqa": "GQA",
    "mqa": "MQA",
    "mla_naive": "MLA naive",
    "mla_absorbed": "MLA absorbed",
}
# what each variant caches, in `analysis.cache_size`'s names (absorbed MLA caches the latent)
CACHE_KINDS = {
    "mha": "mha",
    "gqa": "gqa",
    "mqa": "mqa",
    "mla_naive": "mla_naive",
    "mla_absorbed": "mla",
}


@dataclass(frozen=True)
class DecodeDims:
    """The widths of one attention layer that decide a decode step's cost."""

    n_heads: int = 128  # H
    head_dim: int = 128  # d: key/value width per head for MHA, GQA and MQA
    gqa_groups: int = 8  # g: key/value heads of GQA
    kv_lora_rank: int = 512  # d_c: the MLA latent
    qk_nope_head_dim: int = 128  # per-head key width expanded from the latent
    qk_rope_head_dim: int = 64  # d_R: the decoupled RoPE key, shared by all heads
    v_head_dim: int = 128  # per-head value width expanded from the latent

    @property
    def qk_head_dim(self) -> int:
        return self.qk_nope_head_dim + self.qk_rope_head_dim

    @property
    def cache_dims(self) -> CacheDims:
        """The same layer as `analysis.cache_size` describes it (one layer; GQA's groups as
        its key/value heads): what each variant caches is counted there, once."""
        return CacheDims(
            name="decode layer",
            n_layers=1,
            n_heads=self.n_heads,
            head_dim=self.head_dim,
            n_kv_heads=self.gqa_groups,
            kv_lora_rank=self.kv_lora_rank,
            qk_rope_head_dim=self.qk_rope_head_dim,
            qk_head_dim=self.qk_head_dim,
            v_head_dim=self.v_head_dim,
        )

    def cached_per_token(self, variant: str) -> int:
        """Numbers one token leaves in the cache of this layer (`cache_size`'s count)."""
        kind = CACHE_KINDS.get(variant)
        if kind is None:
            raise UserError(f"unknown variant {variant!r}; allowed: {', '.join(VARIANTS)}")
        return elements_per_token_per_layer(self.cache_dims, kind)

    @property
    def latent_cache_dim(self) -> int:
        """Numbers absorbed MLA caches per token: c_KV and k_R side by side (V3: 576)."""
        return self.cached_per_token("mla_absorbed")

    def kv_heads(self, variant: str) -> int:
        """Key/value heads of the MHA family (MHA: H, GQA: g, MQA: 1)."""
        return {"mha": self.n_heads, "gqa": self.gqa_groups, "mqa": 1}[variant]


def dims_from_deepseek(config: DeepSeekConfig, gqa_groups: int = 8) -> DecodeDims:
    """Decode dims of a DeepSeek config; MHA/GQA/MQA use head width v_head_dim (V3: 128)."""
    return DecodeDims(
        n_heads=config.n_heads,
        head_dim=config.v_head_dim,
        gqa_groups=gqa_groups,
        kv_lora_rank=config.kv_lora_rank,
        qk_nope_head_dim=config.qk_nope_head_dim,
        qk_rope_head_dim=config.qk_rope_head_dim,
        v_head_dim=config.v_head_dim,
    )


def v3_dims() -> DecodeDims:
    """DeepSeek-V3 attention: 128 heads of 128, latent 512, RoPE key 64, GQA with 8 groups."""
    config = builtin_config("deepseek-v3")
    assert isinstance(config, DeepSeekConfig)
    return dims_from_deepseek(config)


# --- what a step must read and compute -------------------------------------------------


@dataclass(frozen=True)
class StepCost:
    """Bytes one decode step must read from memory and the FLOPs it must do."""

    bytes_read: int
    flops: int


def step_cost(
    variant: str, dims: DecodeDims, context: int, batch: int = 1, dtype_bytes: int = 2
) -> StepCost:
    """Count the bytes and FLOPs of one decode step from the shapes alone.

    Bytes: the cache (every cached number read once), plus for absorbed MLA the weights
    W_UK and W_UV that fold the query into latent space and unfold the output (read once
    per step, whatever the batch). Queries and outputs are a few KB and left out.
    FLOPs: 2 per multiply-add of the two products q.k and p.v (plus the fold and unfold
    for absorbed MLA); the softmax (a few per score) is left out.
    """
    h, t, b = dims.n_heads, context, batch
    cached_per_token = dims.cached_per_token(variant)  # UserError for an unknown variant
    weight_numbers, weight_flops = 0, 0
    if variant in ("mha", "gqa", "mqa"):
        flops_per_token = 2 * h * dims.head_dim * 2
    elif variant == "mla_naive":
        flops_per_token = 2 * h * (dims.qk_head_dim + dims.v_head_dim)
    else:  # mla_absorbed
        flops_per_token = 2 * h * (dims.latent_cache_dim + dims.kv_lora_rank)
        weight_numbers = h * (dims.qk_nope_head_dim + dims.v_head_dim) * dims.kv_lora_rank
        weight_flops = 2 * weight_numbers * b
    bytes_read = (cached_per_token * t * b + weight_numbers) * dtype_bytes
    return StepCost(bytes_read=bytes_read, flops=flops_per_token * t * b + weight_flops)


# --- the kernels ---------------------------------------------------------------------


def _wide(x: torch.Tensor) -> torch.Tensor:
    """x in float32, or float64 if it already is (softmax and sums never run in bf16)."""
    return x.to(torch.promote_types(x.dtype, torch.float32))


VALUE_BLOCK = 128  # tokens per block of the transposed value cache (see `value_blocks`)


def value_blocks(values: torch.Tensor, block: int = VALUE_BLOCK) -> torch.Tensor:
    """A value cache [..., T, d] in the layout MHA and naive MLA read: [..., n_blocks, d, block].

    Tokens are grouped in blocks of `block`, and each block is stored transposed (d rows of
    `block` tokens), so the weighted sum over tokens becomes short contiguous dot products,
    the access pattern that streams at full bandwidth. The last block is zero-padded.
    Appending a token writes d numbers with stride `block` inside one block.
    """
    *lead, t, d = values.shape
    n_blocks = -(-t // block)
    padded = values.new_zeros(*lead, n_blocks * block, d)
    padded[..., :t, :] = values
    return padded.view(*lead, n_blocks, block, d).transpose(-1, -2).contiguous()


def _fused_dot_over_last(keys: torch.Tensor, query: torch.Tensor) -> torch.Tensor:
    # keys [N, T, d], query [N, d] -> [N, T]
    return (_wide(keys) * _wide(query).unsqueeze(-2)).sum(-1)


def _fused_weighted_sum(weights: torch.Tensor, v_blocks: torch.Tensor) -> torch.Tensor:
    # weights [N, n_blocks * c], v_blocks [N, n_blocks, d, c] -> [N, d]
    n, n_blocks, _, c = v_blocks.shape
    per_block = (weights.view(n, n_blocks, 1, c) * _wide(v_blocks)).sum(-1)  # [N, n_blocks, d]
    return per_block.sum(-2)


_compiled_matvec: dict[str, object] = {}  # filled by use_compiled_matvec(True)


def use_compiled_matvec(enabled: bool = True) -> None:
    """Run the matrix-vector products as torch.compile'd fused loops, and the blocks of the
    shared-key kinds as one compiled graph each.

    They are MHA's and naive MLA's products with the cache, and absorbed MLA's fold and
    unfold with W_UK and W_UV. Off (the default), they are matmuls: BLAS gemv. On,
    `_fused_dot_over_last`, `_fused_weighted_sum` and `_fused_per_head_matvec` (products and
    sums, which compile into streaming passes) replace them. GQA, MQA and absorbed MLA run
    each block through a compiled `_shared_keys_block`: the products stay BLAS calls, the
    softmax pieces between them fuse. All are compiled once per dtype, with dynamic sizes.
    Where `native_kernels` builds (AVX-512 BF16), the steps run in its C kernels instead, each
    kind in one pass (`native_kernel_takes` says which cases: float32 and bfloat16 on the CPU
    at the widths those kernels take).
    """
    _compiled_matvec.clear()
    if enabled:
        _compiled_matvec["dot"] = torch.compile(_fused_dot_over_last, dynamic=True)
        _compiled_matvec["weighted_sum"] = torch.compile(_fused_weighted_sum, dynamic=True)
        _compiled_matvec["per_head"] = torch.compile(_fused_per_head_matvec, dynamic=True)
        # one compiled graph per call pattern: with and without the RoPE scores (absorbed MLA
        # and GQA/MQA); each compiles again per dtype and for batch or heads of size 1
        _compiled_matvec["shared_block"] = torch.compile(_shared_keys_block, dynamic=True)
        _compiled_matvec["shared_block_rope"] = torch.compile(_shared_keys_block_rope, dynamic=True)
        torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, 64)
        # on a CPU with AVX-512 BF16: the whole attention in C
        _compiled_matvec["native"] = native_kernels.available()


def native_kernel_takes(variant: str, args: tuple) -> bool:
    """Whether the C kernels run this case now: the kernel arguments of `decode.build_case`
    (with `use_compiled_matvec` on and the kernels built)."""
    if not _compiled_matvec.get("native"):
        return False
    if variant in ("mha", "mla_naive"):  # (..., k_cache, v_blocks, scale)
        keys, v_blocks = args[-3], args[-2]
        return native_kernels.handles_attention(keys, keys[..., 0, :], v_blocks)
    return native_kernels.handles_shared_keys(*shared_key_operands(variant, args))


def _dot_over_last(keys: torch.Tensor, query: torch.Tensor) -> torch.Tensor:
    """scores[..., t] = keys[..., t, :] . query[..., :], in float32 (or float64).

    keys [..., T, d], query [..., d] -> [..., T].
    """
    fused = _compiled_matvec.get("dot")
    if fused is None:
        return _wide(torch.matmul(keys, query.unsqueeze(-1)).squeeze(-1))
    *lead, t, d = keys.shape  # batch and heads flattened: one compiled graph for every batch
    return fused(keys.reshape(-1, t, d), query.reshape(-1, d)).view(*lead, t)


def _weighted_sum_over_tokens(weights: torch.Tensor, v_blocks: torch.Tensor) -> torch.Tensor:
    """out[..., :] = sum_t weights[..., t] * values[..., t, :], in float32 (or float64).

    weights [..., T] float32 (or float64), v_blocks [..., n_blocks, d, c] (`value_blocks`)
    -> [..., d]. The padded tail of the last block gets weight 0.
    """
    *lead, n_blocks, d, c = v_blocks.shape
    weights = torch.nn.functional.pad(weights, (0, n_blocks * c - weights.shape[-1]))
    fused = _compiled_matvec.get("weighted_sum")
    if fused is None:
        w = weights.to(v_blocks.dtype).view(*lead, n_blocks, c, 1)
        return _wide(torch.matmul(v_blocks, w).squeeze(-1)).sum(-2)  # block by block
    flat = fused(weights.reshape(-1, n_blocks * c), v_blocks.reshape(-1, n_blocks, d, c))
    return flat.view(*lead, d)


def _attend_own_keys(
    keys: torch.Tensor, query: torch.Tensor, v_blocks: torch.Tensor
) -> torch.Tensor:
    """softmax(keys . query) . values for one query row per key head, in float32 (or float64):
    keys [..., T, d], query [..., d] (scaled), v_blocks [..., n_blocks, d_v, c] -> [..., d_v].
    With the C kernels on (`use_compiled_matvec`), one pass per head in C."""
    if _compiled_matvec.get("native") and native_kernels.handles_attention(keys, query, v_blocks):
        *lead, t, d = keys.shape
        out = native_kernels.attention(
            keys.reshape(-1, t, d), query.reshape(-1, d), v_blocks.flatten(0, -4)
        )
        return out.view(*lead, -1)
    weights = torch.softmax(_dot_over_last(keys, query), dim=-1)  # [..., T]
    return _weighted_sum_over_tokens(weights, v_blocks)


def mha_decode(
    q: torch.Tensor, k_cache: torch.Tensor, v_blocks: torch.Tensor, scale: float
) -> torch.Tensor:
    """MHA: every head attends over its own cache, a matrix-vector product per head.

    q [B, H, d]; k_cache [B, H, T, d]; v_blocks [B, H, n_blocks, d, c] (`value_blocks` of the
    [B, H, T, d] values). Returns o [B, H, d] in q's dtype.
    """
    return _attend_own_keys(k_cache, q * scale, v_blocks).to(q.dtype)


def gqa_decode(
    q: torch.Tensor,
    k_cache: torch.Tensor,
    v_cache: torch.Tensor,
    scale: float,
    block: int | None = None,
) -> torch.Tensor:
    """GQA (and MQA, G = 1): q [B, H, d]; k_cache, v_cache [B, G, T, d] with G dividing H.

    Query head i uses key/value head i // (H / G). The H / G queries of a group are the rows
    of one matrix product with the group's keys. `block`: tokens per block of
    `_attend_shared_keys` (default: its rule). Returns o [B, H, d].
    """
    batch, n_heads, head_dim = q.shape
    queries_t = _grouped_queries_t(q, k_cache.shape[1], scale)  # [B, G, d, H/G]
    out = _attend_shared_keys(queries_t, k_cache, v_cache, block=block)  # [B, G, H/G, d]
    return out.reshape(batch, n_heads, head_dim).to(q.dtype)


def _grouped_queries_t(q: torch.Tensor, kv_heads: int, scale: float) -> torch.Tensor:
    """GQA's queries as `_attend_shared_keys` takes them: q [B, H, d] scaled and grouped by
    key/value head, one column per query row: [B, G, d, H / G]."""
    batch, n_heads, head_dim = q.shape
    q_grouped = (q * scale).view(batch, kv_heads, n_heads // kv_heads, head_dim)
    return q_grouped.transpose(-1, -2)


SHARED_KEYS_BLOCK = 2048  # tokens per block of `_attend_shared_keys`, by default
BLOCKWISE_MIN_ROWS = 64  # query rows per key row from which blocks pay off (MQA, MLA: 128)
# The block lengths `bench decode` tries per case (None: the whole context as one block);
# the shape floor searches the same ones.
BLOCK_CHOICES = (1024, 2048, 4096, None)


def _attend_shared_keys(
    queries_t: torch.Tensor,
    keys: torch.Tensor,
    values: torch.Tensor,
    rope_queries_t: torch.Tensor | None = None,
    rope_keys: torch.Tensor | None = None,
    block: int | None = None,
) -> torch.Tensor:
    """Attention of many query rows over the same keys: queries_t [..., d_k, rows] (already
    scaled), keys [..., T, d_k], values [..., T, d_v] -> [..., rows, d_v] in float32.

    Optional rope_queries_t [..., d_R, rows] and rope_keys [..., T, d_R] add their scores
    (absorbed MLA's decoupled RoPE part, kept apart so that the latent stays contiguous).
    Scores are computed as keys @ queries ([T, d_k] x [d_k, rows], one column of scores per
    query row): with T as the long side this product runs faster than queries^T @ keys^T on
    this CPU (bfloat16 up to 1.8x). With many rows (MQA, absorbed MLA: 128) the scores of a
    whole cache are megabytes, so they are made block by block (flash-decoding): per block
    of SHARED_KEYS_BLOCK tokens, scores, a running max and sum for the softmax, and the
    weighted values, so the scores stay in cache. GQA's 16 rows make products too small for
    that to pay: it does the whole context at once. Which block is fastest depends on the
    shape, the dtype and the machine (MQA in one 8k block beat 2k blocks by 1.6-2x here), so
    `block` can name it (`bench decode` times BLOCK_CHOICES per case and keeps the fastest);
    the default is the rule above.
    """
    if _compiled_matvec.get("native") and native_kernels.handles_shared_keys(
        queries_t, keys, values, rope_queries_t, rope_keys
    ):  # the C kernels on: their own blocks, `block` does not apply
        return native_kernels.shared_keys_attention(
            queries_t, keys, values, rope_queries_t, rope_keys
        )
    t, rows = keys.shape[-2], queries_t.shape[-1]
    if block is None:
        block = SHARED_KEYS_BLOCK if rows >= BLOCKWISE_MIN_ROWS else t
    if rope_keys is None:
        one_block = _compiled_matvec.get("shared_block", _shared_keys_block)
    else:
        one_block = _compiled_matvec.get("shared_block_rope", _shared_keys_block_rope)
    running_max = running_sum = out = None
    for start in range(0, t, block):
        tokens = slice(start, start + block)
        block_out, block_max, block_sum = one_block(
            queries_t,
            keys[..., tokens, :],
            values[..., tokens, :],
            rope_queries_t,
            None if rope_keys is None else rope_keys[..., tokens, :],
        )
        if running_max is None:
            running_max, running_sum, out = block_max, block_sum, block_out
            continue
        new_max = torch.maximum(running_max, block_max)
        old_scale, new_scale = torch.exp(running_max - new_max), torch.exp(block_max - new_max)
        running_sum = running_sum * old_scale + block_sum * new_scale
        out = out * old_scale.transpose(-1, -2) + block_out * new_scale.transpose(-1, -2)
        running_max = new_max
    return out / running_sum.transpose(-1, -2)


def _shared_keys_block_rope(*args: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """`_shared_keys_block` with RoPE scores: its own function, so its own compiled graphs."""
    return _shared_keys_block(*args)


def _shared_keys_block(
    queries_t: torch.Tensor,
    keys: torch.Tensor,
    values: torch.Tensor,
    rope_queries_t: torch.Tensor | None,
    rope_keys: torch.Tensor | None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One block of `_attend_shared_keys`: (unnormalised out [..., rows, d_v], score max
    [..., 1, rows], sum of exp(score - max) [..., 1, rows]), all float32 (or float64).

    Compiled (`use_compiled_matvec`), the two products stay BLAS calls and the max, the
    exponentials, the sum and the cast-and-transpose between them become one or two loops
    over the block's scores instead of five passes.
    """
    scores = torch.matmul(keys, queries_t)  # [..., c, rows]
    if rope_keys is not None:
        scores = scores + torch.matmul(rope_keys, rope_queries_t)
    scores = _wide(scores)
    block_max = scores.amax(dim=-2, keepdim=True)  # [..., 1, rows]
    weights = torch.exp(scores - block_max)  # unnormalised softmax of this block
    # [rows, c] in the values' dtype, cast and transposed in one pass
    weights_t = weights.transpose(-1, -2).to(values.dtype, memory_format=torch.contiguous_format)
    block_out = _wide(torch.matmul(weights_t, values))  # [..., rows, d_v]
    return block_out, block_max, weights.sum(dim=-2, keepdim=True)


def mla_naive_decode(
    q_nope: torch.Tensor,
    q_rope: torch.Tensor,
    k_cache: torch.Tensor,
    v_blocks: torch.Tensor,
    scale: float,
) -> torch.Tensor:
    """MLA with expanded caches: every head's key [k_C ; k_R] and value v_C are cached.

    q_nope [B, H, d_nope], q_rope [B, H, d_R]; k_cache [B, H, T, d_nope + d_R] (k_C = W_UK c_KV
    beside the shared k_R, copied per head); v_blocks: `value_blocks` of v_C = W_UV c_KV
    [B, H, T, d_v]. The same kernel as MHA with wider keys. Returns o [B, H, d_v].
    """
    q = torch.cat([q_nope, q_rope], dim=-1) * scale  # [B, H, d_nope + d_R]
    return _attend_own_keys(k_cache, q, v_blocks).to(q.dtype)


def mla_absorbed_decode(
    q_nope: torch.Tensor,
    q_rope: torch.Tensor,
    c_kv_cache: torch.Tensor,
    k_rope_cache: torch.Tensor,
    w_uk_t: torch.Tensor,
    w_uv: torch.Tensor,
    scale: float,
    block: int | None = None,
) -> torch.Tensor:
    """MLA attending directly over the cached latents (W_UK and W_UV absorbed).

    q_nope [B, H, d_nope], q_rope [B, H, d_R]; c_kv_cache [B, T, d_c] and k_rope_cache
    [B, T, d_R] are the 576 numbers per token (two arrays, so each is contiguous for the
    matrix products); w_uk_t [H, d_c, d_nope] is W_UK^T per head (stored transposed once, so
    folding the query is a product over contiguous rows); w_uv [H, d_v, d_c]. Since
    q_nope . (W_UK c_KV) = (W_UK^T q_nope) . c_KV, the query is folded into latent space once,
    and every head then scores the same cached rows: one matrix product for all heads, with
    the latent as both key and value. `block`: as in `gqa_decode`. Returns o [B, H, d_v].
    """
    latent_t, rope_t = _latent_queries_t(q_nope, q_rope, w_uk_t, scale)
    out_latent = _attend_shared_keys(
        latent_t, c_kv_cache, c_kv_cache, rope_t, k_rope_cache, block=block
    )  # [B, H, d_c]
    return _per_head_matvec(w_uv, out_latent.to(q_nope.dtype)).to(q_nope.dtype)  # [B, H, d_v]


def _latent_queries_t(
    q_nope: torch.Tensor, q_rope: torch.Tensor, w_uk_t: torch.Tensor, scale: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Absorbed MLA's queries as `_attend_shared_keys` takes them, one column per head: the
    query folded into latent space, W_UK^T q_nope, [B, d_c, H], and the RoPE query [B, d_R, H],
    both scaled."""
    q_latent = _per_head_matvec(w_uk_t, q_nope).to(q_nope.dtype) * scale  # [B, H, d_c]
    return q_latent.transpose(-1, -2), (q_rope * scale).transpose(-1, -2)


def shared_key_operands(variant: str, args: tuple) -> tuple:
    """What GQA, MQA and absorbed MLA hand to their attention over shared keys, from their
    kernel arguments (`decode.build_case`): (queries_t, keys, values, rope_queries_t,
    rope_keys), as `_attend_shared_keys` takes them."""
    if variant in ("gqa", "mqa"):
        q, k_cache, v_cache, scale = args
        return _grouped_queries_t(q, k_cache.shape[1], scale), k_cache, v_cache, None, None
    if variant == "mla_absorbed":
        q_nope, q_rope, c_kv_cache, k_rope_cache, w_uk_t, _, scale = args
        latent_t, rope_t = _latent_queries_t(q_nope, q_rope, w_uk_t, scale)
        return latent_t, c_kv_cache, c_kv_cache, rope_t, k_rope_cache
    raise ValueError(f"{variant!r} does not attend over shared keys")


def _per_head_matvec(weights: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """out[b, h] = weights[h] @ x[b, h]: weights [H, out, in], x [B, H, in] -> [B, H, out].

    For a small batch this is a matrix-vector product per head (slow through BLAS on this
    CPU, see the module notes); compiled, each head's matrix is read once for all B vectors.
    """
    fused = _compiled_matvec.get("per_head")
    if fused is None:
        return torch.einsum("hoi,bhi->bho", weights, x)
    return fused(weights, x.transpose(0, 1)).transpose(0, 1)


def _fused_per_head_matvec(weights: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    # weights [H, out, in], x [H, B, in] -> [H, B, out]
    return (_wide(weights).unsqueeze(1) * _wide(x).unsqueeze(2)).sum(-1)


def expand_latent_cache(
    c_kv_cache: torch.Tensor, k_rope_cache: torch.Tensor, w_uk: torch.Tensor, w_uv: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """The naive MLA caches expanded from the latent one: c_kv_cache [B, T, d_c], k_rope_cache
    [B, T, d_R], w_uk [H, d_nope, d_c], w_uv [H, d_v, d_c].

    Returns k [B, H, T, d_nope + d_R] and v [B, H, T, d_v] (for `mla_naive_decode`, pass
    `value_blocks(v)`).
    """
    k_nope = torch.einsum("btc,hnc->bhtn", c_kv_cache, w_uk)
    n_heads, t = w_uk.shape[0], c_kv_cache.shape[1]
    k_rope_per_head = k_rope_cache.unsqueeze(1).expand(-1, n_heads, t, -1)
    v = torch.einsum("btc,hvc->bhtv", c_kv_cache, w_uv)
    return torch.cat([k_nope, k_rope_per_head], dim=-1).contiguous(), v.contiguous()
