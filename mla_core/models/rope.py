"""Rotary position embedding (RoPE) as DeepSeek uses it, with YaRN context extension.

RoPE turns a position p into a rotation: the vector is cut into pairs, and pair i is
rotated by the angle p * f_i, with frequencies f_i = theta^(-2i/d). A query at position p
and a key at position t then score q . k = sum_i |q_i||k_i| cos(... + (p - t) f_i): only
the distance p - t is seen.

Pair layout. We use INTERLEAVED pairs (x0, x1), (x2, x3), ... exactly as DeepSeek's
reference inference code (deepseek-ai/DeepSeek-V3 `inference/model.py`, which views the
vector as complex numbers) and its released checkpoints do. Hugging Face's generic RoPE
instead rotates the pairs (x_i, x_{i + d/2}) ("rotate_half"); the two agree once the weight
rows that produce the rotated part are permuted with `interleaved_to_half_order`.

YaRN (arXiv 2309.00071), as in DeepSeek's code, only when the model's max_seq_len is longer
than the length it was pre-trained on (`original_seq_len`):
- fast-rotating pairs (more than beta_fast turns over the original length) keep their
  frequency, slow ones (fewer than beta_slow turns) are divided by `factor`, and the pairs
  in between are blended along a linear ramp;
- the softmax scale is multiplied by mscale^2, mscale = 0.1 * m * ln(factor) + 1.
"""

from __future__ import annotations

import math

import torch

from mla_core.errors import UserError
from mla_core.models.configs import DeepSeekConfig, YarnScaling


def yarn_is_active(config: DeepSeekConfig) -> bool:
    """DeepSeek's rule: YaRN applies only when max_seq_len exceeds the pre-training length."""
    return config.yarn is not None and config.max_seq_len > config.yarn.original_seq_len


def yarn_mscale(factor: float, m: float = 1.0) -> float:
    """YaRN's attention temperature correction: 0.1 * m * ln(factor) + 1 (1 when factor <= 1)."""
    if factor <= 1:
        return 1.0
    return 0.1 * m * math.log(factor) + 1.0


def softmax_scale(config: DeepSeekConfig) -> float:
    """The factor on q . k before the softmax: (d_nope + d_R)^-0.5, times mscale^2 with YaRN."""
    scale = config.qk_head_dim**-0.5
    if yarn_is_active(config):
        mscale = yarn_mscale(config.yarn.factor, config.yarn.mscale)
        scale *= mscale * mscale
    return scale


def _pair_index_for_turns(turns: float, dim: int, theta: float, original_seq_len: int) -> float:
    """The (fractional) pair index i whose frequency makes `turns` full turns over the
    original length: original_seq_len * theta^(-2i/dim) = 2 pi turns, solved for i."""
    return dim * math.log(original_seq_len / (turns * 2 * math.pi)) / (2 * math.log(theta))


def yarn_ramp_range(dim: int, theta: float, yarn: YarnScaling) -> tuple[int, int]:
    """Pair indices (low, high) between which YaRN blends kept and interpolated frequencies."""
    low = math.floor(_pair_index_for_turns(yarn.beta_fast, dim, theta, yarn.original_seq_len))
    high = math.ceil(_pair_index_for_turns(yarn.beta_slow, dim, theta, yarn.original_seq_len))
    return max(low, 0), min(high, dim - 1)


def pair_frequencies(dim: int, theta: float = 10000.0) -> torch.Tensor:
    """Plain RoPE: angle per position step of each of the dim / 2 pairs, theta^(-2i/dim),
    float32, shape (dim / 2,)."""
    if dim % 2:
        raise UserError(f"RoPE dimension {dim} must be even")
    return 1.0 / (theta ** (torch.arange(0, dim, 2, dtype=torch.float32) / dim))


def rope_frequencies(config: DeepSeekConfig) -> torch.Tensor:
    """Angle per position step for each of the d_R / 2 pairs, float32, shape (d_R / 2,)."""
    dim = config.qk_rope_head_dim
    freqs = pair_frequencies(dim, config.rope_theta)
    if yarn_is_active(config):
        low, high = yarn_ramp_range(dim, config.rope_theta, config.yarn)
        if high == low:
            high += 0.001  # a ramp of zero width would divide by zero
        ramp = ((torch.arange(dim // 2, dtype=torch.float32) - low) / (high - low)).clamp(0, 1)
        keep = 1 - ramp  # 1: fast pair, frequency kept; 0: slow pair, frequency / factor
        freqs = freqs / config.yarn.factor * (1 - keep) + freqs * keep
    return freqs


def rope_angles(config: DeepSeekConfig, positions: torch.Tensor) -> torch.Tensor:
    """Rotation angle of each pair at each position: shape (len(positions), d_R / 2), float32."""
    if positions.numel() and int(positions.max()) >= config.max_seq_len:
        raise UserError(
            f"position {int(positions.max())} is past max_seq_len={config.max_seq_len} "
            f"of config {config.name!r}"
        )
    return torch.outer(positions.to(torch.float32), rope_frequencies(config))


def apply_rope(x: torch.Tensor, angles: torch.Tensor) -> torch.Tensor:
    """Rotate interleaved pairs of x (..., seq, [heads,] d_R) by angles (seq, d_R / 2).

    `angles` is broadcast from the right after the head axis is accounted for: pass x as
    (batch, seq, d_R) for the shared key, or (batch, seq, heads, d_R) for the queries.
    The rotation is computed in float32 (or float64 for float64 input), as DeepSeek does.
    """
    work = torch.promote_types(x.dtype, torch.float32)
    if x.dim() == 4:  # (batch, seq, heads, d_R): one angle per position, shared by heads
        angles = angles[:, None, :]
    cos, sin = angles.cos().to(work), angles.sin().to(work)
    pairs = x.to(work).unflatten(-1, (-1, 2))  # (..., d_R / 2, 2)
    even, odd = pairs[..., 0], pairs[..., 1]
    rotated = torch.stack((even * cos - odd * sin, even * sin + odd * cos), dim=-1)
    return rotated.flatten(-2).to(x.dtype)


def interleaved_to_half_order(dim: int) -> torch.Tensor:
    """Index that reorders interleaved pairs (x0,x1),(x2,x3).. into halves [x0,x2,..|x1,x3,..].

    Rows of a weight that produces a RoPE input, taken in this order, give the layout that
    Hugging Face's rotate_half RoPE expects.
    """
    if dim % 2:
        raise UserError(f"RoPE dimension {dim} must be even")
    return torch.cat((torch.arange(0, dim, 2), torch.arange(1, dim, 2)))
