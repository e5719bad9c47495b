"""Benchmark: one decode step of MHA, GQA, MQA and MLA against the machine's roofline.

For each attention kind, batch and context, build a cache of random numbers at
DeepSeek-V3 widths, time one decode step (median after warm-up), and compare it with the
floor max(bytes / bandwidth, FLOPs / matmul rate) of this machine (see `mla_core.bench.roofline`).
The bytes and FLOPs come from the shapes (`decode_attention.step_cost`), not from a profiler.

Run it as `python -m mla_core bench decode`; `run_decode_benchmark` is the same thing as a
function returning the JSON-ready report, which `decode_report` prints, saves and plots.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Sequence
from dataclasses import asdict

import torch
from tqdm import tqdm

from mla_core.bench.decode_attention import (
    BLOCK_CHOICES,
    VALUE_BLOCK,
    VARIANT_LABELS,
    VARIANTS,
    DecodeDims,
    gqa_decode,
    mha_decode,
    mla_absorbed_decode,
    mla_naive_decode,
    native_kernel_takes,
    shared_key_operands,
    step_cost,
    use_compiled_matvec,
)
from mla_core.bench.roofline import Roofline, measure_roofline, read_pass_of
from mla_core.bench.shape_floor import SHAPE_FLOOR_VARIANTS, find_shape_floor
from mla_core.bench.timer import (
    THREAD_CPU,
    WALL,
    Clock,
    Timing,
    paired_ratio,
    time_calls,
    time_interleaved,
)
from mla_core.errors import UserError
from mla_core.loading.weights import check_device

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}
CLOCKS = {"wall": WALL, "thread": THREAD_CPU}
DEFAULT_CONTEXTS = (1024, 2048, 4096, 8192, 16384, 32768)
QUICK_CONTEXTS = (1024, 4096)
STABLE_WITHIN = 0.02  # a case's median must move by less than this over its last round
MEMORY_FRACTION = 0.5  # never fill more than this share of the free memory with one case


# --- one case: inputs, kernel, timing ----------------------------------------------------


def _random_fill(shape: Sequence[int], dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """A tensor of random-looking numbers, made fast: one random block of 2^20 repeated.

    Drawing gigabytes of normal numbers takes longer than the benchmark itself; the timing
    does not depend on the values, only on them being ordinary finite numbers.
    """
    generator = torch.Generator(device=device).manual_seed(0)
    out = torch.empty(*shape, dtype=dtype, device=device)
    flat = out.view(-1)
    block = torch.randn(min(flat.numel(), 1 << 20), generator=generator, device=device)
    block = block.to(dtype)
    for start in range(0, flat.numel(), block.numel()):
        stop = min(flat.numel(), start + block.numel())
        flat[start:stop].copy_(block[: stop - start])
    return out


def _random_value_blocks(
    lead: Sequence[int], context: int, width: int, dtype: torch.dtype, device: torch.device
) -> torch.Tensor:
    """Random values in the `value_blocks` layout [*lead, n_blocks, width, VALUE_BLOCK]."""
    n_blocks = -(-context // VALUE_BLOCK)
    blocks = _random_fill((*lead, n_blocks, width, VALUE_BLOCK), dtype, device)
    blocks[..., -1, :, context - (n_blocks - 1) * VALUE_BLOCK :] = 0  # the padded tail
    return blocks


def build_case(
    variant: str,
    dims: DecodeDims,
    batch: int,
    context: int,
    dtype: torch.dtype,
    device: torch.device,
) -> tuple[Callable[..., torch.Tensor], tuple]:
    """The kernel of `variant` and its arguments: queries and a full cache of `context` tokens."""
    b, h, t = batch, dims.n_heads, context
    generator = torch.Generator(device=device).manual_seed(1)

    def randn(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=generator, device=device).to(dtype)

    if variant == "mha":
        d = dims.head_dim
        k_cache = _random_fill((b, h, t, d), dtype, device)
        v_blocks = _random_value_blocks((b, h), t, d, dtype, device)
        return mha_decode, (randn(b, h, d), k_cache, v_blocks, d**-0.5)
    if variant in ("gqa", "mqa"):
        g, d = dims.kv_heads(variant), dims.head_dim
        k_cache = _random_fill((b, g, t, d), dtype, device)
        v_cache = _random_fill((b, g, t, d), dtype, device)
        return gqa_decode, (randn(b, h, d), k_cache, v_cache, d**-0.5)
    scale = dims.qk_head_dim**-0.5
    q_nope, q_rope = randn(b, h, dims.qk_nope_head_dim), randn(b, h, dims.qk_rope_head_dim)
    if variant == "mla_naive":
        k_cache = _random_fill((b, h, t, dims.qk_head_dim), dtype, device)
        v_blocks = _random_value_blocks((b, h), t, dims.v_head_dim, dtype, device)
        return mla_naive_decode, (q_nope, q_rope, k_cache, v_blocks, scale)
    if variant == "mla_absorbed":
        c_kv_cache = _random_fill((b, t, dims.kv_lora_rank), dtype, device)
        k_rope_cache = _random_fill((b, t, dims.qk_rope_head_dim), dtype, device)
        w_uk_t = randn(h, dims.kv_lora_rank, dims.qk_nope_head_dim) * dims.kv_lora_rank**-0.5
        w_uv = randn(h, dims.v_head_dim, dims.kv_lora_rank) * dims.kv_lora_rank**-0.5
        args = (q_nope, q_rope, c_kv_cache, k_rope_cache, w_uk_t, w_uv, scale)
        return mla_absorbed_decode, args
    raise UserError(f"unknown variant {variant!r}; allowed: {', '.join(VARIANTS)}")


def free_memory_bytes(device: torch.device) -> int:
    """Memory a new tensor could use now: MemAvailable on CPU, free device memory on CUDA."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")


