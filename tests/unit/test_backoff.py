"""The one backoff: doubling from the base, capped, and with full jitter never above the capped wait."""

from __future__ import annotations

from consumer import backoff


def test_the_wait_doubles_from_the_base_up_to_the_cap() -> None:
    assert [backoff.exponential(attempt, 0.5, 10.0) for attempt in range(7)] == [0.5, 1.0, 2.0, 4.0, 8.0, 10.0, 10.0]


def test_a_long_outage_never_overflows() -> None:
    assert backoff.exponential(10_000, 0.5, 10.0) == 10.0


def test_full_jitter_stays_between_zero_and_the_capped_wait() -> None:
    waits = [backoff.full_jitter(attempt, 0.5, 10.0) for attempt in range(12) for _ in range(20)]
    assert all(0.0 <= wait <= 10.0 for wait in waits)
    assert all(backoff.full_jitter(0, 0.5, 10.0) <= 0.5 for _ in range(50))
