"""The bfloat16 streaming kernels of `decode_bf16.c`, built on first use and called via ctypes.

MHA and naive MLA read one key row and one value row per cached token and head: in bfloat16
the compiled torch loops spend more time widening and reducing than reading (see
docs/decode-kernels.md). `decode_bf16.c` does the two products with AVX-512 BF16 instructions.

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

SOURCE = Path(__file__).with_name("decode_bf16.c")
BUILD_DIR = Path(__file__).resolve().parents[2] / ".cache" / "native"
CFLAGS = ("-O3", "-mavx512f", "-mavx512bw", "-mavx512bf16", "-fopenmp", "-shared", "-fPIC")
SWITCH_ENV = "MLA_NATIVE_KERNELS"  # "0": never build or use them (the torch kernels run)
MAX_WIDTH = 512  # the widest value row `weighted_sum_bf16` keeps accumulators for
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
    target = BUILD_DIR / f"decode_bf16-{digest}.so"
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
    library.dot_over_last_bf16.argtypes = [ptr, ptr, ptr, i64, i64, i64, ctypes.c_int]
    library.weighted_sum_bf16.argtypes = [ptr, ptr, ptr, i64, i64, i64, i64, ctypes.c_int]
    return library, ""


def available() -> bool:
    return _library()[0] is not None


def why_not() -> str:
    """Why the kernels are not available ("" when they are)."""
    return _library()[1]


def handles_dot(keys: torch.Tensor, query: torch.Tensor) -> bool:
    """Whether `dot_over_last` takes these: bfloat16 on the CPU, a width divisible by 32."""
    return (
        keys.dtype == query.dtype == torch.bfloat16
        and keys.device.type == query.device.type == "cpu"
        and keys.shape[-1] % 32 == 0
    )


def handles_weighted_sum(weights: torch.Tensor, v_blocks: torch.Tensor) -> bool:
    """Whether `weighted_sum` takes these: float32 weights and bfloat16 value blocks on the
    CPU, blocks of a multiple of 16 tokens up to MAX_BLOCK, rows up to MAX_WIDTH wide."""
    *_, width, block = v_blocks.shape
    return (
        weights.dtype == torch.float32
        and v_blocks.dtype == torch.bfloat16
        and weights.device.type == v_blocks.device.type == "cpu"
        and block % 16 == 0
        and block <= MAX_BLOCK
        and width <= MAX_WIDTH
    )


def dot_over_last(keys: torch.Tensor, query: torch.Tensor) -> torch.Tensor:
    """scores[n, t] = keys[n, t, :] . query[n, :] in float32: keys [N, T, d] and query [N, d]
    bfloat16 on the CPU, d a multiple of 32 (`handles_dot`). Returns float32 [N, T]."""
    n, t, d = keys.shape
    if not handles_dot(keys, query):
        raise ValueError(f"bfloat16 keys and query with a width divisible by 32, got {d}")
    keys, query = keys.contiguous(), query.contiguous()
    scores = torch.empty(n, t, dtype=torch.float32)
    _library()[0].dot_over_last_bf16(
        keys.data_ptr(), query.data_ptr(), scores.data_ptr(), n * t, t, d, torch.get_num_threads()
    )
    return scores


def weighted_sum(weights: torch.Tensor, v_blocks: torch.Tensor) -> torch.Tensor:
    """out[n, :] = sum_t weights[n, t] * values[n, t, :] in float32: weights float32
    [N, n_blocks * c], v_blocks bfloat16 [N, n_blocks, d, c] (`value_blocks`), c a multiple of
    16 up to 256, d up to 512 (`handles_weighted_sum`). Returns float32 [N, d]."""
    n, n_blocks, d, c = v_blocks.shape
    if not handles_weighted_sum(weights, v_blocks):
        raise ValueError(
            f"float32 weights and bfloat16 value blocks of up to {MAX_BLOCK} x {MAX_WIDTH}, "
            f"got {c} x {d}"
        )
    weights, v_blocks = weights.contiguous(), v_blocks.contiguous()
    out = torch.empty(n, d, dtype=torch.float32)
    _library()[0].weighted_sum_bf16(
        weights.data_ptr(),
        v_blocks.data_ptr(),
        out.data_ptr(),
        n,
        n_blocks,
        d,
        c,
        torch.get_num_threads(),
    )
    return out
