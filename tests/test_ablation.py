"""The attention ablation: grouped-query attention against independent oracles, the four
models' cache numbers and sizes, and whole (tiny) runs of `python -m mla_core ablation`."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from mla_core.analysis.cache_size import CacheDims, elements_per_token_per_layer
from mla_core.cli import main
from mla_core.models.ablation import (
    KINDS,
    attention_parameters,
    build_model,
    cache_numbers_per_token_per_layer,
    count_parameters,
    matched_intermediate_size,
)
from mla_core.models.configs import AblationShape
from mla_core.models.deepseek import DeepSeekModel
from mla_core.models.grouped_attention import GroupedQueryAttention
from mla_core.models.mla import LatentCache
from mla_core.models.rope import interleaved_to_half_order

HIDDEN, HEADS, HEAD_DIM, TOKENS = 16, 4, 6, 7


def random_attention(n_kv_heads: int, seed: int = 0) -> GroupedQueryAttention:
    torch.manual_seed(seed)
    attn = GroupedQueryAttention(HIDDEN, HEADS, n_kv_heads, HEAD_DIM).double()
    with torch.no_grad():
        for param in attn.parameters():
            param.normal_(0.0, 0.4)
    return attn


def numpy_attention(attn: GroupedQueryAttention, h: np.ndarray, theta: float = 10000.0):
    """Grouped-query attention one head, one query and one key at a time (plain NumPy)."""
    wq, wk, wv, wo = (
        getattr(attn, name).weight.detach().numpy() for name in ("w_q", "w_k", "w_v", "w_o")
    )
    d = attn.head_dim

    def rotate(x: np.ndarray, position: int) -> np.ndarray:  # interleaved pairs
        out = x.copy()
        for j in range(d // 2):
            angle = position * theta ** (-2 * j / d)
            c, s = math.cos(angle), math.sin(angle)
            out[2 * j] = x[2 * j] * c - x[2 * j + 1] * s
            out[2 * j + 1] = x[2 * j] * s + x[2 * j + 1] * c
        return out

    n_tokens = h.shape[0]
    heads_out = np.zeros((n_tokens, attn.n_heads * d))
    for i in range(attn.n_heads):
        g = i * attn.n_kv_heads // attn.n_heads  # the key/value head of query head i
        rows, kv_rows = slice(i * d, (i + 1) * d), slice(g * d, (g + 1) * d)
        for s in range(n_tokens):
            q = rotate(wq[rows] @ h[s], s)
            scores = np.array(
                [q @ rotate(wk[kv_rows] @ h[t], t) / math.sqrt(d) for t in range(s + 1)]
            )
            weights = np.exp(scores - scores.max())
            weights /= weights.sum()
            heads_out[s, rows] = sum(weights[t] * (wv[kv_rows] @ h[t]) for t in range(s + 1))
    return heads_out @ wo.T


@pytest.mark.parametrize("n_kv_heads", [4, 2, 1])  # MHA, GQA-2, MQA
def test_grouped_query_attention_matches_a_numpy_loop(n_kv_heads: int) -> None:
    attn = random_attention(n_kv_heads)
    h = torch.randn(
        1, TOKENS, HIDDEN, dtype=torch.float64, generator=torch.Generator().manual_seed(1)
    )
    expected = numpy_attention(attn, h[0].numpy())
    # RoPE angles are float32 (as in DeepSeek's code), the loop's float64: ~1e-7 apart
    np.testing.assert_allclose(attn(h)[0].detach().numpy(), expected, rtol=1e-6, atol=1e-6)


def test_gqa_is_mha_with_each_key_value_head_copied_to_its_group() -> None:
    gqa, mha = random_attention(2), random_attention(HEADS, seed=5)
    with torch.no_grad():
        for name in ("w_q", "w_o"):
            getattr(mha, name).weight.copy_(getattr(gqa, name).weight)
        for name in ("w_k", "w_v"):
            per_head = getattr(gqa, name).weight.view(2, HEAD_DIM, HIDDEN)
            getattr(mha, name).weight.copy_(per_head.repeat_interleave(2, dim=0).flatten(0, 1))
    h = torch.randn(2, TOKENS, HIDDEN, dtype=torch.float64)
    torch.testing.assert_close(gqa(h), mha(h))
    # MQA: one key and one value per token, whatever the number of query heads
    k, v = random_attention(1).keys_values(h, random_attention(1).angles(TOKENS, h.device))
    assert k.shape == v.shape == (2, TOKENS, 1, HEAD_DIM)


@pytest.mark.parametrize("n_kv_heads", [4, 2, 1])
def test_grouped_query_attention_matches_transformers_llama(n_kv_heads: int) -> None:
    """Llama's attention (rotate_half RoPE) once our interleaved q/k rows are reordered."""
    from transformers import LlamaConfig
    from transformers.models.llama.modeling_llama import LlamaAttention, LlamaRotaryEmbedding

    config = LlamaConfig(
        hidden_size=HIDDEN,
        num_attention_heads=HEADS,
        num_key_value_heads=n_kv_heads,
        head_dim=HEAD_DIM,
        attention_bias=False,
        max_position_embeddings=32,
        vocab_size=11,
    )
    config._attn_implementation = "eager"
    ours = random_attention(n_kv_heads)
    theirs = LlamaAttention(config, layer_idx=0).double().eval()
    order = interleaved_to_half_order(HEAD_DIM)
    with torch.no_grad():
        for mine, hf, heads in (("w_q", "q_proj", HEADS), ("w_k", "k_proj", n_kv_heads)):
            weight = getattr(ours, mine).weight.view(heads, HEAD_DIM, HIDDEN)[:, order]
            getattr(theirs, hf).weight.copy_(weight.flatten(0, 1))
        theirs.v_proj.weight.copy_(ours.w_v.weight)
        theirs.o_proj.weight.copy_(ours.w_o.weight)
    h = torch.randn(1, TOKENS, HIDDEN, dtype=torch.float64)
    cos, sin = LlamaRotaryEmbedding(config)(h, torch.arange(TOKENS)[None])
    mask = torch.full((TOKENS, TOKENS), float("-inf"), dtype=torch.float64).triu(1)[None, None]
    expected = theirs(h, position_embeddings=(cos.double(), sin.double()), attention_mask=mask)[0]
    # both rotate by float32 angles, computed a little differently: ~1e-7 apart
    torch.testing.assert_close(ours(h), expected, rtol=1e-5, atol=1e-5)


