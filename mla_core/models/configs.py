"""Model configurations: GPT-2 and DeepSeek (V2, V2-Lite, V3), with their real dimensions.

Sources: GPT-2 small from the released `gpt2` config; DeepSeek from
deepseek-ai/DeepSeek-V3 `inference/configs/*.json` and the Hugging Face configs
(see shared/REFERENCE.md). Each config is a frozen dataclass; nothing here runs a model.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path

from mla_core.errors import UserError


@dataclass(frozen=True)
class GPT2Config:
    """A GPT-2 model: multi-head attention, learned positions, LayerNorm, tied head."""

    name: str = "gpt2-small"
    vocab_size: int = 50257
    n_ctx: int = 1024  # longest context (learned position embeddings)
    n_embd: int = 768
    n_layer: int = 12
    n_head: int = 12
    layer_norm_eps: float = 1e-5

    @property
    def head_dim(self) -> int:
        return self.n_embd // self.n_head

    def __post_init__(self) -> None:
        for f in ("vocab_size", "n_ctx", "n_embd", "n_layer", "n_head"):
            if getattr(self, f) < 1:
                raise UserError(f"GPT-2 config {self.name!r}: {f}={getattr(self, f)} must be >= 1")
        if self.n_embd % self.n_head:
            raise UserError(
                f"GPT-2 config {self.name!r}: n_embd={self.n_embd} is not divisible by "
                f"n_head={self.n_head}"
            )


@dataclass(frozen=True)
class YarnScaling:
    """YaRN rope scaling as DeepSeek uses it (applied only past `original_seq_len`)."""

    factor: float = 40.0
    original_seq_len: int = 4096
    beta_fast: int = 32
    beta_slow: int = 1
    mscale: float = 1.0  # m in mscale = 0.1 * m * ln(factor) + 1


@dataclass(frozen=True)
class DeepSeekConfig:
    """A DeepSeek-style model with Multi-head Latent Attention (names as in the paper/code).

    q_lora_rank = d'_c (None: no query compression, queries come straight from h),
    kv_lora_rank = d_c (the cached latent), qk_rope_head_dim = d_R (the decoupled RoPE key,
    shared by all heads and cached too), qk_nope_head_dim / v_head_dim = d_h.
    """

    name: str
    hidden_size: int
    n_layers: int
    n_heads: int
    q_lora_rank: int | None
    kv_lora_rank: int
    qk_nope_head_dim: int
    qk_rope_head_dim: int
    v_head_dim: int
    vocab_size: int
    intermediate_size: int = 0  # dense MLP width of the small models (0: 4 * hidden_size)
    max_seq_len: int = 4096
    rope_theta: float = 10000.0
    yarn: YarnScaling | None = None  # None: plain RoPE
    rms_norm_eps: float = 1e-6
    tie_embeddings: bool = False

    @property
    def qk_head_dim(self) -> int:
        return self.qk_nope_head_dim + self.qk_rope_head_dim

    def __post_init__(self) -> None:
        positive = (
            "hidden_size",
            "n_layers",
            "n_heads",
            "kv_lora_rank",
            "qk_nope_head_dim",
            "v_head_dim",
            "vocab_size",
            "max_seq_len",
        )
        for f in positive:
            if getattr(self, f) < 1:
                raise UserError(
                    f"DeepSeek config {self.name!r}: {f}={getattr(self, f)} must be >= 1"
                )
        if self.qk_rope_head_dim < 0 or self.qk_rope_head_dim % 2:
            raise UserError(
                f"DeepSeek config {self.name!r}: qk_rope_head_dim={self.qk_rope_head_dim} "
                "must be an even number >= 0"
            )
        if self.q_lora_rank is not None and self.q_lora_rank < 1:
            raise UserError(
                f"DeepSeek config {self.name!r}: q_lora_rank={self.q_lora_rank} "
                "must be >= 1 (or None)"
            )


@dataclass(frozen=True)
class GroupedQueryConfig:
    """A DeepSeek-style decoder whose attention is grouped-query attention."""

    name: str
    hidden_size: int
    n_layers: int
    n_heads: int
    n_kv_heads: int
    head_dim: int
    vocab_size: int
    intermediate_size: int
    max_seq_len: int
    rope_theta: float = 10000.0
    rms_norm_eps: float = 1e-6
    tie_embeddings: bool = True


# The attention ablation (`mla_core.models.ablation`, `python -m mla_core ablation`): four
# small DeepSeek-style models that differ only in their attention.
ABLATION_KINDS = ("mha", "gqa", "mqa", "mla")


@dataclass(frozen=True)
class AblationShape:
    """What the four models share, and each kind's own attention widths."""

    n_layers: int = 4
    hidden_size: int = 128
    n_heads: int = 4  # query heads of every kind
    head_dim: int = 32  # d_h of MHA/GQA/MQA queries, keys and values
    n_ctx: int = 128
    vocab_size: int = 50257  # the GPT-2 tokenizer
    gqa_kv_heads: int = 2
    kv_lora_rank: int = 64  # MLA d_c
    qk_nope_head_dim: int = 32  # MLA per-head content key/query width
    qk_rope_head_dim: int = 16  # MLA d_R: the shared RoPE key and each head's RoPE query
    v_head_dim: int = 32  # MLA per-head value width
    rope_theta: float = 10000.0
    rms_norm_eps: float = 1e-6
    mlp_multiple: int = 8  # SwiGLU widths are multiples of this

    @property
    def mha_intermediate_size(self) -> int:
        """The SwiGLU width of the MHA model, the reference the others are matched to."""
        return 4 * self.hidden_size

    def __post_init__(self) -> None:
        for name in (
            "n_layers",
            "hidden_size",
            "n_heads",
            "head_dim",
            "n_ctx",
            "vocab_size",
            "kv_lora_rank",
            "qk_nope_head_dim",
            "v_head_dim",
            "mlp_multiple",
        ):
            if getattr(self, name) < 1:
                raise UserError(f"{name}={getattr(self, name)} must be >= 1")
        if self.head_dim % 2:
            raise UserError(f"head_dim={self.head_dim} must be even (RoPE rotates pairs)")
        if self.qk_rope_head_dim < 2 or self.qk_rope_head_dim % 2:
            raise UserError(f"qk_rope_head_dim={self.qk_rope_head_dim} must be even and >= 2")
        if not 1 <= self.gqa_kv_heads <= self.n_heads or self.n_heads % self.gqa_kv_heads:
            raise UserError(f"gqa_kv_heads={self.gqa_kv_heads} must divide n_heads={self.n_heads}")


