"""Absorption (beat 8): one head of the GPT-2 converted to MLA scores its keys naive and absorbed.

The oracle is written out here in NumPy from the checkpoint's own tensors (the safetensors
file transformers wrote) and transformers' layer input: stack [W_K ; W_V], cut its SVD to rank
r, expand each head's keys (naive) or fold W_UK into the query (absorbed). It shares no code
with `mla_core.models.gpt2_to_mla` (another factorisation routine, another library).
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from safetensors.numpy import load_file

from mla_core import scene_data as sd
from mla_core.analysis.absorption import absorption_check, expansion_sizes
from mla_core.errors import UserError
from mla_core.loading.tokenizer import gpt2_tokenizer
from mla_core.loading.weights import load_gpt2_from_dir
from mla_core.models.gpt2_to_mla import convert_gpt2
from mla_core.scene_data.params import load_params
from scenes.components import sci_parts, sci_tex, sci_text

PROMPT = " The American flag is red, white, and"
# Layer 0: its input does not depend on an earlier layer, which convert_gpt2 would cut too
LAYER, HEAD, RANK = 0, 2, 6


def numpy_oracle(folder, ids: list[int], layer: int, head: int, rank: int) -> dict:
    """Naive and absorbed q . k of one head, float64, from the checkpoint's tensors."""
    from transformers import GPT2LMHeadModel

    hf = GPT2LMHeadModel.from_pretrained(folder, attn_implementation="eager").eval().double()
    inputs = []
    hook = hf.transformer.h[layer].ln_1.register_forward_hook(
        lambda _m, _i, out: inputs.append(out[0])
    )
    try:
        with torch.no_grad():
            hf(torch.tensor([ids]))
    finally:
        hook.remove()
    x = inputs[0].numpy()  # (T, C) the attention input, float64
    tensors = load_file(folder / "model.safetensors")
    w = tensors[f"transformer.h.{layer}.attn.c_attn.weight"].astype(np.float64).T  # (3C, C)
    b = tensors[f"transformer.h.{layer}.attn.c_attn.bias"].astype(np.float64)
    c = w.shape[1]
    d = c // hf.config.n_head
    w_q, w_kv = w[:c], w[c:]
    _, _, vt = np.linalg.svd(w_kv)  # W_KV = U S V^T
    v_r = vt[:rank].T  # (C, r)
    c_kv = x @ v_r  # (T, r)
    rows = slice(head * d, (head + 1) * d)
    w_uk = (w_kv[:c] @ v_r)[rows]  # (D, r)
    b_k = b[c : 2 * c][rows]
    q = x @ w_q[rows].T + b[:c][rows]  # (T, D)
    k = c_kv @ w_uk.T + b_k  # naive: every key expanded
    q_latent = q @ w_uk  # absorbed: W_UK^T q
    return {
        "naive": q @ k.T,
        "absorbed": q_latent @ c_kv.T + (q @ b_k)[:, None],
        "bias": q @ b_k,
        "c_kv": c_kv,
    }


@pytest.fixture(scope="module")
def model(tiny_gpt2_dir):
    return load_gpt2_from_dir(tiny_gpt2_dir)


@pytest.fixture(scope="module")
def ids():
    return gpt2_tokenizer().encode(PROMPT)


@pytest.fixture(scope="module")
def oracle(tiny_gpt2_dir, ids):
    return numpy_oracle(tiny_gpt2_dir, ids, LAYER, HEAD, RANK)


@pytest.fixture(scope="module")
def scene_data(tiny_gpt2_dir, tmp_path_factory):
    from mla_core.scene_data.store import DataCache

    params = load_params(
        None,
        {
            "weights": str(tiny_gpt2_dir),
            "device": "cpu",
            "heads": f"{LAYER}.{HEAD}",
            "latent_rank": str(RANK),
        },
    )
    cache = DataCache(tmp_path_factory.mktemp("scene_data"))
    return sd.data_for_scene("Absorption", params, cache)


