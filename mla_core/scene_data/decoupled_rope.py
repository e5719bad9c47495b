"""DecoupledRope: a rotation between W_UQ and W_UK breaks absorption; a separate RoPE key fixes it.

Drawn from the project's small trained DeepSeek-style model (`assets/models/demo-mla`, read
through `loading.deepseek_folder.default_deepseek_model`) on the video's prompt. Without that
folder it falls back to `models.configs.DEEPSEEK_TINY`, randomly initialised with a fixed seed
and untrained (the rotation maths needs no training), on a fixed sequence of random token ids.
Everything is computed in float64 (the model loaded in float32, then converted).

1. If RoPE rotated the content query and key, the folded matrix W_UQ^T R_m^T R_n W_UK of one
   head would differ between two position pairs, and so would the score of the same two
   content vectors (c_Q of the last token, c_KV of the first): `analysis.decoupled_rope.
   rotated_fold`.
2. DeepSeek's decoupled key: q_R per head, one k_R for all heads (`analysis.latent_heads.
   deepseek_latent_head`, per head), and naive == absorbed scores of every head
   (`analysis.decoupled_rope.decoupled_scores`).
3. What is cached per token and layer: kv_lora_rank + qk_rope_head_dim (DeepSeek-V3's config,
   and the small model's live LatentCache).
"""

from __future__ import annotations

import numpy as np
import torch

from mla_core.analysis.cache_size import dims_from_config, elements_per_token_per_layer
from mla_core.analysis.decoupled_rope import decoupled_scores, query_latent_input, rotated_fold
from mla_core.analysis.latent_heads import deepseek_latent_head, deepseek_layer_input
from mla_core.errors import UserError
from mla_core.models.configs import DEEPSEEK_TINY, builtin_config
from mla_core.models.deepseek import DeepSeekModel
from mla_core.scene_data.inputs import SceneInputs
from mla_core.scene_data.store import SceneData

SEED = 0
N_TOKENS = 8
LAYER = 0
HEAD = 0
POSITION_PAIRS = ((2, 0), (7, 0))  # (query position m, key position n), same two vectors
REAL_CONFIG = "deepseek-v3"


def cache_inputs(inputs: SceneInputs) -> dict:
    """The demo MLA model's weights (a retrained model must not be drawn from old data)."""
    from mla_core.loading.deepseek_folder import DEMO_MLA_DIR
    from mla_core.loading.weights import sha256_of_file

    weights = DEMO_MLA_DIR / "model.safetensors"
    return {"demo_mla_weights": sha256_of_file(weights) if weights.is_file() else None}


def scene_model(inputs: SceneInputs | None) -> tuple[DeepSeekModel, list[int], str]:
    """(model in float64, token ids, what the model is): the demo MLA model on the first
    N_TOKENS tokens of the video's prompt, else the seeded untrained deepseek-tiny on random
    ids."""
    from mla_core.loading.deepseek_folder import DEMO_MLA_DIR, demo_mla_model

    if DEMO_MLA_DIR.is_dir():
        from mla_core.loading.tokenizer import gpt2_tokenizer

        model = demo_mla_model().double().eval()
        from mla_core.scene_data.params import VideoParams

        prompt = (inputs.params if inputs is not None else VideoParams()).prompt
        ids = gpt2_tokenizer().encode(prompt)[:N_TOKENS]
        if len(ids) < 2:
            raise UserError(f"prompt={prompt!r} needs at least 2 tokens for this scene")
        return model, ids, f"{DEMO_MLA_DIR.name}: trained by this project"
    model = DeepSeekModel(DEEPSEEK_TINY, seed=SEED).double().eval()
    generator = torch.Generator().manual_seed(SEED)
    ids = torch.randint(0, DEEPSEEK_TINY.vocab_size, (N_TOKENS,), generator=generator).tolist()
    return model, ids, f"{DEEPSEEK_TINY.name}: randomly initialised (seed {SEED}), untrained"


