"""Results: what MLA buys, computed where it can be and cited where it cannot.

- DeepSeek-V3's cache per token with MHA and MLA (`analysis.cache_size`);
- the technical notes' V2-style example, recomputed, with its printed typo
  (`analysis.notes_example`);
- the DeepSeek-V2 paper's deployed figures (93.3% less cache, 5.76x throughput against
  DeepSeek 67B, measured with KV quantisation) and its Table 9 ablation, MHA against MLA
  (`analysis.paper_figures`);
- the attention ablation trained on this machine: MHA, GQA, MQA and MLA on the same text,
  cache bytes per token against validation loss (`analysis.ablation_results`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mla_core.analysis.ablation_results import ABLATION_JSON
from mla_core.scene_data.inputs import SceneInputs
from mla_core.scene_data.store import SceneData


def cache_inputs(inputs: SceneInputs) -> dict:
    """What this data depends on besides the parameters: the ablation JSON (so a new training
    run is drawn, not the cached older one)."""
    from mla_core.loading.weights import sha256_of_file

    return {"ablation_json": sha256_of_file(ABLATION_JSON) if ABLATION_JSON.is_file() else None}


def results(
    inputs: SceneInputs, dtype_bytes: int = 2, ablation_json: Path = ABLATION_JSON
) -> SceneData:
    """Results: V3's cache ratio, the notes' example, the paper's deployed and ablation
    figures, and the ablation trained here."""
    from mla_core.analysis.ablation_results import (
        RUN_FIELDS,
        load_ablation,
        mla_against_the_rest,
    )
    from mla_core.analysis.cache_size import bytes_per_token, dims_from_config
    from mla_core.analysis.notes_example import NOTES_V2_EXAMPLE, notes_example
    from mla_core.analysis.paper_figures import (
        GENERATION_THROUGHPUT_SPEEDUP,
        KV_CACHE_REDUCTION_DEPLOYED,
        MLA_ABLATION,
    )
    from mla_core.models.configs import DEEPSEEK_V3

    dims = dims_from_config(DEEPSEEK_V3)
    mha, mla = bytes_per_token(dims, "mha", dtype_bytes), bytes_per_token(dims, "mla", dtype_bytes)
    rows = [
        {
            "model": r.model,
            "attention": r.attention,
            "mmlu": r.mmlu,
            "kv_elements_per_token": r.kv_elements_per_token,
        }
        for r in MLA_ABLATION.rows
    ]
    figures = {
        name: {"value": f.value, "unit": f.unit, "what": f.what, "citation": f.citation}
        for name, f in (
            ("kv_cache_reduction", KV_CACHE_REDUCTION_DEPLOYED),
            ("throughput_speedup", GENERATION_THROUGHPUT_SPEEDUP),
        )
    }
    trained = load_ablation(ablation_json)
    trained_runs = [{field: run[field] for field in RUN_FIELDS} for run in trained["runs"]]
    return SceneData(
        "results",
        arrays={
            "ablation_mmlu": np.array([r["mmlu"] for r in rows]),
            "ablation_kv_elements": np.array([r["kv_elements_per_token"] for r in rows]),
            "trained_cache_bytes": np.array([r["cache_bytes_per_token"] for r in trained_runs]),
            "trained_val_loss": np.array([r["val_loss"] for r in trained_runs]),
        },
        meta={
            "v3": {
                "n_layers": dims.n_layers,
                "n_heads": dims.n_heads,
                "head_dim": dims.head_dim,
                "kv_lora_rank": dims.kv_lora_rank,
                "qk_rope_head_dim": dims.qk_rope_head_dim,
                "dtype_bytes": dtype_bytes,
                "mha_bytes_per_token": mha,
                "mla_bytes_per_token": mla,
                "ratio": mha / mla,
                "reduction": 1 - mla / mha,
            },
            "notes": notes_example(),
            "paper": {**figures, "arxiv": KV_CACHE_REDUCTION_DEPLOYED.arxiv},
            "ablation": {
                "rows": rows,
                "what": MLA_ABLATION.what,
                "citation": MLA_ABLATION.citation,
            },
            "trained": {
                "runs": trained_runs,
                "mla_against": mla_against_the_rest(trained),
                "shape": trained["shape"],
                "data": trained["data"],
                "seed": trained["seed"],
                "command": trained["command"],
                "cache_dtype_bytes": trained["cache_dtype_bytes"],
                "file": Path(ablation_json).name,
            },
            "provenance": {
                "config": DEEPSEEK_V3.name,
                "notes_example": NOTES_V2_EXAMPLE.name,
                "dtype_bytes": dtype_bytes,
                "computed_by": "mla_core.analysis.cache_size, mla_core.analysis.notes_example",
                "trained_here": trained["command"],
                "cited": [
                    KV_CACHE_REDUCTION_DEPLOYED.citation,
                    GENERATION_THROUGHPUT_SPEEDUP.citation,
                    MLA_ABLATION.citation,
                ],
            },
        },
    )
