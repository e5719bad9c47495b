"""RoPE with YaRN, checked against transformers' implementation and the formulas."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch
from deepseek_oracle import hf_rope_parameters
from transformers import DeepseekV3Config
from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS
from transformers.models.deepseek_v3.modeling_deepseek_v3 import apply_rotary_pos_emb

from mla_core.errors import UserError
from mla_core.models.configs import DEEPSEEK_TINY, DEEPSEEK_V2, DEEPSEEK_V2_LITE, DEEPSEEK_V3
from mla_core.models.rope import (
    apply_rope,
    interleaved_to_half_order,
    rope_angles,
    rope_frequencies,
    softmax_scale,
    yarn_is_active,
)


def test_plain_frequencies_are_theta_powers():
    cfg = replace(DEEPSEEK_V3, yarn=None)
    d = cfg.qk_rope_head_dim
    expected = torch.tensor([10000.0 ** (-2 * i / d) for i in range(d // 2)])
    torch.testing.assert_close(rope_frequencies(cfg), expected)
    assert softmax_scale(cfg) == 192**-0.5


@pytest.mark.parametrize("cfg", [DEEPSEEK_V3, DEEPSEEK_V2_LITE, DEEPSEEK_TINY], ids=str)
def test_yarn_frequencies_match_transformers(cfg):
    hf = DeepseekV3Config(
        hidden_size=cfg.hidden_size,
        num_attention_heads=cfg.n_heads,
        qk_rope_head_dim=cfg.qk_rope_head_dim,
        max_position_embeddings=cfg.max_seq_len,
        rope_parameters=hf_rope_parameters(cfg),
    )
    inv_freq, cos_sin_factor = ROPE_INIT_FUNCTIONS["yarn"](hf)
    assert yarn_is_active(cfg)
    assert cos_sin_factor == 1.0  # equal mscale and mscale_all_dim: no cos/sin scaling
    torch.testing.assert_close(rope_frequencies(cfg), inv_freq, atol=0, rtol=1e-6)
    plain = rope_frequencies(replace(cfg, yarn=None))
    assert not torch.equal(plain, inv_freq)  # YaRN changed some frequencies...
    assert plain[0] == inv_freq[0]  # ...but not the fastest pair's


def test_v3_softmax_scale_includes_mscale_squared():
    mscale = 0.1 * math.log(40) + 1
    assert softmax_scale(DEEPSEEK_V3) == pytest.approx(192**-0.5 * mscale**2, rel=1e-15)


def test_yarn_is_off_within_the_original_length():
    cfg = replace(DEEPSEEK_V3, max_seq_len=4096)
    assert not yarn_is_active(cfg)
    assert torch.equal(rope_frequencies(cfg), rope_frequencies(replace(cfg, yarn=None)))
    assert softmax_scale(cfg) == 192**-0.5


def test_interleaved_pairs_equal_rotate_half_after_permutation():
    cfg = DEEPSEEK_TINY
    d = cfg.qk_rope_head_dim
    x = torch.randn(2, 10, 3, d)  # (batch, seq, heads, d_R)
    angles = rope_angles(cfg, torch.arange(10))
    order = interleaved_to_half_order(d)
    emb = torch.cat((angles, angles), dim=-1)  # transformers' cos/sin layout
    theirs, _ = apply_rotary_pos_emb(
        x[..., order], x[..., order], emb.cos()[None], emb.sin()[None], unsqueeze_dim=2
    )
    torch.testing.assert_close(apply_rope(x, angles)[..., order], theirs)


def test_scores_depend_only_on_the_distance():
    cfg = DEEPSEEK_TINY
    q, k = torch.randn(1, 1, cfg.qk_rope_head_dim), torch.randn(1, 1, cfg.qk_rope_head_dim)

    def score(p: int, t: int) -> float:
        qp = apply_rope(q, rope_angles(cfg, torch.tensor([p])))
        kt = apply_rope(k, rope_angles(cfg, torch.tensor([t])))
        return (qp * kt).sum().item()

    assert score(7, 3) == pytest.approx(score(30, 26), abs=1e-5)
    assert score(7, 3) != pytest.approx(score(7, 4), abs=1e-3)
    rotated = apply_rope(q, rope_angles(cfg, torch.tensor([11])))
    assert rotated.norm().item() == pytest.approx(q.norm().item(), rel=1e-6)


def test_positions_past_max_seq_len_are_refused():
    with pytest.raises(UserError, match="position 64 is past max_seq_len=64"):
        rope_angles(DEEPSEEK_TINY, torch.arange(65))
    with pytest.raises(UserError, match="must be even"):
        interleaved_to_half_order(5)


@pytest.mark.parametrize("cfg", [DEEPSEEK_V2, DEEPSEEK_V2_LITE], ids=str)
def test_v2_configs_carry_the_official_yarn_mscale(cfg):
    """DeepSeek-V2 and V2-Lite ship rope_scaling mscale = mscale_all_dim = 0.707 (their
    config.json / inference/configs/config_16B.json); V3 ships 1.0. The softmax scale is then
    (d_nope + d_R)^-0.5 * (0.1 * 0.707 * ln(40) + 1)^2, written out here from the formula."""
    assert cfg.yarn.mscale == 0.707 and DEEPSEEK_V3.yarn.mscale == 1.0
    expected = (128 + 64) ** -0.5 * (0.1 * 0.707 * math.log(40.0) + 1.0) ** 2
    assert softmax_scale(cfg) == pytest.approx(expected, rel=1e-12)
