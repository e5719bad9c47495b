"""A whole DeepSeek-style model as a Hugging Face DeepSeek-V3 folder: written, checked, read.

The folder is what `transformers.DeepseekV3ForCausalLM.from_pretrained(folder)` loads, so
anyone can check our model against transformers' own DeepSeek-V3 code:

    config.json                 model_type "deepseek_v3", every layer dense (no experts)
    model.safetensors           Hugging Face tensor names (`deepseek_weights.hf_name`)
    model.safetensors.sha256    one line: the hex digest, checked on load when present

Layout choices, each the one transformers 5.24 expects:
- all layers dense: `first_k_dense_replace` = `num_hidden_layers` and no routed or shared
  experts, no multi-token-prediction layer (`num_nextn_predict_layers` 0);
- RoPE in interleaved pairs, as `mla_core.models.rope` and DeepSeek's released checkpoints:
  `rope_interleave: true`, so no weight row is permuted; YaRN goes into `rope_parameters`
  (with mscale = mscale_all_dim, the only case `deepseek_config_from_hf` reads back);
- a tied head is not stored (transformers ties `lm_head.weight` to the embedding itself);
- transformers applies eps 1e-6 in the two latent RMSNorms (q_a_layernorm, kv_a_layernorm)
  whatever `rms_norm_eps` says, so only models with rms_norm_eps 1e-6 are written.

    save_deepseek_folder(model, "out/")       # bfloat16 weights by default
    model = load_deepseek_model("out/")       # float32, eval mode

`DEMO_MLA_DIR` is where the project's own small trained DeepSeek-style model lives
(`assets/models/demo-mla/`); `default_deepseek_model()` is that model when the folder exists,
else the seeded, untrained `deepseek-tiny`.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from mla_core.atomic import copy_atomically, write_atomically, write_text_atomically
from mla_core.errors import UserError
from mla_core.loading.deepseek_weights import hf_name
from mla_core.loading.tokenizer import ENDOFTEXT_ID, VOCAB_SIZE
from mla_core.loading.weights import (
    CONFIG_FILE,
    SHA256_FILE,
    WEIGHTS_FILE,
    check_weight_values,
    sha256_of_file,
    verified_sha256,
)
from mla_core.models.configs import (
    DEEPSEEK_TINY,
    DeepSeekConfig,
    deepseek_config_from_hf,
    load_config_json,
)
from mla_core.models.deepseek import DeepSeekModel, intermediate_size
from mla_core.models.rope import yarn_is_active

DEMO_MLA_DIR = Path(__file__).resolve().parents[2] / "assets" / "models" / "demo-mla"
HF_RMS_NORM_EPS = 1e-6  # what transformers' DeepSeek-V3 uses in q_a_layernorm / kv_a_layernorm
# config.json keys whose transformers default is the one value our model runs
ONLY_SUPPORTED = {"hidden_act": "silu", "attention_bias": False, "rope_interleave": True}
DTYPE_NAMES = {torch.float32: "float32", torch.bfloat16: "bfloat16", torch.float16: "float16"}


# --- config.json ------------------------------------------------------------------------


def hf_rope_parameters(config: DeepSeekConfig) -> dict:
    """`rope_parameters` for our RoPE: plain, or YaRN when our model applies it."""
    if not yarn_is_active(config):  # our RoPE ignores a YaRN that is not active: so must theirs
        return {"rope_type": "default", "rope_theta": config.rope_theta}
    yarn = config.yarn
    return {
        "rope_type": "yarn",
        "rope_theta": config.rope_theta,
        "factor": yarn.factor,
        "original_max_position_embeddings": yarn.original_seq_len,
        "beta_fast": yarn.beta_fast,
        "beta_slow": yarn.beta_slow,
        "mscale": yarn.mscale,
        "mscale_all_dim": yarn.mscale,
    }


def deepseek_v3_config_json(config: DeepSeekConfig, dtype: torch.dtype = torch.bfloat16) -> dict:
    """The config.json of a dense DeepSeek-V3 with our model's shape (transformers loads it).

    `deepseek_config_from_hf` reads it back into the same config (the name aside; an unset
    intermediate_size comes back as the 4 * hidden_size it stands for).
    """
    if config.rms_norm_eps != HF_RMS_NORM_EPS:
        raise UserError(
            f"DeepSeek config {config.name!r}: rms_norm_eps={config.rms_norm_eps} cannot be "
            f"saved in the DeepSeek-V3 layout; transformers uses {HF_RMS_NORM_EPS} in its latent "
            "norms, so only that value is allowed"
        )
    if dtype not in DTYPE_NAMES:
        raise UserError(
            f"dtype {dtype} is not allowed; use one of {', '.join(DTYPE_NAMES.values())}"
        )
    # a model on GPT-2's vocabulary uses <|endoftext|> as BOS and EOS, as GPT-2 does
    special = ENDOFTEXT_ID if config.vocab_size == VOCAB_SIZE else None
    return {
        "architectures": ["DeepseekV3ForCausalLM"],
        "model_type": "deepseek_v3",
        "vocab_size": config.vocab_size,
        "hidden_size": config.hidden_size,
        "intermediate_size": intermediate_size(config),
        "num_hidden_layers": config.n_layers,
        "num_attention_heads": config.n_heads,
        "num_key_value_heads": config.n_heads,
        "q_lora_rank": config.q_lora_rank,
        "kv_lora_rank": config.kv_lora_rank,
        "qk_nope_head_dim": config.qk_nope_head_dim,
        "qk_rope_head_dim": config.qk_rope_head_dim,
        "v_head_dim": config.v_head_dim,
        # every layer dense: no mixture of experts is built, no multi-token prediction
        "first_k_dense_replace": config.n_layers,
        "n_routed_experts": 0,
        "n_shared_experts": 0,
        "num_experts_per_tok": 0,
        "moe_intermediate_size": 0,
        "n_group": 1,
        "topk_group": 1,
        "num_nextn_predict_layers": 0,
        "hidden_act": "silu",
        "attention_bias": False,
        "attention_dropout": 0.0,
        "max_position_embeddings": config.max_seq_len,
        "rope_parameters": hf_rope_parameters(config),
        "rope_interleave": True,
        "rms_norm_eps": config.rms_norm_eps,
        "tie_word_embeddings": config.tie_embeddings,
        "bos_token_id": special,
        "eos_token_id": special,
        "pad_token_id": None,
        "initializer_range": 0.02,
        "use_cache": True,
        "torch_dtype": DTYPE_NAMES[dtype],
    }


def read_deepseek_config(folder: str | Path) -> DeepSeekConfig:
    """The DeepSeekConfig of a DeepSeek-V3 folder, refusing what our dense model cannot run."""
    folder = Path(folder)
    data = load_config_json(folder / CONFIG_FILE)
    where = str(folder / CONFIG_FILE)
    model_type = data.get("model_type")
    if model_type != "deepseek_v3":
        raise UserError(f"{where}: model_type {model_type!r} is not allowed; want 'deepseek_v3'")
    n_layers = data.get("num_hidden_layers")
    dense = data.get("first_k_dense_replace", 3)
    if not isinstance(dense, int) or isinstance(dense, bool):
        raise UserError(f"{where}: first_k_dense_replace={dense!r} must be a whole number")
    if data.get("n_routed_experts", 256) and isinstance(n_layers, int) and dense < n_layers:
        raise UserError(
            f"{where}: layers {dense}..{n_layers - 1} are mixtures of experts "
            f"(first_k_dense_replace={dense}); only all-dense models load "
            f"(first_k_dense_replace = num_hidden_layers = {n_layers})"
        )
    for key, wanted in {
        "hidden_act": "silu",
        "attention_bias": False,
        "rope_interleave": True,
    }.items():
        if data.get(key, wanted) != wanted:
            raise UserError(f"{where}: {key}={data[key]!r} is not supported; want {wanted!r}")
    return deepseek_config_from_hf(data, name=folder.name or "deepseek")


# --- writing ----------------------------------------------------------------------------


def hf_state_dict(model: DeepSeekModel, dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """The model's tensors under their Hugging Face names, on the CPU in `dtype`."""
    return {
        hf_name(name): tensor.detach().to(device="cpu", dtype=dtype).contiguous()
        for name, tensor in model.state_dict().items()
    }


