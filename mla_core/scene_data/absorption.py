"""Absorption: one head of the GPT-2 converted to MLA scores its keys two ways, with equal results.

The naive path expands every cached latent into the head's key (k = W_UK c_KV + b_K) and takes
q . k; the absorbed path folds W_UK into the query (q_latent = W_UK^T q) and scores the cached
latents directly (q_latent . c_KV + q . b_K). Both are computed twice by
`mla_core.analysis.absorption`: in float64 (a float64 copy of the model, converted at the
same rank) for the exact comparison the scene prints, and in the model's own dtype as it runs.
T tokens, D head width, r latent width, H heads.
"""

from __future__ import annotations

import copy

import numpy as np

from mla_core.analysis.absorption import absorption_check, expansion_sizes
from mla_core.analysis.capture import prompt_token_ids
from mla_core.models.gpt2_to_mla import convert_gpt2
from mla_core.scene_data.heads import main_head
from mla_core.scene_data.inputs import SceneInputs
from mla_core.scene_data.store import SceneData


def absorption(inputs: SceneInputs) -> SceneData:
    """Arrays: dots_naive, dots_absorbed [T, T] (q . k before the scale, float64 maths),
    bias_part [T] (q . b_K), c_kv [T, r] and the naive path's expansion of it, keys and
    values [T, H * D] (all heads side by side, float64 maths). focus_row is the query whose
    row the scene writes out: the last token, which sees every key."""
    model = inputs.model
    rank = inputs.latent_rank
    head = main_head(model, inputs.params)
    ids = prompt_token_ids(inputs.params.prompt, model.config, bos=inputs.params.show_bos)

    exact_model = convert_gpt2(copy.deepcopy(model).double(), rank)
    exact = absorption_check(exact_model, ids, head.layer, head.head)
    as_run = absorption_check(convert_gpt2(model, rank), ids, head.layer, head.head)
    keys, values = _expanded(exact_model, ids, head.layer)
    config = model.config
    return SceneData(
        "absorption",
        arrays={
            "token_ids": np.array(ids, dtype=np.int64),
            "dots_naive": exact.dots_naive,
            "dots_absorbed": exact.dots_absorbed,
            "bias_part": exact.bias_part,
            "c_kv": exact.c_kv,
            "keys": keys,
            "values": values,
        },
        meta={
            "tokens": inputs.tokenizer.display_tokens(ids),
            "head": head.as_dict(),
            "focus_row": len(ids) - 1,
            "rank": rank,
            "n_layers": config.n_layer,
            "n_heads": config.n_head,
            "head_dim": config.head_dim,
            "n_embd": config.n_embd,
            "sizes": expansion_sizes(config, rank),
            "exact_dtype": exact.dtype,
            "max_abs_diff": exact.max_abs_diff,
            "run_dtype": as_run.dtype,
            "run_max_abs_diff": as_run.max_abs_diff,
            "provenance": inputs.prompt_provenance(
                ids,
                heads=[head.name],
                latent_rank=rank,
                computed_by="mla_core.analysis.absorption (float64 copy of the model)",
            ),
        },
    )


def _expanded(model, ids: list[int], layer: int) -> tuple[np.ndarray, np.ndarray]:
    """The naive path's keys and values of every head, side by side: (T, H * D) each."""
    import torch

    capture: list[dict[str, torch.Tensor]] = []
    with torch.no_grad():
        model(torch.tensor([ids], device=model.wte.weight.device), capture=capture)
    record = capture[layer]

    def side_by_side(t: torch.Tensor) -> np.ndarray:  # (1, H, T, D) -> (T, H * D)
        return t[0].transpose(0, 1).flatten(1).to("cpu", torch.float64).numpy()

    return side_by_side(record["k"]), side_by_side(record["v"])