# The official DeepSeek inference code turns YaRN on only when max_seq_len exceeds the
# original 4096; its shipped configs leave max_seq_len at 4 * 4096 = 16384.
_DEEPSEEK_YARN = YarnScaling(factor=40.0, original_seq_len=4096, beta_fast=32, beta_slow=1)

GPT2_SMALL = GPT2Config()
GPT2_MEDIUM = GPT2Config(name="gpt2-medium", n_embd=1024, n_layer=24, n_head=16)
GPT2_LARGE = GPT2Config(name="gpt2-large", n_embd=1280, n_layer=36, n_head=20)
GPT2_XL = GPT2Config(name="gpt2-xl", n_embd=1600, n_layer=48, n_head=25)

DEEPSEEK_V3 = DeepSeekConfig(
    name="deepseek-v3",
    hidden_size=7168,
    n_layers=61,
    n_heads=128,
    q_lora_rank=1536,
    kv_lora_rank=512,
    qk_nope_head_dim=128,
    qk_rope_head_dim=64,
    v_head_dim=128,
    vocab_size=129280,
    intermediate_size=18432,
    max_seq_len=16384,
    yarn=_DEEPSEEK_YARN,
)
DEEPSEEK_V2 = replace(
    DEEPSEEK_V3,
    name="deepseek-v2",
    hidden_size=5120,
    n_layers=60,
    vocab_size=102400,
    intermediate_size=12288,
    yarn=replace(_DEEPSEEK_YARN, mscale=0.707),  # V2's config.json: mscale = mscale_all_dim
)
DEEPSEEK_V2_LITE = replace(
    DEEPSEEK_V3,
    name="deepseek-v2-lite",
    hidden_size=2048,
    n_layers=27,
    n_heads=16,
    q_lora_rank=None,
    vocab_size=102400,
    intermediate_size=10944,
    yarn=replace(_DEEPSEEK_YARN, mscale=0.707),  # config_16B.json: mscale 0.707
)

