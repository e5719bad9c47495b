"""Decoupled RoPE (beat 9): the rotation between W_UQ and W_UK, the shared RoPE key, the cache.

Oracles written out here: RoPE as explicit 2 x 2 rotation blocks on INTERLEAVED pairs
(x0, x1), (x2, x3), ... (the layout of `mla_core.models.rope` and DeepSeek's reference code),
with frequencies theta^(-2i/d) for a config without YaRN; MLA's scores in NumPy from the
module's raw weight matrices (sliced by hand); the cache formula d_c + d_R from the configs.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from mla_core import scene_data as sd
from mla_core.analysis.decoupled_rope import (
    content_rope_config,
    decoupled_scores,
    rotated_fold,
    rotation_matrix,
)
from mla_core.analysis.latent_heads import deepseek_latent_head
from mla_core.errors import UserError
from mla_core.models.configs import DEEPSEEK_TINY, DEEPSEEK_TINY_LITE, builtin_config
from mla_core.models.deepseek import DeepSeekModel
from mla_core.models.rope import rope_frequencies
from mla_core.scene_data.params import load_params


def explicit_rotation(angles: np.ndarray) -> np.ndarray:
    """Block-diagonal R: pair i = (2i, 2i + 1) turned by angles[i]."""
    d = 2 * len(angles)
    r = np.zeros((d, d))
    for i, a in enumerate(angles):
        c, s = math.cos(a), math.sin(a)
        r[2 * i : 2 * i + 2, 2 * i : 2 * i + 2] = [[c, -s], [s, c]]
    return r


def plain_angles(position: int, d: int, theta: float = 10000.0) -> np.ndarray:
    return np.array([position * theta ** (-2 * i / d) for i in range(d // 2)])


def rms_norm(x: np.ndarray, weight: np.ndarray, eps: float) -> np.ndarray:
    return x / np.sqrt((x**2).mean(-1, keepdims=True) + eps) * weight


@pytest.fixture(scope="module")
def lite():
    """The small config without YaRN or query compression (plain RoPE), float64."""
    return DeepSeekModel(DEEPSEEK_TINY_LITE, seed=3).double().eval()


@pytest.fixture(scope="module")
def hidden():
    return torch.randn(
        7, DEEPSEEK_TINY_LITE.hidden_size, generator=torch.Generator().manual_seed(5)
    )


def weights_of(attn, head: int) -> tuple[np.ndarray, np.ndarray]:
    """W_Q's content rows and W_UK of one head, sliced by hand from the raw matrices."""
    cfg = attn.config
    w_q = attn.w_q.weight.detach().numpy()  # (H * (d_nope + d_R), C)
    start = head * cfg.qk_head_dim
    w_uq = w_q[start : start + cfg.qk_nope_head_dim]
    w_kvb = attn.wkv_b.weight.detach().numpy()  # (H * (d_nope + d_v), d_c)
    start = head * (cfg.qk_nope_head_dim + cfg.v_head_dim)
    return w_uq, w_kvb[start : start + cfg.qk_nope_head_dim]


def test_rotation_matrix_is_the_explicit_pairwise_rotation():
    d = DEEPSEEK_TINY_LITE.qk_rope_head_dim
    for p in (0, 1, 5, 40):
        expected = explicit_rotation(plain_angles(p, d))
        np.testing.assert_allclose(
            rotation_matrix(DEEPSEEK_TINY_LITE, p).numpy(), expected, atol=1e-6
        )
    # with YaRN: the same blocks, at the (tested) YaRN frequencies
    freqs = rope_frequencies(DEEPSEEK_TINY).double().numpy()
    np.testing.assert_allclose(
        rotation_matrix(DEEPSEEK_TINY, 9).numpy(), explicit_rotation(9 * freqs), atol=1e-6
    )
    # interleaved, not rotate-half: pair (x0, x1) turns, x0 goes to x1's slot
    r = rotation_matrix(DEEPSEEK_TINY_LITE, 1).numpy()
    assert r[1, 0] == pytest.approx(math.sin(1.0), abs=1e-7) and r[2, 0] == 0


