"""The transformers DeepSeek-V3 config that describes the same model as one of our configs
(the oracle side of the MLA tests; all layers dense, eager attention)."""

from __future__ import annotations

from transformers import DeepseekV3Config

from mla_core.models.configs import DeepSeekConfig


def hf_rope_parameters(cfg: DeepSeekConfig) -> dict:
    """transformers' `rope_parameters` for our RoPE: plain, or YaRN with our scaling."""
    if cfg.yarn is None:
        return {"rope_type": "default", "rope_theta": cfg.rope_theta}
    return {
        "rope_type": "yarn",
        "rope_theta": cfg.rope_theta,
        "factor": cfg.yarn.factor,
        "original_max_position_embeddings": cfg.yarn.original_seq_len,
        "beta_fast": cfg.yarn.beta_fast,
        "beta_slow": cfg.yarn.beta_slow,
        "mscale": cfg.yarn.mscale,
        "mscale_all_dim": cfg.yarn.mscale,
    }


def hf_config(cfg: DeepSeekConfig, interleave: bool) -> DeepseekV3Config:
    """The transformers config describing the same model (all layers dense)."""
    return DeepseekV3Config(
        vocab_size=cfg.vocab_size,
        hidden_size=cfg.hidden_size,
        intermediate_size=cfg.intermediate_size,
        num_hidden_layers=cfg.n_layers,
        num_attention_heads=cfg.n_heads,
        num_key_value_heads=cfg.n_heads,
        q_lora_rank=cfg.q_lora_rank,
        kv_lora_rank=cfg.kv_lora_rank,
        qk_nope_head_dim=cfg.qk_nope_head_dim,
        qk_rope_head_dim=cfg.qk_rope_head_dim,
        v_head_dim=cfg.v_head_dim,
        first_k_dense_replace=cfg.n_layers,
        n_routed_experts=4,
        n_group=1,
        topk_group=1,
        num_experts_per_tok=2,
        max_position_embeddings=cfg.max_seq_len,
        rope_parameters=hf_rope_parameters(cfg),
        rope_interleave=interleave,
        rms_norm_eps=cfg.rms_norm_eps,
        tie_word_embeddings=cfg.tie_embeddings,
        attn_implementation="eager",
    )
