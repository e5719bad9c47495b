"""The KV cache: keep every token's keys and values so each new token costs one step.

Generating token t+1 needs the new token's query and the keys and values of ALL earlier
tokens. Those never change once computed (causal attention: a token never sees later
ones), so we keep them. Per layer the cache holds K and V, each [B, H, T, D]; it grows by
one row per token, per head, per layer, which is exactly what `mla_core.analysis.cache_size` counts
as MHA: 2 * H * D * n_layer numbers per token.

    cache = KVCache(model.config.n_layer)
    logits = model(prompt_ids, kv_cache=cache)  # prefill: caches the whole prompt
    logits = model(next_id[:, None], kv_cache=cache)  # one step: one new row per layer

`generate` runs greedy decoding this way and records the cache after every step.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from mla_core.errors import UserError


class LayerCache:
    """The one cache mechanism: per layer, tensors that grow by one row per token.

    A subclass names the per-layer lists it keeps (`stored`, attribute names) and the axis
    the tokens run along; this KVCache, the converted GPT-2's `LatentKVCache` and DeepSeek's
    `LatentCache` all answer the same questions: `n_tokens` cached in every layer, and
    `nbytes`, the bytes their tensors take (what `analysis.cache_size` predicts).
    """

    stored: tuple[str, ...] = ()
    token_axis: int = 1

    def __init__(self, n_layers: int) -> None:
        for name in self.stored:
            setattr(self, name, [None] * n_layers)

    @property
    def n_layers(self) -> int:
        return len(getattr(self, self.stored[0]))

    def length(self, layer: int = 0) -> int:
        """Tokens cached so far in `layer`."""
        first = getattr(self, self.stored[0])[layer]
        return 0 if first is None else first.shape[self.token_axis]

    @property
    def n_tokens(self) -> int:
        """Tokens cached in every layer (during a forward, the layers not yet reached)."""
        return min(self.length(layer) for layer in range(self.n_layers))

    @property
    def nbytes(self) -> int:
        """Bytes held by all cached tensors."""
        return sum(
            t.numel() * t.element_size()
            for name in self.stored
            for t in getattr(self, name)
            if t is not None
        )

    def _append(self, layer: int, *new: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Add the new tokens' tensors (one per stored name) to `layer`; return all of them."""
        whole = []
        for name, tensor in zip(self.stored, new, strict=True):
            per_layer = getattr(self, name)
            old = per_layer[layer]
            tensor = tensor.detach()
            per_layer[layer] = tensor if old is None else torch.cat((old, tensor), self.token_axis)
            whole.append(per_layer[layer])
        return tuple(whole)

    def check_in_step(self) -> None:
        """Called by a model after a full forward: every layer must hold the same tokens."""
        lengths = [self.length(layer) for layer in range(self.n_layers)]
        for layer, length in enumerate(lengths):
            if length == 0 or length != lengths[0]:
                raise RuntimeError(f"cache layer {layer} is out of step with the others")


class KVCache(LayerCache):
    """Per-layer keys and values of the tokens seen so far (MHA layout, [B, H, T, D])."""

    stored = ("keys", "values")
    token_axis = 2

    def append(
        self, layer: int, k: torch.Tensor, v: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Add the new tokens' k, v [B, H, T_new, D] to `layer`; return all of them."""
        return self._append(layer, k, v)

    def layer_kv(self, layer: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The cached K and V of one layer, each [B, H, T, D]."""
        if self.keys[layer] is None:
            raise UserError(f"KV cache layer {layer} is empty: run the prompt through it first")
        return self.keys[layer], self.values[layer]


@dataclass
class DecodeStep:
    """One forward pass of greedy decoding and the state of the cache right after it."""

    fed_ids: list[int]  # the tokens this pass fed in (the prompt, then one token at a time)
    token_id: int  # the token chosen (greedy: highest logit)
    logits: torch.Tensor  # [V] the logits it was chosen from
    n_cached: int  # tokens in the cache after this step's forward
    cache_bytes: int


@torch.no_grad()
def generate(
    model: torch.nn.Module,
    prompt_ids: list[int],
    n_new: int,
    cache: LayerCache | None = None,
    on_step: Callable[[LayerCache], None] | None = None,
    **forward_kwargs,
) -> tuple[list[int], list[DecodeStep], LayerCache]:
    """Greedy decoding with a cache: one forward for the prompt, then one token per step.

    The one decoding loop of every model here: GPT-2 with a `KVCache` (the default), GPT-2
    converted to MLA with a `LatentKVCache`, the DeepSeek-style model with a `LatentCache`
    (pass its `absorb=` through `forward_kwargs`). `on_step(cache)` runs after every forward,
    for callers that record what the cache holds then.

    Returns the generated token ids, one DecodeStep per generated token, and the final cache.
    Step i's logits come from the forward that cached every token before it; the last
    generated token is never fed back, so the final cache holds prompt + n_new - 1 tokens.
    """
    if not prompt_ids:
        raise UserError("the prompt is empty: give at least one token")
    if n_new < 0:
        raise UserError(f"n_new={n_new} must be >= 0")
    device = next(model.parameters()).device
    cache = cache if cache is not None else KVCache(model.config.n_layer)
    fed = list(prompt_ids)  # the prompt, then one token at a time
    generated: list[int] = []
    steps: list[DecodeStep] = []
    for _ in range(n_new):
        logits = model(torch.tensor([fed], device=device), cache, **forward_kwargs)[0, -1]  # [V]
        token_id = int(logits.argmax())
        generated.append(token_id)
        steps.append(DecodeStep(fed, token_id, logits, cache.n_tokens, cache.nbytes))
        if on_step is not None:
            on_step(cache)
        fed = [token_id]
    return generated, steps, cache
