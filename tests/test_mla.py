"""MLA as DeepSeek built it: checked against transformers' DeepSeek-V3 attention, naive
against absorbed, cached decoding against the full forward, the cache against its formula."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from deepseek_oracle import hf_config
from transformers.models.deepseek_v3 import modeling_deepseek_v3 as hf_ds

from mla_core.analysis.cache_size import cache_bytes, dims_from_config
from mla_core.loading.deepseek_weights import HF_ATTENTION_NAMES
from mla_core.models.configs import DEEPSEEK_TINY, DEEPSEEK_TINY_LITE, DeepSeekConfig
from mla_core.models.deepseek import DeepSeekModel
from mla_core.models.kv_cache import generate
from mla_core.models.mla import LatentCache, MultiHeadLatentAttention
from mla_core.models.rope import interleaved_to_half_order, yarn_is_active

# the four combinations of query compression and YaRN
CONFIGS = {
    "q-compression+yarn": DEEPSEEK_TINY,
    "q-compression": replace(DEEPSEEK_TINY, name="tiny-q", yarn=None),
    "yarn": replace(DEEPSEEK_TINY_LITE, name="tiny-yarn", yarn=DEEPSEEK_TINY.yarn),
    "plain": DEEPSEEK_TINY_LITE,
}
SEQ = 40  # longer than the YaRN configs' original length (16): the ramp matters


def random_attention(cfg: DeepSeekConfig, seed: int = 0, dtype=torch.float32):
    """An MLA layer with random weights large enough for sharp attention patterns."""
    attn = MultiHeadLatentAttention(cfg)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in attn.named_parameters():
            noise = torch.randn(param.shape, generator=generator)
            param.copy_(1 + 0.3 * noise if "norm" in name else noise * param.shape[-1] ** -0.5)
    return attn.to(dtype)


def hidden_states(cfg: DeepSeekConfig, seq: int = SEQ, batch: int = 2, dtype=torch.float32):
    generator = torch.Generator().manual_seed(1)
    return torch.randn(batch, seq, cfg.hidden_size, generator=generator).to(dtype)


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).norm() / b.norm()).item()


def to_rotate_half_layout(attn: MultiHeadLatentAttention) -> dict[str, torch.Tensor]:
    """Our (interleaved) weights with every RoPE-producing row block in rotate_half order."""
    cfg = attn.config
    order = interleaved_to_half_order(cfg.qk_rope_head_dim)
    state = {k: v.clone() for k, v in attn.state_dict().items()}
    q_name = "w_q.weight" if cfg.q_lora_rank is None else "w_uq.weight"
    q = state[q_name].unflatten(0, (cfg.n_heads, cfg.qk_head_dim))
    q[:, cfg.qk_nope_head_dim :] = q[:, cfg.qk_nope_head_dim :][:, order]
    state[q_name] = q.flatten(0, 1)
    kv = state["w_dkv.weight"]
    kv[cfg.kv_lora_rank :] = kv[cfg.kv_lora_rank :][order]
    return state


@pytest.mark.parametrize("interleave", [True, False], ids=["interleaved", "rotate_half"])
@pytest.mark.parametrize("absorb", [False, True], ids=["naive", "absorbed"])
@pytest.mark.parametrize("which", list(CONFIGS))
def test_attention_matches_transformers_deepseek_v3(which, absorb, interleave):
    cfg = CONFIGS[which]
    ours = random_attention(cfg)
    hc = hf_config(cfg, interleave)
    theirs = hf_ds.DeepseekV3Attention(hc, layer_idx=0).eval()
    state = ours.state_dict() if interleave else to_rotate_half_layout(ours)
    theirs.load_state_dict({HF_ATTENTION_NAMES[k]: v for k, v in state.items()})
    h = hidden_states(cfg)
    positions = torch.arange(SEQ)[None]
    cos_sin = hf_ds.DeepseekV3RotaryEmbedding(hc)(h, positions)
    mask = torch.full((SEQ, SEQ), float("-inf")).triu(1)[None, None]
    with torch.no_grad():
        expected, _ = theirs(h, position_embeddings=cos_sin, attention_mask=mask)
        got = ours(h, absorb=absorb)
    assert expected.abs().max() > 0.1  # not a degenerate comparison
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)


def test_whole_model_matches_transformers_deepseek_v3():
    """Embedding, RMSNorm, MLA, SwiGLU, final norm and head, against DeepseekV3ForCausalLM."""
    from transformers import DeepseekV3ForCausalLM

    from mla_core.loading.deepseek_weights import hf_name

    for cfg in (DEEPSEEK_TINY, DEEPSEEK_TINY_LITE):  # untied + compression + YaRN; tied, plain
        ours = DeepSeekModel(cfg, seed=3)
        generator = torch.Generator().manual_seed(4)
        with torch.no_grad():
            for param in ours.parameters():
                param.add_(0.2 * torch.randn(param.shape, generator=generator))
        theirs = DeepseekV3ForCausalLM(hf_config(cfg, interleave=True)).eval()
        state = {hf_name(k): v for k, v in ours.state_dict().items()}
        missing, unexpected = theirs.load_state_dict(state, strict=False)
        assert not unexpected
        assert missing == (["lm_head.weight"] if cfg.tie_embeddings else [])
        tokens = torch.randint(0, cfg.vocab_size, (2, SEQ), generator=generator)
        with torch.no_grad():
            expected = theirs(tokens).logits
            for absorb in (False, True):
                got = ours(tokens, absorb=absorb)
                assert rel_err(got, expected) < 1e-6
                torch.testing.assert_close(got, expected, atol=5e-5, rtol=1e-5)


@pytest.mark.parametrize(
    "dtype,tolerance", [(torch.float32, 1e-6), (torch.float64, 1e-12)], ids=["fp32", "fp64"]
)
@pytest.mark.parametrize("which", list(CONFIGS))
def test_absorbed_equals_naive_prefill_and_decode(which, dtype, tolerance):
    cfg = CONFIGS[which]
    assert yarn_is_active(cfg) == (cfg.yarn is not None)
    attn = random_attention(cfg, dtype=dtype)
    h = hidden_states(cfg, dtype=dtype)
    with torch.no_grad():
        # prefill: the whole sequence at once
        assert rel_err(attn(h, absorb=True), attn(h, absorb=False)) < tolerance
        # decode: a short prompt, then one token per step, each path with its own cache
        caches = {absorb: LatentCache(1) for absorb in (False, True)}
        for start, stop in [(0, 5)] + [(t, t + 1) for t in range(5, SEQ)]:
            step = h[:, start:stop]
            naive = attn(step, caches[False], absorb=False)
            absorbed = attn(step, caches[True], absorb=True)
            assert rel_err(absorbed, naive) < tolerance, f"tokens {start}..{stop}"


@pytest.mark.parametrize("absorb", [False, True], ids=["naive", "absorbed"])
@pytest.mark.parametrize("which", ["q-compression+yarn", "plain"])
def test_cached_decoding_equals_full_forward(which, absorb):
    cfg = CONFIGS[which]
    model = DeepSeekModel(cfg, seed=5).double()
    with torch.no_grad():
        for param in model.parameters():
            param.mul_(10)  # sharper attention than the 0.02 init gives
    tokens = torch.randint(0, cfg.vocab_size, (2, 30), generator=torch.Generator().manual_seed(6))
    with torch.no_grad():
        full = model(tokens, absorb=absorb)
        cache = model.new_cache()
        pieces = [model(tokens[:, :7], cache, absorb)]  # prefill 7, then 3 at once, then singles
        pieces.append(model(tokens[:, 7:10], cache, absorb))
        pieces += [model(tokens[:, t : t + 1], cache, absorb) for t in range(10, 30)]
    assert cache.length() == 30 == cache.n_tokens
    assert rel_err(torch.cat(pieces, dim=1), full) < 1e-12


def test_generate_is_the_same_on_both_paths():
    model = DeepSeekModel(DEEPSEEK_TINY, seed=7)
    with torch.no_grad():
        for param in model.parameters():
            param.mul_(20)
    prompt = [1, 2, 3, 4]
    naive, _, _ = generate(model, prompt, 12, model.new_cache(), absorb=False)
    absorbed, _, cache = generate(model, prompt, 12, model.new_cache(), absorb=True)
    assert len(naive) == 12 and cache.n_tokens == 4 + 12 - 1
    assert naive == absorbed
    with torch.no_grad():  # greedy: every generated token is the argmax of the full forward
        full = model(torch.tensor([prompt + naive[:-1]]))
    assert full[0, 3:].argmax(-1).tolist() == naive


@pytest.mark.parametrize(
    "which,dtype",
    [(which, torch.float32) for which in CONFIGS] + [("q-compression+yarn", torch.bfloat16)],
)
def test_latent_cache_bytes_equal_the_formula(which, dtype):
    cfg = CONFIGS[which]
    model = DeepSeekModel(cfg).to(dtype)
    batch, prompt_len, n_new = 3, 6, 5
    prompt = torch.randint(0, cfg.vocab_size, (batch, prompt_len))
    cache = model.new_cache()
    with torch.no_grad():  # a batch decodes as generate does: the prompt, then n_new - 1 steps
        logits = model(prompt, cache, absorb=True)
        for _ in range(n_new - 1):
            logits = model(logits[:, -1:].argmax(-1), cache, absorb=True)
    tokens = prompt_len + n_new - 1
    for layer in range(cfg.n_layers):  # only the latent and the RoPE key are stored
        assert cache.c_kv[layer].shape == (batch, tokens, cfg.kv_lora_rank)
        assert cache.k_rope[layer].shape == (batch, tokens, cfg.qk_rope_head_dim)
    dtype_bytes = torch.finfo(dtype).bits // 8
    expected = cache_bytes(dims_from_config(cfg), "mla", tokens, dtype_bytes, batch)
    assert cache.nbytes == expected