# --- the four models ---------------------------------------------------------------------

# the default shape (4 layers, hidden 128, 4 heads of 32, n_ctx 128), with a smaller vocabulary
# to build quickly: the embedding is the same in every kind, so it changes no difference
SHAPE = AblationShape(vocab_size=1000)


@pytest.fixture(scope="module")
def models() -> dict:
    return {kind: build_model(kind, SHAPE, seed=1234) for kind in KINDS}


def test_cache_numbers_follow_the_cache_size_formulas(models) -> None:
    dims = CacheDims(
        name="ablation",
        n_layers=SHAPE.n_layers,
        n_heads=SHAPE.n_heads,
        head_dim=SHAPE.head_dim,
        kv_lora_rank=SHAPE.kv_lora_rank,
        qk_rope_head_dim=SHAPE.qk_rope_head_dim,
    )
    expected = {
        "mha": elements_per_token_per_layer(dims, "mha"),
        "gqa": elements_per_token_per_layer(dims, "gqa", groups=SHAPE.gqa_kv_heads),
        "mqa": elements_per_token_per_layer(dims, "mqa"),
        "mla": elements_per_token_per_layer(dims, "mla"),
    }
    assert expected == {"mha": 256, "gqa": 128, "mqa": 64, "mla": 80}
    assert {kind: cache_numbers_per_token_per_layer(m) for kind, m in models.items()} == expected


def test_cache_numbers_are_what_the_models_would_keep(models) -> None:
    """Count the numbers in the tensors each attention produces for the cache."""
    tokens = torch.randint(0, 1000, (1, 5))
    for kind in ("mha", "gqa", "mqa"):
        attn = models[kind].blocks[0].attn
        h = models[kind].embed(tokens)
        k, v = attn.keys_values(h, attn.angles(5, h.device))
        assert (k.numel() + v.numel()) // 5 == cache_numbers_per_token_per_layer(models[kind])
    cache = LatentCache(SHAPE.n_layers)
    mla = models["mla"]
    with torch.no_grad():
        mla(tokens, cache=cache)
    per_token_per_layer = cache.nbytes // (5 * SHAPE.n_layers * 4)  # float32 cache
    assert per_token_per_layer == cache_numbers_per_token_per_layer(mla) == 80


