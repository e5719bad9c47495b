"""LatentKV's data: one token through W_DKV, W_UK, W_UV of GPT-2 converted to MLA, and the
latent cache while decoding.

Oracles: NumPy recomputations of c_KV = W_DKV h and k = W_UK c_KV + b_K; a NumPy SVD of the
checkpoint's own [W_K; W_V] (read from the safetensors file, not through mla_core);
transformers' GPT-2 (its c_attn's keys) at rank = n_embd, where the conversion is exact; the
cache formulas written out (MHA 2 * n_layer * n_embd * bytes * tokens, latent
r * n_layer * bytes * tokens); DeepSeek-V3's numbers as REFERENCE.md lists them.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import TINY_GPT2, render_final_frame, shown_texts
from safetensors.numpy import load_file

from mla_core import scene_data as sd
from mla_core.scene_data.inputs import resolve_inputs
from mla_core.scene_data.params import PARAMS_ENV, load_params
from mla_core.scene_data.store import CACHE_DIR_ENV
from scenes.components import fmt_int

PROMPT_IDS = [383, 1605, 6056, 318, 2266, 11, 2330, 11, 290]  # REFERENCE.md
HEAD = (1, 2)
N_EMBD, N_LAYER, N_HEAD = TINY_GPT2["n_embd"], TINY_GPT2["n_layer"], TINY_GPT2["n_head"]
HEAD_DIM = N_EMBD // N_HEAD
NEW_TOKENS = 4


def params_for(folder, **more):
    values = {
        "weights": str(folder),
        "device": "cpu",
        "heads": f"{HEAD[0]}.{HEAD[1]}",
        "prompt": " The American flag is red, white, and",
        "new_tokens": str(NEW_TOKENS),
        "show_bos": "false",
    }
    return load_params(None, {**values, **{k: str(v) for k, v in more.items()}})


@pytest.fixture(scope="module")
def data_at(tiny_gpt2_dir, tmp_path_factory):
    """rank -> LatentKV's data for the tiny checkpoint at that latent rank (0 = default)."""
    cache_dir = tmp_path_factory.mktemp("scene_data")
    found = {}

    def get(rank: int):
        if rank not in found:
            with pytest.MonkeyPatch.context() as patch:
                patch.setenv(CACHE_DIR_ENV, str(cache_dir))
                params = params_for(tiny_gpt2_dir, latent_rank=rank)
                found[rank] = sd.data_for_scene("LatentKV", params)
        return found[rank]

    return get


def stacked_kv_weights(folder) -> tuple[np.ndarray, np.ndarray]:
    """[W_K; W_V] (2C, C) and [b_K; b_V] of layer HEAD[0], straight from the file (HF Conv1D
    stores c_attn as [in, out] = [C, 3C]: transpose)."""
    tensors = load_file(str(folder / "model.safetensors"))
    layer = HEAD[0]
    weight = tensors[f"transformer.h.{layer}.attn.c_attn.weight"].astype(np.float64).T
    bias = tensors[f"transformer.h.{layer}.attn.c_attn.bias"].astype(np.float64)
    return weight[N_EMBD:], bias[N_EMBD:]


