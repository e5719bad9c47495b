"""Load one layer's MLA weights from a Hugging Face DeepSeek-V2/V3 checkpoint (safetensors).

A user who has a real DeepSeek shard gets the real matrices (W_DKV, W_UK, W_UV ...) in the
scenes without loading the whole 671B model: only the seven (or five) attention tensors of
one layer are read, shard by shard, through safetensors (never unpickled).

Checkpoint names under `model.layers.{i}.self_attn.` and ours (`mla_core.models.mla`):

    q_a_proj            w_dq     W_DQ                  (only with query compression)
    q_a_layernorm       q_norm   RMSNorm on c_Q
    q_b_proj            w_uq     W_UQ and W_QR
    q_proj              w_q      (without query compression: DeepSeek-V2-Lite)
    kv_a_proj_with_mqa  w_dkv    W_DKV and W_KR
    kv_a_layernorm      kv_norm  RMSNorm on c_KV
    kv_b_proj           wkv_b    [W_UK ; W_UV] per head
    o_proj              w_o      W_O

The released checkpoints keep RoPE rows in interleaved-pair order, the order `mla_core.models.rope`
uses, so no row is permuted. DeepSeek-V3's float8 weights come with a `weight_scale_inv`
per 128 x 128 block; they are dequantized here.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import safe_open

from mla_core.errors import UserError
from mla_core.models.configs import DeepSeekConfig, deepseek_config_from_hf, load_config_json
from mla_core.models.mla import MultiHeadLatentAttention

# our parameter name -> checkpoint name, inside one layer's attention
HF_ATTENTION_NAMES = {
    "w_dq.weight": "q_a_proj.weight",
    "q_norm.weight": "q_a_layernorm.weight",
    "w_uq.weight": "q_b_proj.weight",
    "w_q.weight": "q_proj.weight",
    "w_dkv.weight": "kv_a_proj_with_mqa.weight",
    "kv_norm.weight": "kv_a_layernorm.weight",
    "wkv_b.weight": "kv_b_proj.weight",
    "w_o.weight": "o_proj.weight",
}
# our parameter name -> checkpoint name, for the rest of a dense block and the model
HF_MODEL_NAMES = {
    "attn_norm.weight": "input_layernorm.weight",
    "mlp_norm.weight": "post_attention_layernorm.weight",
    "mlp.w_gate.weight": "mlp.gate_proj.weight",
    "mlp.w_up.weight": "mlp.up_proj.weight",
    "mlp.w_down.weight": "mlp.down_proj.weight",
}
FP8_BLOCK = 128  # DeepSeek-V3's float8 weights: one scale per 128 x 128 block


def hf_name(our_name: str) -> str:
    """The Hugging Face checkpoint name of a `DeepSeekModel` parameter."""
    if our_name == "embed.weight":
        return "model.embed_tokens.weight"
    if our_name == "norm.weight":
        return "model.norm.weight"
    if our_name == "head.weight":
        return "lm_head.weight"
    _, layer, rest = our_name.split(".", 2)  # blocks.{i}.rest
    if rest.startswith("attn."):
        return f"model.layers.{layer}.self_attn.{HF_ATTENTION_NAMES[rest[len('attn.') :]]}"
    return f"model.layers.{layer}.{HF_MODEL_NAMES[rest]}"


class _Checkpoint:
    """Tensor lookup across the safetensors files of a checkpoint (one file or a folder)."""

    def __init__(self, path: Path) -> None:
        if path.is_file():
            files = [path]
        elif path.is_dir():
            files = sorted(path.glob("*.safetensors"))
        else:
            raise UserError(f"checkpoint {str(path)!r} does not exist")
        if not files or any(f.suffix != ".safetensors" for f in files):
            raise UserError(
                f"checkpoint {str(path)!r} has no .safetensors file (only safetensors is loaded)"
            )
        self.path = path
        self.where: dict[str, Path] = {}
        index = path / "model.safetensors.index.json" if path.is_dir() else None
        if index is not None and index.is_file():
            weight_map = json.loads(index.read_text(encoding="utf-8")).get("weight_map", {})
            self.where = {name: path / shard for name, shard in weight_map.items()}
        else:
            for file in files:
                with safe_open(str(file), framework="pt") as f:
                    self.where.update({name: file for name in f.keys()})

    def has(self, name: str) -> bool:
        return name in self.where

    def get(self, name: str) -> torch.Tensor:
        if name not in self.where:
            raise UserError(f"checkpoint {str(self.path)!r} lacks the tensor {name!r}")
        file = self.where[name]
        if not file.is_file():
            raise UserError(f"checkpoint shard {str(file)!r} (holding {name!r}) does not exist")
        with safe_open(str(file), framework="pt") as f:
            return f.get_tensor(name)


def dequantize_fp8(weight: torch.Tensor, scale_inv: torch.Tensor) -> torch.Tensor:
    """float8 weight (out, in) times its per-block scale (ceil(out/128), ceil(in/128))."""
    rows, cols = weight.shape
    scale = scale_inv.float().repeat_interleave(FP8_BLOCK, 0)[:rows]
    scale = scale.repeat_interleave(FP8_BLOCK, 1)[:, :cols]
    return weight.float() * scale


def load_attention_layer(
    checkpoint: str | Path,
    layer: int,
    config: DeepSeekConfig | None = None,
    dtype: torch.dtype = torch.float32,
    absorb: bool = False,
) -> MultiHeadLatentAttention:
    """One layer's MLA from a DeepSeek checkpoint (a .safetensors file or a folder of them).

    `config` defaults to the checkpoint folder's config.json. Every tensor's shape is checked
    against the config; a missing or misshapen tensor is a one-line UserError.
    """
    path = Path(checkpoint)
    if config is None:
        config_json = (path if path.is_dir() else path.parent) / "config.json"
        if not config_json.is_file():
            raise UserError(
                f"checkpoint {str(path)!r} has no config.json beside it; pass a config "
                "(e.g. deepseek-v3)"
            )
        config = deepseek_config_from_hf(load_config_json(config_json), name=str(path))
    if not 0 <= layer < config.n_layers:
        raise UserError(f"layer={layer} must be in 0..{config.n_layers - 1} for {config.name!r}")
    ckpt = _Checkpoint(path)
    attn = MultiHeadLatentAttention(config, layer_index=layer, absorb=absorb).to(dtype)
    prefix = f"model.layers.{layer}.self_attn."
    state = {}
    for ours, param in attn.state_dict().items():
        name = prefix + HF_ATTENTION_NAMES[ours]
        tensor = ckpt.get(name)
        if ckpt.has(name + "_scale_inv"):
            tensor = dequantize_fp8(tensor, ckpt.get(name + "_scale_inv"))
        if tuple(tensor.shape) != tuple(param.shape):
            raise UserError(
                f"tensor {name!r} has shape {tuple(tensor.shape)}, but config {config.name!r} "
                f"needs {tuple(param.shape)} (check heads, head dims and ranks)"
            )
        state[ours] = tensor.to(dtype)
    attn.load_state_dict(state)
    return attn