# --- the whole benchmark ------------------------------------------------------------------


def run_decode_benchmark(
    device: str = "cpu",
    dtypes: Sequence[str] = ("float32",),
    contexts: Sequence[int] = DEFAULT_CONTEXTS,
    batches: Sequence[int] = (1, 4),
    variants: Sequence[str] = VARIANTS,
    dims: DecodeDims | None = None,
    compile_kernels: bool | None = None,
    quick: bool = False,
    progress: bool = True,
    threads: int | None = None,
    clock: str = "wall",
) -> dict:
    """Time every (dtype, batch, context, variant) and compare with the roofline.

    compile_kernels: fused torch.compile'd matrix-vector products for MHA and naive MLA
    (default: on CPU yes, see `decode_attention`); quick: short timings and small roofline probes;
    threads: torch CPU threads (default: torch's choice, one per core);
    clock: "wall" (elapsed time, the real measure) or "thread" (CPU time of the one thread:
    for a single-threaded run on a machine shared with other work, where the wall clock also
    counts the time other processes held the core; memory bandwidth is still shared).
    Returns the JSON-ready report (see `decode_report.format_table` for what the columns mean).
    """
    dev = torch.device(check_device(device))
    dims = dims or DecodeDims()
    for name in dtypes:
        if name not in DTYPES:
            raise UserError(f"dtype {name!r} is not supported; allowed: {', '.join(DTYPES)}")
    for variant in variants:
        if variant not in VARIANTS:
            raise UserError(f"variant {variant!r} is unknown; allowed: {', '.join(VARIANTS)}")
    if any(c < 1 for c in contexts) or any(b < 1 for b in batches):
        raise UserError("contexts and batches must be positive integers")
    if compile_kernels is None:
        compile_kernels = dev.type == "cpu"
    if clock not in CLOCKS:
        raise UserError(f"clock {clock!r} is unknown; allowed: {', '.join(CLOCKS)}")
    if clock == "thread":
        if dev.type != "cpu" or threads not in (None, 1):
            raise UserError("--clock thread times one CPU thread: use it with --threads 1 on cpu")
        threads = 1
    if threads is not None:
        if threads < 1:
            raise UserError(f"threads={threads} must be >= 1")
        torch.set_num_threads(threads)

    report: dict = {
        "device": str(dev),
        "device_name": _device_name(dev),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "clock": clock,
        "compiled": compile_kernels,
        "quick": quick,
        "dims": asdict(dims),
        "runs": [],
    }
    cases = [(d, b, t, v) for d in dtypes for b in batches for t in contexts for v in variants]
    bar = tqdm(total=len(cases), desc="decode bench", unit="case", disable=not progress)
    use_compiled_matvec(compile_kernels)
    try:
        for dtype_name in dtypes:
            report["runs"].append(
                _run_dtype(
                    dtype_name, dev, dims, batches, contexts, variants, quick, bar, CLOCKS[clock]
                )
            )
    finally:
        use_compiled_matvec(False)
        bar.close()
    return report


