"""Multi-head Latent Attention (MLA), as DeepSeek-V2/V3 built it, with both ways to run it.

Names follow the DeepSeek-V2 paper (arXiv 2405.04434, eqs. 9-19) and the reference
inference code (deepseek-ai/DeepSeek-V3 `inference/model.py`). For a token's hidden state h:

    c_Q   = RMSNorm(W_DQ h)                      (d'_c)   optional query compression
    q     = W_UQ c_Q   (or W_Q h without it)     per head: [q_nope (d_nope) ; q_rope (d_R)]
    [c_KV ; k_rope_in] = W_DKV h                 (d_c + d_R)
    c_KV  = RMSNorm(c_KV)                        the latent that is CACHED
    k_rope = RoPE(k_rope_in)                     ONE RoPE key shared by all heads, cached too
    per head i:  k_nope_i = W_UK_i c_KV,  v_i = W_UV_i c_KV      (wkv_b = [W_UK ; W_UV])
    score_i(s, t) = (q_nope_i(s) . k_nope_i(t) + RoPE(q_rope_i(s)) . k_rope(t)) * scale
    u     = W_O [sum_t softmax(score_i) v_i(t)]_i

Two paths compute the same u:
- naive: expand every cached latent into per-head keys and values, then ordinary attention;
- absorbed: q_nope_i . (W_UK_i c_KV) = (W_UK_i^T q_nope_i) . c_KV, so W_UK is folded into
  the query ("q_latent", einsum "bshd,hdc->bshc") and the scores are taken against the
  cached latents directly; the weighted sum of latents is expanded by W_UV afterwards.

`W_DKV` here is the reference code's `wkv_a`: its first d_c output rows are the paper's
W_DKV, its last d_R rows are W_KR (the RoPE key's projection). `W_UQ` likewise holds the
paper's W_UQ and W_QR row blocks, interleaved per head.

Softmax runs in float32 (float64 when the model runs in float64); RoPE pairs are
interleaved (see `mla_core.models.rope`).
"""

from __future__ import annotations

import torch
from torch import nn

from mla_core.errors import UserError
from mla_core.models.attention import causal_softmax
from mla_core.models.configs import DeepSeekConfig
from mla_core.models.kv_cache import LayerCache
from mla_core.models.rope import apply_rope, rope_angles, softmax_scale


