"""Results: DeepSeek-V3's cache, the technical notes' V2-style example (and its typo), the
DeepSeek-V2 paper's figures. Every number is checked against the cache formulas of the
DeepSeek-V2 paper (Table 1) written out here, or against transformers' DeepseekV2Config."""

from __future__ import annotations

import pytest
from helpers import render_final_frame, shown_texts

from mla_core.analysis.ablation_results import load_ablation
from mla_core.analysis.cache_size import dims_from_hf_json
from mla_core.analysis.notes_example import (
    NOTES_PRINTED_DENOMINATOR,
    NOTES_PRINTED_PERCENT,
    NOTES_V2_EXAMPLE,
    notes_example,
)
from mla_core.scene_data.params import PARAMS_ENV, load_params
from mla_core.scene_data.results import results
from mla_core.scene_data.store import CACHE_DIR_ENV


def mha_bytes(layers: int, heads: int, head_dim: int, dtype_bytes: int = 2) -> int:
    return 2 * heads * head_dim * layers * dtype_bytes


def mla_bytes(layers: int, d_c: int, d_r: int, dtype_bytes: int = 2) -> int:
    return (d_c + d_r) * layers * dtype_bytes


@pytest.fixture(scope="module")
def data():
    return results(None)


def test_v3_cache_is_the_formula(data):
    v3 = data["v3"]
    assert v3["mha_bytes_per_token"] == mha_bytes(61, 128, 128) == 3_997_696
    assert v3["mla_bytes_per_token"] == mla_bytes(61, 512, 64) == 70_272
    assert f"{v3['ratio']:.1f}" == f"{3_997_696 / 70_272:.1f}" == "56.9"


def test_notes_example_and_its_typo():
    notes = notes_example()
    mha, mla = mha_bytes(30, 32, 128), mla_bytes(30, 512, 64)
    assert (notes["mha_bytes_per_token"], notes["mla_bytes_per_token"]) == (mha, mla)
    assert (mha, mla) == (491_520, 34_560)
    # divided by the cache it saves from: 92.97%
    assert notes["reduction"] == (mha - mla) / mha
    assert f"{100 * notes['reduction']:.2f}" == "92.97"
    # the notes' printed 92.8% is what their mistyped denominator 492,520 gives, not the cache
    assert NOTES_PRINTED_DENOMINATOR == 492_520 != mha
    assert notes["reduction_with_printed_denominator"] == (mha - mla) / 492_520
    assert f"{100 * notes['reduction_with_printed_denominator']:.1f}" == "92.8"
    assert NOTES_PRINTED_PERCENT == 92.8
    assert f"{100 * notes['reduction']:.1f}" == "93.0" != "92.8"


def test_notes_example_has_deepseek_v2_config_widths():
    """30 layers and 32 heads are deepseek-ai's remote-code DeepseekV2Config defaults;
    transformers' own DeepseekV2Config has the same widths (its default depth is 32)."""
    from transformers import DeepseekV2Config

    hf = DeepseekV2Config(num_hidden_layers=30).to_dict()
    dims = dims_from_hf_json(hf, name="hf defaults")
    for field in ("n_layers", "n_heads", "head_dim", "kv_lora_rank", "qk_rope_head_dim"):
        assert getattr(dims, field) == getattr(NOTES_V2_EXAMPLE, field), field
    assert (dims.qk_head_dim, dims.v_head_dim) == (192, 128)


def test_paper_figures_and_ablation(data):
    paper = data["paper"]
    assert paper["kv_cache_reduction"]["value"] == 93.3
    assert paper["throughput_speedup"]["value"] == 5.76
    assert "2405.04434" in paper["kv_cache_reduction"]["citation"]
    rows = data["ablation"]["rows"]
    assert "Table 9" in data["ablation"]["citation"]
    by = {(r["model"], r["attention"]): r for r in rows}
    # REFERENCE.md: small MHA 110.6K vs MLA 15.6K; large 860.2K vs 34.6K; MMLU 48.7/50.0, 57.5/59.0
    assert by["small MoE", "MHA"]["kv_elements_per_token"] == 110.6e3
    assert by["large MoE", "MLA"]["kv_elements_per_token"] == 34.6e3
    for model in ("small MoE", "large MoE"):
        mha, mla = by[model, "MHA"], by[model, "MLA"]
        assert mla["mmlu"] > mha["mmlu"]  # the scene's title says MLA beats MHA
        assert mla["kv_elements_per_token"] < mha["kv_elements_per_token"] / 4
    assert list(data["ablation_mmlu"]) == [r["mmlu"] for r in rows]


