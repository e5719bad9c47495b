"""CacheSizePerToken: bytes of KV cache per token for MHA, GQA, MQA and MLA at DeepSeek-V3 size."""

from __future__ import annotations

import numpy as np

from mla_core.scene_data.inputs import SceneInputs
from mla_core.scene_data.store import SceneData


def cache_size_per_token(
    inputs: SceneInputs,
    config_name: str = "deepseek-v3",
    dtype_bytes: int = 2,
    gqa_groups: int = 8,
    context: int = 100_000,
) -> SceneData:
    """CacheSizePerToken: the cache_size report for DeepSeek-V3 (MHA, GQA, MQA, MLA)."""
    from mla_core.analysis.cache_size import cache_report, dims_from_config
    from mla_core.models.configs import builtin_config

    config = builtin_config(config_name)
    report = cache_report(dims_from_config(config), dtype_bytes, context, gqa_groups)
    kinds = ["mha", "gqa", "mqa", "mla"]
    return SceneData(
        "cache_size_per_token",
        arrays={
            "bytes_per_token": np.array([report["bytes_per_token"][k] for k in kinds], np.int64),
            "cache_bytes": np.array([report["cache_bytes"][k] for k in kinds], np.int64),
        },
        meta={
            "kinds": kinds,
            "report": report,
            "config": {
                "n_layers": config.n_layers,
                "n_heads": config.n_heads,
                "head_dim": config.v_head_dim,
                "kv_lora_rank": config.kv_lora_rank,
                "qk_rope_head_dim": config.qk_rope_head_dim,
            },
            "provenance": {
                "config": config_name,
                "dtype_bytes": dtype_bytes,
                "computed_by": "mla_core.analysis.cache_size",
            },
        },
    )
