"""The chaos lab end to end: the short preset of both experiments, fragile then resilient,
against the whole shop as local processes. The figures asserted are the issue's."""

import os
import pwd
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest

from chaos_lab import experiment as experiments
from chaos_lab import processes, report
from chaos_lab.local.lab import Lab
from chaos_lab.local.pgbouncer import READER_DB, WRITER_DB
from chaos_lab.local.postgres import ORDERS_USER, ROLES, PostgresNode
from chaos_lab.processes import wait_until
from chaos_lab.targets.local import LocalTarget


@pytest.fixture(scope="module")
def lab(work_dir: Path) -> Iterator[LocalTarget]:
    lab = Lab(work_dir / "lab")
    lab.up(log=lambda *_: None)
    yield LocalTarget(lab)
    lab.down(log=lambda *_: None)


async def test_failover_before_never_recovers_after_loses_nothing(lab: LocalTarget,
                                                                  tmp_path: Path) -> None:
    spec = experiments.experiment("failover", "short")
    before, after = await experiments.compare(lab, spec, say=lambda *_: None)

    assert before.counts["write_fail"] > 0 and before.counts["read_fail"] > 0
    assert before.recovery_seconds is None and not before.healthy_after

    assert after.counts["write_fail"] == 0
    assert after.counts["read_fail"] <= 2
    assert after.lost == 0 and after.stock_consistent
    assert after.healthy_after and after.steady_before
    assert after.dlq == 0 and after.queue == 0
    assert after.passed and not before.passed and experiments.verdict([before, after])

    folder = report.write([before, after], tmp_path)
    assert (folder / "timeline.png").stat().st_size > 10_000
    assert (folder / "result.json").exists()


async def test_outage_before_fails_after_loses_nothing(lab: LocalTarget) -> None:
    spec = experiments.experiment("db-outage", "short")
    before, after = await experiments.compare(lab, spec, say=lambda *_: None)

    assert before.counts["write_fail"] > 0  # every failed write is an order never taken
    assert before.counts["read_fail"] > 0

    assert after.counts["read_fail"] == 0 and after.counts["write_fail"] == 0
    assert after.counts["read_cache"] > 0 and after.counts["write_queued"] > 0
    assert after.lost == 0 and after.stock_consistent
    assert after.decided["pending"] == 0 and after.decided["missing"] == 0
    assert after.queue == 0 and after.dlq == 0
    assert after.drained_seconds is not None and after.drained_seconds <= 30
    assert after.healthy_after
    assert after.passed and not before.passed, [c for c in after.checks if not c.passed]


# Nobody else on this machine gets in (issue 21, item 9) -------------------------------------


def hba_rules(node: PostgresNode) -> list[list[str]]:
    text = (node.data / "pg_hba.conf").read_text()
    return [line.split() for line in text.splitlines() if line.strip() and line[0] != "#"]


async def test_the_lab_postgresql_trusts_nobody(lab: LocalTarget) -> None:
    """No trust rule: over TCP every role gives its password (SCRAM); the superuser only on the
    node's socket, as the operating-system user that runs it (peer); the replica has the same
    rules (its base backup's)."""
    for node in (lab.lab.primary, lab.lab.replica):
        rules = hba_rules(node)
        assert rules and not [rule for rule in rules if "trust" in rule]
        assert all(rule[-1] == "scram-sha-256" for rule in rules if rule[0] == "host")
        assert all(rule[0] == "local" and rule[2:4] == ["postgres", "peer"]
                   for rule in rules if rule[0] != "host")
    node = lab.lab.primary
    # the superuser over TCP: no way in, whatever the password; the owner: only with its own
    for user, password in (("postgres", ""), ("postgres", node.password()), ("shop", "guess")):
        with pytest.raises(asyncpg.InvalidPasswordError):
            await asyncpg.connect(host="127.0.0.1", port=node.port, user=user,
                                  password=password, database="shop", timeout=5)
    conn = await asyncpg.connect(node.dsn(with_password=True), timeout=5)
    await conn.close()


@pytest.mark.skipif(os.geteuid() != 0, reason="needs another local user to try as: root's")
def test_another_local_user_is_not_the_superuser_on_the_socket(lab: LocalTarget) -> None:
    node = lab.lab.primary
    result = subprocess.run(
        ["runuser", "-u", "nobody", "--", "psql", "-h", str(node.root), "-p", str(node.port),
         "-U", "postgres", "-d", "postgres", "-XAtqc", "SELECT 1"],
        capture_output=True, text=True, timeout=10, check=False)
    assert result.returncode != 0
    assert "authentication failed" in result.stderr or "Permission denied" in result.stderr


