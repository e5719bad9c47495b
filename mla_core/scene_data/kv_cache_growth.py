"""KVCacheGrowth: greedy decoding with a KV cache, one token per forward, then DeepSeek-V3 size.

The new token's q, k, v of one head, the cache after every step and the live cache's bytes,
then the same cache formula at DeepSeek-V3 size. Shapes: T prompt tokens, D = head_dim,
S decode steps.
"""

from __future__ import annotations

import numpy as np
import torch

from mla_core.analysis.cache_size import bytes_per_token, dims_from_config
from mla_core.analysis.capture import prompt_token_ids
from mla_core.errors import UserError
from mla_core.models.configs import builtin_config
from mla_core.models.kv_cache import KVCache
from mla_core.scene_data.heads import main_head
from mla_core.scene_data.inputs import SceneInputs
from mla_core.scene_data.store import SceneData

CONTEXT = 100_000  # tokens: the long context the scene scales up to
DEEPSEEK_CONFIG = "deepseek-v3"
DEEPSEEK_DTYPE_BYTES = 2  # bf16


@torch.no_grad()
def kv_cache_growth(inputs: SceneInputs) -> SceneData:
    """Greedy decoding with `mla_core.models.kv_cache.KVCache`: one forward for the prompt, then
    inputs.params.new_tokens forwards of ONE token each.

    Arrays (shown head only; S = new_tokens): prefill_k, prefill_v [T, D]; step_q, step_k,
    step_v [S, D] (the new token's, computed once); cache_k, cache_v [T + S, D] (the cache
    after the last step: its first T rows are prefill_k/v, untouched); step_patterns
    [S, T + S] (the new query over the cache, zero-padded); cache_bytes and n_cached [S + 1]
    (the live cache after the prompt and after each step, all layers and heads, K and V).
    """
    n_steps = inputs.params.new_tokens

    model = inputs.model
    device = next(model.parameters()).device
    head = main_head(model, inputs.params)
    tokenizer = inputs.tokenizer
    prompt_ids = prompt_token_ids(inputs.params.prompt, model.config, bos=inputs.params.show_bos)
    if len(prompt_ids) + n_steps > model.config.n_ctx:
        raise UserError(
            f"the prompt and {n_steps} new tokens exceed the context of {model.config.n_ctx}"
        )
    cache = KVCache(model.config.n_layer)

    def forward(new_ids: list[int]) -> tuple[dict[str, np.ndarray], int]:
        """Run new_ids through the model with the cache; the shown head's tensors and the
        greedy next token."""
        per_layer: list[dict[str, torch.Tensor]] = []
        batch = torch.tensor([new_ids], device=device)
        logits = model(batch, kv_cache=cache, capture=per_layer)[0, -1]  # [V]
        captured = {  # [1, H, T, .] -> [T, .] for the shown head
            name: t[0, head.head].double().cpu().numpy()
            for name, t in per_layer[head.layer].items()
        }
        return captured, int(logits.argmax())

    prefill, next_id = forward(prompt_ids)
    fed_ids, step_q, step_k, step_v = [], [], [], []
    patterns = np.zeros((n_steps, len(prompt_ids) + n_steps))
    cache_bytes, n_cached = [cache.nbytes], [cache.n_tokens]
    for s in range(n_steps):
        fed_ids.append(next_id)
        step, next_id = forward([next_id])
        step_q.append(step["q"][-1])  # the one new query
        step_k.append(step["k"][-1])  # k and v hold the whole cache; the new row is last
        step_v.append(step["v"][-1])
        patterns[s, : step["pattern"].shape[-1]] = step["pattern"][-1]
        cache_bytes.append(cache.nbytes)
        n_cached.append(cache.n_tokens)
    cache_k, cache_v = (t[0, head.head].double().cpu().numpy() for t in cache.layer_kv(head.layer))
    element_bytes = cache.keys[0].element_size()
    deepseek = dims_from_config(builtin_config(DEEPSEEK_CONFIG))  # MHA with V3's heads
    deepseek_per_token = bytes_per_token(deepseek, "mha", DEEPSEEK_DTYPE_BYTES)
    return SceneData(
        "kv_cache_growth",
        arrays={
            "prompt_ids": np.array(prompt_ids, dtype=np.int64),
            "fed_ids": np.array(fed_ids, dtype=np.int64),  # the token of each step
            "last_prediction": np.array([next_id], dtype=np.int64),
            "prefill_k": prefill["k"],
            "prefill_v": prefill["v"],
            "step_q": np.stack(step_q),
            "step_k": np.stack(step_k),
            "step_v": np.stack(step_v),
            "step_patterns": patterns,
            "cache_k": cache_k,
            "cache_v": cache_v,
            "cache_bytes": np.array(cache_bytes, dtype=np.int64),
            "n_cached": np.array(n_cached, dtype=np.int64),
        },
        meta={
            "prompt_tokens": tokenizer.display_tokens(prompt_ids),
            "fed_tokens": tokenizer.display_tokens(fed_ids),
            "last_prediction_token": tokenizer.display_token(next_id),
            "head": head.as_dict(),
            "n_layers": model.config.n_layer,
            "n_heads": model.config.n_head,
            "head_dim": model.config.head_dim,
            "element_bytes": element_bytes,
            "cache_dtype": str(cache.keys[0].dtype).removeprefix("torch."),
            # the cache formula (mla_core.analysis.cache_size) for this model, MHA
            "bytes_per_token": bytes_per_token(
                dims_from_config(model.config), "mha", element_bytes
            ),
            "deepseek_config": DEEPSEEK_CONFIG,
            "deepseek_dtype_bytes": DEEPSEEK_DTYPE_BYTES,
            "deepseek_n_layers": deepseek.n_layers,
            "deepseek_n_heads": deepseek.n_heads,
            "deepseek_head_dim": deepseek.head_dim,
            "deepseek_bytes_per_token": deepseek_per_token,
            "context": CONTEXT,
            "deepseek_bytes_at_context": deepseek_per_token * CONTEXT,
            "provenance": inputs.prompt_provenance(
                prompt_ids,
                heads=[head.name],
                generated_ids=[*fed_ids, next_id],
            ),
        },
    )
