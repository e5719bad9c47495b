"""GPT-2 against transformers.GPT2LMHeadModel (the oracle), plus the attention invariants.

Checkpoints come from tests/conftest.py (written by transformers' save_pretrained).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mla_core.analysis.cache_size import bytes_per_token, dims_from_config
from mla_core.analysis.capture import capture_attention, prompt_token_ids
from mla_core.errors import UserError
from mla_core.loading.weights import load_gpt2_from_dir
from mla_core.models.attention import causal_attention
from mla_core.models.configs import GPT2_MEDIUM, GPT2_SMALL, GPT2_XL, GPT2Config
from mla_core.models.gpt2 import GPT2
from mla_core.models.kv_cache import KVCache, generate

TOL = 1e-5
FLAG_PROMPT = " The American flag is red, white, and"


def random_ids(n: int, vocab: int = 50257, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, vocab, (1, n), generator=torch.Generator().manual_seed(seed))


def assert_matches_oracle(model: GPT2, oracle: torch.nn.Module, ids: torch.Tensor) -> None:
    """Logits (both attention paths) and every head's pattern within TOL of transformers."""
    with torch.no_grad():
        expected = oracle(ids, output_attentions=True)
        fast_logits = model(ids)
        per_layer: list[dict[str, torch.Tensor]] = []
        explicit_logits = model(ids, capture=per_layer)
    torch.testing.assert_close(fast_logits, expected.logits, rtol=0, atol=TOL)
    torch.testing.assert_close(explicit_logits, expected.logits, rtol=0, atol=TOL)
    assert len(per_layer) == len(expected.attentions) == model.config.n_layer
    for ours, theirs in zip(per_layer, expected.attentions, strict=True):
        torch.testing.assert_close(ours["pattern"], theirs, rtol=0, atol=TOL)  # [B, H, T, T]


def test_tiny_matches_transformers(tiny_gpt2_dir, load_oracle) -> None:
    model, oracle = load_gpt2_from_dir(tiny_gpt2_dir), load_oracle(tiny_gpt2_dir)
    assert_matches_oracle(model, oracle, random_ids(64))  # the full context
    assert_matches_oracle(model, oracle, torch.cat([random_ids(7, seed=1), random_ids(7)]))


def test_official_key_layout_matches_transformers(
    tiny_gpt2_official_dir, tiny_gpt2_dir, load_oracle
) -> None:
    model = load_gpt2_from_dir(tiny_gpt2_official_dir)
    assert_matches_oracle(model, load_oracle(tiny_gpt2_dir), random_ids(20, seed=3))


@pytest.mark.slow
def test_gpt2_small_shape_matches_transformers(small_gpt2_dir, load_oracle) -> None:
    model = load_gpt2_from_dir(small_gpt2_dir)
    assert model.config.n_layer == 12 and model.config.n_embd == 768
    assert_matches_oracle(model, load_oracle(small_gpt2_dir), random_ids(12, seed=5))


def test_parameter_counts_match_the_released_sizes() -> None:
    with torch.device("meta"):
        assert GPT2(GPT2_SMALL).num_parameters() == 124_439_808
        assert GPT2(GPT2_MEDIUM).num_parameters() == 354_823_168
        assert GPT2(GPT2_XL).num_parameters() == 1_557_611_200


def test_head_is_tied_and_gelu_is_tanh_form() -> None:
    model = GPT2(GPT2Config(vocab_size=50, n_ctx=8, n_embd=16, n_layer=1, n_head=2))
    assert model.lm_head.weight is model.wte.weight
    x = torch.linspace(-4, 4, 101)
    gelu_new = 0.5 * x * (1 + torch.tanh((2 / torch.pi) ** 0.5 * (x + 0.044715 * x**3)))
    torch.testing.assert_close(model.h[0].mlp.gelu(x), gelu_new)
    assert model.h[0].ln_1.eps == 1e-5


