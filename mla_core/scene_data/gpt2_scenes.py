"""Scene data for the GPT-2 half of the video (beats 2-5), computed live and cached.

One function per scene, each `(params, data_cache) -> SceneData` like the others in
`mla_core.scene_data` (same disk cache, same provenance record, no Manim):

- `next_token`: the prompt's tokens and the model's top-k next tokens (NextToken);
- `attention_gallery`: attention patterns of a few real heads on the prompt (AttentionPatterns);
- `head_walkthrough`: one head step by step: q, k, v, q k^T, the 1/sqrt(D) scale, the causal
  mask, softmax, pattern @ v (QueriesKeysValues);
- `kv_cache_steps`: greedy decoding with a KV cache, one token per forward: the new token's
  q, k, v of one head, the cache after every step and the live cache's bytes, then the same
  cache at DeepSeek-V3 size (KVCacheGrowth).

The model reads the prompt with the <|endoftext|> BOS token in front only when
`params.show_bos`: what is drawn is then exactly what the model computed (every pattern row
on screen sums to 1). Heads are the ones named in `params.heads`, else `pick_heads` chooses
the most typical head of each kind; no head index is fixed here.

Shapes: T tokens, D = head_dim, K = top-k, N heads shown, S decode steps.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from mla_core.analysis.cache_size import bytes_per_token, dims_from_config
from mla_core.analysis.capture import capture_attention, prompt_token_ids
from mla_core.analysis.head_scores import measure_head_scores
from mla_core.errors import UserError
from mla_core.loading.tokenizer import gpt2_tokenizer
from mla_core.models.configs import builtin_config
from mla_core.models.gpt2 import GPT2
from mla_core.models.kv_cache import KVCache
from mla_core.scene_data import (
    DataCache,
    SceneData,
    VideoParams,
    _model,
    _weights_source,
    model_provenance,
    parse_heads,
    resolved_device,
)

# the gallery's heads, in the order shown (names as in mla_core.analysis.head_scores)
HEAD_KINDS = ("previous_token", "duplicate_token", "induction", "first_token")
CONTEXT = 100_000  # tokens: the long context the KV cache scene scales up to
DEEPSEEK_CONFIG = "deepseek-v3"
DEEPSEEK_DTYPE_BYTES = 2  # bf16


def _model_of(params: VideoParams) -> GPT2:
    return _model(params.weights, resolved_device(params))


def _inputs(params: VideoParams, **more) -> dict:
    """What a cache entry depends on besides scene_data's code version."""
    return {
        "weights_sha256": _weights_source(params.weights).sha256,
        "prompt": params.prompt,
        "bos": params.show_bos,
        "heads": params.heads,
        "device": resolved_device(params),
        **more,
    }


# --- which heads ------------------------------------------------------------------------------


@dataclass(frozen=True)
class ChosenHead:
    layer: int
    head: int
    kind: str  # what it is most typical of, e.g. "previous_token"; "" when the user named it
    score: float | None = None  # its score for that kind

    def as_dict(self) -> dict:
        return {"layer": self.layer, "head": self.head, "kind": self.kind, "score": self.score}


def pick_heads(model: GPT2, kinds: tuple[str, ...] = HEAD_KINDS) -> list[ChosenHead]:
    """One head per kind, as `mla_core.analysis.head_scores` measures them: the first kind gets the
    most typical head (`typical_head`); each later kind the best head not already chosen,
    so a gallery never shows the same head twice."""
    scores = measure_head_scores(model)
    chosen: list[ChosenHead] = []
    for kind in kinds:
        table = scores.kind(kind).copy()  # [n_layer, n_head]
        for taken in chosen:
            table[taken.layer, taken.head] = -np.inf
        layer, head = divmod(int(np.argmax(table)), table.shape[1])
        chosen.append(ChosenHead(layer, head, kind, float(table[layer, head])))
    return chosen


def heads_to_show(model: GPT2, params: VideoParams) -> list[ChosenHead]:
    """params.heads ("5.1,2.2"), checked against the model, else one typical head per kind."""
    named = parse_heads(params.heads)
    if named is None:
        return pick_heads(model)
    for layer, head in named:
        if not (0 <= layer < model.config.n_layer and 0 <= head < model.config.n_head):
            raise UserError(
                f"heads: {layer}.{head} is not in this model (layers 0..{model.config.n_layer - 1}"
                f", heads 0..{model.config.n_head - 1})"
            )
    return [ChosenHead(layer, head, "") for layer, head in named]


