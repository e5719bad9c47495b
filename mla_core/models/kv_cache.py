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

from dataclasses import dataclass
from typing import Protocol

import torch

from mla_core.errors import UserError


class Cache(Protocol):
    """What every cache here answers, whatever it stores (this KVCache, the converted
    GPT-2's `LatentKVCache`, DeepSeek's `LatentCache`): how many tokens it holds in every
    layer, and how many bytes its tensors take (what `analysis.cache_size` predicts)."""

    @property
    def n_tokens(self) -> int: ...

    @property
    def nbytes(self) -> int: ...


class KVCache:
    """Per-layer keys and values of the tokens seen so far (MHA layout, [B, H, T, D])."""

    def __init__(self, n_layers: int) -> None:
        self.keys: list[torch.Tensor | None] = [None] * n_layers
        self.values: list[torch.Tensor | None] = [None] * n_layers
        self.n_tokens = 0  # tokens cached in every layer (advanced after a full forward)

    @property
    def n_layers(self) -> int:
        return len(self.keys)

    def append(
        self, layer: int, k: torch.Tensor, v: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Add the new tokens' k, v [B, H, T_new, D] to `layer`; return all of them."""
        if self.keys[layer] is None:
            self.keys[layer], self.values[layer] = k.detach(), v.detach()
        else:
            self.keys[layer] = torch.cat([self.keys[layer], k.detach()], dim=2)
            self.values[layer] = torch.cat([self.values[layer], v.detach()], dim=2)
        return self.keys[layer], self.values[layer]

    def advance(self, n_new: int) -> None:
        """Called by the model once every layer has appended the same `n_new` tokens."""
        self.n_tokens += n_new
        for layer, k in enumerate(self.keys):
            if k is None or k.size(2) != self.n_tokens:
                raise RuntimeError(f"KV cache layer {layer} is out of step with the others")

    @property
    def nbytes(self) -> int:
        """Bytes held by all cached keys and values."""
        return sum(t.numel() * t.element_size() for t in self.keys + self.values if t is not None)

    def layer_kv(self, layer: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The cached K and V of one layer, each [B, H, T, D]."""
        if self.keys[layer] is None:
            raise UserError(f"KV cache layer {layer} is empty: run the prompt through it first")
        return self.keys[layer], self.values[layer]


@dataclass
class DecodeStep:
    """One generated token and the state of the cache right after producing it."""

    token_id: int  # the token chosen (greedy: highest logit)
    logits: torch.Tensor  # [V] the logits it was chosen from
    n_cached: int  # tokens in the cache after this step's forward
    cache_bytes: int


@torch.no_grad()
def generate(
    model: torch.nn.Module, prompt_ids: list[int], n_new: int
) -> tuple[list[int], list[DecodeStep], KVCache]:
    """Greedy decoding with a KV cache: one forward for the prompt, then one token per step.

    Returns the generated token ids, one DecodeStep per generated token, and the final cache.
    Step i's logits come from the forward that cached every token before it; the last
    generated token is never fed back, so the final cache holds prompt + n_new - 1 tokens.
    """
    if not prompt_ids:
        raise UserError("the prompt is empty: give at least one token")
    if n_new < 0:
        raise UserError(f"n_new={n_new} must be >= 0")
    device = next(model.parameters()).device
    cache = KVCache(model.config.n_layer)
    inputs = torch.tensor([prompt_ids], device=device)  # [1, T] the prompt, then one token
    generated: list[int] = []
    steps: list[DecodeStep] = []
    for _ in range(n_new):
        logits = model(inputs, kv_cache=cache)[0, -1]  # [V]
        token_id = int(logits.argmax())
        generated.append(token_id)
        steps.append(DecodeStep(token_id, logits, cache.n_tokens, cache.nbytes))
        inputs = torch.tensor([[token_id]], device=device)
    return generated, steps, cache
