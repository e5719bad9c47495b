"""The one timer of every benchmark: warm up, then time a call N times.

    timing = time_calls(lambda: model(ids), repeats=5, device=device)
    timing.median, timing.best, timing.samples
    kernel, floor = time_interleaved([run_kernel, run_floor_probe])  # same moments, paired
    paired_ratio(floor, kernel)                                       # efficiency, drift-proof
    watch = Stopwatch(); ...; watch.seconds()      # one long run, read as it goes

After `warmup` untimed calls, each timed call is read on `clock` (wall time by default)
and, on CUDA, waits for the GPU's queued work before the clock is read again, so that a
sample is the time of the work and not of its launch. Torch is imported only for that
wait, so benchmarks of non-torch code (Manim drawing) can use the timer too.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from mla_core.errors import UserError

Clock = Callable[[], float]
WALL: Clock = time.perf_counter  # elapsed time: what a user waits
THREAD_CPU: Clock = time.thread_time  # CPU time of this thread (one-thread runs on shared machines)
PROCESS_CPU: Clock = time.process_time  # CPU time of this process, all its threads


def synchronize(device: object = None) -> None:
    """Wait for the work queued on `device` ("cuda", "cuda:1" or a torch.device); no-op on CPU."""
    if device is None:
        return
    kind = getattr(device, "type", None) or str(device).partition(":")[0]
    if kind == "cuda":
        import torch

        torch.cuda.synchronize(device)


@dataclass(frozen=True)
class Timing:
    """Seconds of each timed call, and what the last call returned."""

    samples: list[float]  # by the timer's clock
    cpu_samples: list[float] = field(default_factory=list)  # by cpu_clock, when one was given
    result: object = None

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    @property
    def best(self) -> float:
        return min(self.samples)

    @property
    def repeats(self) -> int:
        return len(self.samples)

    @property
    def spread(self) -> float:
        """Interquartile range over the median: 0.04 means the middle half of the samples lie
        within 4% of the median's size of each other (0 for fewer than 2 samples)."""
        if len(self.samples) < 2:
            return 0.0
        q1, _, q3 = statistics.quantiles(self.samples, n=4, method="inclusive")
        return (q3 - q1) / self.median


def time_calls(
    fn: Callable[[], object],
    repeats: int = 5,
    *,
    warmup: int = 1,
    device: object = None,
    clock: Clock = WALL,
    cpu_clock: Clock | None = None,
    max_repeats: int | None = None,
    target_seconds: float | None = None,
    stable_within: float | None = None,
) -> Timing:
    """Call `fn` `warmup` times untimed, then time `repeats` calls.

    With `target_seconds` and `max_repeats`: after the first `repeats` calls, keep timing
    until the samples add up to more than `target_seconds`, or `max_repeats` were taken.
    `device`: wait for its queued work after every call (see `synchronize`).
    `cpu_clock`: also read this clock (e.g. PROCESS_CPU) around each call, into cpu_samples.
    With `stable_within` (e.g. 0.02) and `max_repeats`: time in rounds of `repeats` calls
    until the median of all samples moved by at most that fraction over the last round (and
    the samples add up to `target_seconds`, if given), or `max_repeats` were taken.
    """
    return time_interleaved(
        [fn],
        repeats,
        warmup=warmup,
        device=device,
        clock=clock,
        cpu_clock=cpu_clock,
        max_repeats=max_repeats,
        target_seconds=target_seconds,
        stable_within=stable_within,
    )[0]


def time_interleaved(
    functions: Sequence[Callable[[], object]],
    repeats: int = 5,
    *,
    warmup: int = 1,
    device: object = None,
    clock: Clock = WALL,
    cpu_clock: Clock | None = None,
    max_repeats: int | None = None,
    target_seconds: float | None = None,
    stable_within: float | None = None,
) -> list[Timing]:
    """Time several functions in alternation: each round calls every one of them once, in
    order, so that sample i of each was taken within the same second as sample i of the
    others. A kernel and the probe of its floor timed this way see the same machine: on a
    machine whose speed drifts, the ratio of paired samples (`paired_ratio`) holds still
    where the ratio of two separate medians does not.

    The rounds stop as `time_calls` says, judged on the first function's samples. Returns
    one Timing per function."""
    if repeats < 1:
        raise UserError(f"repeats {repeats} must be >= 1")
    if not functions:
        raise UserError("time_interleaved needs at least one function")
    results: list[object] = [None] * len(functions)
    for _ in range(warmup):
        for i, fn in enumerate(functions):
            results[i] = fn()
    synchronize(device)
    samples: list[list[float]] = [[] for _ in functions]
    cpu_samples: list[list[float]] = [[] for _ in functions]
    limit = max(repeats, max_repeats or repeats)
    last_median = None  # the first function's median at the end of the previous round
    while len(samples[0]) < limit:
        for i, fn in enumerate(functions):
            cpu_start = cpu_clock() if cpu_clock is not None else 0.0
            start = clock()
            results[i] = fn()
            synchronize(device)
            samples[i].append(clock() - start)
            if cpu_clock is not None:
                cpu_samples[i].append(cpu_clock() - cpu_start)
        n = len(samples[0])
        long_enough = target_seconds is None or sum(samples[0]) > target_seconds
        if n < repeats:
            continue
        if stable_within is None:
            if long_enough:
                break
            continue
        if n % repeats == 0:
            median = statistics.median(samples[0])
            settled = last_median is not None and abs(median - last_median) <= (
                stable_within * last_median
            )
            if settled and long_enough:
                break
            last_median = median
    return [Timing(*t) for t in zip(samples, cpu_samples, results, strict=True)]


def paired_ratio(numerators: Timing, denominators: Timing) -> float:
    """The median over rounds of numerator sample / denominator sample (`time_interleaved`):
    e.g. a floor probe's time over the kernel's time in the same round, an efficiency that
    the machine's drift between rounds does not move."""
    if numerators.repeats != denominators.repeats or numerators.repeats == 0:
        raise UserError("paired_ratio needs two timings with the same number of samples")
    return statistics.median(
        a / b for a, b in zip(numerators.samples, denominators.samples, strict=True)
    )


class Stopwatch:
    """Seconds since it was made, on `clock`: for one long run (a render) read as it goes."""

    def __init__(self, clock: Clock = WALL) -> None:
        self._clock = clock
        self._start = clock()

    def seconds(self) -> float:
        return self._clock() - self._start
