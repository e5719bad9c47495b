"""Why DeepSeek decouples RoPE: a rotation between W_UQ and W_UK cannot be folded away.

RoPE rotates a query at position m by R_m and a key at position n by R_n (pairs of numbers
turned by position-dependent angles, `models.rope`). If the content query and key were
rotated, one head's score would be

    (R_m W_UQ c_Q) . (R_n W_UK c_KV) = c_Q^T (W_UQ^T R_m^T R_n W_UK) c_KV

and the matrix in the middle changes with every pair of positions: there is no single
W_UQ^T W_UK to precompute, and absorption (`analysis.absorption`) breaks. `rotated_fold`
computes that matrix and the score for one pair of positions, as the hypothetical "RoPE on
the content part" would; at m == n it is the plain fold W_UQ^T W_UK.

DeepSeek's fix (`models.mla`): the content parts q_C, k_C carry no rotation (absorbed as
before), and position goes into a separate small part, a RoPE query q_R per head and ONE
RoPE key k_R per token shared by all heads, cached beside c_KV. `decoupled_scores` computes
both paths of every head in the attention's dtype: naive (expanded keys) and absorbed
(q_latent . c_KV), each plus q_R . k_R.

Shapes: T tokens, H heads, d'_c the query latent (or the hidden size without query
compression), d_c the KV latent, d_nope / d_R the content / RoPE widths.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import torch

from mla_core.errors import UserError, check_layer_head
from mla_core.models.configs import DeepSeekConfig
from mla_core.models.mla import MultiHeadLatentAttention
from mla_core.models.rope import apply_rope, rope_angles


def rotation_matrix(config: DeepSeekConfig, position: int, dtype=torch.float64) -> torch.Tensor:
    """R_p (d_R, d_R): what `apply_rope` does to a vector at `position`, as a matrix
    (interleaved pairs, YaRN frequencies when the config has them active)."""
    dim = config.qk_rope_head_dim
    angles = rope_angles(config, torch.tensor([position]))  # (1, d_R / 2)
    # apply_rope rotates each row: rows of the identity come back as the columns of R_p
    return apply_rope(torch.eye(dim, dtype=dtype)[None], angles)[0].T


def content_rope_config(config: DeepSeekConfig) -> DeepSeekConfig:
    """The hypothetical config whose RoPE would rotate the content part (d_nope numbers)."""
    if config.qk_nope_head_dim % 2:
        raise UserError(f"qk_nope_head_dim={config.qk_nope_head_dim} is odd: RoPE needs pairs")
    return dataclasses.replace(config, qk_rope_head_dim=config.qk_nope_head_dim)


def query_latent_input(attn: MultiHeadLatentAttention, hidden: torch.Tensor) -> torch.Tensor:
    """c_Q = RMSNorm(W_DQ h) (T, d'_c); without query compression the query reads h itself."""
    if attn.config.q_lora_rank is None:
        return hidden
    return attn.q_norm(attn.w_dq(hidden))


def content_query_weight(attn: MultiHeadLatentAttention, head: int) -> torch.Tensor:
    """This head's content rows of W_UQ (or W_Q): (d_nope, d'_c)."""
    cfg = attn.config
    weight = attn.w_q.weight if cfg.q_lora_rank is None else attn.w_uq.weight
    return weight.view(cfg.n_heads, cfg.qk_head_dim, -1)[head, : cfg.qk_nope_head_dim]


@dataclass
class RotatedFold:
    """The folded matrix and one score if RoPE rotated the content query (at m) and key (at n)."""

    m: int
    n: int
    matrix: np.ndarray  # (d'_c, d_c) W_UQ^T R_m^T R_n W_UK
    score: float  # c_Q . matrix c_KV (unscaled)


@torch.no_grad()
def rotated_fold(
    attn: MultiHeadLatentAttention,
    head: int,
    c_q: torch.Tensor,
    c_kv: torch.Tensor,
    m: int,
    n: int,
) -> RotatedFold:
    """W_UQ^T R_m^T R_n W_UK of one head and the score c_Q^T (...) c_KV for content vectors
    c_q (d'_c) and c_kv (d_c), with RoPE (hypothetically) on the content parts."""
    check_layer_head(0, head, 1, attn.config.n_heads)
    config = content_rope_config(attn.config)
    dtype = attn.wkv_b.weight.dtype
    r_m, r_n = (rotation_matrix(config, p, dtype) for p in (m, n))
    w_uq = content_query_weight(attn, head)  # (d_nope, d'_c)
    w_uk = attn.w_uk[head]  # (d_nope, d_c)
    matrix = w_uq.T @ r_m.T @ r_n @ w_uk
    return RotatedFold(m, n, _np(matrix), float(c_q @ matrix @ c_kv))


@dataclass
class DecoupledScores:
    """Every head's scores both ways, with the decoupled RoPE key (float64 arrays holding
    values computed in `dtype`), scaled by the softmax scale, before the mask."""

    dtype: str
    softmax_scale: float
    q_rope: np.ndarray  # (T, H, d_R) rotated, one per head
    k_rope: np.ndarray  # (T, d_R) rotated, ONE for all heads
    rope_part: np.ndarray  # (T, H, T) q_R . k_R * scale
    content_absorbed: np.ndarray  # (T, H, T) q_latent . c_KV * scale
    naive: np.ndarray  # (T, H, T) (q_C . W_UK c_KV + q_R . k_R) * scale
    absorbed: np.ndarray  # (T, H, T) (q_latent . c_KV + q_R . k_R) * scale

    @property
    def max_abs_diff(self) -> float:
        return float(np.max(np.abs(self.naive - self.absorbed)))


@torch.no_grad()
def decoupled_scores(attn: MultiHeadLatentAttention, hidden: torch.Tensor) -> DecoupledScores:
    """Both paths of every head on hidden states (T, C) at positions 0..T-1."""
    if hidden.dim() != 2:
        raise UserError(f"hidden states have shape {tuple(hidden.shape)}; expected (T, C)")
    h = hidden[None]
    angles = rope_angles(attn.config, torch.arange(h.shape[1])).to(h.device)
    q_nope, q_rope = attn.queries(h, angles)  # (1, T, H, .)
    c_kv, k_rope = attn.latents(h, angles)  # (1, T, d_c), (1, T, d_R)
    k_nope, _ = attn.expand_kv(c_kv)
    q_latent = attn.absorb_query(q_nope)
    rope_part = torch.einsum("bshr,btr->bsht", q_rope, k_rope) * attn.scale
    content = torch.einsum("bshc,btc->bsht", q_latent, c_kv) * attn.scale
    return DecoupledScores(
        dtype=str(h.dtype).removeprefix("torch."),
        softmax_scale=attn.scale,
        q_rope=_np(q_rope[0]),
        k_rope=_np(k_rope[0]),
        rope_part=_np(rope_part[0]),
        content_absorbed=_np(content[0]),
        naive=_np(attn.naive_scores(q_nope, q_rope, k_nope, k_rope)[0]),
        absorbed=_np(attn.absorbed_scores(q_latent, q_rope, c_kv, k_rope)[0]),
    )


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().to("cpu", torch.float64).numpy()