def _run_dtype(
    dtype_name: str,
    dev: torch.device,
    dims: DecodeDims,
    batches: Sequence[int],
    contexts: Sequence[int],
    variants: Sequence[str],
    quick: bool,
    bar: tqdm,
    clock: Clock,
) -> dict:
    """Roofline, then every (batch, context, variant) case, for one dtype."""
    dtype = DTYPES[dtype_name]
    bar.set_postfix_str(f"{dtype_name} roofline")
    roofline = measure_roofline(
        dtype,
        dev,
        bandwidth_bytes=(1 << 28) if quick else (1 << 30),
        matmul_size=1024 if quick else 2048,
        repeats=3 if quick else 5,
        clock=clock,
    )
    run: dict = {"dtype": dtype_name, "roofline": asdict(roofline), "results": []}
    run["skipped"] = []
    for batch in batches:
        for context in contexts:
            for variant in variants:
                bar.set_postfix_str(f"{dtype_name} B={batch} T={context} {variant}")
                row = _run_case(variant, dims, batch, context, dtype, dev, roofline, quick, clock)
                (run["skipped"] if "skipped" in row else run["results"]).append(row)
                bar.update(1)
    _add_speedups(run["results"])
    return run


def _run_case(
    variant: str,
    dims: DecodeDims,
    batch: int,
    context: int,
    dtype: torch.dtype,
    device: torch.device,
    roofline: Roofline,
    quick: bool,
    clock: Clock,
) -> dict:
    dtype_bytes = torch.empty((), dtype=dtype).element_size()
    cost = step_cost(variant, dims, context, batch, dtype_bytes)
    row: dict = {
        "variant": variant,
        "label": _label(variant, dims),
        "batch": batch,
        "context": context,
        "bytes": cost.bytes_read,
        "flops": cost.flops,
    }
    free = free_memory_bytes(device)
    if cost.bytes_read > MEMORY_FRACTION * free:
        row["skipped"] = (
            f"needs {cost.bytes_read / 1e9:.1f} GB of cache, more than {MEMORY_FRACTION:.0%} "
            f"of the {free / 1e9:.1f} GB free"
        )
        return row
    kernel, args = build_case(variant, dims, batch, context, dtype, device)
    probing = not quick and device.type == "cpu"  # the tuned block and the paired floors
    native = native_kernel_takes(variant, args)  # in C: its own blocks, none to tune
    block = fastest_block(variant, kernel, args, clock) if probing and not native else None
    call = functools.partial(kernel, *args, **({"block": block} if block else {}))
    memory_bound = roofline.bound(cost.bytes_read, cost.flops) == "memory"
    # The floors that can move while the case is timed are probed beside it, round by round:
    # a memory-bound case's own cache read once (an int32 max pass), and the shape floor's
    # products and exponentials. Each round's floor* is set from that round's probes.
    caches = [a for a in args if isinstance(a, torch.Tensor) and a.dim() >= 4]  # not q
    cache_bytes = sum(t.numel() * t.element_size() for t in caches)
    read_pass = read_pass_of(caches) if probing and memory_bound and caches else None
    shape = find_shape_floor(variant, args, roofline, clock=clock) if probing else None
    products = shape.products if shape else {}
    exps = shape.exps if shape else {}
    probes = ([read_pass] if read_pass else []) + [*products.values(), *exps.values()]
    # Median after warm-up, in rounds of 5 until it moves by less than 2% over a round (and
    # the calls add up to a second), at most max_repeats; the spread is reported.
    kernel_timing, *probe_timings = time_interleaved(
        [call, *probes],
        3 if quick else 5,
        warmup=1 if quick else 2,
        device=device,
        clock=clock,
        max_repeats=5 if quick else 40,
        target_seconds=0.2 if quick else 1.0,
        stable_within=None if quick else STABLE_WITHIN,
    )
    read_timing = probe_timings.pop(0) if read_pass else None
    products_timings = dict(zip(products, probe_timings[: len(products)], strict=True))
    exps_timings = dict(zip(exps, probe_timings[len(products) :], strict=True))
    # floor* of each round: the bytes at that round's bandwidth (memory-bound cases, else the
    # roofline's), the FLOPs at the matmul rate (unless the shape floor times the products in
    # that very round: the square-product rate probed minutes ago would only add noise), and
    # the shape floor (the faster products and the faster exponentials of that round, the
    # absorbed weights' bytes), whichever is largest
    fixed = max(
        0.0 if shape else cost.flops / roofline.matmul_rate,
        0.0 if read_timing else cost.bytes_read / roofline.bandwidth,
    )
    floors, products_s, exps_s = [], [], []
    for i in range(kernel_timing.repeats):
        floor_i = fixed
        if read_timing:
            floor_i = max(floor_i, cost.bytes_read * read_timing.samples[i] / cache_bytes)
        if shape:
            products_s.append(min(t.samples[i] for t in products_timings.values()))
            exps_s.append(min(t.samples[i] for t in exps_timings.values()))
            floor_i = max(floor_i, products_s[-1] + exps_s[-1] + shape.weights_s)
        floors.append(floor_i)
    floor_timing = Timing(floors)
    del args, call
    seconds = kernel_timing.median
    floor = roofline.floor_seconds(cost.bytes_read, cost.flops)
    row.update(
        kernel="C" if native else "torch",
        block=block,
        bandwidth_now=cache_bytes / read_timing.median if read_timing else None,
        median_s=seconds,
        repeats=kernel_timing.repeats,
        spread=kernel_timing.spread,
        shape_floor=shape.as_dict(
            Timing(products_s).median,
            Timing(exps_s).median,
            products_by=min(products_timings, key=lambda by: products_timings[by].median),
            exps_by=min(exps_timings, key=lambda by: exps_timings[by].median),
        )
        if shape
        else None,
        path_floor_s=floor_timing.median,
        # the median over rounds of (that round's floor* / that round's kernel time)
        path_efficiency=paired_ratio(floor_timing, kernel_timing),
        samples_s=kernel_timing.samples,
        floor_samples_s=floors,
        achieved_gb_per_s=cost.bytes_read / seconds / 1e9,
        achieved_gflop_per_s=cost.flops / seconds / 1e9,
        floor_s=floor,
        bound=roofline.bound(cost.bytes_read, cost.flops),
        efficiency=floor / seconds,
    )
    return row


