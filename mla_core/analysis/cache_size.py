"""KV cache arithmetic: how many numbers each attention kind caches per token.

Per token and per layer (DeepSeek-V2 paper, Table 1):

    MHA        2 * n_h * d_h        every head caches its own key and value
    GQA        2 * n_g * d_h        heads in a group share one key/value head
    MQA        2 * d_h              all heads share one key/value head
    MLA        d_c + d_R            one latent c_KV plus the shared RoPE key
    MLA naive  n_h * (d_qk + d_v)   MLA without absorption, caching expanded keys/values

Multiply by the number of layers for the whole model and by the bytes per element
(2 for bf16/fp16) for bytes. Nothing here runs a model: these are the formulas, and
the live caches in `mla_core` are tested against them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from mla_core.errors import UserError
from mla_core.models.configs import (
    BUILTIN_CONFIGS,
    DeepSeekConfig,
    GPT2Config,
    builtin_config,
    load_config_json,
)

KINDS = ("mha", "gqa", "mqa", "mla", "mla_naive")
KIND_LABELS = {
    "mha": "MHA",
    "gqa": "GQA",
    "mqa": "MQA",
    "mla": "MLA",
    "mla_naive": "MLA (naive cache)",
}


@dataclass(frozen=True)
class CacheDims:
    """The dimensions of a model that decide its KV cache size."""

    name: str
    n_layers: int
    n_heads: int
    head_dim: int  # d_h: the per-head key/value width that MHA would cache
    n_kv_heads: int | None = None  # key/value heads when the model itself shares them (GQA/MQA)
    kv_lora_rank: int | None = None  # d_c: the MLA latent; None for models without one
    qk_rope_head_dim: int = 0  # d_R: the decoupled RoPE key, cached beside the latent
    qk_head_dim: int | None = None  # per-head key width of the naive MLA path (nope + rope)
    v_head_dim: int | None = None  # per-head value width of the naive MLA path

    @property
    def has_latent(self) -> bool:
        return self.kv_lora_rank is not None

    @property
    def has_kv_groups(self) -> bool:
        return self.n_kv_heads is not None and 1 < self.n_kv_heads < self.n_heads


def elements_per_token_per_layer(dims: CacheDims, kind: str, groups: int | None = None) -> int:
    """Numbers cached for one token in one layer by attention `kind` (see module docstring)."""
    if kind == "mha":
        return 2 * dims.n_heads * dims.head_dim
    if kind == "gqa":
        groups = _check_groups(dims, groups if groups is not None else dims.n_kv_heads)
        return 2 * groups * dims.head_dim
    if kind == "mqa":
        return 2 * dims.head_dim
    if kind in ("mla", "mla_naive"):
        if not dims.has_latent:
            raise UserError(
                f"config {dims.name!r} has no latent (kv_lora_rank): MLA does not apply"
            )
        if kind == "mla":
            return dims.kv_lora_rank + dims.qk_rope_head_dim
        qk = dims.qk_head_dim if dims.qk_head_dim is not None else dims.head_dim
        v = dims.v_head_dim if dims.v_head_dim is not None else dims.head_dim
        return dims.n_heads * (qk + v)
    raise UserError(f"unknown attention kind {kind!r}; allowed: {', '.join(KINDS)}")


def elements_per_token(dims: CacheDims, kind: str, groups: int | None = None) -> int:
    """Numbers cached for one token across all layers."""
    return elements_per_token_per_layer(dims, kind, groups) * dims.n_layers


def bytes_per_token(
    dims: CacheDims, kind: str, dtype_bytes: int = 2, groups: int | None = None
) -> int:
    """Bytes cached for one token across all layers."""
    _check_dtype_bytes(dtype_bytes)
    return elements_per_token(dims, kind, groups) * dtype_bytes


def cache_bytes(
    dims: CacheDims,
    kind: str,
    context: int,
    dtype_bytes: int = 2,
    batch: int = 1,
    groups: int | None = None,
) -> int:
    """Bytes of the whole cache for `batch` sequences of `context` tokens."""
    if context < 0:
        raise UserError(f"context={context} must be >= 0 tokens")
    if batch < 1:
        raise UserError(f"batch={batch} must be >= 1")
    return bytes_per_token(dims, kind, dtype_bytes, groups) * context * batch


def sequences_that_fit(
    dims: CacheDims,
    kind: str,
    context: int,
    memory_bytes: float,
    dtype_bytes: int = 2,
    groups: int | None = None,
) -> int:
    """How many sequences of `context` tokens fit their whole KV cache in `memory_bytes`.

    floor(memory / cache bytes of one sequence): the batch a server could decode at once if
    the cache had the memory to itself. A smaller cache means a bigger batch, and decoding
    is memory-bound, so the batch is where MLA's throughput gain comes from.
    """
    if not math.isfinite(memory_bytes) or memory_bytes < 0:
        raise UserError(f"memory={memory_bytes} bytes must be a finite number >= 0")
    if context < 1:
        raise UserError(f"context={context} must be >= 1 token to count sequences")
    per_sequence = cache_bytes(dims, kind, context, dtype_bytes, groups=groups)
    return int(memory_bytes // per_sequence)


def supported_kinds(dims: CacheDims, gqa_groups: int | None = None) -> list[str]:
    """The attention kinds worth reporting for a model: MHA, MQA, GQA if grouped, MLA if latent."""
    kinds = ["mha"]
    if gqa_groups is not None or dims.has_kv_groups:
        kinds.append("gqa")
    kinds.append("mqa")
    if dims.has_latent:
        kinds.append("mla")
    return kinds


def cache_report(
    dims: CacheDims,
    dtype_bytes: int = 2,
    context: int | None = None,
    gqa_groups: int | None = None,
    memory_gb: float | None = None,
) -> dict:
    """Everything the `cache` command prints, as one JSON-ready dict.

    ratios[kind] = MHA bytes / kind bytes (how many times smaller than MHA);
    reduction[kind] = 1 - kind / MHA (the fraction saved);
    with memory_gb (1 GB = 10^9 bytes) and a context: sequences_that_fit[kind].
    """
    groups = gqa_groups if gqa_groups is not None else dims.n_kv_heads
    kinds = supported_kinds(dims, gqa_groups)
    per_token = {k: bytes_per_token(dims, k, dtype_bytes, groups) for k in kinds}
    mha = per_token["mha"]
    report = {
        "config": dims.name,
        "n_layers": dims.n_layers,
        "n_heads": dims.n_heads,
        "head_dim": dims.head_dim,
        "dtype_bytes": dtype_bytes,
        "elements_per_token_per_layer": {
            k: elements_per_token_per_layer(dims, k, groups) for k in kinds
        },
        "bytes_per_token": per_token,
        "ratios": {k: mha / v for k, v in per_token.items()},
        "reduction": {k: 1 - v / mha for k, v in per_token.items()},
    }
    if "gqa" in kinds:
        report["gqa_groups"] = groups
    if dims.has_latent:
        report["kv_lora_rank"] = dims.kv_lora_rank
        report["qk_rope_head_dim"] = dims.qk_rope_head_dim
    if context is not None:
        report["context"] = context
        report["cache_bytes"] = {
            k: cache_bytes(dims, k, context, dtype_bytes, groups=groups) for k in kinds
        }
    if memory_gb is not None:
        if context is None:
            raise UserError("a memory budget needs a context: pass --context T with --memory-gb")
        report["memory_gb"] = memory_gb
        report["sequences_that_fit"] = {
            k: sequences_that_fit(dims, k, context, memory_gb * 1e9, dtype_bytes, groups)
            for k in kinds
        }
    return report


# --- where the dimensions come from ---------------------------------------------------


def dims_from_config(config: GPT2Config | DeepSeekConfig) -> CacheDims:
    """The cache dimensions of a built-in model config."""
    if isinstance(config, GPT2Config):
        return CacheDims(config.name, config.n_layer, config.n_head, config.head_dim)
    # DeepSeek: MHA with the same heads would cache 128-dim keys and values (d_h = v_head_dim).
    return CacheDims(
        name=config.name,
        n_layers=config.n_layers,
        n_heads=config.n_heads,
        head_dim=config.v_head_dim,
        kv_lora_rank=config.kv_lora_rank,
        qk_rope_head_dim=config.qk_rope_head_dim,
        qk_head_dim=config.qk_head_dim,
        v_head_dim=config.v_head_dim,
    )


def dims_from_hf_json(data: dict, name: str) -> CacheDims:
    """Cache dimensions from a Hugging Face config.json (GPT-2, Llama-style GQA, DeepSeek)."""

    def need(*keys: str) -> None:
        missing = [k for k in keys if k not in data]
        if missing:
            raise UserError(f"config {name!r} lacks the key(s) {', '.join(missing)}")

    if "kv_lora_rank" in data:  # DeepSeek
        need(
            "num_hidden_layers",
            "num_attention_heads",
            "qk_rope_head_dim",
            "qk_nope_head_dim",
            "v_head_dim",
        )
        nope, rope, v = (
            int(data[k]) for k in ("qk_nope_head_dim", "qk_rope_head_dim", "v_head_dim")
        )
        return CacheDims(
            name=name,
            n_layers=_positive(data, "num_hidden_layers", name),
            n_heads=_positive(data, "num_attention_heads", name),
            head_dim=v,
            kv_lora_rank=_positive(data, "kv_lora_rank", name),
            qk_rope_head_dim=rope,
            qk_head_dim=nope + rope,
            v_head_dim=v,
        )
    if "n_layer" in data or "n_head" in data or "n_embd" in data:  # GPT-2
        need("n_layer", "n_head", "n_embd")
        heads = _positive(data, "n_head", name)
        return CacheDims(
            name, _positive(data, "n_layer", name), heads, _positive(data, "n_embd", name) // heads
        )
    if "num_hidden_layers" in data:  # Llama-style, possibly with grouped key/value heads
        need("num_attention_heads")
        heads = _positive(data, "num_attention_heads", name)
        if "head_dim" in data and data["head_dim"] is not None:
            head_dim = _positive(data, "head_dim", name)
        elif "hidden_size" in data:
            head_dim = _positive(data, "hidden_size", name) // heads
        else:
            raise UserError(f"config {name!r} lacks the key(s) head_dim or hidden_size")
        kv_heads = int(data.get("num_key_value_heads") or heads)
        if not 1 <= kv_heads <= heads or heads % kv_heads:
            raise UserError(
                f"config {name!r}: num_key_value_heads={kv_heads} must divide "
                f"num_attention_heads={heads}"
            )
        return CacheDims(
            name, _positive(data, "num_hidden_layers", name), heads, head_dim, kv_heads
        )
    raise UserError(
        f"config {name!r} lacks the key(s) for the layer count: n_layer (GPT-2) or "
        "num_hidden_layers (Llama/DeepSeek)"
    )


def resolve_dims(name_or_path: str) -> CacheDims:
    """A built-in config name or the path of a config.json, as CacheDims."""
    if name_or_path in BUILTIN_CONFIGS:
        return dims_from_config(builtin_config(name_or_path))
    path = Path(name_or_path)
    if path.suffix == ".json" or path.exists() or "/" in name_or_path:
        return dims_from_hf_json(load_config_json(path), name=str(path))
    allowed = ", ".join(BUILTIN_CONFIGS)
    raise UserError(
        f"unknown config {name_or_path!r}; use a built-in name ({allowed}) or a config.json path"
    )


def _positive(data: dict, key: str, name: str) -> int:
    value = data[key]
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise UserError(f"config {name!r}: {key}={value!r} must be a positive integer")
    return value


def _check_groups(dims: CacheDims, groups: int | None) -> int:
    if groups is None:
        raise UserError(f"config {dims.name!r} has no key/value groups: pass a GQA group count")
    if not 1 <= groups <= dims.n_heads or dims.n_heads % groups:
        raise UserError(
            f"GQA groups={groups} must divide the {dims.n_heads} heads of {dims.name!r}"
        )
    return groups


def _check_dtype_bytes(dtype_bytes: int) -> None:
    if dtype_bytes not in (1, 2, 4, 8):
        raise UserError(f"dtype bytes={dtype_bytes} must be one of 1, 2, 4, 8")
