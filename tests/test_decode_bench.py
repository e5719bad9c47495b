"""The decode benchmark: its kernels compute attention, its counts are right, it runs.

Oracles: attention written out per sequence, head and token in float64
(`reference_attention`, with keys expanded from the latent by explicit loops, independent
of `expand_latent_cache`); byte and FLOP counts computed by hand from DeepSeek-V3's widths
(shared/REFERENCE.md: MHA reads 65,536 bytes per bf16 token, absorbed MLA does 278,528 FLOPs).
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import pytest
import torch
from helpers import reference_attention

from mla_core.bench import decode_attention, native_kernels
from mla_core.bench.decode import build_case, parse_contexts
from mla_core.bench.decode_attention import (
    DecodeDims,
    expand_latent_cache,
    gqa_decode,
    mha_decode,
    mla_absorbed_decode,
    mla_naive_decode,
    step_cost,
    use_compiled_matvec,
    v3_dims,
    value_blocks,
)
from mla_core.cli import main
from mla_core.errors import UserError

SMALL = DecodeDims(
    n_heads=8,
    head_dim=16,
    gqa_groups=2,
    kv_lora_rank=24,
    qk_nope_head_dim=12,
    qk_rope_head_dim=6,
    v_head_dim=10,
)
BATCH, CONTEXT = 2, 7


def _randn(*shape: int, generator: torch.Generator) -> torch.Tensor:
    return torch.randn(*shape, generator=generator, dtype=torch.float64)


@pytest.mark.parametrize("block", [4, 128])
def test_value_blocks_layout(block: int) -> None:
    values = torch.arange(2 * 7 * 3, dtype=torch.float64).view(2, 7, 3)  # [N, T, d]
    blocks = value_blocks(values, block)
    n_blocks = -(-7 // block)
    assert blocks.shape == (2, n_blocks, 3, block)
    for t in range(n_blocks * block):
        expected = values[:, t] if t < 7 else torch.zeros(2, 3, dtype=torch.float64)
        torch.testing.assert_close(blocks[:, t // block, :, t % block], expected)


@pytest.mark.parametrize("block", [3, 4, 128])
def test_mha_equals_reference(block: int) -> None:
    g = torch.Generator().manual_seed(block)
    h, d = SMALL.n_heads, SMALL.head_dim
    q = _randn(BATCH, h, d, generator=g)
    k_cache = _randn(BATCH, h, CONTEXT, d, generator=g)
    v_cache = _randn(BATCH, h, CONTEXT, d, generator=g)
    scale = d**-0.5

    out = mha_decode(q, k_cache, value_blocks(v_cache, block), scale)

    for b in range(BATCH):
        for i in range(h):
            expected = reference_attention(q[b, i], k_cache[b, i], v_cache[b, i], scale)
            torch.testing.assert_close(out[b, i], expected, rtol=1e-12, atol=1e-12)


@pytest.fixture(params=[2048, 3], ids=["one_block", "blocks_of_3"])
def shared_keys_block(request, monkeypatch) -> int:
    """Run the shared-key kernels over the whole context, then in blocks of 3 tokens."""
    monkeypatch.setattr(decode_attention, "SHARED_KEYS_BLOCK", request.param)
    monkeypatch.setattr(decode_attention, "BLOCKWISE_MIN_ROWS", 1)
    return request.param


@pytest.mark.parametrize("kv_heads", [SMALL.gqa_groups, 1], ids=["gqa", "mqa"])
def test_gqa_and_mqa_equal_reference(kv_heads: int, shared_keys_block: int) -> None:
    g = torch.Generator().manual_seed(kv_heads)
    h, d = SMALL.n_heads, SMALL.head_dim
    q = _randn(BATCH, h, d, generator=g)
    k_cache = _randn(BATCH, kv_heads, CONTEXT, d, generator=g)
    v_cache = _randn(BATCH, kv_heads, CONTEXT, d, generator=g)
    scale = d**-0.5

    out = gqa_decode(q, k_cache, v_cache, scale)

    heads_per_kv = h // kv_heads
    for b in range(BATCH):
        for i in range(h):
            kv = i // heads_per_kv  # query head i reads key/value head i // (H / G)
            expected = reference_attention(q[b, i], k_cache[b, kv], v_cache[b, kv], scale)
            torch.testing.assert_close(out[b, i], expected, rtol=1e-12, atol=1e-12)


def test_float32_and_bfloat16_stay_close_to_float64() -> None:
    g = torch.Generator().manual_seed(5)
    q = _randn(BATCH, 8, 16, generator=g)
    k, v = _randn(BATCH, 8, 33, 16, generator=g), _randn(BATCH, 8, 33, 16, generator=g)
    exact_mha = mha_decode(q, k, value_blocks(v), 0.25)
    exact_gqa = gqa_decode(q, k[:, :2], v[:, :2], 0.25)
    for dtype, tol in ((torch.float32, 1e-5), (torch.bfloat16, 3e-2)):
        q_, k_, v_ = q.to(dtype), k.to(dtype), v.to(dtype)
        out = mha_decode(q_, k_, value_blocks(v_), 0.25)
        assert out.dtype == dtype
        torch.testing.assert_close(out.double(), exact_mha, rtol=tol, atol=tol)
        out = gqa_decode(q_, k_[:, :2], v_[:, :2], 0.25)
        torch.testing.assert_close(out.double(), exact_gqa, rtol=tol, atol=tol)


def _mla_inputs(seed: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    h, d_c = SMALL.n_heads, SMALL.kv_lora_rank
    return {
        "q_nope": _randn(BATCH, h, SMALL.qk_nope_head_dim, generator=g),
        "q_rope": _randn(BATCH, h, SMALL.qk_rope_head_dim, generator=g),
        "c_kv": _randn(BATCH, CONTEXT, SMALL.kv_lora_rank, generator=g),
        "k_rope": _randn(BATCH, CONTEXT, SMALL.qk_rope_head_dim, generator=g),
        "w_uk": _randn(h, SMALL.qk_nope_head_dim, d_c, generator=g) * d_c**-0.5,
        "w_uv": _randn(h, SMALL.v_head_dim, d_c, generator=g) * d_c**-0.5,
    }


def _mla_reference(x: dict[str, torch.Tensor], scale: float) -> torch.Tensor:
    """Every head's keys and values expanded token by token, then plain attention."""
    out = torch.empty(BATCH, SMALL.n_heads, SMALL.v_head_dim, dtype=torch.float64)
    for b in range(BATCH):
        for i in range(SMALL.n_heads):
            keys, values = [], []
            for t in range(CONTEXT):
                c_kv, k_rope = x["c_kv"][b, t], x["k_rope"][b, t]
                keys.append(torch.cat([x["w_uk"][i] @ c_kv, k_rope]))  # k_i = [W_UK_i c ; k_R]
                values.append(x["w_uv"][i] @ c_kv)  # v_i = W_UV_i c
            q = torch.cat([x["q_nope"][b, i], x["q_rope"][b, i]])
            out[b, i] = reference_attention(q, torch.stack(keys), torch.stack(values), scale)
    return out


