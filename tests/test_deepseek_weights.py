"""Loading one layer's MLA weights from a Hugging Face DeepSeek-layout safetensors checkpoint."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch
from deepseek_oracle import hf_config
from safetensors.torch import save_file

from mla_core.errors import UserError
from mla_core.loading.deepseek_weights import dequantize_fp8, hf_name, load_attention_layer
from mla_core.models.configs import (
    DEEPSEEK_TINY,
    DEEPSEEK_TINY_LITE,
    DEEPSEEK_V3,
    deepseek_config_from_hf,
)
from mla_core.models.deepseek import DeepSeekModel
from mla_core.models.rope import rope_frequencies, softmax_scale


def save_checkpoint(model: DeepSeekModel, folder, shards: int = 1) -> dict[str, torch.Tensor]:
    """Write `model` in Hugging Face names, as one file or as shards with an index."""
    state = {hf_name(k): v.contiguous() for k, v in model.state_dict().items()}
    folder.mkdir(parents=True, exist_ok=True)
    hf_config(model.config, interleave=True).to_json_file(str(folder / "config.json"))
    if shards == 1:
        save_file(state, str(folder / "model.safetensors"))
        return state
    names = sorted(state)
    weight_map = {}
    for i in range(shards):
        shard = f"model-{i + 1:05d}-of-{shards:05d}.safetensors"
        part = {n: state[n] for n in names[i::shards]}
        save_file(part, str(folder / shard))
        weight_map.update({n: shard for n in part})
    (folder / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    return state


@pytest.mark.parametrize("shards", [1, 3])
@pytest.mark.parametrize("cfg", [DEEPSEEK_TINY, DEEPSEEK_TINY_LITE], ids=lambda c: c.name)
def test_loads_one_layer_with_its_config(tmp_path, cfg, shards):
    model = DeepSeekModel(cfg, seed=11)
    save_checkpoint(model, tmp_path / "ckpt", shards)
    attn = load_attention_layer(tmp_path / "ckpt", layer=1)
    assert attn.config.q_lora_rank == cfg.q_lora_rank
    assert softmax_scale(attn.config) == softmax_scale(cfg)
    assert torch.equal(rope_frequencies(attn.config), rope_frequencies(cfg))
    reference = model.blocks[1].attn
    for name, param in reference.state_dict().items():
        assert torch.equal(attn.state_dict()[name], param), name
    h = torch.randn(1, 9, cfg.hidden_size)
    with torch.no_grad():
        torch.testing.assert_close(attn(h), reference(h), atol=0, rtol=0)


def test_missing_tensor_is_one_line_user_error(tmp_path):
    model = DeepSeekModel(DEEPSEEK_TINY)
    state = save_checkpoint(model, tmp_path)
    del state["model.layers.0.self_attn.kv_b_proj.weight"]
    save_file(state, str(tmp_path / "model.safetensors"))
    with pytest.raises(
        UserError, match=r"lacks the tensor 'model\.layers\.0\.self_attn\.kv_b_proj"
    ):
        load_attention_layer(tmp_path, layer=0)
    load_attention_layer(tmp_path, layer=1)  # the other layer is complete


def test_inconsistent_head_dims_are_rejected(tmp_path):
    save_checkpoint(DeepSeekModel(DEEPSEEK_TINY), tmp_path)
    wrong = replace(DEEPSEEK_TINY, qk_nope_head_dim=10, v_head_dim=10)  # same total width
    with pytest.raises(UserError, match=r"q_b_proj.weight. has shape \(56, 24\).*needs \(64, 24\)"):
        load_attention_layer(tmp_path, layer=0, config=wrong)


def test_bad_paths_and_layers(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        load_attention_layer(tmp_path / "nowhere", 0, DEEPSEEK_TINY)
    torch.save({}, tmp_path / "pytorch_model.bin")  # a pickle: never loaded
    with pytest.raises(UserError, match="no .safetensors"):
        load_attention_layer(tmp_path, 0, DEEPSEEK_TINY)
    save_file({"x": torch.zeros(1)}, str(tmp_path / "model.safetensors"))
    with pytest.raises(UserError, match="no config.json"):
        load_attention_layer(tmp_path, 0)
    with pytest.raises(UserError, match=r"layer=2 must be in 0\.\.1"):
        load_attention_layer(tmp_path, 2, DEEPSEEK_TINY)


def test_fp8_weights_are_dequantized_per_block(tmp_path):
    rows, cols = 200, 130  # not multiples of the 128 block: edge blocks are partial
    weight = torch.randn(rows, cols) * torch.linspace(0.1, 10, rows)[:, None]
    scale = torch.rand(2, 2) + 0.5  # one scale per 128 x 128 block
    expanded = torch.ones(rows, cols)
    for i in range(2):
        for j in range(2):
            expanded[i * 128 : (i + 1) * 128, j * 128 : (j + 1) * 128] = scale[i, j]
    fp8 = (weight / expanded).to(torch.float8_e4m3fn)
    got = dequantize_fp8(fp8, scale)
    assert torch.equal(got, fp8.float() * expanded)
    assert ((got - weight).norm() / weight.norm()).item() < 0.05  # float8 keeps ~2 digits


def test_real_v3_config_json_gives_the_builtin_attention():
    """The rope_scaling block as in deepseek-ai/DeepSeek-V3's config.json."""
    data = {
        "hidden_size": 7168,
        "num_hidden_layers": 61,
        "num_attention_heads": 128,
        "q_lora_rank": 1536,
        "kv_lora_rank": 512,
        "qk_nope_head_dim": 128,
        "qk_rope_head_dim": 64,
        "v_head_dim": 128,
        "vocab_size": 129280,
        "max_position_embeddings": 163840,
        "rope_theta": 10000,
        "rope_scaling": {
            "beta_fast": 32,
            "beta_slow": 1,
            "factor": 40,
            "mscale": 1.0,
            "mscale_all_dim": 1.0,
            "original_max_position_embeddings": 4096,
            "type": "yarn",
        },
    }
    cfg = deepseek_config_from_hf(data, "v3-json")
    assert cfg.yarn == DEEPSEEK_V3.yarn
    assert softmax_scale(cfg) == softmax_scale(DEEPSEEK_V3)
    assert torch.equal(rope_frequencies(cfg), rope_frequencies(DEEPSEEK_V3))
    with pytest.raises(UserError, match="mscale=1.0 differs from mscale_all_dim=0.5"):
        deepseek_config_from_hf(
            {**data, "rope_scaling": {**data["rope_scaling"], "mscale_all_dim": 0.5}}
        )
    with pytest.raises(UserError, match="lacks the key"):
        deepseek_config_from_hf({"hidden_size": 8})


