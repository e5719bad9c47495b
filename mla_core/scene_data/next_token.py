"""NextToken: the prompt's tokens and the model's top-k next tokens with their probabilities."""

from __future__ import annotations

import numpy as np

from mla_core.analysis.capture import capture_attention
from mla_core.scene_data.inputs import SceneInputs
from mla_core.scene_data.store import SceneData


def next_token(inputs: SceneInputs) -> SceneData:
    """The prompt's tokens and the model's top_k next tokens with their probabilities."""
    cap = capture_attention(
        inputs.model, inputs.params.prompt, bos=inputs.params.show_bos, top_k=inputs.params.top_k
    )
    return SceneData(
        "next_token",
        arrays={
            "token_ids": np.array(cap.token_ids, dtype=np.int64),
            "top_ids": np.array([t.token_id for t in cap.top_k], dtype=np.int64),
            # softmax of the last position's logits over the whole vocabulary
            "top_probabilities": np.array([t.probability for t in cap.top_k]),
        },
        meta={
            "tokens": cap.tokens,
            "top_tokens": [t.token for t in cap.top_k],
            "chosen_id": cap.top_k[0].token_id,  # greedy: the most likely token
            "chosen_token": cap.top_k[0].token,
            "vocab_size": len(cap.logits),  # the tokens the probabilities are spread over
            "provenance": inputs.prompt_provenance(cap.token_ids),
        },
    )
