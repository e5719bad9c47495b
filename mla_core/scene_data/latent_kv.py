"""LatentKV: one token through MLA's latent, then the latent cache growing while decoding.

The video's GPT-2 is converted to MLA at the video's rank r (`inputs.latent_rank`,
`mla_core.models.gpt2_to_mla.convert_gpt2`). For the shown head (`main_head`) and the last
prompt token: its hidden state h -> W_DKV -> c_KV (the only thing cached) -> W_UK, W_UV give
the head's key and value. Then DeepSeek-V3's shapes from its config, and greedy decoding
with the latent cache (`mla_core.analysis.latent_heads.gpt2_latent_cache_steps`): the
shown layer's c_KV rows after every pass, the live cache's bytes and the MHA cache of the
same model at the same length (`cache_bytes_per_token`, the `cache_size` formulas).

Shapes: T prompt tokens, C = n_embd, r = rank, D = head_dim, S = passes (prompt + steps).
"""

from __future__ import annotations

import numpy as np

from mla_core.analysis.latent_heads import gpt2_latent_cache_steps, gpt2_latent_head
from mla_core.errors import UserError
from mla_core.models.configs import builtin_config
from mla_core.models.gpt2_to_mla import cache_bytes_per_token, convert_gpt2
from mla_core.scene_data.heads import main_head
from mla_core.scene_data.inputs import SceneInputs
from mla_core.scene_data.store import SceneData

DEEPSEEK_CONFIG = "deepseek-v3"


def latent_kv(inputs: SceneInputs) -> SceneData:
    """Arrays: x [T, C] (the layer's attention input), c_kv [T, r], w_dkv [r, C], w_uk and
    w_uv [D, r] (the shown head's), b_k, b_v [D], k, v [T, D] (the head's keys and values
    from the latents); cache_rows [n_final, r] (the shown layer's cached latents after the
    last pass, its first n_cached[0] rows the prompt's); n_cached, cache_bytes (live
    latent cache, all layers), mha_cache_bytes (the same model's MHA cache at that
    length) [S]. `token` is the followed token's row (the last prompt token)."""
    model = inputs.model
    config = model.config
    rank = inputs.latent_rank
    n_steps = inputs.params.new_tokens
    head = main_head(model, inputs.params)
    bos = inputs.params.show_bos
    converted = convert_gpt2(model, rank)
    one = gpt2_latent_head(converted, inputs.params.prompt, head.layer, head.head, bos=bos)
    if len(one.token_ids) + n_steps > config.n_ctx:
        raise UserError(f"the prompt and {n_steps} new tokens exceed the context of {config.n_ctx}")
    # n_steps + 1 passes: the prompt, then n_steps generated tokens fed back (each cached)
    steps = gpt2_latent_cache_steps(
        converted, inputs.params.prompt, n_steps + 1, head.layer, bos=bos
    )
    element_bytes = model.wte.weight.element_size()  # the cache holds the model's dtype
    per_token = cache_bytes_per_token(config, rank, element_bytes)
    n_cached = np.array([s.n_cached for s in steps], dtype=np.int64)
    fed = [s.tokens[0] for s in steps[1:]]  # the token each decode pass fed in
    ds = builtin_config(DEEPSEEK_CONFIG)
    return SceneData(
        "latent_kv",
        arrays={
            "token_ids": np.array(one.token_ids, dtype=np.int64),
            "x": one.x,
            "c_kv": one.c_kv,
            "w_dkv": one.w_dkv,
            "w_uk": one.w_uk,
            "w_uv": one.w_uv,
            "b_k": one.b_k,
            "b_v": one.b_v,
            "k": one.k,
            "v": one.v,
            "cache_rows": steps[-1].c_kv,
            "n_cached": n_cached,
            "cache_bytes": np.array([s.cache_bytes for s in steps], dtype=np.int64),
            "mha_cache_bytes": per_token["mha"] * n_cached,
            "latent_formula_bytes": per_token["mla"] * n_cached,
        },
        meta={
            "tokens": one.tokens,
            "token": len(one.token_ids) - 1,
            "fed_tokens": fed,
            "last_prediction": steps[-1].next_token,
            "head": head.as_dict(),
            "rank": rank,
            "n_layer": config.n_layer,
            "n_head": config.n_head,
            "n_embd": config.n_embd,
            "head_dim": config.head_dim,
            "element_bytes": element_bytes,
            "bytes_per_token": per_token,
            "deepseek": {
                "config": DEEPSEEK_CONFIG,
                "hidden_size": ds.hidden_size,
                "kv_lora_rank": ds.kv_lora_rank,
                "n_heads": ds.n_heads,
                "qk_nope_head_dim": ds.qk_nope_head_dim,
                "v_head_dim": ds.v_head_dim,
                "qk_rope_head_dim": ds.qk_rope_head_dim,
                "n_layers": ds.n_layers,
            },
            "provenance": inputs.prompt_provenance(
                one.token_ids,
                heads=[head.name],
                latent_rank=rank,
                generated_ids=[*(s.next_token_id for s in steps)],
                converted_by="mla_core.models.gpt2_to_mla.convert_gpt2",
            ),
        },
    )
