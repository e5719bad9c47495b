"""MQA and GQA from a multi-head GPT-2 (mla_core.analysis.kv_sharing) and the scene's data.

Oracles: the group mean written out in NumPy over the per-head slices of the checkpoint's
own c_attn (read with safetensors, transformers' Conv1D layout [in, out]) and layer 0's
input computed by hand (embeddings + LayerNorm); the cache formula 2 * G * D * L * bytes
written out; the attention KL written as a plain sum.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import TINY_GPT2

from mla_core.analysis.capture import capture_attention
from mla_core.analysis.kv_sharing import (
    gqa_group_counts,
    grouped_kv,
    middle_gqa_groups,
    pool_kv_heads,
    sharing_costs,
    variant_label,
)
from mla_core.analysis.mla_sweep import HELDOUT_SAMPLE
from mla_core.errors import UserError
from mla_core.loading.tokenizer import gpt2_tokenizer
from mla_core.loading.weights import load_gpt2_from_dir
from mla_core.scene_data.inputs import resolve_inputs
from mla_core.scene_data.params import VideoParams
from mla_core.scene_data.sharing_keys_values import sharing_keys_values

PROMPT = " The American flag is red, white, and"
N_HEAD, N_EMBD, N_LAYER = TINY_GPT2["n_head"], TINY_GPT2["n_embd"], TINY_GPT2["n_layer"]
D_HEAD = N_EMBD // N_HEAD


@pytest.fixture(scope="module")
def model(tiny_gpt2_dir):
    return load_gpt2_from_dir(tiny_gpt2_dir, device="cpu")


@pytest.fixture(scope="module")
def tensors(tiny_gpt2_dir):
    from safetensors.numpy import load_file

    return {
        k.removeprefix("transformer."): v.astype(np.float64)
        for k, v in load_file(tiny_gpt2_dir / "model.safetensors").items()
    }


def layer0_input(tensors, ids: list[int]) -> np.ndarray:
    """ln_1(wte[ids] + wpe[positions]) of layer 0, by hand: [T, C]."""
    x = tensors["wte.weight"][ids] + tensors["wpe.weight"][: len(ids)]
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + 1e-5) * tensors["h.0.ln_1.weight"] + tensors["h.0.ln_1.bias"]


def explicit_group_mean(tensors, layer: int, which: int, groups: int):
    """Per group: the mean of its heads' [C, D] weight slices and [D] bias slices of c_attn
    (Conv1D layout: columns [q | k | v], head h in columns h*D .. (h+1)*D); which 1 = k, 2 = v."""
    weight = tensors[f"h.{layer}.attn.c_attn.weight"]  # [C, 3C]
    bias = tensors[f"h.{layer}.attn.c_attn.bias"]  # [3C]
    per_group = N_HEAD // groups
    means = []
    for g in range(groups):
        w_slices, b_slices = [], []
        for h in range(g * per_group, (g + 1) * per_group):
            cols = slice(which * N_EMBD + h * D_HEAD, which * N_EMBD + (h + 1) * D_HEAD)
            w_slices.append(weight[:, cols])
            b_slices.append(bias[cols])
        means.append((sum(w_slices) / per_group, sum(b_slices) / per_group))
    return means


def prompt_ids() -> list[int]:
    return gpt2_tokenizer().encode(PROMPT)


@pytest.mark.parametrize("groups", [2, 1])
def test_pooled_keys_and_values_are_the_explicit_group_mean(model, tensors, groups):
    ids = prompt_ids()
    x = layer0_input(tensors, ids)
    pooled = pool_kv_heads(model, groups)
    captured = capture_attention(pooled, ids, bos=False, top_k=1)
    per_group = N_HEAD // groups
    for which, name in ((1, "k"), (2, "v")):
        for g, (w, b) in enumerate(explicit_group_mean(tensors, 0, which, groups)):
            expected = x @ w + b  # [T, D]
            for h in range(g * per_group, (g + 1) * per_group):
                got = getattr(captured, name)[0, h]
                np.testing.assert_allclose(got, expected, atol=2e-4, rtol=1e-4)
        # grouped_kv: one block per group, from the model's own layer input
        blocks = grouped_kv(model, ids, 0, groups)[which - 1].numpy()
        assert blocks.shape == (groups, len(ids), D_HEAD)
        for g, (w, b) in enumerate(explicit_group_mean(tensors, 0, which, groups)):
            np.testing.assert_allclose(blocks[g], x @ w + b, atol=2e-4, rtol=1e-4)
    # queries are untouched
    original = capture_attention(model, ids, bos=False, top_k=1)
    np.testing.assert_array_equal(captured.q[0], original.q[0])


def test_pooling_leaves_the_model_alone_and_pools_every_layer(model, tensors):
    before = {k: v.clone() for k, v in model.state_dict().items()}
    pooled = pool_kv_heads(model, 2)
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), f"{k} changed in the original model"
    assert pooled.lm_head.weight is pooled.wte.weight  # still tied
    for layer in range(N_LAYER):
        (w, b), _ = explicit_group_mean(tensors, layer, 1, 2)
        got = pooled.h[layer].attn.c_attn.weight[N_EMBD : N_EMBD + D_HEAD].detach().double()
        np.testing.assert_allclose(got.numpy(), w.T, atol=1e-6)


def test_groups_equal_to_heads_reproduce_the_model(model):
    pooled = pool_kv_heads(model, N_HEAD)
    ids = torch.tensor([prompt_ids()])
    pooled_state = pooled.state_dict()
    for name, a in model.state_dict().items():
        assert torch.equal(a, pooled_state[name]), name
    with torch.no_grad():
        assert torch.equal(model(ids), pooled(ids))


def test_one_group_gives_the_same_keys_and_values_in_every_head(model):
    captured = capture_attention(pool_kv_heads(model, 1), prompt_ids(), bos=False, top_k=1)
    for name in ("k", "v"):
        blocks = getattr(captured, name)  # [L, H, T, D]
        for h in range(1, N_HEAD):
            np.testing.assert_array_equal(blocks[:, h], blocks[:, 0])
    original = capture_attention(model, prompt_ids(), bos=False, top_k=1)
    assert not np.allclose(original.k[:, 1], original.k[:, 0])  # they were different


@pytest.mark.parametrize("bad", [0, -1, 3, 5, 8, 2.0, True])
def test_groups_that_do_not_divide_the_heads_are_a_user_error(model, bad):
    with pytest.raises(UserError, match="groups"):
        pool_kv_heads(model, bad)
    with pytest.raises(UserError, match="groups"):
        sharing_costs(model, "some text " * 20, [N_HEAD, bad], 0, 0, window=16)


def test_group_counts_and_labels():
    assert gqa_group_counts(3) == [] and middle_gqa_groups(3) is None
    assert gqa_group_counts(12) == [2, 3, 4, 6] and middle_gqa_groups(12) == 4
    assert middle_gqa_groups(4) == 2 and middle_gqa_groups(16) == 4
    assert [variant_label(g, 12) for g in (12, 4, 1)] == ["MHA", "GQA-4", "MQA"]


def explicit_kl(p: np.ndarray, q: np.ndarray) -> float:
    """Mean over windows and query rows >= 1 of sum_j p log(p / q), by loops."""
    total, count = 0.0, 0
    for n in range(p.shape[0]):
        for i in range(1, p.shape[1]):
            total += sum(p[n, i, j] * np.log(p[n, i, j] / q[n, i, j]) for j in range(i + 1))
            count += 1
    return total / count


def test_costs_bytes_kl_and_perplexity(model):
    text = HELDOUT_SAMPLE.read_text(encoding="utf-8")
    layer, head, window = 1, 2, 32
    result = sharing_costs(model, text, [4, 2, 1], layer, head, window=window, max_windows=3)
    rows = {r["label"]: r for r in result["rows"]}
    assert list(rows) == ["MHA", "GQA-2", "MQA"]
    element_bytes = 4  # float32 weights: the cache stores float32
    for label, groups in (("MHA", 4), ("GQA-2", 2), ("MQA", 1)):
        assert rows[label]["bytes_per_token"] == 2 * groups * D_HEAD * N_LAYER * element_bytes
    assert rows["MHA"]["head_kl"] == 0.0
    assert rows["MQA"]["head_kl"] > 0.0
    assert rows["MHA"]["top1_agreement"] == 1.0
    two_bytes = sharing_costs(model, text, [1], 0, 0, window=window, max_windows=1, dtype_bytes=2)
    assert two_bytes["rows"][0]["bytes_per_token"] == 2 * 1 * D_HEAD * N_LAYER * 2

    # the KL and the perplexity of MQA recomputed from the two models' own outputs
    from mla_core.analysis.mla_sweep import text_windows

    windows = text_windows(text, window, 3)
    pooled = pool_kv_heads(model, 1)
    patterns, nll = [], []
    for m in (model, pooled):
        captured = []
        with torch.no_grad():
            logits = m(windows, capture=captured).double()
        patterns.append(captured[layer]["pattern"][:, head].double().numpy())
        nll.append(-torch.log_softmax(logits[:, :-1], -1).gather(-1, windows[:, 1:, None]))
    assert rows["MQA"]["head_kl"] == pytest.approx(explicit_kl(*patterns), rel=1e-6)
    assert rows["MQA"]["perplexity"] == pytest.approx(float(nll[1].mean().exp()), rel=1e-9)
    assert rows["MHA"]["perplexity"] == pytest.approx(float(nll[0].mean().exp()), rel=1e-9)


def test_scene_data(tiny_gpt2_dir):
    params = VideoParams(weights=str(tiny_gpt2_dir), device="cpu", heads="1.2", prompt=PROMPT)
    data = sharing_keys_values(resolve_inputs(params))
    assert data.meta["group_counts"] == [4, 2, 1]
    assert data.meta["labels"] == ["MHA", "GQA-2", "MQA"]
    assert data.meta["layer"] == 1 and data.meta["gqa_groups"] == 2
    heads_k, heads_v = data.arrays["k_g4"], data.arrays["v_g4"]
    captured = capture_attention(resolve_inputs(params).model, PROMPT, bos=False, top_k=1)
    np.testing.assert_allclose(heads_k, captured.k[1], atol=1e-5)
    np.testing.assert_allclose(heads_v, captured.v[1], atol=1e-5)
    # a group's block is the mean of its heads' blocks (same input; the projection is linear)
    np.testing.assert_allclose(data.arrays["k_g2"][1], heads_k[2:].mean(0), atol=1e-5)
    np.testing.assert_allclose(data.arrays["v_g1"][0], heads_v.mean(0), atol=1e-5)
    assert list(data.arrays["bytes_per_token"]) == [2 * g * D_HEAD * N_LAYER * 4 for g in (4, 2, 1)]
    assert [r["mmlu"] for r in data.meta["paper"]["rows"]] == [45.2, 41.2, 37.9]
    assert "Table 8" in data.meta["paper"]["citation"]


@pytest.mark.slow
def test_scene_prints_the_measured_and_cited_numbers(tiny_gpt2_dir, tmp_path, monkeypatch):
    """The scene's final frame (tiny model: MHA, GQA-2, MQA) shows the cost table's numbers,
    the cache formula's bytes written out, and the paper's Table 8 with its citation."""
    from helpers import render_final_frame, shown_texts

    from mla_core.scene_data.params import PARAMS_ENV
    from mla_core.scene_data.store import CACHE_DIR_ENV
    from scenes.components import fmt_float, fmt_int
    from scenes.sharing_keys_values import SharingKeysValues

    params = VideoParams(weights=str(tiny_gpt2_dir), device="cpu", heads="1.2", prompt=PROMPT)
    monkeypatch.setenv(PARAMS_ENV, params.to_json())
    monkeypatch.setenv(CACHE_DIR_ENV, str(tmp_path / "scene_data"))
    scene, _ = render_final_frame(SharingKeysValues, tmp_path / "media")
    texts = shown_texts(scene)
    for groups in (4, 2, 1):
        assert fmt_int(2 * groups * D_HEAD * N_LAYER * 4) in texts
    assert {"MHA", "GQA-2", "MQA", "GQA-8"} <= set(texts)
    for mmlu in (45.2, 41.2, 37.9):
        assert fmt_float(mmlu, 1) in texts
    assert any("Table 8" in t and "2405.04434" in t for t in texts)
    assert any("2305.13245" in t for t in texts)
    assert "0.000" in texts  # MHA against itself
    shown = scene.shown_numbers
    assert shown["variants"] == ["MHA", "GQA-2", "MQA"] and shown["head"] == "1.2"
    assert set(shown["perplexity"].values()) <= set(texts)
