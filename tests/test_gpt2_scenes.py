"""The GPT-2 scenes (NextToken, AttentionPatterns, QueriesKeysValues, KVCacheGrowth).

Each scene builds and renders its final frame in-process at low resolution from the tiny
random checkpoint (weights passed the way render.py passes them), and the frame is not
blank and nothing leaves the frame. The numbers each scene prints are checked against
independent oracles: transformers' GPT-2 on the same weights (attention patterns,
probabilities, the q/k/v its c_attn computes), the attention formula of REFERENCE.md
written out here in NumPy, the token ids REFERENCE.md lists, and the live cache of
`mla_core.models.kv_cache.generate` (a separate decoding loop from the scene's).
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from helpers import TINY_GPT2, make_hf_gpt2_checkpoint, render_final_frame, shown_texts
from manim import Mobject

from mla_core import scene_data as sd
from mla_core.analysis.head_scores import ROLE_THRESHOLD, measure_head_scores, typical_heads
from mla_core.errors import UserError
from mla_core.loading.tokenizer import gpt2_tokenizer
from mla_core.loading.weights import load_gpt2_from_dir
from mla_core.models.kv_cache import generate
from mla_core.names import scene_stem
from mla_core.scene_data.heads import ChosenHead
from mla_core.scene_data.inputs import resolve_inputs
from mla_core.scene_data.params import PARAMS_ENV, VideoParams, load_params
from mla_core.scene_data.store import CACHE_DIR_ENV, DataCache
from scenes import components as c
from scenes.components import fmt_bytes, fmt_float, fmt_int

PROMPT = " The American flag is red, white, and"
PROMPT_IDS = [383, 1605, 6056, 318, 2266, 11, 2330, 11, 290]  # REFERENCE.md
SCENES = ("NextToken", "AttentionPatterns", "QueriesKeysValues", "KVCacheGrowth")


def oracle_previous_token_head(folder) -> tuple[int, int]:
    from transformers import GPT2LMHeadModel

    from mla_core.analysis.head_scores import REFERENCE_TEXT

    hf = GPT2LMHeadModel.from_pretrained(folder, attn_implementation="eager").eval()
    ids = [50256, *gpt2_tokenizer().encode(REFERENCE_TEXT)][: hf.config.n_positions]
    with torch.no_grad():
        attentions = hf(torch.tensor([ids]), output_attentions=True).attentions  # L x [1,H,T,T]
    scores = np.array(
        [[a[0, h].diagonal(-1).mean().item() for h in range(a.shape[1])] for a in attentions]
    )
    return divmod(int(scores.argmax()), scores.shape[1])


# Each scene's data through the public entry point, as the scenes and `render.py data` get it.
def next_token(params, data_cache=None):
    return sd.data_for_scene("NextToken", params, data_cache)


def attention_gallery(params, data_cache=None):
    return sd.data_for_scene("AttentionPatterns", params, data_cache)


def head_walkthrough(params, data_cache=None):
    return sd.data_for_scene("QueriesKeysValues", params, data_cache)


def kv_cache_steps(params, data_cache=None):
    return sd.data_for_scene("KVCacheGrowth", params, data_cache)


@pytest.fixture(scope="module")
def tiny_gpt2_dir(tmp_path_factory):
    """The conftest's tiny GPT-2 (random, made by transformers) with a context of 128: long
    enough for mla_core.analysis.head_scores' reference text, which picks the heads."""
    folder = tmp_path_factory.mktemp("tiny_gpt2_128")
    return make_hf_gpt2_checkpoint(folder, seed=1234, **{**TINY_GPT2, "n_positions": 128})


@pytest.fixture(scope="module")
def params(tiny_gpt2_dir, tmp_path_factory):
    """Video parameters pointing at the tiny checkpoint, set for the scenes the way render.py
    sets them for a manim process; scene data cached in a fresh folder."""
    values = load_params(None, {"weights": str(tiny_gpt2_dir), "device": "cpu"})
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(PARAMS_ENV, values.to_json())
        patch.setenv(CACHE_DIR_ENV, str(tmp_path_factory.mktemp("scene_data")))
        yield values