# Small DeepSeek-style configs for tests and quick demos (not real models). Every width
# differs from the others (d_nope 8, d_R 6, d_v 12, d_c 20, d'_c 24) so a mixed-up axis
# cannot pass by accident; the first has query compression and YaRN switched on
# (max_seq_len 64 > original 16), the second has neither.
DEEPSEEK_TINY = DeepSeekConfig(
    name="deepseek-tiny",
    hidden_size=48,
    n_layers=2,
    n_heads=4,
    q_lora_rank=24,
    kv_lora_rank=20,
    qk_nope_head_dim=8,
    qk_rope_head_dim=6,
    v_head_dim=12,
    vocab_size=101,
    intermediate_size=80,
    max_seq_len=64,
    yarn=YarnScaling(factor=4.0, original_seq_len=16, beta_fast=32, beta_slow=1, mscale=0.707),
)
DEEPSEEK_TINY_LITE = replace(
    DEEPSEEK_TINY, name="deepseek-tiny-lite", q_lora_rank=None, yarn=None, tie_embeddings=True
)

BUILTIN_CONFIGS: dict[str, GPT2Config | DeepSeekConfig] = {
    c.name: c
    for c in (
        GPT2_SMALL,
        GPT2_MEDIUM,
        GPT2_LARGE,
        GPT2_XL,
        DEEPSEEK_V3,
        DEEPSEEK_V2,
        DEEPSEEK_V2_LITE,
    )
}


def builtin_config(name: str) -> GPT2Config | DeepSeekConfig:
    """A built-in config by name (e.g. 'deepseek-v3', 'gpt2-small')."""
    try:
        return BUILTIN_CONFIGS[name]
    except KeyError:
        allowed = ", ".join(BUILTIN_CONFIGS)
        raise UserError(f"unknown config {name!r}; built-in configs: {allowed}") from None


def load_config_json(path: str | Path) -> dict:
    """Read a Hugging Face style config.json into a dict, with one-line errors."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"config file {str(path)!r} does not exist")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise UserError(f"config file {str(path)!r} is not valid JSON ({err})") from None
    if not isinstance(data, dict):
        raise UserError(
            f"config file {str(path)!r} must hold a JSON object, not {type(data).__name__}"
        )
    return data


def config_number(data: dict, key: str, where: str, default=None, kind: type = int):
    """data[key] (or `default` when absent) as a positive int (or float), else a one-line
    UserError naming the key and its value: a config's "abc", null or -3 stops here."""
    value = data.get(key, default)
    ok_types = (int,) if kind is int else (int, float)
    if isinstance(value, bool) or not isinstance(value, ok_types) or not value > 0:
        wanted = "a whole number" if kind is int else "a number"
        raise UserError(f"{where}: {key}={value!r} must be {wanted} > 0")
    return kind(value)


