"""mla_core.bench.timer, the one timer of the benchmarks, on clocks that the timed calls move."""

from __future__ import annotations

import pytest

from mla_core.bench.timer import Stopwatch, time_calls
from mla_core.errors import UserError


class FakeClock:
    """A clock that only moves when a timed call says so."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_warm_up_calls_are_not_timed_and_the_last_result_is_kept() -> None:
    clock, calls = FakeClock(), []

    def work() -> int:
        calls.append(len(calls))
        clock.now += 0.25 * len(calls)  # call n takes n / 4 seconds
        return len(calls)

    timing = time_calls(work, 3, warmup=2, clock=clock)
    assert len(calls) == 5
    assert timing.samples == [0.75, 1.0, 1.25]  # calls 3, 4 and 5
    assert timing.median == 1.0 and timing.best == 0.75 and timing.repeats == 3
    assert timing.result == 5
    assert timing.cpu_samples == []


def test_target_seconds_adds_repeats_until_the_samples_add_up() -> None:
    clock = FakeClock()

    def work() -> None:
        clock.now += 0.4

    # 2 calls make 0.8 s, not over 1.0: a third is timed (1.2 s), then it stops
    timing = time_calls(work, 2, clock=clock, max_repeats=10, target_seconds=1.0)
    assert timing.repeats == 3
    # max_repeats caps it
    timing = time_calls(work, 2, clock=clock, max_repeats=4, target_seconds=100.0)
    assert timing.repeats == 4


def test_a_second_clock_is_read_around_each_call() -> None:
    wall, cpu = FakeClock(), FakeClock()

    def work() -> None:
        wall.now += 2.0
        cpu.now += 0.5

    timing = time_calls(work, 2, warmup=0, clock=wall, cpu_clock=cpu)
    assert timing.samples == [2.0, 2.0] and timing.cpu_samples == [0.5, 0.5]


def test_no_repeats_is_a_user_error() -> None:
    with pytest.raises(UserError, match="repeats 0"):
        time_calls(lambda: None, 0)


def test_stopwatch_reads_its_clock_since_it_was_made() -> None:
    clock = FakeClock()
    clock.now = 10.0
    watch = Stopwatch(clock)
    clock.now = 13.5
    assert watch.seconds() == 3.5


def test_stable_within_times_rounds_until_the_median_settles() -> None:
    """Rounds of 3 calls; the first round is slow (a machine waking up), then steady."""
    clock = FakeClock()
    durations = iter([5.0, 5.0, 5.0] + [1.0] * 100)

    def work() -> None:
        clock.now += next(durations)

    timing = time_calls(work, 3, warmup=0, clock=clock, max_repeats=30, stable_within=0.02)
    # median after round 1: 5; round 2: 3 (moved); round 3: 1 (moved); round 4: 1 (settled)
    assert timing.repeats == 12
    assert timing.median == 1.0
    # 9 samples of 1 and 3 of 5: quartiles 1 and 2 (inclusive method), so IQR / median = 1
    assert timing.spread == pytest.approx(1.0)
    # a clock that never settles stops at max_repeats
    clock2, n = FakeClock(), iter(range(1, 100))

    def drifting() -> None:
        clock2.now += next(n)

    drift = time_calls(drifting, 3, warmup=0, clock=clock2, max_repeats=9, stable_within=0.02)
    assert drift.repeats == 9


def test_spread_is_the_interquartile_range_over_the_median() -> None:
    from mla_core.bench.timer import Timing

    assert Timing([1.0, 2.0, 3.0, 4.0, 5.0]).spread == pytest.approx((4.0 - 2.0) / 3.0)
    assert Timing([2.0]).spread == 0.0


def test_interleaved_functions_alternate_and_their_paired_ratio_ignores_drift() -> None:
    """A kernel and its floor probe on a machine that slows down 2x after the third round:
    each round calls both, in order; the ratio of paired samples stays 0.5 throughout,
    which the ratio of two separate medians would not if they were timed apart."""
    from mla_core.bench.timer import paired_ratio, time_interleaved

    clock, order = FakeClock(), []
    rounds = {"n": 0}

    def slowness() -> float:
        return 1.0 if rounds["n"] < 3 else 2.0

    def kernel() -> str:
        order.append("kernel")
        clock.now += 0.2 * slowness()
        return "k"

    def probe() -> str:
        order.append("probe")
        clock.now += 0.1 * slowness()
        rounds["n"] += 1
        return "p"

    kernel_t, probe_t = time_interleaved([kernel, probe], 6, warmup=1, clock=clock)
    assert order[:4] == ["kernel", "probe", "kernel", "probe"]  # warm-up round, then rounds
    assert kernel_t.repeats == probe_t.repeats == 6
    assert kernel_t.samples == pytest.approx([0.2, 0.2, 0.4, 0.4, 0.4, 0.4])
    assert probe_t.samples == pytest.approx([0.1, 0.1, 0.2, 0.2, 0.2, 0.2])
    assert (kernel_t.result, probe_t.result) == ("k", "p")
    assert paired_ratio(probe_t, kernel_t) == pytest.approx(0.5)
    # the ratio of the probe's fast-machine samples to the kernel's slow-machine ones is not
    from mla_core.bench.timer import Timing

    assert paired_ratio(Timing([0.1, 0.1]), Timing([0.4, 0.4])) == pytest.approx(0.25)
    with pytest.raises(UserError, match="same number of samples"):
        paired_ratio(Timing([0.1]), Timing([0.1, 0.2]))
    with pytest.raises(UserError, match="at least one function"):
        time_interleaved([])