@pytest.mark.slow
def test_scene_shows_the_numbers(tmp_path, monkeypatch):
    from scenes.results import Results

    monkeypatch.setenv(PARAMS_ENV, load_params(None, {"device": "cpu"}).to_json())
    monkeypatch.setenv(CACHE_DIR_ENV, str(tmp_path / "scene_data"))
    scene, _ = render_final_frame(Results, tmp_path)
    shown = scene.shown_numbers
    assert shown["v3_mha_bytes"] == "3,997,696" and shown["v3_mla_bytes"] == "70,272"
    assert shown["v3_ratio"] == "56.9\u00d7"
    assert shown["notes_mha_bytes"] == "491,520" and shown["notes_mla_bytes"] == "34,560"
    assert shown["notes_reduction"] == "92.97%"
    assert shown["notes_printed_denominator"] == "492,520"
    assert shown["notes_printed_reduction"] == "92.8%"
    assert shown["paper_kv_reduction"] == "93.3%" and shown["paper_throughput"] == "5.76\u00d7"
    assert shown["ablation"]["small MoE MLA"] == {"mmlu": "50.0", "kv_per_token": "15.6K"}
    assert shown["ablation_verdicts"] == [
        "MLA: +1.3 MMLU with 14% of the cache",
        "MLA: +1.5 MMLU with 4% of the cache",
    ]
    # the final frame: the ablation trained here, every number from the JSON
    texts = " | ".join(shown_texts(scene))
    table = load_ablation()
    for run in table["runs"]:
        assert run["label"] in texts
        assert f"{run['val_loss']:.3f}" in texts
        assert shown["trained"][run["label"]]["val_loss"] == f"{run['val_loss']:.3f}"
    mha, mla = table["runs"][0], table["runs"][-1]
    share = f"{100 * mla['cache_bytes_per_token'] / mha['cache_bytes_per_token']:.0f}%"
    assert share in shown["trained"]["verdict"] and shown["trained"]["verdict"] in texts
    assert "python -m mla_core ablation" in texts


# --- the ablation trained on this machine (assets/data/attention_ablation.json) ---------


def cache_numbers_per_layer(run: dict, shape: dict) -> int:
    """Numbers cached per token and layer, from the attention's shape alone (paper Table 1):
    2 n_kv_heads d_h for MHA/GQA/MQA, d_c + d_R for MLA."""
    if run["kind"] == "mla":
        return shape["mla_kv_lora_rank"] + shape["mla_qk_rope_head_dim"]
    kv_heads = {"mha": shape["n_head"], "mqa": 1, "gqa": shape["gqa_kv_heads"]}[run["kind"]]
    assert run["kv_heads"] == kv_heads
    return 2 * kv_heads * shape["head_dim"]


def test_shipped_ablation_is_consistent():
    """The shipped table's cache sizes follow from its shapes; perplexity is exp(loss); the
    four runs share one shape, seed and step count; parameter counts are close."""
    import math

    table = load_ablation()
    shape = table["shape"]
    assert [r["kind"] for r in table["runs"]] == ["mha", "gqa", "mqa", "mla"]
    mha = table["runs"][0]
    for run in table["runs"]:
        numbers = cache_numbers_per_layer(run, shape)
        assert run["cache_numbers_per_token_per_layer"] == numbers
        assert (
            run["cache_bytes_per_token"] == numbers * shape["n_layer"] * table["cache_dtype_bytes"]
        )
        assert run["val_ppl"] == pytest.approx(math.exp(run["val_loss"]), rel=1e-3)
        assert 0 < run["val_loss"] < math.log(50_257)  # better than a uniform guess
        assert abs(run["parameters"] / mha["parameters"] - 1) < 0.01
        assert run["train_seconds"] > 0
    assert "python -m mla_core ablation" in table["command"]


def test_results_data_carries_the_ablation(data):
    table = load_ablation()
    trained = data["trained"]
    assert [r["val_loss"] for r in trained["runs"]] == [r["val_loss"] for r in table["runs"]]
    assert list(data["trained_cache_bytes"]) == [r["cache_bytes_per_token"] for r in table["runs"]]
    by = {r["kind"]: r for r in table["runs"]}
    against = trained["mla_against"]["mha"]
    assert against["loss_difference"] == by["mla"]["val_loss"] - by["mha"]["val_loss"]
    assert against["cache_share"] == (
        by["mla"]["cache_bytes_per_token"] / by["mha"]["cache_bytes_per_token"]
    )


@pytest.mark.parametrize(
    "content, message",
    [
        (None, "run `python -m mla_core ablation`"),
        ("{not json", "not readable JSON"),
        ('{"runs": [{"kind": "mha"}]}', "lacks the runs"),
    ],
)
def test_broken_ablation_json_is_one_line(tmp_path, content, message):
    from mla_core.errors import UserError

    path = tmp_path / "attention_ablation.json"
    if content is not None:
        path.write_text(content, encoding="utf-8")
    with pytest.raises(UserError, match=message.replace("`", ".").replace("(", ".")):
        load_ablation(path)