def gpt2_config_from_hf(data: dict, name: str = "gpt2") -> GPT2Config:
    """A GPT2Config from the keys of a Hugging Face GPT-2 config.json."""
    missing = [k for k in ("n_layer", "n_head", "n_embd") if k not in data]
    where = f"GPT-2 config {name!r}"
    if missing:
        raise UserError(f"{where} lacks the key(s) {', '.join(missing)}")
    defaults = GPT2Config()
    n_ctx_key = "n_positions" if "n_positions" in data else "n_ctx"
    config = GPT2Config(
        name=name,
        vocab_size=config_number(data, "vocab_size", where, defaults.vocab_size),
        n_ctx=config_number(data, n_ctx_key, where, defaults.n_ctx),
        n_embd=config_number(data, "n_embd", where),
        n_layer=config_number(data, "n_layer", where),
        n_head=config_number(data, "n_head", where),
        layer_norm_eps=config_number(
            data, "layer_norm_epsilon", where, defaults.layer_norm_eps, float
        ),
    )
    return config


def deepseek_config_from_hf(data: dict, name: str = "deepseek") -> DeepSeekConfig:
    """A DeepSeekConfig from a Hugging Face DeepSeek-V2/V3 config.json.

    YaRN comes from `rope_scaling` (or `rope_parameters`); Hugging Face multiplies the softmax
    scale by mscale(factor, mscale_all_dim)^2 and the RoPE cos/sin by
    mscale(factor, mscale) / mscale(factor, mscale_all_dim), so the two must be equal here
    (they are in every released DeepSeek config) and m = mscale_all_dim.
    """
    needed = (
        "hidden_size",
        "num_hidden_layers",
        "num_attention_heads",
        "kv_lora_rank",
        "qk_nope_head_dim",
        "qk_rope_head_dim",
        "v_head_dim",
    )
    missing = [k for k in needed if k not in data]
    if missing:
        raise UserError(f"DeepSeek config {name!r} lacks the key(s) {', '.join(missing)}")
    rope = data.get("rope_scaling") or data.get("rope_parameters") or {}
    yarn = None
    if rope.get("type", rope.get("rope_type")) == "yarn":
        m, m_all = rope.get("mscale", 1.0), rope.get("mscale_all_dim", rope.get("mscale", 1.0))
        if m != m_all:
            raise UserError(
                f"DeepSeek config {name!r}: rope mscale={m} differs from mscale_all_dim={m_all}; "
                "only equal values are supported"
            )
        yarn = YarnScaling(
            factor=float(rope["factor"]),
            original_seq_len=int(rope.get("original_max_position_embeddings", 4096)),
            beta_fast=int(rope.get("beta_fast", 32)),
            beta_slow=int(rope.get("beta_slow", 1)),
            mscale=float(m_all),
        )
    elif rope and rope.get("type", rope.get("rope_type")) not in (None, "default"):
        raise UserError(
            f"DeepSeek config {name!r}: rope scaling {rope.get('type', rope.get('rope_type'))!r} "
            "is not supported (allowed: none or yarn)"
        )
    q_lora_rank = data.get("q_lora_rank")
    where = f"DeepSeek config {name!r}"
    return DeepSeekConfig(
        name=name,
        hidden_size=config_number(data, "hidden_size", where),
        n_layers=config_number(data, "num_hidden_layers", where),
        n_heads=config_number(data, "num_attention_heads", where),
        q_lora_rank=None if q_lora_rank in (None, 0) else config_number(data, "q_lora_rank", where),
        kv_lora_rank=config_number(data, "kv_lora_rank", where),
        qk_nope_head_dim=config_number(data, "qk_nope_head_dim", where),
        qk_rope_head_dim=config_number(data, "qk_rope_head_dim", where),
        v_head_dim=config_number(data, "v_head_dim", where),
        vocab_size=int(data.get("vocab_size", 102400)),
        intermediate_size=int(data.get("intermediate_size", 0)),
        max_seq_len=int(data.get("max_position_embeddings", 4096)),
        rope_theta=float(data.get("rope_theta", rope.get("rope_theta", 10000.0))),
        yarn=yarn,
        rms_norm_eps=float(data.get("rms_norm_eps", 1e-6)),
        tie_embeddings=bool(data.get("tie_word_embeddings", False)),
    )
