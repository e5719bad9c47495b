"""The two ceilings of a machine: how fast it reads memory and how fast it multiplies matrices.

A kernel that reads B bytes and does F FLOPs cannot take less than

    floor = max(B / bandwidth, F / matmul_rate)

(the roofline model). Both ceilings are measured here, on the device and dtype of the
benchmark, with plain torch: bandwidth as the best of several reductions over a buffer much
larger than the caches, the matmul rate as the best of several square matrix products
(each the fastest of `repeats` calls after one warm-up, `mla_core.bench.timer`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from mla_core.bench.timer import WALL, Clock, time_calls


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


def measure_bandwidth(
    device: torch.device,
    nbytes: int = 1 << 30,
    repeats: int = 5,
    clock: Clock = WALL,
) -> float:
    """Memory read bandwidth in bytes/s: a max-reduction over an `nbytes` float32 buffer.

    The bytes are the ceiling whatever the cache dtype; float32 max is the cheapest
    vectorised pass torch has, so the arithmetic never hides the memory.
    """
    buffer = torch.ones(nbytes // 4, dtype=torch.float32, device=device)
    seconds = time_calls(buffer.amax, repeats, device=device, clock=clock).best
    return nbytes / seconds


def read_pass_of(tensors: list[torch.Tensor]) -> Callable[[], list[torch.Tensor]]:
    """One pass that reads every byte of these tensors: a max-reduction over each one viewed
    as int32 (no arithmetic of the dtype, not even denormals, slows it). A decode case's own
    cache, read beside its timing, gives the bandwidth of that moment and that memory. The
    pass returns the maxima (so a test can see that it reached the last bytes)."""
    views = [t.reshape(-1).view(torch.int32) for t in tensors]  # contiguous, 4-byte multiple

    def read_all() -> list[torch.Tensor]:
        return [view.amax() for view in views]

    return read_all


def measure_matmul_rate(
    dtype: torch.dtype,
    device: torch.device,
    size: int = 2048,
    repeats: int = 5,
    clock: Clock = WALL,
) -> float:
    """Matrix multiply rate in FLOP/s for `dtype`: square products of `size`."""
    generator = torch.Generator(device=device).manual_seed(0)
    a = torch.randn(size, size, generator=generator, device=device).to(dtype)
    b = torch.randn(size, size, generator=generator, device=device).to(dtype)
    seconds = time_calls(lambda: a @ b, repeats, device=device, clock=clock).best
    return 2 * size**3 / seconds


def measure_roofline(
    dtype: torch.dtype,
    device: torch.device,
    bandwidth_bytes: int = 1 << 30,
    matmul_size: int = 2048,
    repeats: int = 5,
    clock: Clock = WALL,
) -> Roofline:
    """Both ceilings for `dtype` on `device`."""
    return Roofline(
        bandwidth=measure_bandwidth(device, bandwidth_bytes, repeats, clock),
        matmul_rate=measure_matmul_rate(dtype, device, matmul_size, repeats, clock),
        dtype=str(dtype).removeprefix("torch."),
        device=str(device),
    )
