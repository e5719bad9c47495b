"""Hook: the headline numbers, DeepSeek-V3's KV cache per token with MHA and MLA, and the
throughput factor the DeepSeek-V2 paper reports."""

from __future__ import annotations

from mla_core.scene_data.inputs import SceneInputs
from mla_core.scene_data.store import SceneData


def hook(inputs: SceneInputs) -> SceneData:
    """Hook: DeepSeek-V3 bytes per token with MHA and MLA, and the cited throughput factor."""
    from mla_core.analysis.cache_size import bytes_per_token, dims_from_config
    from mla_core.analysis.paper_figures import GENERATION_THROUGHPUT_SPEEDUP as speedup
    from mla_core.models.configs import DEEPSEEK_V3

    dims = dims_from_config(DEEPSEEK_V3)
    mha, mla = bytes_per_token(dims, "mha", 2), bytes_per_token(dims, "mla", 2)
    return SceneData(
        "hook",
        meta={
            "mha_bytes_per_token": mha,
            "mla_bytes_per_token": mla,
            "cache_ratio": mha / mla,
            "throughput_speedup": speedup.value,
            "provenance": {
                "config": DEEPSEEK_V3.name,
                "dtype_bytes": 2,
                "computed_by": "mla_core.analysis.cache_size",
                "throughput_source": speedup.citation,
            },
        },
    )
