"""The arithmetic behind the before/after tables (chaos_lab.stats, one definition each for the
runner, the guardrails and the bench): no lab needed."""

from chaos_lab.experiment import experiment
from chaos_lab.processes import LabError
from chaos_lab.stats import latency, percentile, percentile_between, recovery_seconds, timeline
from loadtest.traffic import Outcome, TrafficProfile, TrafficResults, schedule


def results(*outcomes: tuple[float, str, int, str | None]) -> TrafficResults:
    return TrafficResults([Outcome(at, kind, status, source)  # type: ignore[arg-type]
                           for at, kind, status, source in outcomes])


def test_labels_classify_business_answers_as_successes() -> None:
    r = results((0, "read", 200, "database"), (0, "read", 200, "cache"), (0, "read", 0, None),
                (0, "write", 201, "database"), (0, "write", 202, "queue"),
                (0, "write", 409, None), (0, "write", 503, None), (0, "write", 500, None))
    assert r.counts == {"read_ok": 1, "read_cache": 1, "read_fail": 1, "write_ok": 1,
                        "write_queued": 1, "write_409": 1, "write_other": 0, "write_fail": 2}
    assert "reads=2/1 (cache=1) writes_ok=1 writes_409=1 writes_202=1 writes_fail=2" \
        in r.status_line(3)


def test_recovery_is_fault_to_last_failure() -> None:
    r = results((1, "read", 200, None), (10, "read", 0, None), (14.5, "write", 500, None),
                (20, "read", 200, None), (40, "read", 200, None))
    assert recovery_seconds(r, fault_at=10) == 4.5


def test_no_failure_is_zero_and_failing_to_the_end_is_never() -> None:
    healthy = results((1, "read", 200, None), (30, "read", 200, None))
    assert recovery_seconds(healthy, fault_at=10) == 0.0
    broken = results((1, "read", 200, None), (11, "read", 500, None), (29, "write", 0, None),
                     (30, "read", 500, None))
    assert recovery_seconds(broken, fault_at=10) is None


def test_failures_before_the_fault_do_not_count() -> None:
    r = results((2, "read", 500, None), (12, "read", 200, None), (30, "read", 200, None))
    assert recovery_seconds(r, fault_at=10) == 0.0


def test_a_failure_counts_when_it_is_observed_not_when_its_request_started() -> None:
    # Sent before the fault, answered (a timeout) 5 s later: the fault's failure.
    r = TrafficResults([Outcome(1, "read", 200), Outcome(9.5, "read", 0, latency_ms=5000),
                        Outcome(9.8, "read", 502, latency_ms=400), Outcome(12, "read", 200),
                        Outcome(30, "read", 200)])
    assert recovery_seconds(r, fault_at=10) == 4.5


def test_any_failure_after_the_fault_is_more_than_zero_seconds() -> None:
    r = results((1, "read", 200, None), (10, "read", 500, None), (20, "read", 200, None))
    assert recovery_seconds(r, fault_at=10) == 0.1


def test_timeline_counts_per_second() -> None:
    r = results((0.1, "read", 200, "database"), (0.9, "read", 200, "cache"),
                (2.5, "write", 202, "queue"))
    assert timeline(r) == [{"read_ok": 1, "read_cache": 1}, {}, {"write_queued": 1}]


def test_schedule_is_the_profile() -> None:
    plan = schedule(TrafficProfile(reads_per_second=3, writes_per_second=1, duration=10))
    assert sum(1 for _, kind in plan if kind == "read") == 30
    assert sum(1 for _, kind in plan if kind == "write") == 10
    assert plan == sorted(plan) and plan[-1][0] < 10


def test_experiments_scale_and_refuse_bad_input() -> None:
    spec = experiment("db-outage", scale=10)
    assert spec.traffic.reads_per_second == 30 and spec.traffic.writes_per_second == 10
    assert spec.hold == 180 and spec.fault_at == 30
    for bad in (("nope", "default", 1), ("failover", "nope", 1), ("failover", "short", 0)):
        try:
            experiment(*bad)
        except LabError:
            continue
        raise AssertionError(f"{bad} was accepted")


def test_percentiles_are_nearest_rank_and_failures_count_at_their_timeout() -> None:
    assert percentile([5, 1, 3, 2, 4], 50) == 3
    assert percentile([float(i) for i in range(1, 101)], 99) == 99
    assert percentile([7.0], 99) == 7
    r = TrafficResults([Outcome(0.2, "read", 200, latency_ms=10),
                        Outcome(0.7, "read", 200, latency_ms=30),
                        Outcome(1.5, "read", 0, latency_ms=5000),
                        Outcome(3.1, "read", 200, latency_ms=4)])
    assert latency(r) == [{"p50": 10, "p99": 30}, {"p50": 5000, "p99": 5000}, {},
                          {"p50": 4, "p99": 4}]
    assert percentile_between(r, 99, 1, 3) == 5000  # the timeout is the customer's wait
    assert percentile_between(r, 99, 10, 20) is None


def test_p50_and_p99_during_the_fault_come_from_the_same_window() -> None:
    # Nine quick answers and one timeout started in the window; the median customer waited
    # 8 ms, the unluckiest 5 s; requests outside [10, 15] are not the fault's.
    inside = [Outcome(10 + i * 0.5, "read", 200, latency_ms=float(i + 4)) for i in range(9)]
    r = TrafficResults([Outcome(2, "read", 200, latency_ms=900), *inside,
                        Outcome(14.9, "write", 0, latency_ms=5000),
                        Outcome(16, "read", 200, latency_ms=700)])
    assert percentile_between(r, 50, 10, 15) == 8
    assert percentile_between(r, 99, 10, 15) == 5000
    assert percentile_between(r, 50, 0, 20) == 9  # 12 requests: the 6th smallest
