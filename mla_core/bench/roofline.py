"""The two ceilings of a machine: how fast it reads memory and how fast it multiplies matrices.

A kernel that reads B bytes and does F FLOPs cannot take less than

    floor = max(B / bandwidth, F / matmul_rate)

(the roofline model). Both ceilings are measured here, on the device and dtype of the
benchmark, with plain torch: bandwidth as the best of several reductions over a buffer much
larger than the caches, the matmul rate as the best of several square matrix products.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Roofline:
    """Measured ceilings: bytes per second read from memory, FLOPs per second in matmul."""

    bandwidth: float  # bytes / s
    matmul_rate: float  # FLOP / s
    dtype: str
    device: str

    def floor_seconds(self, bytes_read: float, flops: float) -> float:
        """The least time a kernel reading `bytes_read` and doing `flops` can take."""
        return max(bytes_read / self.bandwidth, flops / self.matmul_rate)

    def bound(self, bytes_read: float, flops: float) -> str:
        """'memory' or 'compute': which ceiling sets the floor."""
        return "memory" if bytes_read / self.bandwidth >= flops / self.matmul_rate else "compute"


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


Clock = Callable[[], float]


def best_seconds(
    fn: Callable[[], object],
    device: torch.device,
    repeats: int = 5,
    clock: Clock = time.perf_counter,
) -> float:
    """The fastest of `repeats` timed calls after one warm-up call.

    clock: wall time by default; `time.thread_time` (CPU time of this thread) measures a
    single-threaded run on a shared machine without the time other processes took.
    """
    fn()
    synchronize(device)
    best = float("inf")
    for _ in range(repeats):
        start = clock()
        fn()
        synchronize(device)
        best = min(best, clock() - start)
    return best


def measure_bandwidth(
    device: torch.device,
    nbytes: int = 1 << 30,
    repeats: int = 5,
    clock: Clock = time.perf_counter,
) -> float:
    """Memory read bandwidth in bytes/s: a max-reduction over an `nbytes` float32 buffer.

    The bytes are the ceiling whatever the cache dtype; float32 max is the cheapest
    vectorised pass torch has, so the arithmetic never hides the memory.
    """
    buffer = torch.ones(nbytes // 4, dtype=torch.float32, device=device)
    seconds = best_seconds(buffer.amax, device, repeats, clock)
    return nbytes / seconds


def measure_matmul_rate(
    dtype: torch.dtype,
    device: torch.device,
    size: int = 2048,
    repeats: int = 5,
    clock: Clock = time.perf_counter,
) -> float:
    """Matrix multiply rate in FLOP/s for `dtype`: square products of `size`."""
    generator = torch.Generator(device=device).manual_seed(0)
    a = torch.randn(size, size, generator=generator, device=device).to(dtype)
    b = torch.randn(size, size, generator=generator, device=device).to(dtype)
    seconds = best_seconds(lambda: a @ b, device, repeats, clock)
    return 2 * size**3 / seconds


def measure_roofline(
    dtype: torch.dtype,
    device: torch.device,
    bandwidth_bytes: int = 1 << 30,
    matmul_size: int = 2048,
    repeats: int = 5,
    clock: Clock = time.perf_counter,
) -> Roofline:
    """Both ceilings for `dtype` on `device`."""
    return Roofline(
        bandwidth=measure_bandwidth(device, bandwidth_bytes, repeats, clock),
        matmul_rate=measure_matmul_rate(dtype, device, matmul_size, repeats, clock),
        dtype=str(dtype).removeprefix("torch."),
        device=str(device),
    )