def test_both_paths_match_the_numpy_oracle_in_float64(model, ids, oracle):
    exact = absorption_check(convert_gpt2(copy.deepcopy(model).double(), RANK), ids, LAYER, HEAD)
    assert exact.dtype == "float64"
    np.testing.assert_allclose(exact.dots_naive, oracle["naive"], rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(exact.dots_absorbed, oracle["absorbed"], rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(exact.bias_part, oracle["bias"], rtol=1e-10, atol=1e-10)
    # the oracle's two paths agree with each other to rounding too
    np.testing.assert_allclose(oracle["naive"], oracle["absorbed"], rtol=1e-12, atol=1e-12)
    # the latents span the same space (the SVD's signs are arbitrary): same Gram matrix
    np.testing.assert_allclose(exact.c_kv @ exact.c_kv.T, oracle["c_kv"] @ oracle["c_kv"].T)
    assert exact.max_abs_diff < 1e-12


def test_max_difference_is_a_recomputation(model, ids):
    check = absorption_check(convert_gpt2(model, RANK), ids, LAYER, HEAD)
    assert check.dtype == "float32"
    assert check.max_abs_diff == float(np.max(np.abs(check.dots_naive - check.dots_absorbed)))
    assert 0 < check.max_abs_diff < 1e-3  # float32 rounding: close, not bit-equal


def test_absorbing_a_wrong_matrix_is_caught(model, ids, oracle):
    """The check can fail: with W_UK of another head folded in, the scores differ."""
    converted = convert_gpt2(copy.deepcopy(model).double(), RANK)
    attn = converted.h[LAYER].attn
    with torch.no_grad():
        attn.w_uk[HEAD] = attn.w_uk[(HEAD + 1) % attn.n_head].clone()
    check = absorption_check(converted, ids, LAYER, HEAD)
    assert not np.allclose(check.dots_absorbed, oracle["absorbed"], atol=1e-3)


def test_scene_data_prints_the_oracle_numbers(scene_data, oracle, ids, model):
    d = scene_data
    assert d.kind == "absorption" and d["rank"] == RANK
    assert d["head"]["layer"] == LAYER and d["head"]["head"] == HEAD
    assert d["exact_dtype"] == "float64" and d["run_dtype"] == "float32"
    np.testing.assert_allclose(d["dots_naive"], oracle["naive"], rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(d["dots_absorbed"], oracle["absorbed"], rtol=1e-10, atol=1e-10)
    recomputed = float(np.max(np.abs(d["dots_naive"] - d["dots_absorbed"])))
    assert d["max_abs_diff"] == recomputed < 1e-12
    assert d["focus_row"] == len(ids) - 1
    # the naive expansion: H keys and H values of width D per token, from the model's dims
    config = model.config
    n_tokens = len(ids)
    assert d["keys"].shape == d["values"].shape == (n_tokens, config.n_head * config.head_dim)
    assert d["c_kv"].shape == (n_tokens, RANK)
    assert d["sizes"] == {
        "latent": RANK,
        "keys": config.n_embd,
        "values": config.n_embd,
        "expanded": 2 * config.n_embd,
    }
    assert d["provenance"]["latent_rank"] == RANK


def test_expansion_sizes_follow_the_config(model):
    assert expansion_sizes(model.config, 5)["expanded"] == 2 * 4 * 8  # 2 x heads x head_dim


def test_an_unconverted_model_is_refused(model, ids):
    with pytest.raises(UserError, match="not converted to MLA"):
        absorption_check(model, ids, LAYER, HEAD)


def test_scientific_notation_on_screen():
    assert sci_parts(5.684e-14) == ("5.7", -14)
    assert sci_parts(9.96e-6) == ("1.0", -5)
    assert sci_tex(1.9073e-05) == r"1.9 \times 10^{-5}"
    assert sci_text(5.684e-14) == "5.7e\u221214"
    assert sci_parts(0.0) == ("0", 0)