def test_folded_matrix_with_rotation_is_the_explicit_product(lite, hidden):
    attn = lite.blocks[0].attn
    cfg = content_rope_config(attn.config)
    d = cfg.qk_nope_head_dim
    c_q = hidden[6].double()  # no query compression: c_Q is h itself
    c_kv = torch.randn(attn.d_c, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    w_uq, w_uk = weights_of(attn, 2)
    folds = {}
    for m, n in ((2, 0), (7, 0), (9, 2), (4, 4)):
        fold = rotated_fold(attn, 2, c_q, c_kv, m, n)
        r_m, r_n = explicit_rotation(plain_angles(m, d)), explicit_rotation(plain_angles(n, d))
        expected = w_uq.T @ r_m.T @ r_n @ w_uk
        np.testing.assert_allclose(fold.matrix, expected, atol=1e-7)
        # the score of the rotated vectors themselves
        q_rot, k_rot = r_m @ (w_uq @ c_q.numpy()), r_n @ (w_uk @ c_kv.numpy())
        assert fold.score == pytest.approx(float(q_rot @ k_rot), abs=1e-7)
        folds[(m, n)] = fold
    # two position pairs, two different matrices and scores
    assert np.abs(folds[(2, 0)].matrix - folds[(7, 0)].matrix).max() > 1e-3
    assert folds[(2, 0)].score != pytest.approx(folds[(7, 0)].score, abs=1e-6)
    # only the distance matters (9 - 2 = 7 - 0), and m == n is the plain fold W_UQ^T W_UK
    np.testing.assert_allclose(folds[(9, 2)].matrix, folds[(7, 0)].matrix, atol=1e-6)
    np.testing.assert_allclose(folds[(4, 4)].matrix, w_uq.T @ w_uk, atol=1e-6)


def test_scores_match_numpy_mla_and_both_paths_agree(lite, hidden):
    attn = lite.blocks[0].attn
    cfg = attn.config
    h = hidden.double().numpy()
    n_tokens, n_heads = h.shape[0], cfg.n_heads
    d_nope, d_r, d_v, d_c = (
        cfg.qk_nope_head_dim,
        cfg.qk_rope_head_dim,
        cfg.v_head_dim,
        cfg.kv_lora_rank,
    )
    q = (h @ attn.w_q.weight.detach().numpy().T).reshape(n_tokens, n_heads, d_nope + d_r)
    kv_a = h @ attn.w_dkv.weight.detach().numpy().T  # (T, d_c + d_R)
    c_kv = rms_norm(kv_a[:, :d_c], attn.kv_norm.weight.detach().numpy(), cfg.rms_norm_eps)
    rot = [explicit_rotation(plain_angles(t, d_r)) for t in range(n_tokens)]
    k_rope = np.stack([rot[t] @ kv_a[t, d_c:] for t in range(n_tokens)])  # (T, d_R)
    q_rope = np.stack(
        [[rot[t] @ q[t, i, d_nope:] for i in range(n_heads)] for t in range(n_tokens)]
    )
    kv_b = (c_kv @ attn.wkv_b.weight.detach().numpy().T).reshape(n_tokens, n_heads, d_nope + d_v)
    scale = (d_nope + d_r) ** -0.5
    expected = np.einsum("shd,thd->sht", q[..., :d_nope], kv_b[..., :d_nope])
    expected = (expected + np.einsum("shr,tr->sht", q_rope, k_rope)) * scale

    scores = decoupled_scores(attn, hidden.double())
    assert scores.dtype == "float64" and scores.softmax_scale == pytest.approx(scale)
    np.testing.assert_allclose(scores.naive, expected, atol=1e-6)
    np.testing.assert_allclose(scores.absorbed, expected, atol=1e-6)
    np.testing.assert_allclose(scores.k_rope, k_rope, atol=1e-6)
    np.testing.assert_allclose(scores.q_rope, q_rope, atol=1e-6)
    assert scores.max_abs_diff == float(np.max(np.abs(scores.naive - scores.absorbed)))
    assert scores.max_abs_diff < 1e-12
    # the RoPE part: every head's q_R against the ONE shared k_R
    np.testing.assert_allclose(
        scores.rope_part, np.einsum("shr,tr->sht", q_rope, k_rope) * scale, atol=1e-6
    )


def test_every_head_reads_the_same_rope_key(lite, hidden):
    attn = lite.blocks[0].attn
    heads = [deepseek_latent_head(attn, hidden.double(), h) for h in range(attn.n_heads)]
    for other in heads[1:]:
        np.testing.assert_array_equal(other.k_rope, heads[0].k_rope)
    assert not np.allclose(heads[0].q_rope, heads[1].q_rope)  # the queries are per head


def test_odd_content_width_is_refused():
    from dataclasses import replace

    with pytest.raises(UserError, match="odd"):
        content_rope_config(replace(DEEPSEEK_TINY_LITE, qk_nope_head_dim=7))


@pytest.fixture(scope="module")
def scene_data(tiny_gpt2_dir, tmp_path_factory):
    from mla_core.scene_data.store import DataCache

    params = load_params(None, {"weights": str(tiny_gpt2_dir), "device": "cpu"})
    return sd.data_for_scene("DecoupledRope", params, DataCache(tmp_path_factory.mktemp("sd")))


def the_scene_model(d) -> DeepSeekModel:
    """The model the scene draws, loaded on its own: the demo MLA folder (its loader is
    checked against transformers in test_deepseek_folder.py) or the seeded deepseek-tiny."""
    from mla_core.loading.deepseek_folder import DEMO_MLA_DIR, load_deepseek_model

    if d["trained"]:
        return load_deepseek_model(DEMO_MLA_DIR).double()
    return DeepSeekModel(DEEPSEEK_TINY, seed=d["seed"]).double()


def test_scene_data_folds_are_the_explicit_products(scene_data):
    d = scene_data
    model = the_scene_model(d)
    cfg, attn = model.config, model.blocks[0].attn
    w_q = attn.w_q if cfg.q_lora_rank is None else attn.w_uq  # W_Q, or W_UQ after W_DQ
    w_uq_all = w_q.weight.detach().numpy()
    start = d["head"] * cfg.qk_head_dim
    w_uq = w_uq_all[start : start + cfg.qk_nope_head_dim]
    w_kvb = attn.wkv_b.weight.detach().numpy()
    start = d["head"] * (cfg.qk_nope_head_dim + cfg.v_head_dim)
    w_uk = w_kvb[start : start + cfg.qk_nope_head_dim]
    freqs = rope_frequencies(content_rope_config(cfg)).double().numpy()  # YaRN, d_nope wide
    for (m, n), name, score in zip(
        d["position_pairs"], ("fold_a", "fold_b"), d["pair_scores"], strict=True
    ):
        expected = w_uq.T @ explicit_rotation(m * freqs).T @ explicit_rotation(n * freqs) @ w_uk
        np.testing.assert_allclose(d[name], expected, atol=1e-7)
        assert score == pytest.approx(float(d["c_q"] @ expected @ d["c_kv"]), rel=1e-7, abs=1e-9)
    assert d["pair_scores"][0] != pytest.approx(d["pair_scores"][1], abs=1e-4)
    np.testing.assert_allclose(d["fold_plain"], w_uq.T @ w_uk, atol=1e-9)
    assert d["fold_max_abs_diff"] == float(np.max(np.abs(d["fold_a"] - d["fold_b"])))


def test_scene_data_shared_key_rows_and_cache(scene_data):
    d = scene_data
    cfg = the_scene_model(d).config
    k = d["k_rope_heads"]
    assert k.shape[0] == cfg.n_heads
    for h in range(1, k.shape[0]):
        np.testing.assert_array_equal(k[h], k[0])
    np.testing.assert_allclose(d["absorbed_row"], d["content_row"] + d["rope_row"], atol=1e-15)
    np.testing.assert_allclose(d["naive_row"], d["absorbed_row"], atol=1e-12)
    assert d["scores_dtype"] == "float64" and d["max_abs_diff"] < 1e-12
    # the shown RoPE part is the shown head's q_R against the shared k_R (float32 copies)
    q = d["q_rope_heads"][d["head"]]
    np.testing.assert_allclose(d["rope_row"], k[0] @ q * d["softmax_scale"], atol=1e-6)
    # the cache per token and layer: d_c + d_R, from the configs and the live cache
    small = cfg.kv_lora_rank + cfg.qk_rope_head_dim
    assert d["cache_per_token_layer"] == d["live_cache_per_token_layer"] == small
    v3 = builtin_config("deepseek-v3")
    real = d["real_config"]
    assert real["per_token_layer"] == v3.kv_lora_rank + v3.qk_rope_head_dim == 576
    assert (real["kv_lora_rank"], real["qk_rope_head_dim"]) == (512, 64)
    assert ("trained by this project" if d["trained"] else "untrained") in d["provenance"]["model"]


def test_scene_data_is_deterministic(scene_data):
    from mla_core.scene_data.decoupled_rope import decoupled_rope

    again = decoupled_rope(None)
    for name in ("fold_a", "q_rope_heads", "naive_row"):
        np.testing.assert_array_equal(again[name], scene_data[name])
    assert again.meta["pair_scores"] == scene_data["pair_scores"]
