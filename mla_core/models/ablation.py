"""The four models of the attention ablation: MHA, GQA, MQA and MLA in one backbone.

Every model is the DeepSeek-style decoder of `mla_core.models.deepseek`: token embedding
(tied with the output head), blocks of RMSNorm + attention and RMSNorm + SwiGLU MLP, a final
RMSNorm. Only the attention differs:

    kind   attention                                   cached per token and layer
    mha    GroupedQueryAttention, n_kv_heads = n_heads 2 * n_heads * d_h
    gqa    GroupedQueryAttention, n_kv_heads = groups  2 * groups * d_h
    mqa    GroupedQueryAttention, n_kv_heads = 1       2 * d_h
    mla    MultiHeadLatentAttention (DeepSeekModel)    d_c + d_R

The MLA model is exactly `DeepSeekModel` (no query compression, as DeepSeek-V2-Lite), so the
trained model is a real DeepSeek-style model. The attention kinds have different parameter
counts; each kind's SwiGLU width is chosen (`matched_intermediate_size`) so that its total
parameter count is as close as possible to the MHA model's, so the comparison is at equal size.
"""

from __future__ import annotations

import torch
from torch import nn

from mla_core.errors import UserError
from mla_core.models.configs import (
    ABLATION_KINDS,
    AblationShape,
    DeepSeekConfig,
    GroupedQueryConfig,
)
from mla_core.models.deepseek import DeepSeekModel, PreNormBlock, init_normal
from mla_core.models.grouped_attention import GroupedQueryAttention
from mla_core.models.mla import MultiHeadLatentAttention, RMSNorm

KINDS = ABLATION_KINDS  # "mha", "gqa", "mqa", "mla", in the table's order


def kv_heads(kind: str, shape: AblationShape) -> int | None:
    """Key/value heads of a kind (None for MLA, which has none: it caches a latent)."""
    check_kind(kind)
    return {"mha": shape.n_heads, "gqa": shape.gqa_kv_heads, "mqa": 1, "mla": None}[kind]


def kind_label(kind: str, shape: AblationShape) -> str:
    """ "MHA", "GQA-2", "MQA" or "MLA"."""
    check_kind(kind)
    return f"GQA-{shape.gqa_kv_heads}" if kind == "gqa" else kind.upper()


def check_kind(kind: str) -> None:
    if kind not in ABLATION_KINDS:
        raise UserError(f"unknown attention kind {kind!r}; allowed: {', '.join(ABLATION_KINDS)}")


class GroupedQueryModel(nn.Module):
    """Tokens (batch, seq) -> logits (batch, seq, vocab), with GQA (MHA, MQA) blocks.

    The same layout as `DeepSeekModel` (embed, blocks.{i}.attn_norm / attn / mlp_norm / mlp,
    norm, head) and the same seeded initialisation (`init_normal`).
    """

    def __init__(self, config: GroupedQueryConfig, seed: int = 0) -> None:
        super().__init__()
        self.config = config
        self.embed = nn.Embedding(config.vocab_size, config.hidden_size)
        self.blocks = nn.ModuleList(
            PreNormBlock(
                GroupedQueryAttention(
                    config.hidden_size,
                    config.n_heads,
                    config.n_kv_heads,
                    config.head_dim,
                    config.rope_theta,
                ),
                config.hidden_size,
                config.intermediate_size,
                config.rms_norm_eps,
            )
            for _ in range(config.n_layers)
        )
        self.norm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.head = (
            None
            if config.tie_embeddings
            else nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        )
        init_normal(self, seed)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        if tokens.shape[-1] > self.config.max_seq_len:
            raise UserError(
                f"{tokens.shape[-1]} tokens are more than max_seq_len={self.config.max_seq_len} "
                f"of {self.config.name!r}"
            )
        h = self.embed(tokens)
        for block in self.blocks:
            h = block(h)
        h = self.norm(h)
        if self.head is None:
            return h @ self.embed.weight.T
        return self.head(h)


