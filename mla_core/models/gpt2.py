"""GPT-2 in one readable file: the model whose attention heads the video opens up.

Top to bottom: the attention maths as a plain function, then the modules in the order a
token meets them (attention, MLP, block, the whole model). Names follow the Hugging Face
checkpoints (wte, wpe, h.{i}.attn.c_attn, ...) so loading is a matter of copying tensors
(see `mla_core.loading.weights`); the Conv1D transposes happen there, not here.

GPT-2 specifics that differ from a generic GPT: GELU in its tanh form ("gelu_new"),
LayerNorm before each sublayer and once more at the end, learned position embeddings,
and an output head tied to the token embedding.

Two attention paths compute the same thing:
- fast: `scaled_dot_product_attention(is_causal=True)`, used for plain forwards (training);
- explicit: q k^T / sqrt(d), mask, softmax, pattern @ v (`models.attention.causal_attention`),
  used when
  the caller asks to capture the tensors or decodes step by step with a KV cache.

Shapes: B batch, T tokens, C = n_embd, H = n_head, D = head_dim = C / H, V = vocab_size.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from mla_core.errors import UserError
from mla_core.models.attention import causal_attention
from mla_core.models.configs import GPT2Config

if TYPE_CHECKING:
    from mla_core.models.kv_cache import KVCache

# What the explicit path records per layer when the caller passes a `capture` list.
CAPTURED_NAMES = ("q", "k", "v", "scores", "masked_scores", "pattern", "z")


class CausalSelfAttention(nn.Module):
    """Multi-head attention: every head has its own query, key and value (the MHA of the video)."""

    def __init__(self, config: GPT2Config) -> None:
        super().__init__()
        self.n_head = config.n_head
        self.head_dim = config.head_dim
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd)  # x -> [q | k | v]
        self.c_proj = nn.Linear(config.n_embd, config.n_embd)  # concatenated heads -> residual

    def split_heads(self, x: torch.Tensor) -> torch.Tensor:
        batch, n_tokens, _ = x.shape
        return x.view(batch, n_tokens, self.n_head, self.head_dim).transpose(1, 2)  # [B, H, T, D]

    def forward(
        self,
        x: torch.Tensor,
        layer: int = 0,
        kv_cache: KVCache | None = None,
        capture: list[dict[str, torch.Tensor]] | None = None,
    ) -> torch.Tensor:
        batch, n_tokens, n_embd = x.shape
        q, k, v = self.c_attn(x).split(n_embd, dim=2)
        q, k, v = self.split_heads(q), self.split_heads(k), self.split_heads(v)  # [B, H, T, D]

        if kv_cache is None and capture is None:
            z = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:
            if kv_cache is not None:
                # The new tokens' keys and values join the cache; the queries see all of it.
                k, v = kv_cache.append(layer, k, v)  # [B, H, T_past + T, D]
            steps = causal_attention(q, k, v)
            if capture is not None:
                capture.append({name: steps[name].detach() for name in CAPTURED_NAMES})
            z = steps["z"]

        z = z.transpose(1, 2).contiguous().view(batch, n_tokens, n_embd)  # heads side by side
        return self.c_proj(z)


class MLP(nn.Module):
    """Position-wise feed-forward: widen 4x, GELU (tanh form, as GPT-2 was trained), narrow."""

    def __init__(self, config: GPT2Config) -> None:
        super().__init__()
        self.c_fc = nn.Linear(config.n_embd, 4 * config.n_embd)
        self.gelu = nn.GELU(approximate="tanh")
        self.c_proj = nn.Linear(4 * config.n_embd, config.n_embd)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.c_proj(self.gelu(self.c_fc(x)))


class Block(nn.Module):
    """One transformer layer: x + attn(ln_1(x)), then x + mlp(ln_2(x))."""

    def __init__(self, config: GPT2Config) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.n_embd, eps=config.layer_norm_eps)
        self.attn = CausalSelfAttention(config)
        self.ln_2 = nn.LayerNorm(config.n_embd, eps=config.layer_norm_eps)
        self.mlp = MLP(config)

    def forward(
        self,
        x: torch.Tensor,
        layer: int = 0,
        kv_cache: KVCache | None = None,
        capture: list[dict[str, torch.Tensor]] | None = None,
    ) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x), layer, kv_cache, capture)
        return x + self.mlp(self.ln_2(x))


class GPT2(nn.Module):
    """GPT-2: token + position embeddings, n_layer blocks, a final LayerNorm, the tied head.

    `GPT2(config)(token_ids[B, T]) -> logits[B, T, V]`. Pass `kv_cache` (a
    `mla_core.models.kv_cache.KVCache`) to continue a sequence whose earlier tokens are cached, and
    `capture` (an empty list) to receive, per layer, a dict of the explicit attention tensors
    (`CAPTURED_NAMES`, each [B, H, T, D] or [B, H, T, T_keys]).
    """

    def __init__(self, config: GPT2Config) -> None:
        super().__init__()
        self.config = config
        self.wte = nn.Embedding(config.vocab_size, config.n_embd)  # token embedding
        self.wpe = nn.Embedding(config.n_ctx, config.n_embd)  # position embedding
        self.h = nn.ModuleList(Block(config) for _ in range(config.n_layer))
        self.ln_f = nn.LayerNorm(config.n_embd, eps=config.layer_norm_eps)
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        self.lm_head.weight = self.wte.weight  # tied: the head reads the embedding matrix
        self.init_weights()

    def init_weights(self) -> None:
        """GPT-2's initialisation: N(0, 0.02), residual projections shrunk by sqrt(2 n_layer).

        Call `torch.manual_seed` first for reproducible weights.
        """
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, mean=0.0, std=0.02)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Embedding):
                nn.init.normal_(module.weight, mean=0.0, std=0.02)
            elif isinstance(module, nn.LayerNorm):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
        residual_std = 0.02 / math.sqrt(2 * self.config.n_layer)
        for block in self.h:
            nn.init.normal_(block.attn.c_proj.weight, mean=0.0, std=residual_std)
            nn.init.normal_(block.mlp.c_proj.weight, mean=0.0, std=residual_std)

    def num_parameters(self) -> int:
        """Parameters counted once (the tied head shares the token embedding)."""
        return sum(p.numel() for p in self.parameters())

    def forward(
        self,
        token_ids: torch.Tensor,
        kv_cache: KVCache | None = None,
        capture: list[dict[str, torch.Tensor]] | None = None,
    ) -> torch.Tensor:
        _, n_tokens = token_ids.shape
        n_past = kv_cache.n_tokens if kv_cache is not None else 0
        if n_past + n_tokens > self.config.n_ctx:
            raise UserError(
                f"{n_past + n_tokens} tokens exceed the model's context of "
                f"{self.config.n_ctx} tokens"
            )
        positions = torch.arange(n_past, n_past + n_tokens, device=token_ids.device)
        x = self.wte(token_ids) + self.wpe(positions)  # [B, T, C]
        for layer, block in enumerate(self.h):
            x = block(x, layer, kv_cache, capture)
        if kv_cache is not None:
            kv_cache.check_in_step()
        return self.lm_head(self.ln_f(x))  # [B, T, V]