def test_parameter_counts_are_matched_within_one_percent(models) -> None:
    mha = count_parameters(models["mha"])
    embedding = models["mha"].embed.weight.numel()
    for kind, model in models.items():
        assert count_parameters(model) == pytest.approx(mha, rel=0.01)
        # also without the (shared, dominant) embedding
        assert count_parameters(model) - embedding == pytest.approx(mha - embedding, rel=0.01)
        assert model.config.intermediate_size % SHAPE.mlp_multiple == 0
        assert model.config.intermediate_size == matched_intermediate_size(kind, SHAPE)
    # attention parameters by the formulas: q, k, v, o projections; MLA's own matrices
    h, n, d = SHAPE.hidden_size, SHAPE.n_heads, SHAPE.head_dim
    c, nope, rope, v = SHAPE.kv_lora_rank, SHAPE.qk_nope_head_dim, SHAPE.qk_rope_head_dim, 32
    per_layer = {
        "mha": 2 * h * n * d + 2 * h * n * d,
        "gqa": 2 * h * n * d + 2 * h * 2 * d,
        "mqa": 2 * h * n * d + 2 * h * d,
        "mla": h * n * (nope + rope) + h * (c + rope) + c + c * n * (nope + v) + n * v * h,
    }
    for kind, model in models.items():
        assert attention_parameters(model) == SHAPE.n_layers * per_layer[kind]


def test_the_mla_model_is_the_deepseek_model(models) -> None:
    mla = models["mla"]
    assert type(mla) is DeepSeekModel
    assert mla.config.q_lora_rank is None and mla.config.tie_embeddings
    assert mla.head is None and mla.config.yarn is None
    # every kind starts from the same embedding (first draw of the same seeded generator)
    for model in models.values():
        assert torch.equal(model.embed.weight, mla.embed.weight)


# --- the command --------------------------------------------------------------------------

TINY = [
    "--n-layers", "1", "--hidden-size", "16", "--n-heads", "4", "--head-dim", "4",
    "--n-ctx", "16", "--gqa-kv-heads", "2", "--kv-lora-rank", "8", "--qk-nope-head-dim", "4",
    "--qk-rope-head-dim", "2", "--v-head-dim", "4", "--steps", "3", "--warmup-steps", "1",
    "--eval-every", "2", "--eval-windows", "2", "--checkpoint-every", "1", "--precision",
    "fp32", "--no-compile", "--threads", "1", "--device", "cpu",
]  # fmt: skip

RUN_KEYS = {
    "kind", "label", "kv_heads", "cache_numbers_per_token_per_layer", "cache_bytes_per_token",
    "parameters", "attention_parameters", "intermediate_size", "val_loss", "val_ppl",
    "final_train_loss", "train_seconds", "curve",
}  # fmt: skip


@pytest.fixture
def corpus(monkeypatch):
    from helpers import made_up_documents

    monkeypatch.setattr("mla_core.loading.corpus.load_wiki_summaries", made_up_documents)


def run(tmp_path, *extra: str) -> dict:
    out = tmp_path / "table.json"
    argv = ["ablation", *TINY, "--out", str(out), "--checkpoint-dir", str(tmp_path / "ck")]
    assert main([*argv, *extra]) == 0
    return json.loads(out.read_text(encoding="utf-8"))


def numbers(table: dict) -> list[dict]:
    """The runs without their wall times (which differ from run to run)."""
    return [{k: v for k, v in r.items() if k != "train_seconds"} for r in table["runs"]]