def test_causal_attention_matches_sdpa_and_its_own_definition() -> None:
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 3, 6, 5, generator=g, dtype=torch.float64) for _ in range(3))
    steps = causal_attention(q, k, v)
    expected_z = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)
    torch.testing.assert_close(steps["z"], expected_z)
    torch.testing.assert_close(steps["scores"], q @ k.transpose(-1, -2) / 5**0.5)
    # The last query of a 1-query call sees every key: same as the last row of the full call.
    last = causal_attention(q[:, :, -1:], k, v)
    torch.testing.assert_close(last["pattern"], steps["pattern"][:, :, -1:])


def test_capture_invariants(tiny_gpt2_dir, load_oracle) -> None:
    model = load_gpt2_from_dir(tiny_gpt2_dir)
    cap = capture_attention(model, FLAG_PROMPT, bos=True, top_k=5)
    n_tokens, cfg = 10, model.config
    assert cap.token_ids[0] == 50256 and cap.tokens[0] == "<|endoftext|>" and cap.bos
    assert cap.token_ids[1:] == [383, 1605, 6056, 318, 2266, 11, 2330, 11, 290]
    assert cap.tokens[1] == "\u2423The"
    for name in ("q", "k", "v", "z"):
        assert getattr(cap, name).shape == (cfg.n_layer, cfg.n_head, n_tokens, cfg.head_dim)
        assert getattr(cap, name).dtype == np.float32
    for name in ("scores", "masked_scores", "pattern"):
        assert getattr(cap, name).shape == (cfg.n_layer, cfg.n_head, n_tokens, n_tokens)

    above = np.triu(np.ones((n_tokens, n_tokens), dtype=bool), k=1)
    assert np.all(cap.pattern[..., above] == 0.0)  # exactly zero, not just small
    assert np.all(cap.pattern[..., ~above] > 0.0)
    assert np.all(np.isneginf(cap.masked_scores[..., above]))
    np.testing.assert_array_equal(cap.masked_scores[..., ~above], cap.scores[..., ~above])
    np.testing.assert_allclose(cap.pattern.sum(-1), 1.0, rtol=0, atol=1e-6)
    scale = np.sqrt(cfg.head_dim)
    np.testing.assert_allclose(
        cap.scores, cap.q @ cap.k.swapaxes(-1, -2) / scale, rtol=1e-5, atol=1e-5
    )
    np.testing.assert_allclose(cap.z, cap.pattern @ cap.v, rtol=1e-5, atol=1e-6)

    # The final logits and top-k agree with transformers.
    with torch.no_grad():
        oracle_logits = load_oracle(tiny_gpt2_dir)(torch.tensor([cap.token_ids])).logits[0, -1]
    np.testing.assert_allclose(cap.logits, oracle_logits.numpy(), rtol=0, atol=TOL)
    probabilities = torch.softmax(oracle_logits, -1)
    expected_top = torch.topk(probabilities, 5)
    assert [t.token_id for t in cap.top_k] == expected_top.indices.tolist()
    np.testing.assert_allclose(
        [t.probability for t in cap.top_k], expected_top.values.numpy(), rtol=1e-5
    )

    head = cap.head(1, 3)
    assert set(head) >= {"token_ids", "tokens", "q", "k", "v", "scores", "pattern", "z"}
    np.testing.assert_array_equal(head["pattern"], cap.pattern[1, 3])


def test_capture_without_bos_and_from_ids(tiny_gpt2_dir) -> None:
    model = load_gpt2_from_dir(tiny_gpt2_dir)
    from_text = capture_attention(model, FLAG_PROMPT)
    from_ids = capture_attention(model, from_text.token_ids)
    assert from_text.token_ids == [383, 1605, 6056, 318, 2266, 11, 2330, 11, 290]
    assert not from_text.bos and from_ids.prompt == FLAG_PROMPT
    np.testing.assert_array_equal(from_text.pattern, from_ids.pattern)