def save_deepseek_folder(
    model: DeepSeekModel,
    folder: str | Path,
    dtype: torch.dtype = torch.bfloat16,
    extra_files: dict[str, str | bytes | Path] | None = None,
) -> Path:
    """Write `model` as a DeepSeek-V3 folder (see the module docstring); return the folder.

    `extra_files` adds files beside the weights (a model card, a loss curve): name -> text
    (str), raw bytes, or a Path to copy. Every file is written to a temporary name and renamed
    into place; the sha256 line is written last, from the file as written.
    """
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise UserError(f"{str(folder)!r} is a file, not a folder")
    config_json = deepseek_v3_config_json(model.config, dtype)
    reserved = {CONFIG_FILE, WEIGHTS_FILE, SHA256_FILE}
    for name in extra_files or {}:
        if name in reserved or Path(name).name != name or name.startswith("."):
            raise UserError(
                f"extra file name {name!r} is not allowed: a plain file name other than "
                f"{', '.join(sorted(reserved))}"
            )
    folder.mkdir(parents=True, exist_ok=True)
    tensors = hf_state_dict(model, dtype)
    write_text_atomically(folder / CONFIG_FILE, json.dumps(config_json, indent=2) + "\n")
    write_atomically(
        folder / WEIGHTS_FILE, lambda p: save_file(tensors, str(p), metadata={"format": "pt"})
    )
    write_text_atomically(folder / SHA256_FILE, f"{sha256_of_file(folder / WEIGHTS_FILE)}\n")
    for name, content in (extra_files or {}).items():
        if isinstance(content, Path):
            copy_atomically(content, folder / name)
        elif isinstance(content, bytes):
            write_atomically(folder / name, lambda p, data=content: p.write_bytes(data))
        else:
            write_text_atomically(folder / name, content)
    return folder