def main_head(model: GPT2, params: VideoParams) -> ChosenHead:
    """The head a one-head scene opens up: the first one named, else the most typical
    previous-token head (its pattern reads at a glance)."""
    if parse_heads(params.heads) is not None:
        return heads_to_show(model, params)[0]
    return pick_heads(model, ("previous_token",))[0]


def _provenance(params: VideoParams, token_ids: list[int], **more) -> dict:
    return {**model_provenance(params), "prompt": params.prompt, "token_ids": token_ids, **more}


# --- beat 2: the next token ---------------------------------------------------------------------


def next_token(params: VideoParams, data_cache: DataCache | None = None) -> SceneData:
    """The prompt's tokens and the model's top_k next tokens with their probabilities."""
    data_cache = data_cache or DataCache()

    def compute() -> SceneData:
        cap = capture_attention(
            _model_of(params), params.prompt, bos=params.show_bos, top_k=params.top_k
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
                "provenance": _provenance(params, cap.token_ids),
            },
        )

    return data_cache.get_or_compute("next_token", _inputs(params, top_k=params.top_k), compute)


# --- beat 3: attention patterns -----------------------------------------------------------------


def attention_gallery(params: VideoParams, data_cache: DataCache | None = None) -> SceneData:
    """The attention patterns [N, T, T] of the heads to show, on the prompt."""
    data_cache = data_cache or DataCache()

    def compute() -> SceneData:
        model = _model_of(params)
        heads = heads_to_show(model, params)
        cap = capture_attention(model, params.prompt, bos=params.show_bos, top_k=1)
        patterns = np.stack([cap.pattern[h.layer, h.head] for h in heads])  # [N, T, T]
        return SceneData(
            "attention_gallery",
            arrays={"token_ids": np.array(cap.token_ids, dtype=np.int64), "patterns": patterns},
            meta={
                "tokens": cap.tokens,
                "heads": [h.as_dict() for h in heads],
                "provenance": _provenance(
                    params, cap.token_ids, heads=[f"{h.layer}.{h.head}" for h in heads]
                ),
            },
        )

    return data_cache.get_or_compute("attention_gallery", _inputs(params), compute)


# --- beat 3: one head, step by step -------------------------------------------------------------


def attention_steps(q: np.ndarray, k: np.ndarray, v: np.ndarray) -> dict[str, np.ndarray]:
    """Causal attention of one head, every step kept (float64).

    q, k, v: [T, D]. Returns dot_products = q k^T, scores = dot_products / sqrt(D),
    masked_scores (-inf where a query would see a later key), pattern = row-wise softmax,
    z = pattern @ v.
    """
    n_tokens, head_dim = q.shape
    dot_products = q @ k.T  # [T, T]
    scores = dot_products / math.sqrt(head_dim)
    future = np.triu(np.ones((n_tokens, n_tokens), dtype=bool), k=1)
    masked_scores = np.where(future, -np.inf, scores)
    exp = np.exp(masked_scores - masked_scores.max(axis=1, keepdims=True))  # exp(-inf) = 0
    pattern = exp / exp.sum(axis=1, keepdims=True)
    return {
        "dot_products": dot_products,
        "scores": scores,
        "masked_scores": masked_scores,
        "pattern": pattern,
        "z": pattern @ v,  # [T, D]
    }


def head_walkthrough(params: VideoParams, data_cache: DataCache | None = None) -> SceneData:
    """One head on the prompt: the model's own q, k, v [T, D] and each step from them to z.

    The steps are recomputed from q, k, v in float64 (the numbers the scene prints) and
    checked against the model's own pattern and z. focus_row, the query whose row is built
    cell by cell, is two thirds down the prompt: a row with keys on both sides of the mask.
    """
    data_cache = data_cache or DataCache()

    def compute() -> SceneData:
        model = _model_of(params)
        head = main_head(model, params)
        cap = capture_attention(model, params.prompt, bos=params.show_bos, top_k=1)
        q, k, v = (getattr(cap, n)[head.layer, head.head].astype(np.float64) for n in "qkv")
        steps = attention_steps(q, k, v)
        for name in ("pattern", "z"):
            model_value = getattr(cap, name)[head.layer, head.head]
            if not np.allclose(steps[name], model_value, atol=1e-4, rtol=1e-3):
                worst = float(np.max(np.abs(steps[name] - model_value)))
                raise RuntimeError(
                    f"{name} recomputed from q, k, v differs from the model's: {worst}"
                )
        n_tokens = len(cap.token_ids)
        return SceneData(
            "head_walkthrough",
            arrays={"token_ids": np.array(cap.token_ids, dtype=np.int64), "q": q, "k": k, "v": v}
            | steps,
            meta={
                "tokens": cap.tokens,
                "head": head.as_dict(),
                "head_dim": int(q.shape[1]),
                "scale": 1.0 / math.sqrt(q.shape[1]),
                "focus_row": (2 * n_tokens) // 3,
                "provenance": _provenance(
                    params, cap.token_ids, heads=[f"{head.layer}.{head.head}"]
                ),
            },
        )

    return data_cache.get_or_compute("head_walkthrough", _inputs(params), compute)


