"""SharingKeysValues: MQA and GQA share keys and values between heads; what that saves and costs.

One layer's per-head keys and values of the prompt (the layer of the main head), the same
layer's keys and values when its heads share them in groups (mean-pooled projections, the GQA
paper's checkpoint conversion, no uptraining), the cost of each variant measured on held-out
text (`mla_core.analysis.kv_sharing`), and the DeepSeek-V2 paper's ablation (Table 8).
Shapes: H heads, G groups, T prompt tokens, D = head_dim.
"""

from __future__ import annotations

import numpy as np

from mla_core.analysis.capture import prompt_token_ids
from mla_core.analysis.kv_sharing import (
    GQA_PAPER,
    gqa_group_counts,
    grouped_kv,
    middle_gqa_groups,
    sharing_costs,
    variant_label,
)
from mla_core.analysis.mla_sweep import HELDOUT_SAMPLE, HELDOUT_SAMPLE_SOURCE, text_provenance
from mla_core.analysis.paper_figures import SHARING_ABLATION
from mla_core.scene_data.heads import main_head
from mla_core.scene_data.inputs import SceneInputs
from mla_core.scene_data.store import SceneData

PAPER_ORDER = ("MHA", "GQA-8", "MQA")  # the cited rows, in the order of the measured table
WINDOW = 128  # tokens per held-out window (cut to the model's context when it is shorter)


def sharing_keys_values(inputs: SceneInputs) -> SceneData:
    """Arrays: k_g{G}, v_g{G} [G, T, D] for G in `group_counts` (G == H: the heads' own keys
    and values; fewer: one per group, the mean of its heads' projections, same layer input);
    bytes_per_token, head_kl, perplexity [variants] (the measured costs, in that order)."""
    model = inputs.model
    config = model.config
    head = main_head(model, inputs.params)
    token_ids = prompt_token_ids(inputs.params.prompt, config, bos=inputs.params.show_bos)
    gqa_groups = middle_gqa_groups(config.n_head)
    group_counts = sorted({config.n_head, 1, *([gqa_groups] if gqa_groups else [])}, reverse=True)

    arrays: dict[str, np.ndarray] = {"token_ids": np.array(token_ids, dtype=np.int64)}
    for groups in group_counts:
        k, v = grouped_kv(model, token_ids, head.layer, groups)
        arrays[f"k_g{groups}"] = k.double().numpy()
        arrays[f"v_g{groups}"] = v.double().numpy()

    costs = sharing_costs(
        model,
        HELDOUT_SAMPLE.read_text(encoding="utf-8"),
        group_counts,
        head.layer,
        head.head,
        window=WINDOW,
    )
    for name in ("bytes_per_token", "head_kl", "perplexity"):
        arrays[name] = np.array([row[name] for row in costs["rows"]])
    paper = [SHARING_ABLATION.row(name) for name in PAPER_ORDER]
    return SceneData(
        "sharing_keys_values",
        arrays=arrays,
        meta={
            "tokens": inputs.tokenizer.display_tokens(token_ids),
            "head": head.as_dict(),
            "layer": head.layer,
            "n_head": config.n_head,
            "head_dim": config.head_dim,
            "group_counts": group_counts,
            "labels": [variant_label(g, config.n_head) for g in group_counts],
            "gqa_groups": gqa_groups,  # None: no group count strictly between 1 and n_head
            "gqa_options": gqa_group_counts(config.n_head),
            "costs": costs,
            "paper": {
                "rows": [
                    {"attention": r.attention, "model": r.model, "mmlu": r.mmlu} for r in paper
                ],
                "what": SHARING_ABLATION.what,
                "citation": SHARING_ABLATION.citation,
            },
            "conversion": "K/V projections mean-pooled per group, no uptraining "
            "(Ainslie et al. 2023)",
            "conversion_source": GQA_PAPER,
            "provenance": inputs.prompt_provenance(
                token_ids,
                heads=[head.name],
                heldout_text=text_provenance(HELDOUT_SAMPLE, HELDOUT_SAMPLE_SOURCE),
                computed_by="mla_core.analysis.kv_sharing",
            ),
        },
    )