class RMSNorm(nn.Module):
    """x / rms(x) * weight, computed in at least float32."""

    def __init__(self, dim: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        work = x.to(torch.promote_types(x.dtype, torch.float32))
        work = work * torch.rsqrt(work.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * work.to(x.dtype)


class LatentCache(LayerCache):
    """What MLA keeps per token and layer: the latent c_KV (batch, tokens, d_c) and the RoPE
    key k_rope (batch, tokens, d_R).

    Nothing else: no per-head keys or values. `nbytes` measures the stored tensors, to be
    compared with the cache formula (d_c + d_R) * layers * bytes per number.
    """

    stored = ("c_kv", "k_rope")
    token_axis = 1

    def append(
        self, layer: int, c_kv: torch.Tensor, k_rope: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Add new tokens' entries to `layer`; return the layer's whole cache."""
        return self._append(layer, c_kv, k_rope)


class MultiHeadLatentAttention(nn.Module):
    """One MLA layer. `absorb` picks the path (False: naive, True: absorbed)."""

    def __init__(self, config: DeepSeekConfig, layer_index: int = 0, absorb: bool = False):
        super().__init__()
        self.config = config
        self.layer_index = layer_index
        self.absorb = absorb
        self.n_heads = config.n_heads
        self.d_nope, self.d_rope, self.d_v = (
            config.qk_nope_head_dim,
            config.qk_rope_head_dim,
            config.v_head_dim,
        )
        self.d_c = config.kv_lora_rank
        self.scale = softmax_scale(config)
        q_width = self.n_heads * config.qk_head_dim
        if config.q_lora_rank is None:
            self.w_q = nn.Linear(config.hidden_size, q_width, bias=False)
        else:
            self.w_dq = nn.Linear(config.hidden_size, config.q_lora_rank, bias=False)
            self.q_norm = RMSNorm(config.q_lora_rank, config.rms_norm_eps)
            self.w_uq = nn.Linear(config.q_lora_rank, q_width, bias=False)
        self.w_dkv = nn.Linear(config.hidden_size, self.d_c + self.d_rope, bias=False)
        self.kv_norm = RMSNorm(self.d_c, config.rms_norm_eps)
        self.wkv_b = nn.Linear(self.d_c, self.n_heads * (self.d_nope + self.d_v), bias=False)
        self.w_o = nn.Linear(self.n_heads * self.d_v, config.hidden_size, bias=False)

    @property
    def cache_numbers_per_token(self) -> int:
        """Numbers the latent cache keeps per token for this layer: c_KV and k_rope."""
        return self.d_c + self.d_rope

    # --- the up-projections, viewed per head ------------------------------------------

    @property
    def w_uk(self) -> torch.Tensor:
        """W_UK: (heads, d_nope, d_c), the first d_nope rows of each head's block of wkv_b."""
        return self.wkv_b.weight.view(self.n_heads, self.d_nope + self.d_v, self.d_c)[
            :, : self.d_nope
        ]

    @property
    def w_uv(self) -> torch.Tensor:
        """W_UV: (heads, d_v, d_c), the last d_v rows of each head's block of wkv_b."""
        return self.wkv_b.weight.view(self.n_heads, self.d_nope + self.d_v, self.d_c)[
            :, self.d_nope :
        ]

    # --- the pieces of a forward pass ---------------------------------------------------

    def queries(self, h: torch.Tensor, angles: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """q_nope (b, s, heads, d_nope) and the rotated q_rope (b, s, heads, d_R)."""
        if self.config.q_lora_rank is None:
            q = self.w_q(h)
        else:
            q = self.w_uq(self.q_norm(self.w_dq(h)))
        q = q.unflatten(-1, (self.n_heads, self.d_nope + self.d_rope))
        q_nope, q_rope = q.split([self.d_nope, self.d_rope], dim=-1)
        return q_nope, apply_rope(q_rope, angles)

    def latents(self, h: torch.Tensor, angles: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """What is cached for each token: c_kv (b, s, d_c) and the rotated k_rope (b, s, d_R)."""
        c_kv, k_rope = self.w_dkv(h).split([self.d_c, self.d_rope], dim=-1)
        return self.kv_norm(c_kv), apply_rope(k_rope, angles)

    def expand_kv(self, c_kv: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Naive path: per-head k_nope (b, t, heads, d_nope) and v (b, t, heads, d_v)."""
        kv = self.wkv_b(c_kv).unflatten(-1, (self.n_heads, self.d_nope + self.d_v))
        k_nope, v = kv.split([self.d_nope, self.d_v], dim=-1)
        return k_nope, v

    def absorb_query(self, q_nope: torch.Tensor) -> torch.Tensor:
        """Absorbed path: q_latent = W_UK^T q_nope per head, (b, s, heads, d_c)."""
        return torch.einsum("bshd,hdc->bshc", q_nope, self.w_uk)

    def naive_scores(
        self,
        q_nope: torch.Tensor,
        q_rope: torch.Tensor,
        k_nope: torch.Tensor,
        k_rope: torch.Tensor,
    ) -> torch.Tensor:
        """Scaled scores (b, s, heads, t) from expanded keys; k_rope is shared by all heads."""
        content = torch.einsum("bshd,bthd->bsht", q_nope, k_nope)
        position = torch.einsum("bshr,btr->bsht", q_rope, k_rope)
        return (content + position) * self.scale

    def absorbed_scores(
        self,
        q_latent: torch.Tensor,
        q_rope: torch.Tensor,
        c_kv: torch.Tensor,
        k_rope: torch.Tensor,
    ) -> torch.Tensor:
        """Scaled scores (b, s, heads, t) straight from the cached latents."""
        content = torch.einsum("bshc,btc->bsht", q_latent, c_kv)
        position = torch.einsum("bshr,btr->bsht", q_rope, k_rope)
        return (content + position) * self.scale

    def forward(
        self,
        h: torch.Tensor,
        cache: LatentCache | None = None,
        absorb: bool | None = None,
    ) -> torch.Tensor:
        """h (batch, new tokens, hidden) -> (batch, new tokens, hidden).

        With a cache, the new tokens follow the cached ones (positions continue) and their
        latents are appended to it; without one, h is the whole sequence.
        """
        absorb = self.absorb if absorb is None else absorb
        if h.dim() != 3 or h.shape[-1] != self.config.hidden_size:
            raise UserError(
                f"MLA input has shape {tuple(h.shape)}; expected (batch, tokens, "
                f"{self.config.hidden_size})"
            )
        n_new = h.shape[1]
        start = cache.length(self.layer_index) if cache is not None else 0
        angles = rope_angles(self.config, torch.arange(start, start + n_new, device=h.device))
        angles = angles.to(h.device)
        q_nope, q_rope = self.queries(h, angles)
        c_kv, k_rope = self.latents(h, angles)
        if cache is not None:
            c_kv, k_rope = cache.append(self.layer_index, c_kv, k_rope)

        if absorb:
            q_latent = self.absorb_query(q_nope)
            scores = self.absorbed_scores(q_latent, q_rope, c_kv, k_rope)
            probs = causal_softmax(scores, query_axis=-3)[1].to(h.dtype)  # (b, s, h, t)
            o_latent = torch.einsum("bsht,btc->bshc", probs, c_kv)
            out = torch.einsum("bshc,hdc->bshd", o_latent, self.w_uv)
        else:
            k_nope, v = self.expand_kv(c_kv)
            scores = self.naive_scores(q_nope, q_rope, k_nope, k_rope)
            probs = causal_softmax(scores, query_axis=-3)[1].to(h.dtype)
            out = torch.einsum("bsht,bthd->bshd", probs, v)
        return self.w_o(out.flatten(2))
