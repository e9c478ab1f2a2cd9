"""The ideal batching server behind `cmal bench`'s p99/p50 floor: its batch-time curve, and its
queueing against results known in closed form."""

from __future__ import annotations

import pytest

from cmal.bench.queueing import batch_seconds, floor, simulate


def test_batch_time_is_linear_between_the_measured_sizes_and_beyond_the_largest() -> None:
    seconds = batch_seconds({1: 0.003, 8: 0.010, 32: 0.034})
    assert seconds(1) == pytest.approx(0.003)
    assert seconds(4) == pytest.approx(0.003 + 3 * 0.001)  # 1 -> 8 costs 1 ms a row
    assert seconds(20) == pytest.approx(0.010 + 12 * 0.001)
    assert seconds(40) == pytest.approx(0.034 + 8 * 0.001)  # the last segment's slope
    assert batch_seconds({4: 0.008})(8) == pytest.approx(0.016)  # one point: per sample
    with pytest.raises(ValueError):
        batch_seconds({0: 0.001})


def test_one_request_at_a_time_matches_the_pollaczek_khinchine_mean() -> None:
    # M/D/1: mean time in system = D + rho * D / (2 (1 - rho)); at rho = 0.5 that is 1.5 D
    d = 0.004
    result = simulate(rate=0.5 / d, batch_time=lambda n: n * d, max_batch=1, arrivals=200_000, seed=1)
    assert result["mean_batch_rows"] == 1
    assert result["mean_ms"] == pytest.approx(1.5 * d * 1e3, rel=0.03)


def test_a_lone_request_waits_only_for_its_own_batch() -> None:
    # requests a second apart through a 3 ms engine: nobody queues, so every latency is 3 ms
    result = simulate(rate=1.0, batch_time=lambda n: 0.003 * n, max_batch=32, arrivals=2_000, seed=0)
    assert result["p50_ms"] == pytest.approx(3.0)
    assert result["mean_batch_rows"] == pytest.approx(1.0, abs=0.01)


def test_batching_keeps_up_where_one_request_at_a_time_cannot() -> None:
    # a batch of n takes 2 ms + 1 ms a row; 600 requests a second is 1.8x what batches of one can
    # serve (333/s) but well under what batches of 32 can (941/s)
    batched = simulate(rate=600, batch_time=lambda n: 0.002 + 0.001 * n, max_batch=32, arrivals=50_000)
    assert batched["mean_batch_rows"] > 1.5
    assert batched["p99_ms"] < 50  # stable: a backlog growing without bound would reach seconds


def test_floor_reads_the_engine_figures_the_bench_records() -> None:
    points = [{"batch_size": 1, "batch_p50_ms": 3.0}, {"batch_size": 8, "batch_p50_ms": 12.9},
              {"batch_size": 32, "batch_p50_ms": 46.7}]  # fmt: skip
    result = floor(points, rate=0.01)  # one request every 100 s: no queueing at all
    assert result["p50_ms"] == pytest.approx(3.0) and result["p99_ms"] == pytest.approx(3.0)
    assert result["p99_over_p50"] == pytest.approx(1.0)