def _absorbed(x: dict[str, torch.Tensor], scale: float) -> torch.Tensor:
    w_uk_t = x["w_uk"].transpose(1, 2).contiguous()  # the kernel takes W_UK^T per head
    return mla_absorbed_decode(
        x["q_nope"], x["q_rope"], x["c_kv"], x["k_rope"], w_uk_t, x["w_uv"], scale
    )


def test_mla_absorbed_equals_naive_equals_reference(shared_keys_block: int) -> None:
    x = _mla_inputs(seed=11)
    scale = SMALL.qk_head_dim**-0.5
    expected = _mla_reference(x, scale)

    k_cache, v_cache = expand_latent_cache(x["c_kv"], x["k_rope"], x["w_uk"], x["w_uv"])
    assert k_cache.shape == (BATCH, SMALL.n_heads, CONTEXT, SMALL.qk_head_dim)
    naive = mla_naive_decode(x["q_nope"], x["q_rope"], k_cache, value_blocks(v_cache), scale)
    absorbed = _absorbed(x, scale)

    torch.testing.assert_close(naive, expected, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(absorbed, expected, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(absorbed, naive, rtol=1e-12, atol=1e-12)


def test_mla_absorbed_sees_the_rope_key() -> None:
    """Changing only the shared RoPE key of one token must change the output."""
    x = _mla_inputs(seed=12)
    scale = SMALL.qk_head_dim**-0.5
    before = _absorbed(x, scale)
    x["k_rope"][:, 3] += 1.0
    after = _absorbed(x, scale)
    assert (before - after).abs().max() > 1e-3
    torch.testing.assert_close(after, _mla_reference(x, scale), rtol=1e-12, atol=1e-12)


@pytest.mark.slow
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_compiled_matvec_equals_eager(dtype: torch.dtype) -> None:
    """The benchmark's fused, torch.compile'd matrix-vector products give the same outputs."""
    g = torch.Generator().manual_seed(3)
    q = torch.randn(BATCH, 8, 16, generator=g).to(dtype)
    k = torch.randn(BATCH, 8, 40, 16, generator=g).to(dtype)
    v = torch.randn(BATCH, 8, 40, 16, generator=g).to(dtype)
    x = {name: t.to(dtype) for name, t in _mla_inputs(seed=4).items()}
    k_cache, v_cache = expand_latent_cache(x["c_kv"], x["k_rope"], x["w_uk"], x["w_uv"])
    v_blocks = value_blocks(v_cache, block=4)
    eager_mha = mha_decode(q, k, value_blocks(v), 0.25)
    eager_naive = mla_naive_decode(x["q_nope"], x["q_rope"], k_cache, v_blocks, 0.2)
    eager_absorbed = _absorbed(x, 0.2)
    k2, v2 = k[:, :2].contiguous(), v[:, :2].contiguous()  # GQA: 2 key/value heads for 8
    eager_gqa, eager_mqa = gqa_decode(q, k2, v2, 0.25), gqa_decode(q, k[:, :1], v[:, :1], 0.25)
    use_compiled_matvec(True)
    try:
        fused_gqa, fused_mqa = gqa_decode(q, k2, v2, 0.25), gqa_decode(q, k[:, :1], v[:, :1], 0.25)
        fused_mha = mha_decode(q, k, value_blocks(v), 0.25)
        fused_mha_batch1 = mha_decode(q[:1], k[:1], value_blocks(v[:1]), 0.25)
        fused_naive = mla_naive_decode(x["q_nope"], x["q_rope"], k_cache, v_blocks, 0.2)
        fused_absorbed = _absorbed(x, 0.2)
    finally:
        use_compiled_matvec(False)
    tol = 1e-5 if dtype == torch.float32 else 2e-2
    torch.testing.assert_close(fused_mha, eager_mha, rtol=tol, atol=tol)
    torch.testing.assert_close(fused_mha_batch1, eager_mha[:1], rtol=tol, atol=tol)
    torch.testing.assert_close(fused_naive, eager_naive, rtol=tol, atol=tol)
    torch.testing.assert_close(fused_absorbed, eager_absorbed, rtol=tol, atol=tol)
    torch.testing.assert_close(fused_gqa, eager_gqa, rtol=tol, atol=tol)
    torch.testing.assert_close(fused_mqa, eager_mqa, rtol=tol, atol=tol)


# --- counts -----------------------------------------------------------------------------


def test_v3_dims() -> None:
    dims = v3_dims()
    assert (dims.n_heads, dims.head_dim, dims.kv_lora_rank, dims.qk_rope_head_dim) == (
        128,
        128,
        512,
        64,
    )
    assert dims.latent_cache_dim == 576 and dims.qk_head_dim == 192


# Hand-computed for V3 widths, 16,384 tokens, bf16 (2 bytes), batch 1:
#   MHA      K and V: 2 * 128 heads * 128 * 2 B * 16384 = 1,073,741,824 B
#            q.k and p.v: 2 FLOPs * 128 * 128 * 2 * 16384 = 1,073,741,824 FLOPs
#   GQA-8    2 * 8 * 128 * 2 B * 16384 = 67,108,864 B, FLOPs as MHA
#   MQA      2 * 128 * 2 B * 16384 = 8,388,608 B, FLOPs as MHA
#   naive    128 * (192 + 128) * 2 B * 16384 = 1,342,177,280 B; 2 * 128 * 320 * 16384 FLOPs
#   absorbed cache 576 * 2 B * 16384 = 18,874,368 B plus W_UK, W_UV 128 * 256 * 512 * 2 B =
#            33,554,432 B -> 52,428,800 B; FLOPs 128 * (576 + 512) * 2 * 16384 = 4,563,402,752
#            plus fold and unfold 2 * 128 * 256 * 512 = 33,554,432 -> 4,596,957,184
V3_16K_BF16 = {
    "mha": (1_073_741_824, 1_073_741_824),
    "gqa": (67_108_864, 1_073_741_824),
    "mqa": (8_388_608, 1_073_741_824),
    "mla_naive": (1_342_177_280, 1_342_177_280),
    "mla_absorbed": (52_428_800, 4_596_957_184),
}


@pytest.mark.parametrize("variant", list(V3_16K_BF16))
def test_v3_step_cost_at_16k_bf16(variant: str) -> None:
    cost = step_cost(variant, v3_dims(), context=16_384, batch=1, dtype_bytes=2)
    assert (cost.bytes_read, cost.flops) == V3_16K_BF16[variant]


def test_v3_step_cost_per_token_and_batch() -> None:
    dims = v3_dims()
    # REFERENCE.md: per context token MHA reads 65,536 bf16 bytes for 65,536 FLOPs ...
    one, two = (step_cost("mha", dims, t) for t in (1, 2))
    assert two.bytes_read - one.bytes_read == 65_536 and two.flops - one.flops == 65_536
    # ... absorbed MLA reads 1,152 bytes for 278,528 FLOPs (128 x (576 + 512) x 2).
    one, two = (step_cost("mla_absorbed", dims, t) for t in (1, 2))
    assert two.bytes_read - one.bytes_read == 1_152 and two.flops - one.flops == 278_528
    # float32, batch 4: the cache scales with the batch, the weights are read once.
    cost = step_cost("mla_absorbed", dims, context=16_384, batch=4, dtype_bytes=4)
    assert cost.bytes_read == (576 * 16_384 * 4 + 128 * 256 * 512) * 4 == 218_103_808
    assert cost.flops == 4 * 4_596_957_184
    assert step_cost("mha", dims, 16_384, 4, 4).bytes_read == 4 * 2 * 1_073_741_824


def test_step_cost_rejects_unknown_variant() -> None:
    with pytest.raises(UserError, match="unknown variant .mla_fast.; allowed: mha, gqa"):
        step_cost("mla_fast", v3_dims(), 16)


def test_parse_contexts() -> None:
    assert parse_contexts(["1k", "16K", "100"]) == [1024, 16384, 100]
    with pytest.raises(UserError, match="not a token count"):
        parse_contexts(["lots"])


# --- end to end ---------------------------------------------------------------------------


def test_bench_decode_runs_end_to_end(tmp_path, capsys) -> None:
    """A --quick-like run on tiny contexts, eager, both dtypes: table, valid JSON, PNG."""
    json_path = tmp_path / "decode.json"
    code = main(
        [
            "bench",
            "decode",
            "--quick",
            "--contexts",
            "16",
            "32",
            "--batches",
            "1",
            "2",
            "--dtype",
            "float32",
            "bfloat16",
            "--no-compile",
            "--no-progress",
            "--json",
            str(json_path),
        ]
    )
    assert code == 0
    report = json.loads(json_path.read_text())
    assert (tmp_path / "decode.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [run["dtype"] for run in report["runs"]] == ["float32", "bfloat16"]
    dims = DecodeDims(**report["dims"])
    for run in report["runs"]:
        roof = run["roofline"]
        assert roof["bandwidth"] > 0 and roof["matmul_rate"] > 0
        assert len(run["results"]) + len(run["skipped"]) == 2 * 2 * 5
        dtype_bytes = 4 if run["dtype"] == "float32" else 2
        for row in run["results"]:
            cost = step_cost(row["variant"], dims, row["context"], row["batch"], dtype_bytes)
            assert (row["bytes"], row["flops"]) == (cost.bytes_read, cost.flops)
            assert row["median_s"] > 0
            floor = max(row["bytes"] / roof["bandwidth"], row["flops"] / roof["matmul_rate"])
            assert row["floor_s"] == pytest.approx(floor)
            assert row["efficiency"] == pytest.approx(floor / row["median_s"])
            if row["variant"] == "mha":
                assert row["speedup_vs_mha"] == pytest.approx(1.0)
    out = capsys.readouterr().out
    assert "MLA absorbed" in out and "GQA-8" in out and "bfloat16: memory read" in out


def test_shape_floors_are_the_products_alone_and_floor_star_takes_the_larger() -> None:
    """The shape floor times exactly the products of the shared-key kinds at their shapes,
    and one exp per score; the matrix-vector kinds have none. A case's floor* is, round by
    round, max(roofline floor, that round's probes)."""
    import mla_core.bench.decode as bench
    from mla_core.bench.roofline import Roofline
    from mla_core.bench.shape_floor import find_shape_floor

    roof = Roofline(bandwidth=1e9, matmul_rate=1e15, dtype="float32", device="cpu")
    cpu = torch.device("cpu")
    for variant in ("mha", "mla_naive"):
        _, args = bench.build_case(variant, SMALL, 1, 64, torch.float32, cpu)
        assert find_shape_floor(variant, args, roof, quick=True) is None
    for variant in ("gqa", "mqa", "mla_absorbed"):
        _, args = bench.build_case(variant, SMALL, 2, 64, torch.float32, cpu)
        shape = find_shape_floor(variant, args, roof, quick=True).as_dict()
        assert shape["products_s"] > 0 and shape["block"] == 64  # blocks >= 64 tokens: whole
        assert shape["exps_s"] > 0  # one float32 exp per score, timed alone
        assert shape["seconds"] == pytest.approx(
            shape["products_s"] + shape["exps_s"] + shape["weights_s"]
        )
        if variant == "mla_absorbed":  # W_UK and W_UV read once at the bandwidth
            expected = (
                SMALL.n_heads * SMALL.kv_lora_rank * (SMALL.qk_nope_head_dim + SMALL.v_head_dim)
            )
            assert shape["weights_s"] == pytest.approx(expected * 4 / 1e9)
        else:
            assert shape["weights_s"] == 0
    # in a full (not quick) case the row carries it, and floor* is the larger of the two
    # (this roofline makes every case memory-bound: each reads its own cache for the
    # bandwidth of the moment, and floor* uses that instead of the roofline's 1 GB/s)
    # Round by round, floor* is the larger of the two probes timed beside the kernel, so its
    # median is at least each probe's median; eff* is the median of the paired ratios.
    row = bench._run_case("mqa", SMALL, 1, 64, torch.float32, cpu, roof, False, bench.WALL)
    assert row["bound"] == "memory" and row["bandwidth_now"] > 0
    assert row["block"] == 64  # SMALL at 64 tokens: the whole context is the only block
    kernel, floors = row["samples_s"], row["floor_samples_s"]
    assert len(kernel) == len(floors) == row["repeats"] >= 5 and row["spread"] >= 0
    assert row["median_s"] == statistics.median(kernel)
    assert row["path_floor_s"] == statistics.median(floors)
    paired = statistics.median(f / k for f, k in zip(floors, kernel, strict=True))
    assert row["path_efficiency"] == pytest.approx(paired)
    assert row["path_floor_s"] >= row["bytes"] / row["bandwidth_now"] * (1 - 1e-9)
    shape = row["shape_floor"]  # each round's floor* >= that round's products + exps
    assert row["path_floor_s"] >= (shape["products_s"] + shape["weights_s"]) * (1 - 1e-9)
    # the faster of torch's and the C kernels' exponentials (these products: torch's only)
    assert shape["products_by"] == "torch"
    assert shape["exps_by"] in (("torch", "C") if native_kernels.available() else ("torch",))
    mha = bench._run_case("mha", SMALL, 1, 64, torch.float32, cpu, roof, False, bench.WALL)
    assert mha["shape_floor"] is None and mha["bandwidth_now"] > 0 and mha["block"] is None
    # MHA's only probe is the read of its cache: its floor* is the bytes at that bandwidth
    assert mha["path_floor_s"] == pytest.approx(mha["bytes"] / mha["bandwidth_now"])
    # a compute-bound case (a huge bandwidth, a slow matmul) reads nothing. With a shape
    # floor, each round's floor* is what the products and exponentials took in that round,
    # not the square-product rate probed before; without one, it is the roofline floor.
    slow = Roofline(bandwidth=1e15, matmul_rate=1e6, dtype="float32", device="cpu")
    gqa = bench._run_case("gqa", SMALL, 1, 64, torch.float32, cpu, slow, False, bench.WALL)
    assert gqa["bound"] == "compute" and gqa["bandwidth_now"] is None
    assert max(gqa["floor_samples_s"]) < gqa["floor_s"]  # 1e6 FLOP/s would take far longer
    assert gqa["path_floor_s"] >= gqa["shape_floor"]["products_s"] * (1 - 1e-9)
    mha = bench._run_case("mha", SMALL, 1, 64, torch.float32, cpu, slow, False, bench.WALL)
    assert mha["bound"] == "compute" and mha["path_floor_s"] == pytest.approx(mha["floor_s"])


def test_the_block_length_is_tuned_per_case_and_the_kernel_runs_with_it(monkeypatch) -> None:
    """fastest_block times every choice shorter than the context (and the whole context) and
    returns the fastest; the kinds without blocks get None."""
    import mla_core.bench.decode as bench

    cpu = torch.device("cpu")
    kernel, args = bench.build_case("mqa", SMALL, 1, 3000, torch.float32, cpu)
    seen: list[int] = []

    def timed_kernel(*a, block):
        seen.append(block)
        return kernel(*a, block=block)

    fake_seconds = {1024: 3.0, 2048: 1.0, 3000: 2.0}  # 4096 is not shorter than 3000

    class FakeTiming:
        def __init__(self, block):
            self.median = fake_seconds[block]

    def fake_time_calls(call, *a, **k):
        call()
        return FakeTiming(seen[-1])

    monkeypatch.setattr(bench, "time_calls", fake_time_calls)
    assert bench.fastest_block("mqa", timed_kernel, args) == 2048
    assert seen == [1024, 2048, 3000]
    assert bench.fastest_block("mha", timed_kernel, args) is None


def test_the_read_pass_reaches_every_byte_of_the_tensors() -> None:
    from mla_core.bench import roofline

    half = torch.zeros(1 << 16, dtype=torch.bfloat16)
    half[-1] = 1.0  # the last two bytes: the top half of the last int32
    full = torch.zeros(1 << 14)
    full[-1] = 2.0  # 0x40000000 as an int32: above the zeros
    maxima = roofline.read_pass_of([half, full])()
    assert maxima[0].item() == half.view(torch.int32)[-1].item() > 0
    assert maxima[1].item() == full.view(torch.int32)[-1].item() > 0


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--dtype", "float16"], "dtype 'float16'"),
        (["--device", "tpu"], "device 'tpu'"),
        (["--contexts", "0"], "at least 1 token"),
        (["--variants", "mla_fast"], "variant 'mla_fast'"),
        (["--clock", "thread", "--threads", "2"], "--clock thread"),
    ],
)
def test_bench_decode_bad_input_is_one_line(argv, message, capsys) -> None:
    assert main(["bench", "decode", "--no-progress", *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


# --- the bfloat16 C kernels (native_kernels) ---------------------------------------------------


needs_native = pytest.mark.skipif(
    not native_kernels.available(), reason=f"native kernels: {native_kernels.why_not()}"
)


def _softmax_attention_f64(
    queries: torch.Tensor, keys: torch.Tensor, values: torch.Tensor
) -> torch.Tensor:
    """softmax(queries @ keys^T) @ values in float64: queries [..., rows, d], keys [..., T, d],
    values [..., T, d_v] -> [..., rows, d_v]."""
    scores = queries.double() @ keys.double().transpose(-1, -2)
    return torch.softmax(scores, dim=-1) @ values.double()


# float32 to 1e-5 of float64; bfloat16 to its rounding of the weights (as torch's path rounds)
NATIVE_TOLERANCE = {torch.float32: (1e-5, 1e-6), torch.bfloat16: (1e-2, 4e-3)}


@needs_native
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_native_attention_per_head_matches_float64(dtype: torch.dtype) -> None:
    """MHA's C kernel (scores, softmax and weighted sum of each head in one pass) equals
    float64 arithmetic on the same numbers, up to float32 sums: its weights stay float32.
    96 = 64 + 32 wide keys take both dot-product loops; 300 tokens in blocks of 32 leave a
    padded tail."""
    g = torch.Generator().manual_seed(7)
    keys = torch.randn(6, 300, 96, generator=g).to(dtype)
    query = (torch.randn(6, 96, generator=g) * 0.2).to(dtype)
    values = torch.randn(6, 300, 40, generator=g).to(dtype)
    out = native_kernels.attention(keys, query, value_blocks(values, block=32))
    exact = _softmax_attention_f64(query.unsqueeze(-2), keys, values).squeeze(-2)
    torch.testing.assert_close(out.double(), exact, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="divisible by 32"):
        native_kernels.attention(keys[..., :48], query[..., :48], value_blocks(values))


@needs_native
@pytest.mark.parametrize(
    ("groups", "rows", "tokens", "rope"),
    [
        (4, 16, 1000, 0),  # GQA-shaped: one 16-row chunk, many blocks
        (1, 128, 777, 0),  # MQA-shaped: 4-chunk tiles, context split between threads, odd T
        (2, 48, 65, 0),  # 3 chunks: 1-chunk tiles; a block of 64 and a tail of 1
        (1, 32, 5, 0),  # 2-chunk tiles; fewer tokens than a tile
        (3, 64, 300, 32),  # absorbed-MLA-shaped: RoPE scores added, values = the keys
    ],
)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_native_shared_keys_attention_matches_float64(
    groups: int, rows: int, tokens: int, rope: int, dtype: torch.dtype
) -> None:
    """The flash-decoding C kernel equals float64 softmax attention on the same numbers: in
    float32 to 1e-5, in bfloat16 up to its weights' rounding to bfloat16."""
    g = torch.Generator().manual_seed(rows + tokens)
    d, d_v = (96, 96) if rope else (64, 64)
    queries = (torch.randn(groups, rows, d + rope, generator=g) * 0.15).to(dtype)
    keys = torch.randn(groups, tokens, d, generator=g).to(dtype)
    values = keys if rope else torch.randn(groups, tokens, d_v, generator=g).to(dtype)
    rope_keys = torch.randn(groups, tokens, rope, generator=g).to(dtype) if rope else None
    queries_t = queries.transpose(-1, -2)
    out = native_kernels.shared_keys_attention(
        queries_t[..., :d, :],
        keys,
        values,
        queries_t[..., d:, :] if rope else None,
        rope_keys,
    )
    all_keys = torch.cat([keys, rope_keys], dim=-1) if rope else keys
    exact = _softmax_attention_f64(queries, all_keys, values)
    assert out.shape == (groups, rows, d_v) and out.dtype == torch.float32
    rtol, atol = NATIVE_TOLERANCE[dtype]
    torch.testing.assert_close(out.double(), exact, rtol=rtol, atol=atol)


@needs_native
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_native_products_alone_and_exponentials(dtype: torch.dtype) -> None:
    """The shape floor's C probes do what they say: softmax=False weighs the values by the raw
    scores (normalised by their sum), and exp_into is e^x to float32 precision."""
    g = torch.Generator().manual_seed(9)
    queries = torch.rand(2, 32, 64, generator=g).to(dtype)  # positive scores: sums far from 0
    keys = torch.rand(2, 200, 64, generator=g).to(dtype)
    values = torch.randn(2, 200, 32, generator=g).to(dtype)
    out = native_kernels.shared_keys_attention(
        queries.transpose(-1, -2), keys, values, softmax=False
    )
    scores = queries.double() @ keys.double().transpose(-1, -2)
    exact = (scores @ values.double()) / scores.sum(-1, keepdim=True)
    rtol, atol = NATIVE_TOLERANCE[dtype]
    torch.testing.assert_close(out.double(), exact, rtol=rtol, atol=atol)
    x = torch.linspace(-80.0, 0.0, 100_003)  # not a multiple of 16: the scalar tail too
    e = torch.empty_like(x)
    native_kernels.exp_into(x, e)
    torch.testing.assert_close(e.double(), x.double().exp(), rtol=3e-7, atol=0.0)


@needs_native
@pytest.mark.parametrize("variant", decode_attention.VARIANTS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_every_step_runs_in_the_native_kernels(
    variant: str, dtype: torch.dtype, monkeypatch
) -> None:
    """With the compiled kernels on, a step of V3-like widths goes through the C kernels (and
    eagerly it does not), `native_kernel_takes` says so, and the step equals the eager one."""
    calls: list[str] = []
    for name in ("attention", "shared_keys_attention"):
        real = getattr(native_kernels, name)
        monkeypatch.setattr(
            native_kernels, name, lambda *a, _real=real, _n=name: calls.append(_n) or _real(*a)
        )
    dims = DecodeDims(
        n_heads=32, head_dim=64, gqa_groups=2, kv_lora_rank=64, qk_nope_head_dim=32,
        qk_rope_head_dim=32, v_head_dim=64,
    )  # fmt: skip
    kernel, args = build_case(variant, dims, 2, 300, dtype, torch.device("cpu"))
    eager = kernel(*args)
    assert calls == [] and not decode_attention.native_kernel_takes(variant, args)
    use_compiled_matvec(True)
    try:
        takes = decode_attention.native_kernel_takes(variant, args)
        fast = kernel(*args)
    finally:
        use_compiled_matvec(False)
    assert takes
    assert calls == ["attention" if variant in ("mha", "mla_naive") else "shared_keys_attention"]
    tol = 1e-5 if dtype == torch.float32 else 3e-2
    torch.testing.assert_close(fast.float(), eager.float(), rtol=tol, atol=tol)


@needs_native
def test_the_shape_floor_offers_the_c_products_where_they_take_the_shape() -> None:
    """Where the C kernels take a shared-key shape, the shape floor times their products (and
    exponentials) beside torch's, so a floor is never slower than the best we have."""
    from mla_core.bench.roofline import Roofline
    from mla_core.bench.shape_floor import find_shape_floor

    roof = Roofline(bandwidth=1e9, matmul_rate=1e15, dtype="bfloat16", device="cpu")
    dims = DecodeDims(n_heads=32, head_dim=64, gqa_groups=2, kv_lora_rank=64,
                      qk_nope_head_dim=32, qk_rope_head_dim=32, v_head_dim=64)  # fmt: skip
    for variant in ("gqa", "mla_absorbed"):
        _, args = build_case(variant, dims, 1, 300, torch.bfloat16, torch.device("cpu"))
        shape = find_shape_floor(variant, args, roof, quick=True)
        assert set(shape.products) == set(shape.exps) == {"torch", "C"}
        for run in (*shape.products.values(), *shape.exps.values()):
            run()  # each runs on its own


def test_without_a_compiler_the_native_kernels_step_aside(monkeypatch) -> None:
    """No C compiler: available() is False with the reason, and the torch kernels run."""
    monkeypatch.setenv("CC", "no-such-compiler-here")
    monkeypatch.setattr(native_kernels, "cpu_has_avx512_bf16", lambda: True)
    monkeypatch.setattr(native_kernels, "BUILD_DIR", Path("/nonexistent/never-built"))
    native_kernels._library.cache_clear()
    try:
        assert not native_kernels.available()
        assert native_kernels.why_not() == "no C compiler (no-such-compiler-here) found"
        use_compiled_matvec(True)
        try:
            q = torch.randn(1, 2, 32).bfloat16()
            k, v = torch.randn(1, 2, 64, 32).bfloat16(), torch.randn(1, 2, 64, 32).bfloat16()
            out = mha_decode(q, k, value_blocks(v), 0.2)
        finally:
            use_compiled_matvec(False)
        assert out.shape == (1, 2, 32) and torch.isfinite(out.float()).all()
    finally:
        native_kernels._library.cache_clear()


def test_the_native_kernels_can_be_turned_off(monkeypatch) -> None:
    monkeypatch.setenv(native_kernels.SWITCH_ENV, "0")
    native_kernels._library.cache_clear()
    try:
        assert not native_kernels.available()
        assert native_kernels.why_not() == "turned off (MLA_NATIVE_KERNELS=0)"
    finally:
        native_kernels._library.cache_clear()
