"""The bench's faults part, from given experiment results: what each row says and the
markdown it makes. The runs themselves are the experiment runner's (tests/test_experiments.py,
tests/test_fault_catalog.py); the figures come from `chaos-shop bench --part faults`."""

from chaos_lab.bench import BenchPart
from chaos_lab.bench.faults import FaultRow, markdown
from chaos_lab.experiment import RunResult
from chaos_lab.model import Check, Hypothesis, Measured, Switches, judge


def _run(name: str, fault: str, p50: float | None, p99: float | None, failed: int = 0,
         lost: int = 0, aborted: str | None = None) -> RunResult:
    run = RunResult(name, "AFTER", Switches().model_dump(), fault, 6, 0,
                    counts={"read_fail": failed}, failed=failed, accepted=20, lost=lost,
                    status="aborted" if aborted else "completed", reason=aborted,
                    p50_during_fault_ms=p50, p99_during_fault_ms=p99)
    hypothesis = Hypothesis(max_failed_requests=3, max_p99_latency_ms=3000,
                            max_recovery_seconds=10)
    run.checks = ([Check("steady_state_before", "is", True, False, False)] if aborted else
                  judge(hypothesis, Measured(failed, lost, p99, 0.0, True, 0, True,
                                             p50_latency_ms=p50)))
    return run


def test_each_fault_is_a_row_with_its_wait_its_losses_and_its_verdict() -> None:
    rows = [FaultRow.of(_run("db-outage", "db-outage", 4.24, 812.0)),
            FaultRow.of(_run("failover", "failover", 35.0, 2000.0, failed=1)),
            FaultRow.of(_run("slow", "brownout", 3.0, 4000.0, lost=2)),
            FaultRow.of(_run("reader-loss", "reader-loss", None, None, aborted="unsteady"))]
    assert [r.verdict for r in rows] == [
        "holds", "holds",
        "violated: lost orders 2, p99 latency during fault 4000 ms",
        "aborted (steady state before not met)"]
    assert [r.goal_met for r in rows] == [True, False, False, False]
    text = markdown(rows)
    lines = text[text.index("| fault | p50 ms | p99 ms | failed requests | lost orders | "
                            "verdict | goal |"):]
    assert lines[2:6] == [
        "| db-outage | 4.2 | 812 | 0 | 0 of 20 | holds | met |",
        "| failover | 35 | 2000 | 1 | 0 of 20 | holds | NOT met |",
        "| slow (brownout) | 3.0 | 4000 | 0 | 2 of 20 | violated: lost orders 2, p99 latency "
        "during fault 4000 ms | NOT met |",
        "| reader-loss | - | - | 0 | 0 of 20 | aborted (steady state before not met) | NOT met |"]
    assert text[0].startswith("### During each fault (catalog, short preset")
    assert text[-1] == ("Goal (p99 <= 1 s and p50 <= 20 ms during every fault, no failure, no "
                        "lost order): **met by 1 of 4**")


def test_the_goal_is_both_percentiles_at_once() -> None:
    assert FaultRow.of(_run("a", "db-outage", 20.0, 1000.0)).goal_met
    assert not FaultRow.of(_run("a", "db-outage", 20.5, 10.0)).goal_met
    assert not FaultRow.of(_run("a", "db-outage", 1.0, 1001.0)).goal_met


def test_faults_is_a_bench_part() -> None:
    assert BenchPart("faults") is BenchPart.faults