def test_pgbouncer_wants_passwords_its_admin_console_included(lab: LocalTarget) -> None:
    bouncer = lab.lab.bouncer
    admin_password = bouncer.admin_password_file.read_text().strip()
    assert len(admin_password) >= 16
    assert "PgBouncer" in bouncer.admin("SHOW VERSION")  # it answers, given the password
    for user, password in (("pgbouncer", ""), ("pgbouncer", "guess"), ("shop", "guess")):
        result = subprocess.run(
            ["psql", "-h", "127.0.0.1", "-p", str(bouncer.port), "-U", user, "-d",
             "pgbouncer" if user == "pgbouncer" else "shop", "-XAtqc", "SHOW VERSION"],
            env={"PATH": os.environ["PATH"], "PGPASSWORD": password, "PGCONNECT_TIMEOUT": "5"},
            capture_output=True, text=True, timeout=10, check=False)
        assert result.returncode != 0, (user, result.stdout)


def test_password_files_are_the_owners_alone(lab: LocalTarget) -> None:
    """0600 each (os.open with the mode: never a moment more open), in a 0700 folder."""
    secrets = lab.lab.root / "secrets"
    assert secrets.stat().st_mode & 0o777 == 0o700
    files = [lab.lab.password_file(role) for role in ROLES] + [
        lab.lab.bouncer.admin_password_file, lab.lab.bouncer.root / "userlist.txt"]
    for file in files:
        assert file.stat().st_mode & 0o777 == 0o600, file
        assert file.read_text().strip()
    # PgBouncer's auth file is PgBouncer's (it runs as postgres when the lab runs as root)
    if os.geteuid() == 0:
        userlist = lab.lab.bouncer.root / "userlist.txt"
        assert userlist.stat().st_uid == pwd.getpwnam("postgres").pw_uid


def test_no_password_on_a_command_line(lab: LocalTarget,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """Setting a password, and the admin console: the password reaches psql through its
    standard input or its environment, never its arguments (which `ps` shows to anyone)."""
    seen: list[list[str]] = []
    real = subprocess.run

    def recording(args: list[str], **kwargs: object) -> object:
        seen.append(list(args))
        return real(args, **kwargs)  # type: ignore[call-overload]

    monkeypatch.setattr(processes.subprocess, "run", recording)
    node, bouncer = lab.lab.primary, lab.lab.bouncer
    password = node.password(ORDERS_USER)
    node.set_password(ORDERS_USER, password)
    bouncer.admin("SHOW VERSION")
    secrets = [password, bouncer.admin_password_file.read_text().strip()]
    assert seen and not [args for args in seen for secret in secrets
                         if any(secret in arg for arg in args)]


def test_an_error_never_repeats_a_password() -> None:
    """What a failed command printed, and its command line, with each password as ***: those
    passed in its environment (a name with PASSWORD in it) and those named as secrets."""
    with pytest.raises(processes.LabError) as failed:
        processes.run(["sh", "-c", 'echo "refused: $SOME_PASSWORD" >&2; exit 1'],
                      env={"SOME_PASSWORD": "hunter2"})
    assert "hunter2" not in str(failed.value) and "refused: ***" in str(failed.value)
    with pytest.raises(processes.LabError) as failed:
        processes.run(["sh", "-c", "cat >&2; exit 1"], stdin="ALTER ROLE x PASSWORD 'p4ss';",
                      secrets=["p4ss"])
    assert "p4ss" not in str(failed.value) and "PASSWORD '***'" in str(failed.value)


def test_a_refused_password_change_does_not_echo_it(lab: LocalTarget) -> None:
    with pytest.raises(processes.LabError) as failed:
        lab.lab.primary.set_password("no_such_role", "s3cret-value")
    assert "no_such_role" in str(failed.value)
    assert "s3cret-value" not in str(failed.value) and "SCRAM-SHA-256$" not in str(failed.value)


def test_a_pgbouncer_that_dies_on_kill_is_started_again(lab: LocalTarget) -> None:
    """Debian's PgBouncer 1.18 now and then dies of a SIGSEGV on KILL (pgbouncer#1401): the
    next admin command starts it again and goes through, and a target lost meanwhile is lost
    again (both endpoints disabled), not silently back."""
    bouncer = lab.lab.bouncer
    before = int((bouncer.root / "pgbouncer.pid").read_text())
    os.kill(before, signal.SIGSEGV)
    wait_until(lambda: not bouncer.alive(), "pgbouncer to die", 10)
    try:
        bouncer.lose_target()
        assert bouncer.alive()
        assert int((bouncer.root / "pgbouncer.pid").read_text()) != before
        disabled = {line.split("|")[0] for line in bouncer.admin("SHOW DATABASES").splitlines()
                    if line.split("|")[-1] == "1"}
        assert {WRITER_DB, READER_DB} <= disabled, bouncer.admin("SHOW DATABASES")
    finally:
        bouncer.restore_target()