def test_bad_prompts_and_heads_are_user_errors(tiny_gpt2_dir) -> None:
    model = load_gpt2_from_dir(tiny_gpt2_dir)
    with pytest.raises(UserError, match="empty"):
        capture_attention(model, "")
    with pytest.raises(UserError, match="context of 64"):
        capture_attention(model, " a" * 65)
    with pytest.raises(UserError, match="with BOS"):
        prompt_token_ids(" a" * 64, model.config, bos=True)
    with pytest.raises(UserError, match="vocabulary"):
        prompt_token_ids([50257], model.config)
    cap = capture_attention(model, "hello")
    with pytest.raises(UserError, match="--layer 2"):
        cap.head(2, 0)
    with pytest.raises(UserError, match="--head -1"):
        cap.head(0, -1)


def test_kv_cache_decoding_equals_full_recompute(tiny_gpt2_dir) -> None:
    model = load_gpt2_from_dir(tiny_gpt2_dir)
    prompt = prompt_token_ids(FLAG_PROMPT, model.config)
    generated, steps, cache = generate(model, prompt, n_new=8)
    assert len(generated) == len(steps) == 8
    with torch.no_grad():
        full = model(torch.tensor([prompt + generated]))[0]  # no cache, fast path
    for i, step in enumerate(steps):
        torch.testing.assert_close(step.logits, full[len(prompt) - 1 + i], rtol=0, atol=TOL)
        assert step.token_id == int(full[len(prompt) - 1 + i].argmax())
        assert step.n_cached == len(prompt) + i
    # The last generated token was never fed back, so the cache holds all tokens but it.
    assert cache.n_tokens == len(prompt) + 7

    # The cached keys and values are the ones a full capture computes.
    cap = capture_attention(model, prompt + generated[:-1])
    for layer in range(model.config.n_layer):
        keys, values = cache.layer_kv(layer)
        assert keys.shape == (1, model.config.n_head, cache.n_tokens, model.config.head_dim)
        np.testing.assert_allclose(keys[0].numpy(), cap.k[layer], rtol=0, atol=TOL)
        np.testing.assert_allclose(values[0].numpy(), cap.v[layer], rtol=0, atol=TOL)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_kv_cache_bytes_agree_with_cache_arithmetic(tiny_gpt2_dir, dtype) -> None:
    model = load_gpt2_from_dir(tiny_gpt2_dir).to(dtype)
    cache = KVCache(model.config.n_layer)
    dims = dims_from_config(model.config)
    per_token = bytes_per_token(dims, "mha", dtype_bytes=torch.finfo(dtype).bits // 8)
    with torch.no_grad():
        model(random_ids(5), kv_cache=cache)
        assert cache.nbytes == 5 * per_token
        model(random_ids(1, seed=9), kv_cache=cache)
        assert cache.n_tokens == 6 and cache.nbytes == 6 * per_token


def test_gpt2_small_cache_bytes_per_token_is_73728() -> None:
    # REFERENCE.md: GPT-2 small MHA caches 73,728 bytes per token in fp32.
    cfg = GPT2Config(vocab_size=16, n_ctx=4)  # GPT-2 small's attention dims, a tiny vocab
    torch.manual_seed(0)
    model = GPT2(cfg).eval()
    cache = KVCache(cfg.n_layer)
    with torch.no_grad():
        model(torch.zeros(1, 3, dtype=torch.long), kv_cache=cache)
    assert cache.nbytes == 3 * 73_728


def test_cache_refuses_to_pass_the_context(tiny_gpt2_dir) -> None:
    model = load_gpt2_from_dir(tiny_gpt2_dir)
    cache = KVCache(model.config.n_layer)
    with torch.no_grad():
        model(random_ids(64), kv_cache=cache)
        with pytest.raises(UserError, match="65 tokens"):
            model(random_ids(1), kv_cache=cache)


def test_a_cache_counts_tokens_in_every_layer_and_refuses_layers_out_of_step() -> None:
    cache = KVCache(2)
    k = torch.zeros(1, 4, 3, 8)  # [B, H, T, D]: three tokens
    cache.append(0, k, k)
    assert cache.n_tokens == 0  # layer 1 holds nothing yet
    with pytest.raises(RuntimeError, match="cache layer 1 is out of step"):
        cache.check_in_step()
    cache.append(1, k, k)
    cache.check_in_step()
    assert cache.n_tokens == 3 and cache.nbytes == 2 * 2 * k.numel() * 4  # 2 layers, K and V
