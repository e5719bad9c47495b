"""Grouped-query attention (GQA), with multi-head (MHA) and multi-query (MQA) as its two ends.

n_heads query heads share n_kv_heads key/value heads: query head i reads key/value head
i // (n_heads / n_kv_heads), so consecutive query heads form a group (Ainslie et al. 2023,
arXiv 2305.13245; the Llama/Mistral layout). For a token's hidden state h:

    q_i = RoPE(W_Q_i h)        (d_h)   one per query head,       i = 0 .. n_heads - 1
    k_g = RoPE(W_K_g h)        (d_h)   one per key/value head,   g = 0 .. n_kv_heads - 1
    v_g = W_V_g h              (d_h)
    o_i = sum_t softmax_t(q_i(s) . k_g(i)(t) / sqrt(d_h)) v_g(i)(t)
    u   = W_O [o_0 ; ... ; o_{n_heads - 1}]

n_kv_heads = n_heads is MHA (every head its own key and value), n_kv_heads = 1 is MQA (one
key and value for all heads). What a decoder caches per token and layer is k and v of the
key/value heads: 2 * n_kv_heads * d_h numbers (`keys_values` returns exactly those).

RoPE rotates every pair of q and k (interleaved pairs, as `mla_core.models.rope` does for
MLA's RoPE part), with plain frequencies theta^(-2i/d_h); values are not rotated.
"""

from __future__ import annotations

import torch
from torch import nn

from mla_core.errors import UserError
from mla_core.models.attention import causal_attention
from mla_core.models.rope import apply_rope, pair_frequencies


def check_heads(n_heads: int, n_kv_heads: int) -> None:
    """UserError unless 1 <= n_kv_heads <= n_heads and n_kv_heads divides n_heads."""
    if not 1 <= n_kv_heads <= n_heads or n_heads % n_kv_heads:
        raise UserError(
            f"key/value heads {n_kv_heads} must divide the {n_heads} query heads "
            f"(1 = MQA, {n_heads} = MHA)"
        )


class GroupedQueryAttention(nn.Module):
    """One attention layer with n_heads query heads and n_kv_heads key/value heads."""

    def __init__(
        self,
        hidden_size: int,
        n_heads: int,
        n_kv_heads: int,
        head_dim: int,
        rope_theta: float = 10000.0,
    ) -> None:
        super().__init__()
        check_heads(n_heads, n_kv_heads)
        if head_dim < 2 or head_dim % 2:
            raise UserError(f"head dimension {head_dim} must be an even number >= 2 (RoPE pairs)")
        self.hidden_size = hidden_size
        self.n_heads, self.n_kv_heads, self.head_dim = n_heads, n_kv_heads, head_dim
        self.group_size = n_heads // n_kv_heads  # query heads per key/value head
        self.w_q = nn.Linear(hidden_size, n_heads * head_dim, bias=False)
        self.w_k = nn.Linear(hidden_size, n_kv_heads * head_dim, bias=False)
        self.w_v = nn.Linear(hidden_size, n_kv_heads * head_dim, bias=False)
        self.w_o = nn.Linear(n_heads * head_dim, hidden_size, bias=False)
        self.register_buffer(
            "frequencies", pair_frequencies(head_dim, rope_theta), persistent=False
        )

    @property
    def cache_numbers_per_token(self) -> int:
        """Numbers a decoder keeps per token for this layer: k and v of every key/value head."""
        return 2 * self.n_kv_heads * self.head_dim

    def angles(self, n_tokens: int, device: torch.device) -> torch.Tensor:
        """Rotation angle of each pair at positions 0 .. n_tokens - 1: (n_tokens, d_h / 2)."""
        positions = torch.arange(n_tokens, device=device, dtype=torch.float32)
        return torch.outer(positions, self.frequencies)

    def queries(self, h: torch.Tensor, angles: torch.Tensor) -> torch.Tensor:
        """Rotated queries (b, s, n_heads, d_h)."""
        q = self.w_q(h).unflatten(-1, (self.n_heads, self.head_dim))
        return apply_rope(q, angles)

    def keys_values(
        self, h: torch.Tensor, angles: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """What is cached for each token: rotated k and v, each (b, s, n_kv_heads, d_h)."""
        k = self.w_k(h).unflatten(-1, (self.n_kv_heads, self.head_dim))
        v = self.w_v(h).unflatten(-1, (self.n_kv_heads, self.head_dim))
        return apply_rope(k, angles), v

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        """h (batch, tokens, hidden) -> (batch, tokens, hidden); h is the whole sequence."""
        if h.dim() != 3 or h.shape[-1] != self.hidden_size:
            raise UserError(
                f"attention input has shape {tuple(h.shape)}; expected (batch, tokens, "
                f"{self.hidden_size})"
            )
        angles = self.angles(h.shape[1], h.device)
        q = self.queries(h, angles)
        k, v = self.keys_values(h, angles)
        # each key/value head serves its group of query heads: repeat it group_size times
        k = k.repeat_interleave(self.group_size, dim=2)  # (b, t, n_heads, d_h)
        v = v.repeat_interleave(self.group_size, dim=2)
        # heads first for causal_attention: (b, n_heads, tokens, d_h)
        z = causal_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))["z"]
        return self.w_o(z.transpose(1, 2).flatten(2))
