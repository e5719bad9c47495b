"""MLA built from GPT-2's own weights: exact at full rank, the best rank-r factorisation
below it, absorption, the latent cache, the CLI (convert, sweep, attention --model mla)."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
import torch
from helpers import set_absorb
from safetensors.numpy import load_file

from mla_core.analysis.cache_size import cache_bytes
from mla_core.analysis.mla_sweep import rank_sweep
from mla_core.cli import main
from mla_core.errors import UserError
from mla_core.loading.weights import load_gpt2_from_dir
from mla_core.models.gpt2_to_mla import (
    LatentKVCache,
    check_rank,
    convert_gpt2,
    latent_cache_dims,
    load_converted,
    save_converted,
)

N_EMBD = 32  # the tiny fixture's width (tests/conftest.py)
PROMPT = " The American flag is red, white, and blue. It has fifty stars."


@pytest.fixture(scope="module")
def tiny(tiny_gpt2_dir):
    return load_gpt2_from_dir(tiny_gpt2_dir)


@pytest.fixture(scope="module")
def tiny64(tiny_gpt2_dir):
    return load_gpt2_from_dir(tiny_gpt2_dir, dtype=torch.float64)


def tokens(n: int = 40, batch: int = 2, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, 50257, (batch, n), generator=torch.Generator().manual_seed(seed))


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).norm() / b.norm()).item()


def test_full_rank_reproduces_gpt2_exactly(tiny64, tiny_gpt2_dir, load_oracle):
    ids = tokens()
    converted = convert_gpt2(tiny64, N_EMBD)
    with torch.no_grad():
        ours, theirs = [], []
        reference = tiny64(ids, capture=theirs)
        got = converted(ids, capture=ours)
        assert rel_err(got, reference) < 1e-12
        for mine, original in zip(ours, theirs, strict=True):  # every head, every step
            for name in ("k", "v", "scores", "pattern", "z"):
                assert rel_err(mine[name], original[name]) < 1e-12, name
        oracle = load_oracle(tiny_gpt2_dir)(ids).logits  # transformers' GPT-2, float32
    torch.testing.assert_close(got.float(), oracle, atol=2e-4, rtol=1e-5)


@pytest.mark.parametrize("rank", [1, 5, 16, 31])
def test_truncation_is_the_best_rank_r_approximation(tiny64, tiny_gpt2_dir, rank):
    """Against numpy's SVD of the checkpoint's own Conv1D tensors (not our loader's)."""
    stored = load_file(str(tiny_gpt2_dir / "model.safetensors"))
    converted = convert_gpt2(tiny64, rank)
    for i, block in enumerate(converted.h):
        c_attn = stored[f"transformer.h.{i}.attn.c_attn.weight"].astype(np.float64)  # [in, 3C]
        bias = stored[f"transformer.h.{i}.attn.c_attn.bias"].astype(np.float64)
        w_kv = c_attn[:, N_EMBD:].T  # (2C, C): [W_K; W_V] as out x in
        _, s, vh = np.linalg.svd(w_kv)
        best = w_kv @ vh[:rank].T @ vh[:rank]  # Eckart-Young: project onto the top-r inputs
        attn = block.attn
        up = torch.cat((attn.w_uk.flatten(0, 1), attn.w_uv.flatten(0, 1)))  # (2C, r)
        rebuilt = (up @ attn.w_dkv.weight).detach().numpy()
        np.testing.assert_allclose(rebuilt, best, atol=1e-12)
        error = np.linalg.norm(rebuilt - w_kv) ** 2
        assert error == pytest.approx((s[rank:] ** 2).sum(), rel=1e-9, abs=1e-12)
        # the biases are kept exactly, as constants after the up-projection
        np.testing.assert_array_equal(
            attn.b_k.detach().flatten().numpy(), bias[N_EMBD : 2 * N_EMBD]
        )
        np.testing.assert_array_equal(attn.b_v.detach().flatten().numpy(), bias[2 * N_EMBD :])


@pytest.mark.parametrize("dtype,tolerance", [(torch.float32, 1e-6), (torch.float64, 1e-12)])
@pytest.mark.parametrize("rank", [3, N_EMBD])
def test_absorbed_equals_naive_prefill_and_decode(tiny, tiny64, rank, dtype, tolerance):
    model = convert_gpt2(tiny if dtype == torch.float32 else tiny64, rank)
    ids = tokens()
    with torch.no_grad():
        set_absorb(model, False)
        naive = model(ids)
        set_absorb(model, True)
        absorbed = model(ids)
        assert rel_err(absorbed, naive) < tolerance
        pieces = {}
        for absorb in (False, True):  # decode: 6 prompt tokens, then one at a time
            set_absorb(model, absorb)
            cache = LatentKVCache(model.config.n_layer)
            steps = [model(ids[:, :6], kv_cache=cache)]
            steps += [model(ids[:, t : t + 1], kv_cache=cache) for t in range(6, ids.shape[1])]
            pieces[absorb] = torch.cat(steps, dim=1)
        set_absorb(model, False)
    assert rel_err(pieces[True], pieces[False]) < tolerance
    assert rel_err(pieces[False], naive) < tolerance  # cached decoding == full forward


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_latent_cache_bytes_equal_the_formula(tiny_gpt2_dir, dtype):
    model = convert_gpt2(load_gpt2_from_dir(tiny_gpt2_dir, dtype=dtype), 12)
    cache = LatentKVCache(model.config.n_layer)
    with torch.no_grad():
        model(tokens(9, batch=3), kv_cache=cache)
        model(tokens(1, batch=3), kv_cache=cache)
    assert cache.n_tokens == 10
    assert all(c.shape == (3, 10, 12) for c in cache.c_kv)  # only the latent is cached
    dims = latent_cache_dims(model.config, 12)
    expected = cache_bytes(dims, "mla", 10, dtype_bytes=dtype.itemsize, batch=3)
    assert cache.nbytes == expected == 3 * 10 * 12 * 2 * dtype.itemsize
    mha = cache_bytes(dims, "mha", 10, dtype_bytes=dtype.itemsize, batch=3)
    assert mha == 2 * N_EMBD / 12 * expected


@pytest.mark.parametrize("rank", [0, -3, N_EMBD + 1, 1536])
def test_impossible_ranks_are_refused(tiny, rank, capsys, tiny_gpt2_dir):
    with pytest.raises(UserError, match=r"rank at most n_embd=32"):
        check_rank(rank, tiny.config)
    assert main(["convert", "--rank", str(rank), "--weights", str(tiny_gpt2_dir)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"--rank {rank} is not allowed: use 1..32" in err


def test_save_and_load_round_trip(tiny, tmp_path):
    converted = convert_gpt2(tiny, 7)
    save_converted(converted, tmp_path, {"sha256": "abc"})
    assert json.loads((tmp_path / "mla_gpt2.json").read_text())["rank"] == 7
    loaded = load_converted(tmp_path, tiny)
    ids = tokens(12)
    with torch.no_grad():
        torch.testing.assert_close(loaded(ids), converted(ids), atol=0, rtol=0)
    (tmp_path / "mla_gpt2.json").unlink()
    with pytest.raises(UserError, match="lacks mla_gpt2.json"):
        load_converted(tmp_path, tiny)


def test_convert_cli_reports_and_saves(tiny_gpt2_dir, tmp_path, capsys):
    assert main(["convert", "--rank", "32", "--weights", str(tiny_gpt2_dir), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["cache_bytes_per_token_fp16"] == {"mha": 2 * 2 * 32 * 2, "mla": 32 * 2 * 2}
    assert report["check_max_abs_logit_diff"] < 1e-4  # full rank: GPT-2 itself
    assert report["check_top1_mla"] == report["check_top1_gpt2"]
    assert (
        main(["convert", "--rank", "4", "--weights", str(tiny_gpt2_dir), "--out", str(tmp_path)])
        == 0
    )
    assert (tmp_path / "mla_gpt2.safetensors").is_file()


def test_rank_sweep(tiny):
    text = (PROMPT + " ") * 12
    result = rank_sweep(tiny, text, ranks=[2, 8, 32, 500], window=32, max_windows=3)
    rows = {row["rank"]: row for row in result["ranks"]}
    assert list(rows) == [2, 8, 32]  # 500 clipped to n_embd, repeats dropped
    assert result["text"]["windows"] == 3
    full = rows[32]
    assert full["attention_kl_mean"] < 1e-7  # float32 rounding only
    assert full["top1_agreement"] == 1.0
    assert full["perplexity"] == pytest.approx(result["baseline_perplexity"], rel=1e-5)
    assert full["cache_fraction_of_mha"] == 0.5  # exact, and half of MHA
    assert rows[2]["attention_kl_mean"] > rows[8]["attention_kl_mean"] > 1e-4
    assert rows[2]["kv_weight_energy_kept"] < rows[8]["kv_weight_energy_kept"] < 1.0
    assert rows[8]["cache_bytes_per_token"] == 8 * 2 * 2  # r * layers * 2 bytes


def test_sweep_cli_writes_json_with_provenance(tiny_gpt2_dir, tmp_path, capsys):
    text = tmp_path / "text.txt"
    text.write_text((PROMPT + " ") * 8, encoding="utf-8")
    out = tmp_path / "sweep.json"
    args = ["sweep", "--weights", str(tiny_gpt2_dir), "--ranks", "4,32", "--window", "32"]
    assert main([*args, "--text", str(text), "--out", str(out)]) == 0
    assert "| 32 | 128 | 50.0% |" in capsys.readouterr().out
    result = json.loads(out.read_text())
    assert result["text"]["sha256"] == hashlib.sha256(text.read_bytes()).hexdigest()
    weights_sha = hashlib.sha256((tiny_gpt2_dir / "model.safetensors").read_bytes()).hexdigest()
    assert result["model"]["weights"]["sha256"] == weights_sha
    assert [row["rank"] for row in result["ranks"]] == [4, 32]
    assert not list(tmp_path.glob(".*.tmp"))  # the temp file was renamed into place
    assert main([*args, "--window", "100", "--out", str(out)]) == 2  # past n_ctx = 64
    assert "context of 64 tokens" in capsys.readouterr().err


def test_attention_cli_mla_npz(tiny_gpt2_dir, tmp_path):
    out = tmp_path / "head.npz"
    args = ["attention", "--model", "mla", "--rank", "8", "--prompt", PROMPT, "--layer", "1"]
    assert main([*args, "--head", "2", "--weights", str(tiny_gpt2_dir), "--out", str(out)]) == 0
    data = np.load(out)
    n_tokens = data["tokens"].shape[0]
    assert data["c_kv"].shape == (n_tokens, 8)
    assert data["w_dkv"].shape == (8, N_EMBD)
    assert data["w_uk"].shape == data["w_uv"].shape == (8, 8)  # (head_dim, rank)
    assert data["q_latent"].shape == (n_tokens, 8)
    # the saved tensors fit together: k = W_UK c_kv + b_k (b_k: the same for every token)
    bias = data["k"] - data["c_kv"] @ data["w_uk"].T
    np.testing.assert_allclose(bias, np.broadcast_to(bias[0], bias.shape), atol=1e-5)
    np.testing.assert_allclose(data["q"] @ data["w_uk"], data["q_latent"], atol=1e-5)
    no_rank = [a for a in args if a not in ("--rank", "8")]
    assert main([*no_rank, "--head", "2", "--weights", str(tiny_gpt2_dir)]) == 2