@pytest.fixture(scope="module")
def model(tiny_gpt2_dir):
    return load_gpt2_from_dir(tiny_gpt2_dir)


@pytest.fixture(scope="module")
def oracle(tiny_gpt2_dir):
    """transformers' GPT-2 on the same weights; run(ids) -> (output, per-layer q, k, v)."""
    from transformers import GPT2LMHeadModel

    hf = GPT2LMHeadModel.from_pretrained(tiny_gpt2_dir, attn_implementation="eager").eval()
    n_head = hf.config.n_head

    def run(ids: list[int]):
        qkv = []
        hooks = [
            block.attn.c_attn.register_forward_hook(lambda m, i, out: qkv.append(out[0]))
            for block in hf.transformer.h
        ]
        try:
            with torch.no_grad():
                out = hf(torch.tensor([ids]), output_attentions=True)
        finally:
            for hook in hooks:
                hook.remove()
        heads = []  # per layer: q, k, v as [H, T, D]
        for layer_qkv in qkv:
            q, k, v = layer_qkv.split(hf.config.n_embd, dim=-1)
            heads.append([t.view(len(ids), n_head, -1).transpose(0, 1).numpy() for t in (q, k, v)])
        return out, heads

    return run


@pytest.fixture(scope="module")
def rendered(params, tmp_path_factory):
    """Each scene built and its final frame rendered once, at 320 x 180."""
    import scenes.attention_patterns
    import scenes.kv_cache_growth
    import scenes.next_token
    import scenes.queries_keys_values

    classes = {
        "NextToken": scenes.next_token.NextToken,
        "AttentionPatterns": scenes.attention_patterns.AttentionPatterns,
        "QueriesKeysValues": scenes.queries_keys_values.QueriesKeysValues,
        "KVCacheGrowth": scenes.kv_cache_growth.KVCacheGrowth,
    }
    return {
        name: render_final_frame(cls, tmp_path_factory.mktemp(name))
        for name, cls in classes.items()
    }


# --- every scene renders, inside the frame ---------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("name", SCENES)
def test_final_frame_is_drawn_inside_the_frame(rendered, name):
    scene, frame = rendered[name]
    background = np.array(c._hex_to_rgb(c.BACKGROUND) * 255).round()
    drawn = np.abs(frame.astype(int) - background).max(axis=-1) > 40
    assert drawn.mean() > 0.01, f"{name}: only {drawn.mean():.2%} of pixels are drawn"
    half_w, half_h = c.FRAME_WIDTH / 2, c.FRAME_HEIGHT / 2
    for mob in scene.mobjects:
        assert isinstance(mob, Mobject)
        left, right = mob.get_left()[0], mob.get_right()[0]
        bottom, top = mob.get_bottom()[1], mob.get_top()[1]
        assert -half_w <= left and right <= half_w and -half_h <= bottom and top <= half_h, (
            f"{name}: {type(mob).__name__} spans x {left:.2f}..{right:.2f}, "
            f"y {bottom:.2f}..{top:.2f}"
        )
        assert top <= c.TITLE_ZONE.top + 1e-6 and bottom >= c.CAPTION_ZONE.bottom - 1e-6


@pytest.mark.parametrize("name", SCENES)
def test_scene_names_its_model_and_records_provenance(rendered, params, name):
    scene, _ = rendered[name]
    assert resolve_inputs(params).model_caption in shown_texts(scene)
    assert scene.provenance["model_sha256"] == resolve_inputs(params).weights.sha256
    assert scene.provenance["prompt"] == PROMPT
    json.dumps(scene.shown_numbers)  # goes into the manifest


@pytest.mark.parametrize("name", SCENES)
def test_scene_class_module_data_function_and_kind_share_one_name(params, name):
    stem = scene_stem(name)
    function = sd.data_function(name)
    assert (function.__name__, function.__module__) == (stem, f"mla_core.scene_data.{stem}")
    assert sd.data_for_scene(name, params, DataCache(enabled=False)).kind == stem


# --- NextToken --------------------------------------------------------------------------------


