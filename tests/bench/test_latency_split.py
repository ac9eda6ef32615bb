"""The latency split of the benchmarks' report (bench.latency.parts): plain arithmetic, part of `make test`."""

from __future__ import annotations

from bench.latency import Arrival, parts


def _arrival(written: float, arrival: float, key: str) -> Arrival:
    return Arrival(arrival=arrival, written=written, key=key, event_id=key)


def test_each_record_is_split_at_the_first_read_after_its_write() -> None:
    # Reads: [10.0, 10.2] and [11.0, 11.5]. The first record waits 0.5 s for a read of 0.2 s, then takes 0.05 s.
    calls = [(10.0, 10.2), (11.0, 11.5)]
    arrivals = [_arrival(9.5, 10.25, "a"), _arrival(10.1, 11.6, "b")]
    split = parts(arrivals, calls)
    assert split["wait"]["p99"] == 900.0  # b: written at 10.1, read from 11.0
    assert split["endpoint"]["p50"] == 200.0
    assert split["endpoint"]["p99"] == 500.0
    assert split["service"]["p50"] == 50.0
    assert split["service"]["p99"] == 100.0
    assert split["attributed"] == {"records": 2, "of": 2}


def test_a_record_no_read_can_explain_is_left_out() -> None:
    # Delivered before the only later read ended: not attributable (a clock or log gap), never guessed.
    split = parts([_arrival(10.0, 10.1, "a"), _arrival(9.0, 10.5, "b")], [(9.5, 10.3)])
    assert split["attributed"] == {"records": 1, "of": 2}
    assert split["service"]["p50"] == 200.0


def test_no_reads_no_split() -> None:
    assert parts([_arrival(1.0, 2.0, "a")], []) == {}
