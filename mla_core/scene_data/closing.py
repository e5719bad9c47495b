"""Closing: the path from MHA's cache to MLA's, one step per row, at DeepSeek-V3 size.

Every number is `analysis.cache_size` at DeepSeek-V3 dims (2 bytes per number):
MHA -> sharing keys and values (GQA-8) -> a latent c_KV alone (512 numbers per layer) ->
absorbing W_UK and W_UV (the cache stays the latent; without absorption the expanded keys and
values would be cached) -> the decoupled RoPE key (+64: 576 numbers) -> 56.9x less than MHA.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from mla_core.scene_data.inputs import SceneInputs
from mla_core.scene_data.store import SceneData


def closing(inputs: SceneInputs, dtype_bytes: int = 2, gqa_groups: int = 8) -> SceneData:
    """Closing: per-layer numbers and bytes per token of each step of the story (V3 dims)."""
    from mla_core.analysis.cache_size import (
        bytes_per_token,
        dims_from_config,
        elements_per_token_per_layer,
    )
    from mla_core.models.configs import DEEPSEEK_V3

    dims = dims_from_config(DEEPSEEK_V3)
    latent_only = replace(dims, name=f"{dims.name} latent only", qk_rope_head_dim=0)
    # (step, dims, cache kind): what is cached after each idea of the video
    path = [
        ("mha", dims, "mha"),
        ("gqa", dims, "gqa"),
        ("latent", latent_only, "mla"),
        ("absorbed", latent_only, "mla"),
        ("rope", dims, "mla"),
    ]
    steps = []
    for step, step_dims, kind in path:
        groups = gqa_groups if kind == "gqa" else None
        steps.append(
            {
                "step": step,
                "kind": kind,
                "per_layer": elements_per_token_per_layer(step_dims, kind, groups),
                "bytes_per_token": bytes_per_token(step_dims, kind, dtype_bytes, groups),
            }
        )
    mha, mla = steps[0]["bytes_per_token"], steps[-1]["bytes_per_token"]
    return SceneData(
        "closing",
        arrays={"bytes_per_token": np.array([s["bytes_per_token"] for s in steps], np.int64)},
        meta={
            "steps": steps,
            "n_layers": dims.n_layers,
            "n_heads": dims.n_heads,
            "head_dim": dims.head_dim,
            "gqa_groups": gqa_groups,
            "kv_lora_rank": dims.kv_lora_rank,
            "qk_rope_head_dim": dims.qk_rope_head_dim,
            "naive_per_layer": elements_per_token_per_layer(dims, "mla_naive"),
            "mqa_bytes_per_token": bytes_per_token(dims, "mqa", dtype_bytes),
            "dtype_bytes": dtype_bytes,
            "ratio": mha / mla,
            "provenance": {
                "config": DEEPSEEK_V3.name,
                "dtype_bytes": dtype_bytes,
                "computed_by": "mla_core.analysis.cache_size",
            },
        },
    )
