"""The attention kernels of `decode_kernels.c`, built on first use and called via ctypes.

A decode step in torch is many passes: two products (BLAS, or compiled loops that widen every
bfloat16 number), the softmax's max, exponentials and sums, casts, each writing its result
to memory. `decode_kernels.c` does one step of each kind in one pass with AVX-512, in float32
and bfloat16 (whose products use the AVX-512 BF16 dot-product instruction): `attention` for
one query row per key head (MHA, naive MLA; memory-bound), and `shared_keys_attention` for
many query rows over the same keys (GQA, MQA, absorbed MLA; compute-bound here). See
docs/decode-kernels.md for what they reach.

It is built with the system's C compiler (`cc`; build-essential is in the Debian package
list) into `.cache/native/` under a name that carries the source's hash, written to a
temporary name and renamed into place. Nothing here is required: on a CPU without AVX-512
BF16, without a compiler, or when the build fails, `available()` is False (and `why_not()`
says why) and the kernels stay the torch ones.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
from functools import cache
from pathlib import Path

import torch

SOURCE = Path(__file__).with_name("decode_kernels.c")
BUILD_DIR = Path(__file__).resolve().parents[2] / ".cache" / "native"
CFLAGS = ("-O3", "-mavx512f", "-mavx512bw", "-mavx512bf16", "-fopenmp", "-shared", "-fPIC")
SWITCH_ENV = "MLA_NATIVE_KERNELS"  # "0": never build or use them (the torch kernels run)
MAX_WIDTH = 512  # the widest value row `mha_attention` keeps accumulators for
MAX_BLOCK = 256  # the longest value block it keeps weights for


def cpu_has_avx512_bf16() -> bool:
    """Whether this CPU runs AVX-512 BF16 (Linux: the flags in /proc/cpuinfo)."""
    if platform.machine() not in ("x86_64", "AMD64"):
        return False
    try:
        flags = Path("/proc/cpuinfo").read_text(encoding="utf-8")
    except OSError:
        return False
    return " avx512_bf16" in flags and " avx512bw" in flags


@cache
def _library() -> tuple[ctypes.CDLL | None, str]:
    """(the loaded library, "") or (None, why not)."""
    if os.environ.get(SWITCH_ENV) == "0":
        return None, f"turned off ({SWITCH_ENV}=0)"
    if not cpu_has_avx512_bf16():
        return None, "this CPU has no AVX-512 BF16"
    name = os.environ.get("CC", "cc")
    compiler = shutil.which(name)
    if compiler is None:
        return None, f"no C compiler ({name}) found"
    digest = hashlib.sha256(SOURCE.read_bytes() + " ".join(CFLAGS).encode()).hexdigest()[:16]
    target = BUILD_DIR / f"decode_kernels-{digest}.so"
    if not target.is_file():
        BUILD_DIR.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=BUILD_DIR) as tmp:
            built = Path(tmp) / target.name
            result = subprocess.run(
                [compiler, *CFLAGS, str(SOURCE), "-o", str(built)],
                capture_output=True,
                text=True,
            )
            if result.returncode != 0:
                return None, f"building {SOURCE.name} failed: {result.stderr.strip()[-300:]}"
            os.replace(built, target)
    library = ctypes.CDLL(str(target))
    i64, ptr = ctypes.c_int64, ctypes.c_void_p
    library.exp_f32.argtypes = [ptr, ptr, i64, ctypes.c_int]
    flag = ctypes.c_int
    library.mha_attention.argtypes = [ptr, ptr, ptr, ptr, *[i64] * 6, flag, flag]
    library.shared_keys_attention.argtypes = [
        *[ptr, i64, i64, i64] * 2,  # keys and RoPE keys: pointer, group and row strides, width
        *[ptr, i64, i64, i64],  # values: pointer, group and row strides, width
        *[ptr, i64, i64, i64, i64, ptr, ptr],  # queries, rows, groups, tokens, splits, ...
        flag,  # float32 (else bfloat16)
        flag,  # softmax (0: the products alone)
        flag,  # threads
    ]
    return library, ""


def available() -> bool:
    return _library()[0] is not None


def why_not() -> str:
    """Why the kernels are not available ("" when they are)."""
    return _library()[1]


DTYPES = (torch.float32, torch.bfloat16)  # what the kernels take (all inputs the same)


def _same_cpu_dtype(*tensors: torch.Tensor) -> bool:
    dtype = tensors[0].dtype
    return dtype in DTYPES and all(x.dtype == dtype and x.device.type == "cpu" for x in tensors)


def handles_attention(keys: torch.Tensor, query: torch.Tensor, v_blocks: torch.Tensor) -> bool:
    """Whether `attention` takes these: float32 or bfloat16 on the CPU, a key width divisible
    by 32, value blocks of a multiple of 16 tokens up to MAX_BLOCK, rows up to MAX_WIDTH."""
    *_, width, block = v_blocks.shape
    return (
        _same_cpu_dtype(keys, query, v_blocks)
        and keys.shape[-1] % 32 == 0
        and block % 16 == 0
        and block <= MAX_BLOCK
        and width <= MAX_WIDTH
    )


def attention(keys: torch.Tensor, query: torch.Tensor, v_blocks: torch.Tensor) -> torch.Tensor:
    """softmax(keys . query) . values per head, in one pass: keys [N, T, d], query [N, d]
    (scaled), v_blocks [N, n_blocks, d_v, c] (`value_blocks`), float32 or bfloat16 on the CPU
    (`handles_attention`). Returns float32 [N, d_v]."""
    n, t, d = keys.shape
    _, n_blocks, d_v, c = v_blocks.shape
    if not handles_attention(keys, query, v_blocks):
        raise ValueError(
            f"float32 or bfloat16 keys of a width divisible by 32 and value blocks of up to "
            f"{MAX_BLOCK} x {MAX_WIDTH}; got keys {d} wide and blocks of {c} x {d_v}"
        )
    keys, query, v_blocks = keys.contiguous(), query.contiguous(), v_blocks.contiguous()
    out = torch.empty(n, d_v, dtype=torch.float32)
    _library()[0].mha_attention(
        keys.data_ptr(),
        query.data_ptr(),
        v_blocks.data_ptr(),
        out.data_ptr(),
        n,
        t,
        d,
        n_blocks,
        d_v,
        c,
        int(keys.dtype == torch.float32),
        torch.get_num_threads(),
    )
    return out


MAX_ROWS = 256  # query rows sharing one key row that `shared_keys_attention` takes
MAX_SPLITS = 64  # parts of one group's context it merges (the C source's MAX_SPLITS)


def handles_shared_keys(
    queries_t: torch.Tensor,
    keys: torch.Tensor,
    values: torch.Tensor,
    rope_queries_t: torch.Tensor | None = None,
    rope_keys: torch.Tensor | None = None,
) -> bool:
    """Whether `shared_keys_attention` takes these: float32 or bfloat16 on the CPU, query
    rows a multiple of 16 up to MAX_ROWS, even key widths, value rows a multiple of 32."""
    tensors = [queries_t, keys, values] + [x for x in (rope_queries_t, rope_keys) if x is not None]
    rows = queries_t.shape[-1]
    return (
        _same_cpu_dtype(*tensors)
        and rows % 16 == 0
        and rows <= MAX_ROWS
        and keys.shape[-1] % 2 == 0
        and (rope_keys is None or rope_keys.shape[-1] % 2 == 0)
        and values.shape[-1] % 32 == 0
    )


def shared_keys_attention(
    queries_t: torch.Tensor,
    keys: torch.Tensor,
    values: torch.Tensor,
    rope_queries_t: torch.Tensor | None = None,
    rope_keys: torch.Tensor | None = None,
    softmax: bool = True,
) -> torch.Tensor:
    """Many query rows over the same keys, in one pass over the cache (see the C source):
    queries_t [..., d_k, rows] (scaled), keys [..., T, d_k], values [..., T, d_v] (may be the
    keys themselves), optional rope_queries_t [..., d_R, rows] and rope_keys [..., T, d_R]
    whose scores are added; float32 or bfloat16. Returns float32 [..., rows, d_v].
    softmax=False runs the two products alone, the raw scores as weights (a probe of the
    shape floor, not attention)."""
    if not handles_shared_keys(queries_t, keys, values, rope_queries_t, rope_keys):
        raise ValueError(
            f"float32 or bfloat16 inputs with 16 to {MAX_ROWS} query rows in steps of 16, even "
            f"key widths and values a multiple of 32 wide; got {queries_t.shape[-1]} rows"
        )
    *lead, t, d1 = keys.shape
    rows, d_v = queries_t.shape[-1], values.shape[-1]
    k1 = keys.contiguous().view(-1, t, d1)
    v = k1 if values is keys else values.contiguous().view(-1, t, d_v)
    groups = k1.shape[0]
    if rope_keys is not None:
        k2 = rope_keys.contiguous().view(groups, t, -1)
        queries_t = torch.cat([queries_t, rope_queries_t], dim=-2)
    d = queries_t.shape[-2]
    f32 = keys.dtype == torch.float32
    if f32:  # [G, d, rows]
        queries = queries_t.reshape(groups, d, rows).contiguous()
    else:  # [G, d / 2, rows, 2]: the two numbers of a key pair side by side, per query row
        queries = queries_t.reshape(groups, d // 2, 2, rows).transpose(-1, -2).contiguous()
    threads = torch.get_num_threads()
    # each group's context in parts, so that every thread has work (at least 256 tokens each)
    splits = max(1, min(-(-threads // groups), t // 256, MAX_SPLITS))
    scratch = torch.empty(groups * splits, d_v * rows + 2 * rows, dtype=torch.float32)
    out = torch.empty(groups, rows, d_v, dtype=torch.float32)
    no_rope = rope_keys is None
    _library()[0].shared_keys_attention(
        k1.data_ptr(),
        k1.stride(0),
        k1.stride(1),
        d1,
        None if no_rope else k2.data_ptr(),
        0 if no_rope else k2.stride(0),
        0 if no_rope else k2.stride(1),
        0 if no_rope else k2.shape[-1],
        v.data_ptr(),
        v.stride(0),
        v.stride(1),
        d_v,
        queries.data_ptr(),
        rows,
        groups,
        t,
        splits,
        scratch.data_ptr(),
        out.data_ptr(),
        int(f32),
        int(softmax),
        threads,
    )
    return out.view(*lead, rows, d_v)


def exp_into(x: torch.Tensor, out: torch.Tensor) -> None:
    """out = e^x for float32 CPU tensors, with the exponential the kernels use."""
    if not (x.dtype == out.dtype == torch.float32 and x.is_contiguous() and out.is_contiguous()):
        raise ValueError("exp_into takes contiguous float32 tensors")
    if x.shape != out.shape:
        raise ValueError(f"exp_into: shapes differ, {tuple(x.shape)} and {tuple(out.shape)}")
    _library()[0].exp_f32(x.data_ptr(), out.data_ptr(), x.numel(), torch.get_num_threads())