def decoupled_rope(inputs: SceneInputs) -> SceneData:
    """Arrays (T tokens, H heads): c_q, c_kv (the two content vectors of step 1);
    fold_plain, fold_a, fold_b [d'_c, d_c] (W_UQ^T W_UK, and with R_m^T R_n between for each
    of POSITION_PAIRS); q_rope_heads [H, d_R] (the last token's RoPE query of every head);
    k_rope_heads [H, T, d_R] (the RoPE key each head uses: one and the same); rope_row,
    content_row, naive_row, absorbed_row [T] (the last query of the shown head against every
    key, scaled)."""
    model, ids, model_name = scene_model(inputs)
    config = model.config
    n_tokens = len(ids)
    hidden = deepseek_layer_input(model, ids, LAYER)  # (T, C)
    attn = model.blocks[LAYER].attn
    query, key = n_tokens - 1, 0

    # 1. RoPE on the content part (what DeepSeek avoids)
    with torch.no_grad():
        c_q = query_latent_input(attn, hidden)[query]  # (d'_c,)
        c_kv, _ = attn.latents(hidden[None], torch.zeros(n_tokens, config.qk_rope_head_dim // 2))
    c_kv = c_kv[0, key]
    plain = rotated_fold(attn, HEAD, c_q, c_kv, 0, 0)  # m == n: no rotation left
    folds = [rotated_fold(attn, HEAD, c_q, c_kv, m, n) for m, n in POSITION_PAIRS]

    # 2. the decoupled RoPE key, per head, and both paths
    heads = [deepseek_latent_head(attn, hidden, h) for h in range(config.n_heads)]
    scores = decoupled_scores(attn, hidden)
    shown = (query, slice(None), HEAD)

    # 3. the cache: the config's numbers and the small model's live cache
    real = builtin_config(REAL_CONFIG)
    cache = model.new_cache()
    with torch.no_grad():
        model(torch.tensor([ids]), cache)
    element_size = cache.c_kv[0].element_size()
    live_per_token_layer = cache.nbytes // (element_size * cache.n_tokens * config.n_layers)

    return SceneData(
        "decoupled_rope",
        arrays={
            "token_ids": np.array(ids, dtype=np.int64),
            "c_q": c_q.numpy(),  # (d'_c,) the query token's
            "c_kv": c_kv.numpy(),  # (d_c,) the key token's
            "fold_plain": plain.matrix,
            "fold_a": folds[0].matrix,
            "fold_b": folds[1].matrix,
            "q_rope_heads": np.stack([h.q_rope[query] for h in heads]).astype(np.float64),
            "k_rope_heads": np.stack([h.k_rope for h in heads]).astype(np.float64),
            "rope_row": scores.rope_part[shown[0], HEAD],
            "content_row": scores.content_absorbed[shown[0], HEAD],
            "naive_row": scores.naive[shown[0], HEAD],
            "absorbed_row": scores.absorbed[shown[0], HEAD],
        },
        meta={
            "config": {
                "name": config.name,
                "n_heads": config.n_heads,
                "n_layers": config.n_layers,
                "hidden_size": config.hidden_size,
                "q_lora_rank": config.q_lora_rank,
                "kv_lora_rank": config.kv_lora_rank,
                "qk_nope_head_dim": config.qk_nope_head_dim,
                "qk_rope_head_dim": config.qk_rope_head_dim,
            },
            "seed": SEED,
            "trained": not model_name.startswith(DEEPSEEK_TINY.name),
            "model_name": model_name,
            "layer": LAYER,
            "head": HEAD,
            "query_index": query,
            "key_index": key,
            "plain_score": plain.score,
            "position_pairs": [list(p) for p in POSITION_PAIRS],
            "pair_scores": [f.score for f in folds],
            "fold_max_abs_diff": float(np.max(np.abs(folds[0].matrix - folds[1].matrix))),
            "softmax_scale": scores.softmax_scale,
            "scores_dtype": scores.dtype,
            "max_abs_diff": scores.max_abs_diff,  # naive vs absorbed, every head and token
            "cache_per_token_layer": elements_per_token_per_layer(dims_from_config(config), "mla"),
            "live_cache_per_token_layer": int(live_per_token_layer),
            "real_config": {
                "name": REAL_CONFIG,
                "kv_lora_rank": real.kv_lora_rank,
                "qk_rope_head_dim": real.qk_rope_head_dim,
                "per_token_layer": elements_per_token_per_layer(dims_from_config(real), "mla"),
                "n_heads": real.n_heads,
            },
            "provenance": {
                "model": model_name,
                "token_ids": ids,
                "dtype": "float64",
                "computed_by": "mla_core.analysis.decoupled_rope, analysis.latent_heads",
            },
        },
    )