def fastest_block(
    variant: str, kernel: Callable[..., torch.Tensor], args: tuple, clock: Clock = WALL
) -> int | None:
    """For the kinds that attend block by block (GQA, MQA, absorbed MLA): the block length of
    BLOCK_CHOICES (None: the whole context) with the shortest median of 3 timed calls, as a
    library tunes its tile size to the shape. None for the other kinds (no blocks)."""
    if variant not in SHAPE_FLOOR_VARIANTS:
        return None
    context = shared_key_operands(variant, args)[1].shape[-2]  # the keys' tokens
    best, best_seconds = None, float("inf")
    for block in BLOCK_CHOICES:
        if block is not None and block >= context:
            continue
        call = functools.partial(kernel, *args, block=block or context)
        seconds = time_calls(call, 3, warmup=1, clock=clock).median
        if seconds < best_seconds:
            best, best_seconds = block or context, seconds
    return best


def _add_speedups(results: list[dict]) -> None:
    """Speed-up over MHA at the same batch and context: measured and as the roofline predicts."""
    mha = {(r["batch"], r["context"]): r for r in results if r["variant"] == "mha"}
    for row in results:
        base = mha.get((row["batch"], row["context"]))
        if base is None:
            row["speedup_vs_mha"] = row["speedup_vs_mha_roofline"] = None
            continue
        row["speedup_vs_mha"] = base["median_s"] / row["median_s"]
        row["speedup_vs_mha_roofline"] = base["floor_s"] / row["floor_s"]


def _label(variant: str, dims: DecodeDims) -> str:
    return VARIANT_LABELS[variant] + (f"-{dims.gqa_groups}" if variant == "gqa" else "")


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return f"{line.split(':', 1)[1].strip()} ({os.cpu_count()} CPUs)"
    except OSError:
        pass
    return "cpu"


def parse_contexts(values: Sequence[str]) -> list[int]:
    """Context lengths such as '1024', '8k', '16K' as token counts."""
    contexts = []
    for value in values:
        text = value.strip().lower()
        try:
            tokens = int(text[:-1]) * 1024 if text.endswith("k") else int(text)
        except ValueError:
            raise UserError(
                f"context {value!r} is not a token count; use e.g. 4096 or 4k"
            ) from None
        if tokens < 1:
            raise UserError(f"context {value!r} must be at least 1 token")
        contexts.append(tokens)
    return contexts