def test_next_token_labels_match_the_tokenizer(rendered, params):
    scene, _ = rendered["NextToken"]
    tokenizer = gpt2_tokenizer()
    assert scene.shown_numbers["token_ids"] == PROMPT_IDS
    assert scene.shown_numbers["tokens"] == tokenizer.display_tokens(PROMPT_IDS)
    texts = shown_texts(scene)
    for token, token_id in zip(tokenizer.display_tokens(PROMPT_IDS), PROMPT_IDS, strict=True):
        assert token in texts and str(token_id) in texts


def test_next_token_probabilities_are_the_models(rendered, params, oracle):
    scene, _ = rendered["NextToken"]
    out, _ = oracle(PROMPT_IDS)
    probabilities = torch.softmax(out.logits[0, -1].double(), -1)
    top = torch.topk(probabilities, params.top_k)
    tokenizer = gpt2_tokenizer()
    assert scene.shown_numbers["top_tokens"] == tokenizer.display_tokens(top.indices.tolist())
    expected = [f"{100 * p:.1f}%" if p >= 0.01 else f"{100 * p:.2g}%" for p in top.values]
    assert scene.shown_numbers["top_probabilities"] == expected
    assert scene.shown_numbers["chosen_token"] == tokenizer.display_token(int(top.indices[0]))
    texts = shown_texts(scene)
    assert all(p in texts for p in expected)
    # the narration names the live prediction (the tiny model's, not a typed " blue")
    spoken = " ".join(b["line"] for b in scene.narration)
    best = tokenizer.decode([int(top.indices[0])]).strip()
    assert f"best guess is \u201c{best}\u201d, at {expected[0]}" in spoken


# --- AttentionPatterns ------------------------------------------------------------------------


def test_gallery_heads_are_the_typical_heads(params, model):
    data = attention_gallery(params)
    scores = measure_head_scores(model)
    kinds = ("previous_token", "duplicate_token", "induction", "first_token")
    heads = [(h["layer"], h["head"]) for h in data["heads"]]
    assert [h["kind"] for h in data["heads"]] == list(kinds)
    assert len(set(heads)) == len(heads)  # four different heads
    first = typical_heads(scores)["previous_token"]
    assert heads[0] == (first.layer, first.head)
    for (layer, head), kind in zip(heads, kinds, strict=True):
        table = scores.kind(kind).copy()
        for other in heads[: kinds.index(kind)]:
            table[other] = -np.inf
        assert table[layer, head] == table.max()  # the best head not shown before
    assert data.provenance["heads"] == [f"{layer}.{head}" for layer, head in heads]


def test_gallery_patterns_are_causal_rows_summing_to_one_and_the_models(params, oracle):
    data = attention_gallery(params)
    patterns = data["patterns"]  # [N, T, T]
    n = len(PROMPT_IDS)
    assert patterns.shape[1:] == (n, n)
    np.testing.assert_allclose(patterns.sum(-1), 1.0, atol=1e-5)
    assert np.all(patterns[:, np.triu(np.ones((n, n), dtype=bool), k=1)] == 0)
    out, _ = oracle(PROMPT_IDS)
    for head, pattern in zip(data["heads"], patterns, strict=True):
        expected = out.attentions[head["layer"]][0, head["head"]].numpy()
        np.testing.assert_allclose(pattern, expected, atol=1e-5)
    assert data["tokens"] == gpt2_tokenizer().display_tokens(PROMPT_IDS)


def test_gallery_reads_a_real_cell(rendered, params):
    scene, _ = rendered["AttentionPatterns"]
    data = attention_gallery(params)
    read = scene.shown_numbers["read_cell"]
    row = data["patterns"][0][read["row"]]
    assert read["row"] == len(PROMPT_IDS) - 1 and read["col"] == int(np.argmax(row))
    assert read["weight"] == fmt_float(row.max())
    texts = " ".join(shown_texts(scene))
    assert read["weight"] in texts
    score = fmt_float(data["heads"][0]["score"])
    assert scene.shown_numbers["enlarged_head_score"] == score and score in texts


