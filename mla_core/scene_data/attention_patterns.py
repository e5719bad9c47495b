"""AttentionPatterns: the attention patterns [N, T, T] of a few real heads on the prompt.

The heads are the ones named in `params.heads`, else the most typical head of each kind
(`scene_data.heads`). The model reads the prompt with the <|endoftext|> BOS token in front only
when `params.show_bos`: what is drawn is exactly what the model computed.
"""

from __future__ import annotations

import numpy as np

from mla_core.analysis.capture import capture_attention
from mla_core.scene_data.heads import heads_to_show
from mla_core.scene_data.inputs import SceneInputs
from mla_core.scene_data.store import SceneData


def attention_patterns(inputs: SceneInputs) -> SceneData:
    """The attention patterns [N, T, T] of the heads to show, on the prompt."""
    model = inputs.model
    heads = heads_to_show(model, inputs.params)
    cap = capture_attention(model, inputs.params.prompt, bos=inputs.params.show_bos, top_k=1)
    patterns = np.stack([cap.pattern[h.layer, h.head] for h in heads])  # [N, T, T]
    return SceneData(
        "attention_patterns",
        arrays={"token_ids": np.array(cap.token_ids, dtype=np.int64), "patterns": patterns},
        meta={
            "tokens": cap.tokens,
            "heads": [h.as_dict() for h in heads],
            "provenance": inputs.prompt_provenance(
                cap.token_ids, heads=[f"{h.layer}.{h.head}" for h in heads]
            ),
        },
    )