# --- one model per kind, at (nearly) equal size ----------------------------------------


def attention_module(kind: str, shape: AblationShape) -> nn.Module:
    """One layer's attention of `kind` (what decides the kinds' parameter differences)."""
    if kind == "mla":
        return MultiHeadLatentAttention(deepseek_config(shape, shape.mha_intermediate_size))
    return GroupedQueryAttention(
        shape.hidden_size, shape.n_heads, kv_heads(kind, shape), shape.head_dim, shape.rope_theta
    )


def count_parameters(module: nn.Module) -> int:
    """Parameters of a module, a tied matrix counted once."""
    return sum(p.numel() for p in module.parameters())


def matched_intermediate_size(kind: str, shape: AblationShape) -> int:
    """The SwiGLU width that brings `kind`'s parameter count closest to the MHA model's.

    Every layer is alike, so it is matched per layer: a SwiGLU of width I has 3 * hidden * I
    parameters, and the width makes up for the attention's difference from MHA, rounded to
    the nearest multiple of `shape.mlp_multiple`.
    """
    check_kind(kind)
    gap = count_parameters(attention_module("mha", shape)) - count_parameters(
        attention_module(kind, shape)
    )
    exact = shape.mha_intermediate_size + gap / (3 * shape.hidden_size)
    step = shape.mlp_multiple
    return max(step, step * round(exact / step))


def deepseek_config(shape: AblationShape, intermediate_size: int) -> DeepSeekConfig:
    """The MLA model's config: a small DeepSeek-V2-Lite-style model (no query compression)."""
    return DeepSeekConfig(
        name="ablation-mla",
        hidden_size=shape.hidden_size,
        n_layers=shape.n_layers,
        n_heads=shape.n_heads,
        q_lora_rank=None,
        kv_lora_rank=shape.kv_lora_rank,
        qk_nope_head_dim=shape.qk_nope_head_dim,
        qk_rope_head_dim=shape.qk_rope_head_dim,
        v_head_dim=shape.v_head_dim,
        vocab_size=shape.vocab_size,
        intermediate_size=intermediate_size,
        max_seq_len=shape.n_ctx,
        rope_theta=shape.rope_theta,
        yarn=None,
        rms_norm_eps=shape.rms_norm_eps,
        tie_embeddings=True,
    )


def grouped_query_config(kind: str, shape: AblationShape, intermediate_size: int):
    return GroupedQueryConfig(
        name=f"ablation-{kind}",
        hidden_size=shape.hidden_size,
        n_layers=shape.n_layers,
        n_heads=shape.n_heads,
        n_kv_heads=kv_heads(kind, shape),
        head_dim=shape.head_dim,
        vocab_size=shape.vocab_size,
        intermediate_size=intermediate_size,
        max_seq_len=shape.n_ctx,
        rope_theta=shape.rope_theta,
        rms_norm_eps=shape.rms_norm_eps,
        tie_embeddings=True,
    )


def build_model(kind: str, shape: AblationShape, seed: int) -> nn.Module:
    """The ablation model of `kind`, its SwiGLU width matched, weights from `seed`."""
    width = shape.mha_intermediate_size if kind == "mha" else matched_intermediate_size(kind, shape)
    if kind == "mla":
        return DeepSeekModel(deepseek_config(shape, width), seed=seed)
    return GroupedQueryModel(grouped_query_config(kind, shape, width), seed=seed)


def model_intermediate_size(model: nn.Module) -> int:
    return model.config.intermediate_size


def attention_parameters(model: nn.Module) -> int:
    """Parameters in the attention layers of a model (all blocks)."""
    return sum(count_parameters(block.attn) for block in model.blocks)


def cache_numbers_per_token_per_layer(model: nn.Module) -> int:
    """Numbers the model's decoder caches per token in one layer (from its attention)."""
    return model.blocks[0].attn.cache_numbers_per_token