def test_a_head_is_called_by_its_role_only_above_the_stated_threshold(rendered, params):
    """The tiny test model's heads are near random: no label may claim a role, and the
    threshold the labels obey is written on screen."""
    scene, _ = rendered["AttentionPatterns"]
    heads = attention_gallery(params)["heads"]
    assert scene.shown_numbers["role_threshold"] == fmt_float(ROLE_THRESHOLD)
    labels = scene.shown_numbers["gallery_labels"]
    assert len(labels) == len(heads)
    for head, label in zip(heads, labels, strict=True):
        assert head["has_role"] == (head["score"] >= ROLE_THRESHOLD)
        claim = f"{head['kind_label']} head"
        assert (claim in label) == head["has_role"], (label, head["score"])
        if not head["has_role"]:
            assert f"highest score: {fmt_float(head['score'])}" in label


def test_role_threshold_names_a_clear_head():
    sharp = ChosenHead(4, 11, "previous_token", 0.93)
    weak = ChosenHead(3, 2, "previous_token", 0.09)
    assert sharp.has_role and not weak.has_role
    assert not ChosenHead(1, 1, "", None).has_role


def test_named_heads_and_bos(params, tmp_path):
    named = VideoParams(**{**params.as_dict(), "heads": "1.2,0.3"})
    data = attention_gallery(named, DataCache(tmp_path))
    assert [(h["layer"], h["head"], h["kind"]) for h in data["heads"]] == [(1, 2, ""), (0, 3, "")]
    with pytest.raises(
        UserError, match="heads: layer 5 is out of range; this model has layers 0..1"
    ):
        attention_gallery(VideoParams(**{**params.as_dict(), "heads": "5.0"}))
    with_bos = VideoParams(**{**params.as_dict(), "show_bos": True})
    data = attention_gallery(with_bos, DataCache(tmp_path))
    assert data["token_ids"].tolist() == [50256, *PROMPT_IDS]
    np.testing.assert_allclose(data["patterns"].sum(-1), 1.0, atol=1e-5)


# --- QueriesKeysValues ------------------------------------------------------------------------


def reference_attention(q, k, v):
    """REFERENCE.md beat 3: scores = q k^T / sqrt(d); causal mask; softmax; pattern @ v."""
    n, d = q.shape
    scores = q @ k.T / math.sqrt(d)
    scores[np.triu_indices(n, 1)] = -np.inf
    pattern = np.exp(scores - scores.max(-1, keepdims=True))
    pattern /= pattern.sum(-1, keepdims=True)
    return scores, pattern, pattern @ v


def test_walkthrough_numbers_on_screen_are_the_real_ones(rendered, params, oracle, tiny_gpt2_dir):
    scene, _ = rendered["QueriesKeysValues"]
    shown = scene.shown_numbers
    data = head_walkthrough(params)
    head = data["head"]
    # the head: the highest previous-token score, recomputed here from transformers' own
    # attention weights on the reference text (BOS first): mean of pattern[i, i - 1], i >= 1
    assert (head["layer"], head["head"]) == oracle_previous_token_head(tiny_gpt2_dir)
    _, per_layer = oracle(PROMPT_IDS)
    q, k, v = (t[head["head"]].astype(np.float64) for t in per_layer[head["layer"]])
    np.testing.assert_allclose(data["q"], q, atol=1e-5)
    np.testing.assert_allclose(data["k"], k, atol=1e-5)
    np.testing.assert_allclose(data["v"], v, atol=1e-5)
    scores, pattern, z = reference_attention(q, k, v)
    r, d = shown["focus_row"], q.shape[1]
    assert shown["head_dim"] == d == data["head_dim"]
    # Q, K, V blocks: every row, columns 0, 1, ..., d - 1
    cols = [0, 1, None, d - 1]
    for name, matrix in (("q", q), ("k", k), ("v", v)):
        expected = [
            "\u22ef" if j is None else fmt_float(matrix[i, j], 2)
            for i in range(len(PROMPT_IDS))
            for j in cols
        ]
        assert shown[name] == expected, name

    def score(x):
        return "\u2212\u221e" if np.isneginf(x) else fmt_float(x, 1 if abs(x) >= 10 else 2)

    assert shown["dot_products_row"] == [score(x) for x in q[r] @ k.T]
    assert shown["scores_row"] == [score(x) for x in q[r] @ k.T / math.sqrt(d)]
    assert shown["masked_scores_row"] == [score(x) for x in scores[r]]
    assert shown["pattern_row"] == [fmt_float(p, 2) for p in pattern[r]]
    assert shown["z"] == [fmt_float(z[r, j], 2) if j is not None else "\u22ef" for j in cols]
    assert shown["masked_scores_row"][r + 1 :] == ["\u2212\u221e"] * (len(PROMPT_IDS) - r - 1)
    np.testing.assert_allclose(data["pattern"].sum(-1), 1.0, atol=1e-9)
    texts = shown_texts(scene)
    assert all(x in texts for x in shown["z"])