def test_default_rank_is_a_quarter_of_n_embd(data_at):
    data = data_at(0)
    assert data["rank"] == N_EMBD // 4
    assert data["w_dkv"].shape == (N_EMBD // 4, N_EMBD)
    assert data["w_uk"].shape == data["w_uv"].shape == (HEAD_DIM, N_EMBD // 4)
    assert data["head"]["layer"] == HEAD[0] and data["head"]["head"] == HEAD[1]
    assert list(data["token_ids"]) == PROMPT_IDS


@pytest.mark.parametrize("rank", [0, 3, N_EMBD])
def test_latents_keys_and_values_follow_the_equations(data_at, rank):
    data = data_at(rank)
    x, w_dkv = data["x"].astype(np.float64), data["w_dkv"].astype(np.float64)
    c_kv = x @ w_dkv.T  # c_KV = W_DKV h, one row per token
    np.testing.assert_allclose(data["c_kv"], c_kv, atol=1e-4, rtol=1e-4)
    k = c_kv @ data["w_uk"].astype(np.float64).T + data["b_k"]
    v = c_kv @ data["w_uv"].astype(np.float64).T + data["b_v"]
    np.testing.assert_allclose(data["k"], k, atol=1e-4, rtol=1e-4)
    np.testing.assert_allclose(data["v"], v, atol=1e-4, rtol=1e-4)


def test_w_dkv_spans_the_top_singular_directions_of_the_checkpoint(data_at, tiny_gpt2_dir):
    data = data_at(0)
    r = data["rank"]
    w_kv, _ = stacked_kv_weights(tiny_gpt2_dir)
    _, _, vt = np.linalg.svd(w_kv)
    w_dkv = data["w_dkv"].astype(np.float64)
    np.testing.assert_allclose(w_dkv @ w_dkv.T, np.eye(r), atol=1e-5)
    np.testing.assert_allclose(w_dkv.T @ w_dkv, vt[:r].T @ vt[:r], atol=1e-5)
    # the shown head's up-projections are its rows of W_KV restricted to that subspace
    rows = slice(HEAD[1] * HEAD_DIM, (HEAD[1] + 1) * HEAD_DIM)
    np.testing.assert_allclose(data["w_uk"], w_kv[rows] @ w_dkv.T, atol=1e-5)
    np.testing.assert_allclose(data["w_uv"], w_kv[N_EMBD:][rows] @ w_dkv.T, atol=1e-5)


def test_at_rank_n_embd_keys_equal_the_original_gpt2_keys(data_at, tiny_gpt2_dir):
    from transformers import GPT2LMHeadModel

    hf = GPT2LMHeadModel.from_pretrained(tiny_gpt2_dir, attn_implementation="eager").eval()
    outputs = []
    hook = hf.transformer.h[HEAD[0]].attn.c_attn.register_forward_hook(
        lambda _m, _i, out: outputs.append(out[0])
    )
    try:
        with torch.no_grad():
            hf(torch.tensor([PROMPT_IDS]))
    finally:
        hook.remove()
    _, k_all, v_all = outputs[0].split(N_EMBD, dim=-1)  # [T, C] each
    rows = slice(HEAD[1] * HEAD_DIM, (HEAD[1] + 1) * HEAD_DIM)
    exact, cut = data_at(N_EMBD), data_at(0)
    np.testing.assert_allclose(exact["k"], k_all[:, rows].numpy(), atol=1e-4, rtol=1e-4)
    np.testing.assert_allclose(exact["v"], v_all[:, rows].numpy(), atol=1e-4, rtol=1e-4)
    # and the test can fail: a quarter of the rank does not give GPT-2's keys
    assert np.abs(cut["k"] - k_all[:, rows].numpy()).max() > 1e-2


def test_byte_counters_are_the_cache_formulas(data_at):
    data = data_at(0)
    r, element = data["rank"], data["element_bytes"]
    assert element == 4  # the model and its cache are float32
    n_prompt = len(PROMPT_IDS)
    tokens = np.arange(n_prompt, n_prompt + NEW_TOKENS + 1)
    np.testing.assert_array_equal(data["n_cached"], tokens)
    np.testing.assert_array_equal(data["mha_cache_bytes"], 2 * N_LAYER * N_EMBD * element * tokens)
    np.testing.assert_array_equal(data["cache_bytes"], r * N_LAYER * element * tokens)
    np.testing.assert_array_equal(data["latent_formula_bytes"], data["cache_bytes"])
    assert data["cache_rows"].shape == (tokens[-1], r)
    assert len(data["fed_tokens"]) == NEW_TOKENS
    # the cached prompt rows are the prompt's latents (one forward, or one token at a time)
    np.testing.assert_allclose(data["cache_rows"][:n_prompt], data["c_kv"], atol=1e-4)


def test_deepseek_shapes_come_from_the_v3_config(data_at):
    ds = data_at(0)["deepseek"]  # REFERENCE.md, DeepSeek-V3 column
    assert (ds["hidden_size"], ds["kv_lora_rank"], ds["n_heads"]) == (7168, 512, 128)
    assert (ds["qk_nope_head_dim"], ds["v_head_dim"], ds["n_layers"]) == (128, 128, 61)


@pytest.mark.slow
def test_scene_prints_the_data(tiny_gpt2_dir, tmp_path, monkeypatch):
    from scenes.latent_kv import LatentKV

    params = params_for(tiny_gpt2_dir)
    monkeypatch.setenv(PARAMS_ENV, params.to_json())
    monkeypatch.setenv(CACHE_DIR_ENV, str(tmp_path / "scene_data"))
    scene, _ = render_final_frame(LatentKV, tmp_path / "media")
    data = sd.data_for_scene("LatentKV", resolve_inputs(params))
    shown = scene.shown_numbers
    element = data["element_bytes"]
    tokens = data["n_cached"]
    assert shown["mha_cache_bytes"] == [fmt_int(2 * N_LAYER * N_EMBD * element * t) for t in tokens]
    assert shown["latent_cache_bytes"] == [
        fmt_int(data["rank"] * N_LAYER * element * t) for t in tokens
    ]
    assert shown["shapes"]["W_DKV"] == f"{N_EMBD // 4} \u00d7 {N_EMBD}"
    assert shown["deepseek_v3"]["W_DKV"] == "512 \u00d7 7,168"
    assert shown["deepseek_v3"]["re_expanded"] == fmt_int(128 * (128 + 128))
    texts = shown_texts(scene)
    assert f"{fmt_int(2 * N_LAYER * N_EMBD * element * tokens[-1])} bytes" in texts