# --- beats 4-5: the KV cache grows --------------------------------------------------------------


@torch.no_grad()
def kv_cache_steps(params: VideoParams, data_cache: DataCache | None = None) -> SceneData:
    """Greedy decoding with `mla_core.models.kv_cache.KVCache`: one forward for the prompt, then
    params.new_tokens forwards of ONE token each.

    Arrays (shown head only; S = new_tokens): prefill_k, prefill_v [T, D]; step_q, step_k,
    step_v [S, D] (the new token's, computed once); cache_k, cache_v [T + S, D] (the cache
    after the last step: its first T rows are prefill_k/v, untouched); step_patterns
    [S, T + S] (the new query over the cache, zero-padded); cache_bytes and n_cached [S + 1]
    (the live cache after the prompt and after each step, all layers and heads, K and V).
    """
    data_cache = data_cache or DataCache()
    n_steps = params.new_tokens

    def compute() -> SceneData:
        model = _model_of(params)
        device = next(model.parameters()).device
        head = main_head(model, params)
        tokenizer = gpt2_tokenizer()
        prompt_ids = prompt_token_ids(params.prompt, model.config, bos=params.show_bos)
        if len(prompt_ids) + n_steps > model.config.n_ctx:
            raise UserError(
                f"the prompt and {n_steps} new tokens exceed the context of {model.config.n_ctx}"
            )
        cache = KVCache(model.config.n_layer)

        def forward(new_ids: list[int]) -> tuple[dict[str, np.ndarray], int]:
            """Run new_ids through the model with the cache; the shown head's tensors and the
            greedy next token."""
            per_layer: list[dict[str, torch.Tensor]] = []
            inputs = torch.tensor([new_ids], device=device)
            logits = model(inputs, kv_cache=cache, capture=per_layer)[0, -1]  # [V]
            captured = {  # [1, H, T, .] -> [T, .] for the shown head
                name: t[0, head.head].double().cpu().numpy()
                for name, t in per_layer[head.layer].items()
            }
            return captured, int(logits.argmax())

        prefill, next_id = forward(prompt_ids)
        fed_ids, step_q, step_k, step_v = [], [], [], []
        patterns = np.zeros((n_steps, len(prompt_ids) + n_steps))
        cache_bytes, n_cached = [cache.size_bytes], [cache.n_tokens]
        for s in range(n_steps):
            fed_ids.append(next_id)
            step, next_id = forward([next_id])
            step_q.append(step["q"][-1])  # the one new query
            step_k.append(step["k"][-1])  # k and v hold the whole cache; the new row is last
            step_v.append(step["v"][-1])
            patterns[s, : step["pattern"].shape[-1]] = step["pattern"][-1]
            cache_bytes.append(cache.size_bytes)
            n_cached.append(cache.n_tokens)
        cache_k, cache_v = (
            t[0, head.head].double().cpu().numpy() for t in cache.layer_kv(head.layer)
        )
        element_bytes = cache.keys[0].element_size()
        deepseek = dims_from_config(builtin_config(DEEPSEEK_CONFIG))  # MHA with V3's heads
        deepseek_per_token = bytes_per_token(deepseek, "mha", DEEPSEEK_DTYPE_BYTES)
        return SceneData(
            "kv_cache_steps",
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
                "provenance": _provenance(
                    params,
                    prompt_ids,
                    heads=[f"{head.layer}.{head.head}"],
                    generated_ids=[*fed_ids, next_id],
                ),
            },
        )

    return data_cache.get_or_compute("kv_cache_steps", _inputs(params, new_tokens=n_steps), compute)


# Scene name -> data function, merged into mla_core.scene_data.SCENE_DATA.
GPT2_SCENE_DATA = {
    "NextToken": next_token,
    "AttentionPatterns": attention_gallery,
    "QueriesKeysValues": head_walkthrough,
    "KVCacheGrowth": kv_cache_steps,
}