# --- KVCacheGrowth ----------------------------------------------------------------------------


def test_cache_counter_equals_the_live_cache_at_each_step(rendered, params, model):
    scene, _ = rendered["KVCacheGrowth"]
    steps = params.new_tokens
    generated, decode_steps, cache = generate(model, PROMPT_IDS, steps + 1)
    live_bytes = [s.cache_bytes for s in decode_steps]  # after the prompt, then each token
    assert scene.shown_numbers["cache_counter"] == [f"{fmt_int(b)} bytes" for b in live_bytes]
    config = model.config
    per_token = 2 * config.n_layer * config.n_head * config.head_dim * 4  # float32
    assert live_bytes == [per_token * (len(PROMPT_IDS) + i) for i in range(steps + 1)]
    assert scene.shown_numbers["bytes_per_token"] == fmt_int(per_token)
    tokenizer = gpt2_tokenizer()
    assert scene.shown_numbers["fed_tokens"] == tokenizer.display_tokens(generated[:steps])
    texts = shown_texts(scene)
    assert scene.shown_numbers["deepseek_bytes_per_token"] == "3,997,696"  # REFERENCE.md
    assert scene.shown_numbers["deepseek_at_context"] == fmt_bytes(3_997_696 * 100_000)
    assert "100,000 tokens: 399.8 GB" in texts


def test_cache_rows_are_reused_not_recomputed(params, oracle):
    data = kv_cache_steps(params)
    n, steps = len(PROMPT_IDS), params.new_tokens
    head = data["head"]
    # the prompt's rows are in the final cache untouched, the new rows after them
    np.testing.assert_array_equal(data["cache_k"][:n], data["prefill_k"])
    np.testing.assert_array_equal(data["cache_v"][:n], data["prefill_v"])
    np.testing.assert_array_equal(data["cache_k"][n:], data["step_k"])
    np.testing.assert_array_equal(data["cache_v"][n:], data["step_v"])
    # and they are what a full forward of the whole sequence computes (transformers)
    ids = [*PROMPT_IDS, *data["fed_ids"].tolist()]
    _, per_layer = oracle(ids)
    q, k, v = (t[head["head"]] for t in per_layer[head["layer"]])
    np.testing.assert_allclose(data["cache_k"], k, atol=1e-5)
    np.testing.assert_allclose(data["cache_v"], v, atol=1e-5)
    np.testing.assert_allclose(data["step_q"], q[n:], atol=1e-5)
    # each new query's attention over the cache is the full forward's row
    for s in range(steps):
        _, pattern, _ = reference_attention(q.astype(np.float64), k, v)
        row = data["step_patterns"][s]
        np.testing.assert_allclose(row[: n + s + 1], pattern[n + s, : n + s + 1], atol=1e-5)
        assert np.all(row[n + s + 1 :] == 0)
    assert data["n_cached"].tolist() == list(range(n, n + steps + 1))


def test_next_token_data_is_cached(params, tmp_path):
    cache = DataCache(tmp_path)
    first = next_token(params, cache)
    again = next_token(params, cache)
    assert cache.misses == 1 and cache.hits == 1
    np.testing.assert_array_equal(first["top_probabilities"], again["top_probabilities"])
