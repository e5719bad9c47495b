"""LatentRankSweep's data: the rank sweep of the video's GPT-2, one head's patterns by rank,
and the singular values of [W_K; W_V].

Oracles: `python -m mla_core sweep` run as a subprocess on the same checkpoint, ranks, window
and text (the CLI's JSON rows must equal the scene data's); NumPy's SVD of the checkpoint's
own [W_K; W_V] (read from the safetensors file); transformers' attention patterns for the
original; the cache formula r * n_layer * 2 bytes.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import TINY_GPT2
from safetensors.numpy import load_file

from mla_core import scene_data as sd
from mla_core.scene_data.latent_rank_sweep import sweep_ranks, sweep_window
from mla_core.scene_data.params import load_params
from mla_core.scene_data.store import CACHE_DIR_ENV

REPO = Path(__file__).resolve().parent.parent
PROMPT = " The American flag is red, white, and"
PROMPT_IDS = [383, 1605, 6056, 318, 2266, 11, 2330, 11, 290]  # REFERENCE.md
HEAD = (1, 2)
N_EMBD, N_LAYER, N_CTX = TINY_GPT2["n_embd"], TINY_GPT2["n_layer"], TINY_GPT2["n_positions"]


@pytest.fixture(scope="module")
def data(tiny_gpt2_dir, tmp_path_factory):
    params = load_params(
        None,
        {
            "weights": str(tiny_gpt2_dir),
            "device": "cpu",
            "heads": f"{HEAD[0]}.{HEAD[1]}",
            "prompt": PROMPT,
            "show_bos": "false",
        },
    )
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(CACHE_DIR_ENV, str(tmp_path_factory.mktemp("scene_data")))
        return sd.data_for_scene("LatentRankSweep", params)


def test_ranks_are_fractions_of_n_embd_including_n_embd():
    assert sweep_ranks(192) == [6, 12, 24, 48, 96, 192]
    assert sweep_ranks(768) == [24, 48, 96, 192, 384, 768]
    assert sweep_ranks(32) == [1, 2, 4, 8, 16, 32]
    assert sweep_ranks(40)[-1] == 40


def test_sweep_rows_match_the_cli(data, tiny_gpt2_dir, tmp_path):
    ranks = [int(r) for r in data["ranks"]]
    window = sweep_window(N_CTX)
    out = tmp_path / "sweep.json"
    command = [
        sys.executable,
        "-m",
        "mla_core",
        "sweep",
        "--weights",
        str(tiny_gpt2_dir),
        "--device",
        "cpu",
        "--ranks",
        ",".join(map(str, ranks)),
        "--window",
        str(window),
        "--out",
        str(out),
    ]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    cli = json.loads(out.read_text())
    assert [row["rank"] for row in cli["ranks"]] == ranks
    assert cli["text"]["window_tokens"] == window
    assert cli["mha_cache_bytes_per_token"] == data["sweep"]["mha_cache_bytes_per_token"]
    np.testing.assert_allclose(
        data["sweep"]["baseline_perplexity"], cli["baseline_perplexity"], rtol=1e-9
    )
    columns = {
        "cache_bytes_per_token": "cache_bytes_per_token",
        "top1_agreement": "top1_agreement",
        "perplexity": "perplexity",
        "attention_kl": "attention_kl_mean",
        "energy_kept": "kv_weight_energy_kept",
    }
    for ours, theirs in columns.items():
        expected = [row[theirs] for row in cli["ranks"]]
        np.testing.assert_allclose(data[ours], expected, rtol=1e-9, atol=1e-12, err_msg=ours)


def test_cache_bytes_are_the_formula(data):
    ranks = np.asarray(data["ranks"])
    np.testing.assert_array_equal(data["cache_bytes_per_token"], ranks * N_LAYER * 2)
    assert data["sweep"]["mha_cache_bytes_per_token"] == 2 * N_EMBD * N_LAYER * 2


def test_rank_n_embd_is_exact_and_smaller_ranks_are_not(data):
    assert int(data["ranks"][-1]) == N_EMBD
    assert data["attention_kl"][-1] < 1e-8
    assert data["top1_agreement"][-1] == 1.0
    assert data["cache_bytes_per_token"][-1] * 2 == data["sweep"]["mha_cache_bytes_per_token"]
    assert data["attention_kl"][0] > 1e-3


def test_singular_values_are_those_of_the_checkpoints_w_kv(data, tiny_gpt2_dir):
    tensors = load_file(str(tiny_gpt2_dir / "model.safetensors"))
    c_attn = tensors[f"transformer.h.{HEAD[0]}.attn.c_attn.weight"].astype(np.float64).T
    w_kv = c_attn[N_EMBD:]  # (2C, C)
    assert list(data["w_kv_shape"]) == [2 * N_EMBD, N_EMBD]
    np.testing.assert_allclose(data["w_kv"], w_kv, atol=1e-6)
    expected = np.linalg.svd(w_kv, compute_uv=False)
    assert len(expected) == N_EMBD  # a (2C, C) matrix has at most C singular values
    np.testing.assert_allclose(data["singular_values"], expected, rtol=1e-6, atol=1e-9)


def test_patterns_original_from_transformers_and_exact_at_n_embd(data, tiny_gpt2_dir):
    from transformers import GPT2LMHeadModel

    hf = GPT2LMHeadModel.from_pretrained(tiny_gpt2_dir, attn_implementation="eager").eval()
    with torch.no_grad():
        attentions = hf(torch.tensor([PROMPT_IDS]), output_attentions=True).attentions
    original = attentions[HEAD[0]][0, HEAD[1]].numpy()
    patterns = np.asarray(data["patterns"])
    assert patterns.shape == (4, len(PROMPT_IDS), len(PROMPT_IDS))
    np.testing.assert_allclose(patterns[0], original, atol=1e-5)
    assert list(data["pattern_ranks"]) == [N_EMBD // 16, N_EMBD // 4, N_EMBD]
    np.testing.assert_allclose(patterns[-1], original, atol=1e-4)
    assert np.abs(patterns[1] - original).max() > 1e-3
