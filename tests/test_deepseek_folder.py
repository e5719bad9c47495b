"""A DeepSeek-style model saved in the Hugging Face DeepSeek-V3 layout: transformers'
`DeepseekV3ForCausalLM.from_pretrained` loads the folder and computes our logits; our loader
gives the model back; broken folders are one-line errors. Also: head scores and attention
patterns of a DeepSeek-style model against transformers' own patterns, and the default
DeepSeek model (the demo MLA model when its folder exists)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from transformers import DeepseekV3ForCausalLM

from mla_core.analysis.capture import capture_attention, mla_attention_steps
from mla_core.analysis.head_scores import (
    REFERENCE_TEXT,
    duplicate_token_score,
    first_token_score,
    induction_score,
    measure_head_scores,
    previous_token_score,
    repeated_random_tokens,
)
from mla_core.analysis.latent_heads import (
    deepseek_cache_steps,
    deepseek_latent_head,
    deepseek_layer_input,
)
from mla_core.cli import main as cli_main
from mla_core.errors import UserError
from mla_core.loading import deepseek_folder
from mla_core.loading.deepseek_folder import (
    DEMO_MLA_DIR,
    deepseek_v3_config_json,
    default_deepseek_model,
    demo_mla_model,
    load_deepseek_model,
    read_deepseek_config,
    save_deepseek_folder,
)
from mla_core.loading.tokenizer import ENDOFTEXT_ID, gpt2_tokenizer
from mla_core.models.configs import (
    DEEPSEEK_TINY,
    DEEPSEEK_TINY_LITE,
    DeepSeekConfig,
    YarnScaling,
    deepseek_config_from_hf,
)
from mla_core.models.deepseek import DeepSeekModel

SEQ = 40  # longer than deepseek-tiny's YaRN original length (16): the ramp matters

# A small model on GPT-2's vocabulary (real prompts and head scores work), like
# DeepSeek-V2-Lite: no query compression; tied head.
GPT2_VOCAB_MLA = DeepSeekConfig(
    name="tiny-mla-gpt2-vocab",
    hidden_size=32,
    n_layers=2,
    n_heads=4,
    q_lora_rank=None,
    kv_lora_rank=16,
    qk_nope_head_dim=8,
    qk_rope_head_dim=4,
    v_head_dim=8,
    vocab_size=50257,
    intermediate_size=64,
    max_seq_len=128,
    # YaRN on (128 > 32): the softmax scale is not (d_nope + d_R)^-0.5, so a capture that
    # forgot the model's scale would not match transformers
    yarn=YarnScaling(factor=4.0, original_seq_len=32, beta_fast=32, beta_slow=1, mscale=0.707),
    tie_embeddings=True,
)


def sharpened(cfg: DeepSeekConfig, seed: int = 3) -> DeepSeekModel:
    """A random model with weights large enough for uneven attention patterns."""
    model = DeepSeekModel(cfg, seed=seed)
    generator = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name != "embed.weight":  # 50257 x hidden: the default scale is fine
                param.add_(0.2 * torch.randn(param.shape, generator=generator))
    return model.eval()


def transformers_model(folder: Path) -> DeepseekV3ForCausalLM:
    return DeepseekV3ForCausalLM.from_pretrained(
        folder, dtype=torch.float32, attn_implementation="eager"
    ).eval()


def random_tokens(cfg: DeepSeekConfig, n: int = SEQ, seed: int = 7) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, cfg.vocab_size, (2, n), generator=generator)


@pytest.fixture(scope="module")
def gpt2_vocab_folder(tmp_path_factory: pytest.TempPathFactory) -> tuple[DeepSeekModel, Path]:
    model = sharpened(GPT2_VOCAB_MLA)
    folder = tmp_path_factory.mktemp("deepseek") / "tiny-mla"
    save_deepseek_folder(model, folder, dtype=torch.float32)
    return model, folder


# --- config.json ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "cfg",
    [
        DEEPSEEK_TINY,  # query compression, YaRN active, untied
        DEEPSEEK_TINY_LITE,  # no query compression, plain RoPE, tied
        replace(DEEPSEEK_TINY, name="unset-mlp", intermediate_size=0, yarn=None),
        GPT2_VOCAB_MLA,
    ],
    ids=lambda c: c.name,
)
def test_config_json_round_trip(cfg: DeepSeekConfig) -> None:
    data = deepseek_v3_config_json(cfg)
    assert data["model_type"] == "deepseek_v3"
    assert data["architectures"] == ["DeepseekV3ForCausalLM"]
    assert data["first_k_dense_replace"] == data["num_hidden_layers"] == cfg.n_layers
    assert data["rope_interleave"] is True and data["torch_dtype"] == "bfloat16"
    assert data["q_lora_rank"] == cfg.q_lora_rank
    assert data["bos_token_id"] == (50256 if cfg.vocab_size == 50257 else None)
    back = deepseek_config_from_hf(json.loads(json.dumps(data)), name=cfg.name)
    assert back == replace(cfg, intermediate_size=cfg.intermediate_size or 4 * cfg.hidden_size)


def test_inactive_yarn_is_written_as_plain_rope() -> None:
    # our RoPE ignores YaRN when max_seq_len <= its original length; transformers would not
    cfg = replace(DEEPSEEK_TINY, max_seq_len=16)
    assert deepseek_v3_config_json(cfg)["rope_parameters"]["rope_type"] == "default"


def test_config_json_refuses_what_transformers_would_compute_differently() -> None:
    with pytest.raises(UserError, match="rms_norm_eps=1e-05 cannot be saved"):
        deepseek_v3_config_json(replace(DEEPSEEK_TINY, rms_norm_eps=1e-5))
    with pytest.raises(UserError, match="dtype torch.int8 is not allowed"):
        deepseek_v3_config_json(DEEPSEEK_TINY, dtype=torch.int8)


# --- our model against transformers' DeepSeek-V3 ---------------------------------------------


@pytest.mark.parametrize("cfg", [DEEPSEEK_TINY, DEEPSEEK_TINY_LITE], ids=lambda c: c.name)
def test_transformers_loads_the_folder_and_computes_our_logits(tmp_path, cfg) -> None:
    ours = sharpened(cfg)
    folder = save_deepseek_folder(ours, tmp_path / "model", dtype=torch.float32)
    with safe_open(str(folder / "model.safetensors"), framework="pt") as f:
        names = set(f.keys())
    assert ("lm_head.weight" in names) == (not cfg.tie_embeddings)  # tied: not stored
    assert ("model.layers.0.self_attn.q_a_proj.weight" in names) == (cfg.q_lora_rank is not None)

    theirs = transformers_model(folder)
    assert all(type(layer.mlp).__name__ == "DeepseekV3MLP" for layer in theirs.model.layers)
    tokens = random_tokens(cfg)
    loaded = load_deepseek_model(folder)
    with torch.no_grad():
        expected = theirs(tokens).logits
        got = ours(tokens)
        again = loaded(tokens)
    assert expected.std() > 0.1  # not a degenerate comparison
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    # the absorbed path sums in another order: a little more rounding
    torch.testing.assert_close(ours(tokens, absorb=True), expected, atol=5e-5, rtol=1e-5)
    # our loader gives back the very same model
    assert loaded.config == replace(cfg, name="model")
    torch.testing.assert_close(again, got, atol=0, rtol=0)
    for name, tensor in ours.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], tensor), name


def test_bfloat16_folder(tmp_path) -> None:
    ours = sharpened(DEEPSEEK_TINY)
    folder = save_deepseek_folder(ours, tmp_path / "bf16")  # the default dtype
    assert json.loads((folder / "config.json").read_text())["torch_dtype"] == "bfloat16"
    stored = load_file(str(folder / "model.safetensors"))
    assert {t.dtype for t in stored.values()} == {torch.bfloat16}
    digest = (folder / "model.safetensors.sha256").read_text().split()[0]
    from mla_core.loading.weights import sha256_of_file

    assert digest == sha256_of_file(folder / "model.safetensors")
    loaded = load_deepseek_model(folder)  # computed in float32 from the bfloat16 values
    for name, tensor in ours.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], tensor.bfloat16().float()), name
    tokens = random_tokens(DEEPSEEK_TINY)
    with torch.no_grad():
        torch.testing.assert_close(
            loaded(tokens), transformers_model(folder)(tokens).logits, atol=1e-5, rtol=1e-5
        )


def test_demo_mla_model_matches_transformers() -> None:
    if not (DEMO_MLA_DIR / "model.safetensors").is_file():
        pytest.skip(f"the demo MLA model is not shipped yet ({DEMO_MLA_DIR} is absent)")
    ours = demo_mla_model()
    theirs = transformers_model(DEMO_MLA_DIR)
    ids = gpt2_tokenizer().encode(" The American flag is red, white, and")
    tokens = torch.tensor([ids])
    with torch.no_grad():
        expected = theirs(tokens).logits
        torch.testing.assert_close(ours(tokens), expected, atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(ours(tokens, absorb=True), expected, atol=1e-4, rtol=1e-4)


def test_extra_files_are_written_beside_the_weights(tmp_path) -> None:
    picture = tmp_path / "curve.png"
    picture.write_bytes(b"\x89PNG not really")
    folder = save_deepseek_folder(
        DeepSeekModel(DEEPSEEK_TINY_LITE),
        tmp_path / "m",
        extra_files={"MODEL.md": "# card\n", "raw.bin": b"\x00\x01", "loss_curve.png": picture},
    )
    assert (folder / "MODEL.md").read_text() == "# card\n"
    assert (folder / "raw.bin").read_bytes() == b"\x00\x01"
    assert (folder / "loss_curve.png").read_bytes() == picture.read_bytes()
    assert not [p for p in folder.iterdir() if p.name.startswith(".")]  # no temporary left
    for bad in ("config.json", "../x.md", ".hidden"):
        with pytest.raises(UserError, match="extra file name"):
            save_deepseek_folder(
                DeepSeekModel(DEEPSEEK_TINY_LITE), tmp_path / "n", extra_files={bad: ""}
            )


# --- broken folders ---------------------------------------------------------------------


@pytest.fixture
def saved(tmp_path) -> Path:
    return save_deepseek_folder(DeepSeekModel(DEEPSEEK_TINY_LITE), tmp_path / "ok", torch.float32)


def rewrite_config(folder: Path, **changes) -> None:
    data = json.loads((folder / "config.json").read_text())
    data.update(changes)
    (folder / "config.json").write_text(json.dumps(data))


def rewrite_tensors(folder: Path, edit) -> None:
    tensors = load_file(str(folder / "model.safetensors"))
    edit(tensors)
    save_file(tensors, str(folder / "model.safetensors"))
    (folder / "model.safetensors.sha256").unlink(missing_ok=True)


def one_line_error(folder: Path, match: str) -> None:
    with pytest.raises(UserError, match=match) as err:
        load_deepseek_model(folder)
    assert "\n" not in str(err.value)


def test_missing_folder_files_and_pickles(tmp_path, saved) -> None:
    one_line_error(tmp_path / "nowhere", "does not exist")
    one_line_error(saved / "config.json", "is not a folder")
    (tmp_path / "pickled").mkdir()
    (tmp_path / "pickled" / "pytorch_model.bin").write_bytes(b"not unpickled")
    one_line_error(tmp_path / "pickled", r"no model.safetensors \(pytorch_model.bin, a pickle")
    (saved / "config.json").unlink()
    one_line_error(saved, "has no config.json")


def test_corrupt_weights_are_caught_by_the_sha256(saved) -> None:
    data = bytearray((saved / "model.safetensors").read_bytes())
    data[-1] ^= 1
    (saved / "model.safetensors").write_bytes(bytes(data))
    one_line_error(saved, "the file is corrupt or was replaced")


@pytest.mark.parametrize(
    "changes,match",
    [
        ({"model_type": "deepseek_v2"}, "model_type 'deepseek_v2' is not allowed"),
        ({"first_k_dense_replace": 1, "n_routed_experts": 8}, "mixtures of experts"),
        ({"rope_interleave": False}, "rope_interleave=False is not supported"),
        ({"hidden_act": "gelu"}, "hidden_act='gelu' is not supported"),
        ({"kv_lora_rank": "big"}, "kv_lora_rank='big' must be a whole number"),
    ],
)
def test_bad_configs(saved, changes, match) -> None:
    rewrite_config(saved, **changes)
    one_line_error(saved, match)


def test_bad_tensors(saved) -> None:
    name = "model.layers.1.self_attn.kv_b_proj.weight"
    rewrite_tensors(saved, lambda t: t.update({name: t[name][:-1]}))
    one_line_error(
        saved, r"kv_b_proj.weight has shape \[79, 20\], but config.json needs \[80, 20\]"
    )
    rewrite_tensors(saved, lambda t: t.pop(name))
    one_line_error(saved, "lacks 1 tensor")
    rewrite_tensors(saved, lambda t: t.update({name: torch.zeros(80, 20)}))
    rewrite_tensors(
        saved, lambda t: t.update({"model.layers.1.mlp.gate.weight": torch.zeros(2, 48)})
    )
    one_line_error(saved, "does not have: model.layers.1.mlp.gate.weight")
    rewrite_tensors(saved, lambda t: t.pop("model.layers.1.mlp.gate.weight"))
    rewrite_tensors(saved, lambda t: t.update({"model.layers.2.eh_proj.weight": torch.zeros(2)}))
    load_deepseek_model(saved)  # a multi-token-prediction layer past the last one is ignored
    rewrite_tensors(saved, lambda t: t.update({"lm_head.weight": torch.zeros(101, 48)}))
    one_line_error(saved, "lm_head.weight differs from the embedding")
    rewrite_tensors(saved, lambda t: t.update({"lm_head.weight": torch.zeros(101, 48).int()}))
    one_line_error(saved, "dtype torch.int32; want floats")


# --- head scores and attention patterns -----------------------------------------------------


def transformers_patterns(oracle, ids: list[int]) -> np.ndarray:
    with torch.no_grad():
        out = oracle(torch.tensor([ids]), output_attentions=True)
    return torch.stack([a[0] for a in out.attentions]).numpy()  # [L, H, T, T]


def test_patterns_and_head_scores_match_transformers(gpt2_vocab_folder) -> None:
    model, folder = gpt2_vocab_folder
    oracle = transformers_model(folder)
    prompt = " The American flag is red, white, and blue. The American flag"
    capture = capture_attention(model, prompt, bos=True)
    ids = capture.token_ids
    expected = transformers_patterns(oracle, ids)
    assert capture.pattern.shape == expected.shape == (2, 4, len(ids), len(ids))
    assert expected.max(-1).mean() > 1.5 / np.arange(1, len(ids) + 1).mean()  # not uniform
    np.testing.assert_allclose(capture.pattern, expected, atol=1e-5)
    d_qk = GPT2_VOCAB_MLA.qk_nope_head_dim + GPT2_VOCAB_MLA.qk_rope_head_dim
    assert capture.q.shape[-1] == capture.k.shape[-1] == d_qk
    assert capture.z.shape[-1] == GPT2_VOCAB_MLA.v_head_dim
    # the RoPE part of every head's key is the one shared RoPE key
    np.testing.assert_array_equal(capture.k[:, 1:, :, 8:], capture.k[:, :1, :, 8:].repeat(3, 1))

    scores = measure_head_scores(model, repeat_tokens=20, n_sequences=2, seed=3)
    text_ids = [ENDOFTEXT_ID, *gpt2_tokenizer().encode(REFERENCE_TEXT)][:128]
    text_pattern = transformers_patterns(oracle, text_ids)
    np.testing.assert_allclose(scores.previous_token, previous_token_score(text_pattern), atol=1e-5)
    np.testing.assert_allclose(scores.first_token, first_token_score(text_pattern), atol=1e-5)
    duplicate, induction = [], []
    for seed in (3, 4):
        ids = repeated_random_tokens(20, seed)
        pattern = transformers_patterns(oracle, ids)
        duplicate.append(duplicate_token_score(pattern, ids))
        induction.append(induction_score(pattern, ids))
    np.testing.assert_allclose(scores.duplicate_token, np.mean(duplicate, 0), atol=1e-5)
    np.testing.assert_allclose(scores.induction, np.mean(induction, 0), atol=1e-5)


def test_captured_heads_give_the_layer_output() -> None:
    model = sharpened(DEEPSEEK_TINY)
    hidden = deepseek_layer_input(model, [5, 17, 3, 99, 42, 8, 23, 61], layer=1)[None]
    attn = model.blocks[1].attn
    steps = mla_attention_steps(attn, hidden)
    with torch.no_grad():
        out = attn.w_o(steps["z"].transpose(1, 2).flatten(2))
        torch.testing.assert_close(out, attn(hidden), atol=1e-6, rtol=1e-6)


def test_heads_command_on_a_deepseek_folder(gpt2_vocab_folder, capsys) -> None:
    _, folder = gpt2_vocab_folder
    args = ["heads", "--weights", str(folder), "--repeat-tokens", "20", "--device", "cpu"]
    assert cli_main([*args, "--sequences", "1", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert len(report["heads"]) == 2 * 4
    assert "DeepSeek-V3 layout" in report["weights"]["description"]
    assert report["weights"]["sha256"] == (folder / "model.safetensors.sha256").read_text().strip()
    assert cli_main([*args[:3], "--repeat-tokens", "64"]) == 2  # 129 tokens > 128
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "context of 128" in err


# --- the default DeepSeek model -----------------------------------------------------------


def test_default_model_without_the_demo_folder(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(deepseek_folder, "DEMO_MLA_DIR", tmp_path / "absent")
    with pytest.raises(UserError, match="the demo MLA model is not there"):
        demo_mla_model()
    model = default_deepseek_model()
    assert model.config == DEEPSEEK_TINY
    for name, tensor in DeepSeekModel(DEEPSEEK_TINY, seed=0).state_dict().items():
        assert torch.equal(model.state_dict()[name], tensor), name
    steps = deepseek_cache_steps(None, [1, 2, 3], n_new=2, layer=0)
    assert steps[-1].c_kv.shape == (4, DEEPSEEK_TINY.kv_lora_rank)
    assert steps[0].tokens == ["1", "2", "3"]  # no tokenizer for a 101-token vocabulary


def test_default_model_is_the_demo_folder_when_it_exists(gpt2_vocab_folder, monkeypatch) -> None:
    model, folder = gpt2_vocab_folder
    monkeypatch.setattr(deepseek_folder, "DEMO_MLA_DIR", folder)
    assert read_deepseek_config(folder) == default_deepseek_model().config
    steps = deepseek_cache_steps(None, " The American flag is", n_new=2, layer=1)
    assert steps[0].tokens == ["␣The", "␣American", "␣flag", "␣is"]
    assert steps[-1].c_kv.shape == (5, GPT2_VOCAB_MLA.kv_lora_rank)
    expected = deepseek_cache_steps(model, " The American flag is", n_new=2, layer=1)
    assert [s.next_token_id for s in steps] == [s.next_token_id for s in expected]
    np.testing.assert_array_equal(steps[-1].k_rope, expected[-1].k_rope)

    ids = [464, 1605, 6056, 318, 2266]
    head = deepseek_latent_head(None, ids, head=3, layer=1)
    hidden = deepseek_layer_input(model, ids, layer=1)
    direct = deepseek_latent_head(model.blocks[1].attn, hidden, head=3)
    np.testing.assert_array_equal(head.scores_naive, direct.scores_naive)
    np.testing.assert_array_equal(head.c_kv, direct.c_kv)
    with pytest.raises(UserError, match="--layer 2 is out of range"):
        deepseek_latent_head(None, ids, head=0, layer=2)
    with pytest.raises(UserError, match="pass the model to use a prompt"):
        deepseek_latent_head(model.blocks[0].attn, ids, head=0)
