"""A small DeepSeek-style language model: token embedding, blocks of RMSNorm + MLA and
RMSNorm + a dense SwiGLU MLP, a final RMSNorm and the output head (tied or untied).

DeepSeek-V3 replaces most dense MLPs by a mixture of experts; the attention, the part this
project is about, does not care, so every block here is dense. The model runs on CPU, is
deterministic for a given seed, and decodes with a `LatentCache` holding only c_KV and
k_rope per token and layer.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from mla_core.models.configs import DeepSeekConfig
from mla_core.models.mla import LatentCache, MultiHeadLatentAttention, RMSNorm


class SwiGLU(nn.Module):
    """The dense MLP: w_down(silu(w_gate x) * w_up x)."""

    def __init__(self, hidden_size: int, intermediate_size: int) -> None:
        super().__init__()
        self.w_gate = nn.Linear(hidden_size, intermediate_size, bias=False)
        self.w_up = nn.Linear(hidden_size, intermediate_size, bias=False)
        self.w_down = nn.Linear(intermediate_size, hidden_size, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w_down(F.silu(self.w_gate(x)) * self.w_up(x))


class PreNormBlock(nn.Module):
    """h + attn(RMSNorm(h)), then h + MLP(RMSNorm(h)), for any attention module `attn`.

    Extra forward arguments (MLA's cache and path) are passed on to the attention.
    """

    def __init__(self, attn: nn.Module, hidden_size: int, mlp_size: int, eps: float) -> None:
        super().__init__()
        self.attn_norm = RMSNorm(hidden_size, eps)
        self.attn = attn
        self.mlp_norm = RMSNorm(hidden_size, eps)
        self.mlp = SwiGLU(hidden_size, mlp_size)

    def forward(self, h: torch.Tensor, *attn_args) -> torch.Tensor:
        h = h + self.attn(self.attn_norm(h), *attn_args)
        return h + self.mlp(self.mlp_norm(h))


class DeepSeekBlock(PreNormBlock):
    """h + MLA(RMSNorm(h)), then h + MLP(RMSNorm(h))."""

    def __init__(self, config: DeepSeekConfig, layer_index: int, absorb: bool) -> None:
        super().__init__(
            MultiHeadLatentAttention(config, layer_index, absorb),
            config.hidden_size,
            intermediate_size(config),
            config.rms_norm_eps,
        )

    def forward(
        self, h: torch.Tensor, cache: LatentCache | None, absorb: bool | None
    ) -> torch.Tensor:
        return super().forward(h, cache, absorb)


def intermediate_size(config: DeepSeekConfig) -> int:
    """The dense MLP width (config value, or 4 * hidden when the config leaves it at 0)."""
    return config.intermediate_size or 4 * config.hidden_size


@torch.no_grad()
def init_normal(model: nn.Module, seed: int, std: float = 0.02) -> None:
    """Every parameter ~ N(0, std^2) from one generator seeded with `seed`, in the order of
    `named_parameters`; the RMSNorm gains are set to 1 instead."""
    generator = torch.Generator().manual_seed(seed)
    for name, param in model.named_parameters():
        if name.endswith("norm.weight"):
            param.fill_(1.0)
        else:
            param.copy_(torch.randn(param.shape, generator=generator) * std)


class DeepSeekModel(nn.Module):
    """Tokens (batch, seq) -> logits (batch, seq, vocab)."""

    def __init__(self, config: DeepSeekConfig, absorb: bool = False, seed: int = 0) -> None:
        super().__init__()
        self.config = config
        self.embed = nn.Embedding(config.vocab_size, config.hidden_size)
        self.blocks = nn.ModuleList(
            DeepSeekBlock(config, i, absorb) for i in range(config.n_layers)
        )
        self.norm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.head = (
            None
            if config.tie_embeddings
            else nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        )
        self.init_weights(seed)

    def init_weights(self, seed: int, std: float = 0.02) -> None:
        """Matrices ~ N(0, std^2) from one seeded generator; norm gains 1."""
        init_normal(self, seed, std)

    def new_cache(self) -> LatentCache:
        return LatentCache(self.config.n_layers)

    def forward(
        self,
        tokens: torch.Tensor,
        cache: LatentCache | None = None,
        absorb: bool | None = None,
    ) -> torch.Tensor:
        h = self.embed(tokens)
        for block in self.blocks:
            h = block(h, cache, absorb)
        h = self.norm(h)
        if self.head is None:
            return h @ self.embed.weight.T
        return self.head(h)
