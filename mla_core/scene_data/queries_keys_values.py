"""QueriesKeysValues: one head step by step, q, k, v -> q k^T -> scale -> mask -> softmax -> z.

The steps are recomputed from the model's own q, k, v in float64 by the one causal attention
(`models.attention.causal_attention`) and checked against the pattern and z the model computed.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from mla_core.analysis.capture import capture_attention
from mla_core.models.attention import causal_attention
from mla_core.scene_data.heads import main_head
from mla_core.scene_data.inputs import SceneInputs
from mla_core.scene_data.store import SceneData


def attention_steps(q: np.ndarray, k: np.ndarray, v: np.ndarray) -> dict[str, np.ndarray]:
    """Causal attention of one head, every step kept (float64): q, k, v [T, D] ->
    dot_products = q k^T, scores = dot_products / sqrt(D), masked_scores, pattern, z."""
    q_t, k_t, v_t = (torch.from_numpy(np.asarray(x, dtype=np.float64)) for x in (q, k, v))
    steps = causal_attention(q_t, k_t, v_t)
    return {
        "dot_products": (q_t @ k_t.T).numpy(),  # [T, T], before the 1/sqrt(D) scale
        **{name: steps[name].numpy() for name in ("scores", "masked_scores", "pattern", "z")},
    }


def queries_keys_values(inputs: SceneInputs) -> SceneData:
    """One head on the prompt: the model's own q, k, v [T, D] and each step from them to z.

    The steps are recomputed from q, k, v in float64 (the numbers the scene prints) and
    checked against the model's own pattern and z. focus_row, the query whose row is built
    cell by cell, is two thirds down the prompt: a row with keys on both sides of the mask.
    """

    model = inputs.model
    head = main_head(model, inputs.params)
    cap = capture_attention(model, inputs.params.prompt, bos=inputs.params.show_bos, top_k=1)
    q, k, v = (getattr(cap, n)[head.layer, head.head].astype(np.float64) for n in "qkv")
    steps = attention_steps(q, k, v)
    for name in ("pattern", "z"):
        model_value = getattr(cap, name)[head.layer, head.head]
        if not np.allclose(steps[name], model_value, atol=1e-4, rtol=1e-3):
            worst = float(np.max(np.abs(steps[name] - model_value)))
            raise RuntimeError(f"{name} recomputed from q, k, v differs from the model's: {worst}")
    n_tokens = len(cap.token_ids)
    return SceneData(
        "queries_keys_values",
        arrays={"token_ids": np.array(cap.token_ids, dtype=np.int64), "q": q, "k": k, "v": v}
        | steps,
        meta={
            "tokens": cap.tokens,
            "head": head.as_dict(),
            "head_dim": int(q.shape[1]),
            "scale": 1.0 / math.sqrt(q.shape[1]),
            "focus_row": (2 * n_tokens) // 3,
            "provenance": inputs.prompt_provenance(
                cap.token_ids, heads=[f"{head.layer}.{head.head}"]
            ),
        },
    )