def test_deepseek_attention_cli(tmp_path, capsys):
    from mla_core.cli import main

    model = DeepSeekModel(DEEPSEEK_TINY, seed=11)
    save_checkpoint(model, tmp_path / "ckpt")
    out = tmp_path / "head.npz"
    args = ["deepseek-attention", "--checkpoint", str(tmp_path / "ckpt"), "--layer", "1"]
    assert main([*args, "--head", "3", "--tokens", "5", "--out", str(out)]) == 0
    data = np.load(out)
    assert data["c_kv"].shape == (5, DEEPSEEK_TINY.kv_lora_rank)
    assert data["w_uk"].shape == (DEEPSEEK_TINY.qk_nope_head_dim, DEEPSEEK_TINY.kv_lora_rank)
    np.testing.assert_array_equal(data["w_uv"], model.blocks[1].attn.w_uv[3].detach().numpy())
    np.testing.assert_allclose(data["scores_absorbed"], data["scores_naive"], atol=1e-5)
    capsys.readouterr()
    # a config whose head dims do not fit the checkpoint: one line, exit 2
    wrong = hf_config(replace(DEEPSEEK_TINY, qk_nope_head_dim=10, v_head_dim=10), True)
    wrong.to_json_file(str(tmp_path / "wrong.json"))
    assert main([*args, "--config", str(tmp_path / "wrong.json")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "has shape" in err and "needs" in err
    # a checkpoint missing an attention tensor: one line, exit 2
    state = {hf_name(k): v for k, v in model.state_dict().items()}
    del state["model.layers.1.self_attn.o_proj.weight"]
    save_file(state, str(tmp_path / "ckpt" / "model.safetensors"))
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "lacks the tensor 'model.layers.1.self_attn.o_proj" in err