def test_a_tiny_ablation_writes_the_table(tmp_path, corpus) -> None:
    table = run(tmp_path, "--save-mla", str(tmp_path / "mla"))
    assert set(table) == {
        "about", "command", "seed", "torch_version", "threads", "device", "precision", "shape",
        "data", "cache_dtype_bytes", "runs",
    }  # fmt: skip
    assert table["command"].startswith("python -m mla_core ablation --n-layers 1")
    assert table["seed"] == 1234 and table["cache_dtype_bytes"] == 2
    assert table["shape"]["steps"] == 3 and table["shape"]["tokens_seen"] == 3 * 4 * 16
    assert table["data"]["validation_tokens"] > 16
    assert [r["label"] for r in table["runs"]] == ["MHA", "GQA-2", "MQA", "MLA"]
    assert [r["kv_heads"] for r in table["runs"]] == [4, 2, 1, None]
    # per layer: 2*4*4, 2*2*4, 2*4, 8+2; one layer, 2 bytes each
    assert [r["cache_bytes_per_token"] for r in table["runs"]] == [64, 32, 16, 20]
    for r in table["runs"]:
        assert set(r) == RUN_KEYS
        assert r["curve"]["step"] == [2, 3] and len(r["curve"]["val_loss"]) == 2
        assert r["val_ppl"] == pytest.approx(math.exp(r["val_loss"]), rel=1e-4)
        assert 9 < r["val_loss"] < 12  # about ln(50257) = 10.8 after 3 steps
    # the saved MLA model is the trained one, as a DeepSeek-V3 folder with its card: its loss
    # on the validation stream is the table's (up to the bfloat16 rounding of the weights)
    from mla_core.loading import corpus
    from mla_core.loading.deepseek_folder import load_deepseek_model
    from mla_core.train.losses import validation_loss

    folder = tmp_path / "mla"
    model = load_deepseek_model(folder)
    _, val_docs = corpus.split_documents(corpus.load_wiki_summaries(), 0.03, 1234)
    loss = validation_loss(model.eval(), corpus.token_stream(val_docs), 16)
    assert loss == pytest.approx(table["runs"][3]["val_loss"], abs=0.02)
    card = (folder / "MODEL.md").read_text(encoding="utf-8")
    assert f"{table['runs'][3]['val_loss']:.4f} nats/token" in card
    assert (folder / "model.safetensors.sha256").read_text().split()[0] in card
    record = json.loads((folder / "training.json").read_text(encoding="utf-8"))
    assert record["result"] == table["runs"][3] and record["command"] == table["command"]
    assert (folder / "loss_curve.png").stat().st_size > 1000


class Interrupted(Exception):
    pass


def test_a_resumed_run_gives_the_numbers_of_an_uninterrupted_one(tmp_path, corpus, monkeypatch):
    whole = run(tmp_path / "whole")

    from mla_core.train import ablation

    real_step, calls = ablation.optimizer_step, []

    def step_then_stop(*args, **kwargs):
        calls.append(1)
        if len(calls) == 5:  # the second step of the second kind (GQA)
            raise Interrupted
        return real_step(*args, **kwargs)

    monkeypatch.setattr(ablation, "optimizer_step", step_then_stop)
    with pytest.raises(Interrupted):
        run(tmp_path / "parts")
    monkeypatch.setattr(ablation, "optimizer_step", real_step)
    assert (tmp_path / "parts" / "ck" / "mha" / "result.json").is_file()
    assert not (tmp_path / "parts" / "ck" / "gqa" / "result.json").exists()
    resumed = run(tmp_path / "parts", "--resume")
    assert numbers(resumed) == numbers(whole)
    assert "--resume" not in resumed["command"]
    # resuming a finished table trains nothing and gives it again
    monkeypatch.setattr(ablation, "optimizer_step", None)
    assert numbers(run(tmp_path / "parts", "--resume")) == numbers(whole)


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--steps", "0"], "--steps 0 must be >= 1"),
        (["--gqa-kv-heads", "3"], "--gqa-kv-heads 3 must divide --n-heads 4"),
        (["--head-dim", "5"], "--head-dim 5 must be even (RoPE rotates pairs)"),
        (["--warmup-steps", "9"], "--warmup-steps 9 must be in 0..steps-1"),
        (["--threads", "0"], "--threads 0 must be >= 1"),
        (["--kinds", "mha", "--save-mla", "x"], "--save-mla needs the mla kind in --kinds"),
    ],
)
def test_bad_flags_are_one_line_errors(flags, message, capsys) -> None:
    assert main(["ablation", *TINY, *flags]) == 2
    assert capsys.readouterr().err.strip() == f"error: {message}"


def test_unknown_kind_and_mismatched_resume_are_one_line_errors(tmp_path, corpus, capsys):
    with pytest.raises(SystemExit) as stop:  # argparse's own check, made one line
        main(["ablation", "--kinds", "mha", "sparse"])
    assert stop.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "invalid choice: 'sparse'" in err and "\n" not in err
    run(tmp_path, "--kinds", "mqa")
    out = tmp_path / "table.json"
    argv = ["ablation", *TINY, "--kinds", "mqa", "--lr", "0.01", "--resume", "--out", str(out)]
    assert main([*argv, "--checkpoint-dir", str(tmp_path / "ck")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "lr=0.002" in err and "\n" not in err
