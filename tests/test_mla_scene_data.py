"""Scene data for MLA: every array fits the equations it illustrates."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mla_core.analysis.capture import capture_attention
from mla_core.analysis.latent_heads import (
    capture_latent_attention,
    deepseek_cache_steps,
    deepseek_latent_head,
    deepseek_layer_input,
    gpt2_latent_cache_steps,
    gpt2_latent_head,
)
from mla_core.errors import UserError
from mla_core.loading.weights import load_gpt2_from_dir
from mla_core.models.configs import DEEPSEEK_TINY, DEEPSEEK_TINY_LITE
from mla_core.models.deepseek import DeepSeekModel
from mla_core.models.gpt2_to_mla import convert_gpt2

PROMPT = " The American flag is red, white, and"
ATOL = 2e-5


def close(actual: np.ndarray, desired: np.ndarray, atol: float = ATOL) -> None:
    np.testing.assert_allclose(actual, desired, rtol=1e-5, atol=atol)


@pytest.fixture(scope="module")
def tiny(tiny_gpt2_dir):
    return load_gpt2_from_dir(tiny_gpt2_dir)


@pytest.mark.parametrize("rank", [6, 32])
def test_gpt2_latent_head_fits_its_equations(tiny, rank):
    scene = gpt2_latent_head(convert_gpt2(tiny, rank), PROMPT, layer=1, head=3)
    n = len(scene.tokens)
    assert scene.tokens[0] == "<|endoftext|>" and n == 10
    assert scene.c_kv.shape == scene.q_latent.shape == (n, rank)
    np.testing.assert_allclose(scene.c_kv, scene.x @ scene.w_dkv.T, atol=ATOL)
    np.testing.assert_allclose(scene.k, scene.c_kv @ scene.w_uk.T + scene.b_k, atol=ATOL)
    np.testing.assert_allclose(scene.v, scene.c_kv @ scene.w_uv.T + scene.b_v, atol=ATOL)
    np.testing.assert_allclose(
        scene.q_latent, scene.x @ scene.w_q_absorbed.T + scene.b_q_absorbed, atol=ATOL
    )
    np.testing.assert_allclose(scene.scores_absorbed, scene.scores_naive, atol=ATOL)
    np.testing.assert_allclose(scene.scores_naive, scene.q @ scene.k.T / np.sqrt(8), atol=ATOL)
    np.testing.assert_allclose(scene.pattern.sum(-1), 1, atol=1e-6)
    assert np.all(np.triu(scene.pattern, 1) == 0)
    np.testing.assert_allclose(scene.z, scene.pattern @ scene.v, atol=ATOL)
    if rank == 32:  # full rank: GPT-2's own head
        original = capture_attention(tiny, PROMPT, bos=True)
        np.testing.assert_allclose(scene.pattern, original.pattern[1, 3], atol=ATOL)
        np.testing.assert_allclose(scene.k, original.k[1, 3], atol=ATOL)


def test_latent_capture_adds_the_latents(tiny):
    capture = capture_latent_attention(convert_gpt2(tiny, 5), PROMPT, bos=True)
    arrays = capture.head(0, 1)
    assert arrays["c_kv"].shape == (10, 5) and arrays["w_uk"].shape == (8, 5)
    assert {"q", "k", "v", "pattern", "w_dkv", "w_uv", "q_latent"} <= set(arrays)
    with pytest.raises(UserError, match="not converted to MLA"):
        capture_latent_attention(tiny, PROMPT)


def test_gpt2_latent_cache_grows_one_row_per_token(tiny):
    model = convert_gpt2(tiny, 4)
    steps = gpt2_latent_cache_steps(model, PROMPT, n_new=4, layer=1)
    assert [s.n_cached for s in steps] == [10, 11, 12, 13]
    for before, after in zip(steps, steps[1:], strict=False):
        assert after.token_ids == [before.next_token_id]  # the chosen token is fed next
        np.testing.assert_array_equal(after.c_kv[:-1], before.c_kv)  # old rows never change
        assert after.cache_bytes - before.cache_bytes == 4 * 2 * 4  # r * layers * fp32
    with torch.no_grad():  # greedy: the chosen tokens are the full forward's argmax
        ids = steps[0].token_ids + [s.next_token_id for s in steps[:-1]]
        full = model(torch.tensor([ids]))[0]
    assert [int(t) for t in full[9:].argmax(-1)] == [s.next_token_id for s in steps]


@pytest.mark.parametrize("cfg", [DEEPSEEK_TINY, DEEPSEEK_TINY_LITE], ids=lambda c: c.name)
def test_deepseek_latent_head_fits_its_equations(cfg):
    model = DeepSeekModel(cfg, seed=2)
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(4)
    hidden = deepseek_layer_input(model, [5, 17, 3, 99, 42, 8, 23], layer=1)
    scene = deepseek_latent_head(model.blocks[1].attn, hidden, head=2)
    assert scene.c_kv.shape == (7, cfg.kv_lora_rank)
    assert scene.k_rope.shape == (7, cfg.qk_rope_head_dim)
    close(scene.scores_absorbed, scene.scores_naive)
    content = scene.q_nope @ scene.k_nope.T * scene.softmax_scale
    close(content + scene.scores_rope, scene.scores_naive)
    close(scene.k_nope, scene.c_kv @ scene.w_uk.T)
    close(scene.v, scene.c_kv @ scene.w_uv.T)
    close(scene.q_latent, scene.q_nope @ scene.w_uk)
    if cfg.q_lora_rank is None:  # the absorbed query weights act on h directly
        close(scene.q_latent, scene.hidden @ scene.w_q_absorbed.T)
    close(scene.pattern.sum(-1), 1, atol=1e-6)
    # RoPE angles grow linearly with the position: angle(p) = p * frequency
    assert np.allclose(scene.rope_angles[3] - scene.rope_angles[2], scene.rope_angles[1])


def test_deepseek_cache_steps_hold_latents_and_rope_keys():
    model = DeepSeekModel(DEEPSEEK_TINY, seed=3)
    steps = deepseek_cache_steps(model, [1, 2, 3], n_new=3, layer=0)
    assert [s.n_cached for s in steps] == [3, 4, 5]
    last = steps[-1]
    assert last.c_kv.shape == (5, 20) and last.k_rope.shape == (5, 6)
    assert last.cache_bytes == 5 * (20 + 6) * 2 * 4  # tokens * (d_c + d_R) * layers * fp32
    np.testing.assert_array_equal(last.k_rope[:4], steps[1].k_rope)
    with pytest.raises(UserError, match="--layer 2 is out of range"):
        deepseek_cache_steps(model, [1], n_new=1, layer=2)