# --- reading ----------------------------------------------------------------------------


def check_deepseek_folder(folder: str | Path) -> Path:
    """The folder, if it holds config.json and model.safetensors (never a pickle)."""
    path = Path(folder)
    if not path.is_dir():
        what = "is not a folder" if path.exists() else "does not exist"
        raise UserError(f"DeepSeek folder {str(path)!r} {what}")
    if not (path / WEIGHTS_FILE).is_file():
        pickled = (path / "pytorch_model.bin").is_file()
        hint = " (pytorch_model.bin, a pickle, is never loaded)" if pickled else ""
        raise UserError(f"DeepSeek folder {str(path)!r} has no {WEIGHTS_FILE}{hint}")
    if not (path / CONFIG_FILE).is_file():
        raise UserError(f"DeepSeek folder {str(path)!r} has no {CONFIG_FILE}")
    return path.resolve()


def _read_tensors(weights_file: Path) -> dict[str, torch.Tensor]:
    try:
        with safe_open(str(weights_file), framework="pt") as f:
            return {key: f.get_tensor(key) for key in f.keys()}
    except (SafetensorError, OSError) as err:
        raise UserError(f"{weights_file} is not a readable safetensors file ({err})") from None


def _layer_of(name: str) -> int | None:
    match = re.match(r"model\.layers\.(\d+)\.", name)
    return int(match.group(1)) if match else None


def load_deepseek_model(
    folder: str | Path, device: str = "cpu", dtype: torch.dtype = torch.float32
) -> DeepSeekModel:
    """A DeepSeekModel in eval mode with the weights of a DeepSeek-V3 folder (safetensors only).

    Checked, each as a one-line UserError: the config (dense DeepSeek-V3), the sha256 line when
    present, that every tensor the model needs is there with its exact shape and finite float
    values, and that nothing else is (a tensor of a layer past num_hidden_layers, e.g. a
    multi-token-prediction layer, is ignored as transformers does). A stored lm_head.weight of
    a tied model must equal the embedding.
    """
    path = check_deepseek_folder(folder)
    config = read_deepseek_config(path)
    verified_sha256(path)
    weights_file = path / WEIGHTS_FILE
    where = str(weights_file)
    tensors = _read_tensors(weights_file)
    tensors = {
        k: v for k, v in tensors.items() if (_layer_of(k) is None or _layer_of(k) < config.n_layers)
    }
    check_weight_values(tensors, where)
    model = DeepSeekModel(config)
    expected = {hf_name(name): name for name in model.state_dict()}
    stored_head = tensors.pop("lm_head.weight", None) if config.tie_embeddings else None
    missing = sorted(set(expected) - set(tensors))
    if missing:
        more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
        raise UserError(f"{where} lacks {len(missing)} tensor(s): {', '.join(missing[:3])}{more}")
    unexpected = sorted(set(tensors) - set(expected))
    if unexpected:
        raise UserError(
            f"{where} has tensor(s) a dense DeepSeek-V3 of this config does not have: "
            f"{', '.join(unexpected[:3])}"
        )
    state = {}
    for hf, ours in expected.items():
        wanted = tuple(model.state_dict()[ours].shape)
        if tuple(tensors[hf].shape) != wanted:
            raise UserError(
                f"{where}: {hf} has shape {list(tensors[hf].shape)}, but config.json needs "
                f"{list(wanted)}"
            )
        state[ours] = tensors[hf]
    if stored_head is not None and not torch.equal(stored_head, state["embed.weight"]):
        raise UserError(f"{where}: lm_head.weight differs from the embedding, but the head is tied")
    model.load_state_dict(state)
    return model.to(device=device, dtype=dtype).eval()


# --- the project's demo MLA model ---------------------------------------------------------


def demo_mla_model(device: str = "cpu", dtype: torch.dtype = torch.float32) -> DeepSeekModel:
    """The project's small trained DeepSeek-style model (`DEMO_MLA_DIR`)."""
    if not DEMO_MLA_DIR.is_dir():
        raise UserError(
            f"the demo MLA model is not there: {str(DEMO_MLA_DIR)!r} does not exist (it is "
            "written by training the DeepSeek-style model; see docs/mla.md)"
        )
    return load_deepseek_model(DEMO_MLA_DIR, device, dtype)


def default_deepseek_model(seed: int = 0) -> DeepSeekModel:
    """The demo MLA model when `DEMO_MLA_DIR` exists, else `deepseek-tiny` with seeded random
    weights (untrained: enough for the cache and rotation arithmetic, not for patterns)."""
    if DEMO_MLA_DIR.is_dir():
        return demo_mla_model()
    return DeepSeekModel(DEEPSEEK_TINY, seed=seed).eval()
