"""KV cache arithmetic against REFERENCE.md's table and the DeepSeek-V2 paper's Table 1 formulas."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from mla_core.analysis import cache_size as cs
from mla_core.errors import UserError
from mla_core.models.configs import DEEPSEEK_V2, DEEPSEEK_V2_LITE, DEEPSEEK_V3, GPT2_SMALL

REPO = Path(__file__).resolve().parent.parent

V3 = cs.dims_from_config(DEEPSEEK_V3)


# Numbers quoted in REFERENCE.md ("KV cache arithmetic"), bytes per token at 2 bytes per element.
@pytest.mark.parametrize(
    ("kind", "groups", "expected"),
    [
        ("mha", None, 3_997_696),
        ("gqa", 8, 249_856),
        ("mqa", None, 31_232),
        ("mla", None, 70_272),
        ("mla_naive", None, 4_997_120),
    ],
)
def test_v3_bytes_per_token_match_reference_table(kind, groups, expected):
    assert cs.bytes_per_token(V3, kind, dtype_bytes=2, groups=groups) == expected


def test_v3_headline_ratio_and_reduction():
    mha = cs.bytes_per_token(V3, "mha")
    mla = cs.bytes_per_token(V3, "mla")
    assert round(mha / mla, 2) == 56.89
    assert round(100 * (1 - mla / mha), 2) == 98.24
    # ~400 GB at 100k tokens for MHA.
    assert cs.cache_bytes(V3, "mha", 100_000) == 399_769_600_000


@pytest.mark.parametrize("config", [DEEPSEEK_V3, DEEPSEEK_V2, DEEPSEEK_V2_LITE])
def test_deepseek_configs_follow_paper_table_1(config):
    """Table 1 of arXiv 2405.04434: elements per token, written out from the paper's symbols."""
    n_h, d_h, layers = config.n_heads, config.v_head_dim, config.n_layers
    d_c, d_r = config.kv_lora_rank, config.qk_rope_head_dim
    dims = cs.dims_from_config(config)
    assert cs.elements_per_token(dims, "mha") == 2 * n_h * d_h * layers
    assert cs.elements_per_token(dims, "gqa", groups=8) == 2 * 8 * d_h * layers
    assert cs.elements_per_token(dims, "mqa") == 2 * d_h * layers
    # The paper writes MLA as (d_c + d_h^R) * l, with d_c = 4 d_h and d_h^R = d_h / 2 = 4.5 d_h * l.
    assert cs.elements_per_token(dims, "mla") == (d_c + d_r) * layers == 4.5 * d_h * layers


def test_real_v2_bytes():
    dims = cs.dims_from_config(DEEPSEEK_V2)
    assert cs.bytes_per_token(dims, "mha") == 3_932_160
    assert cs.bytes_per_token(dims, "mla") == 69_120


def test_gpt2_small_fp32_and_fp16():
    dims = cs.dims_from_config(GPT2_SMALL)
    assert cs.bytes_per_token(dims, "mha", dtype_bytes=4) == 73_728
    assert cs.bytes_per_token(dims, "mha", dtype_bytes=2) == 36_864


def test_video_notes_v2_example(tmp_path):
    """The video's notes use a "V2" with 30 layers and 32 heads (older HF DeepseekV2Config
    defaults), not the real V2 (60 layers, 128 heads)."""
    from transformers import DeepseekV2Config

    hf = DeepseekV2Config(num_hidden_layers=30, num_attention_heads=32)
    path = tmp_path / "config.json"
    path.write_text(hf.to_json_string())
    dims = cs.resolve_dims(str(path))
    mha, mla = cs.bytes_per_token(dims, "mha"), cs.bytes_per_token(dims, "mla")
    assert (mha, mla) == (491_520, 34_560)
    reduction = 1 - mla / mha
    assert round(100 * reduction, 2) == 92.97  # not the notes' misprinted 92.8%
    assert round(100 * (mha - mla) / 492_520, 1) == 92.8  # the typo reproduces the misprint


def test_gqa_groups_must_divide_heads():
    with pytest.raises(UserError, match="groups=7"):
        cs.bytes_per_token(V3, "gqa", groups=7)
    with pytest.raises(UserError, match="no key/value groups"):
        cs.bytes_per_token(V3, "gqa")


def test_mla_needs_a_latent():
    with pytest.raises(UserError, match="no latent"):
        cs.bytes_per_token(cs.dims_from_config(GPT2_SMALL), "mla")


def test_llama_style_gqa_config_json(tmp_path):
    path = tmp_path / "llama.json"
    path.write_text(
        json.dumps(
            {
                "num_hidden_layers": 32,
                "num_attention_heads": 32,
                "num_key_value_heads": 8,
                "hidden_size": 4096,
            }
        )
    )
    report = cs.cache_report(cs.resolve_dims(str(path)), dtype_bytes=2)
    assert set(report["bytes_per_token"]) == {"mha", "gqa", "mqa"}
    assert report["bytes_per_token"]["gqa"] == 2 * 8 * 128 * 32 * 2  # 131,072: Llama-3-8B
    assert report["ratios"]["gqa"] == 4.0


# --- the CLI ----------------------------------------------------------------------------------


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "mla_core", *args], cwd=REPO, capture_output=True, text=True
    )


def test_cli_json_for_builtin_v3():
    out = run_cli("cache", "--config", "deepseek-v3", "--context", "100000", "--json")
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["bytes_per_token"] == {"mha": 3_997_696, "mqa": 31_232, "mla": 70_272}
    assert report["ratios"]["mla"] == pytest.approx(3_997_696 / 70_272)
    assert report["cache_bytes"]["mha"] == 3_997_696 * 100_000


def test_cli_on_gpt2_config_json(tmp_path):
    from transformers import GPT2Config

    path = tmp_path / "config.json"
    path.write_text(GPT2Config().to_json_string())
    out = run_cli("cache", "--config", str(path), "--dtype-bytes", "4", "--json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["bytes_per_token"]["mha"] == 73_728


def test_cli_table_output():
    out = run_cli("cache", "--config", "deepseek-v3", "--gqa-groups", "8")
    assert out.returncode == 0
    assert "3,997,696" in out.stdout and "70,272" in out.stdout and "GQA-8" in out.stdout


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "does not exist"),
        ("{not json", "not valid JSON"),
        ("[1, 2]", "JSON object"),
        ('{"kv_lora_rank": 512, "num_hidden_layers": 61}', "num_attention_heads"),
        ('{"n_layer": 12, "n_head": 12}', "n_embd"),
        ('{"hidden_size": 10}', "n_layer (GPT-2) or num_hidden_layers"),
        ('{"n_layer": 0, "n_head": 12, "n_embd": 768}', "n_layer=0"),
    ],
)
def test_cli_bad_config_files_exit_2_with_one_line(tmp_path, content, message):
    path = tmp_path / "config.json"
    if content is not None:
        path.write_text(content)
    out = run_cli("cache", "--config", str(path))
    assert out.returncode == 2
    assert out.stdout == ""
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], out.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--config", "deepseek-v9"], "deepseek-v9"),
        (["--config", "deepseek-v3", "--dtype-bytes", "3"], "bytes=3"),
        (["--config", "deepseek-v3", "--dtype-bytes", "x"], "'x'"),
        (["--config", "deepseek-v3", "--context", "-5"], "context=-5"),
        (["--config", "deepseek-v3", "--gqa-groups", "5"], "groups=5"),
    ],
)
def test_cli_bad_values_exit_2(args, message):
    out = run_cli("cache", *args)
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], out.stderr
