#!/usr/bin/env bash
# The compose smoke test: the whole shop as containers (docker-compose.yml, the orders service a
# fleet of two replicas behind nginx), short experiments against it with the resilient
# settings, their verdicts required, and the stack always torn down (volumes too), whatever
# happened.
#
#   bash scripts/compose-smoke.sh                          # exit 0: every verdict held
#   bash scripts/compose-smoke.sh --skip-if-unavailable    # CI: exit 0 with a message when no
#                                                          # Docker engine can be had here
#
# 1. up: with a Docker engine that reaches a registry, plain `docker compose up -d --build
#    --wait`; without one (as root), ../shared/tools/compose-standins/up, which installs
#    Debian's Docker, builds local stand-ins for the upstream images and brings the stack up
#    (COMPOSE_SMOKE_MODE=plain|standins forces either); every password of the stack its own,
#    random, made for this run (in its environment: never on a command line, never in a file
#    of the repository), then least privilege checked on the writer: the catalog's role cannot
#    write the products, the orders' role reads but writes neither stock, nor an order, nor a
#    price (the order functions alone do, migration 0007);
# 2. `chaos-shop experiment run failover --target compose --preset short`;
# 3. down and up again without -v: after that (odd) failover the nodes have swapped roles, and
#    PgBouncer must route writes to the new writer: an order must be confirmed (201);
# 4. `chaos-shop experiment run db-outage --target compose --preset short`, then the same for
#    the fleet's faults: fleet-crash (every replica's worker killed during an outage),
#    rolling-deploy (each replica's worker replaced under traffic) and aws-slow (SQS answering
#    late during an outage);
# 5. with a registry (plain mode, the observability profile up): a screenshot of the Grafana
#    dashboard (scripts/dashboard-screenshot.sh); skipped, with a message, with the stand-ins.
# A verdict (result.json, the AFTER run) holds with no failed request (none whose last try
# failed: the traffic retries like a client), no false answer (the audit), no lost order, the
# steady state before, healthy after, stock consistent. Timings are printed at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
STANDINS=${COMPOSE_STANDINS:-$ROOT/../shared/tools/compose-standins/up}
STANDINS_WORK=${WORK:-/tmp/compose-standins}  # where that tool keeps dockerd's pid
MODE=${COMPOSE_SMOKE_MODE:-auto}
SKIP_IF_UNAVAILABLE=false
[ "${1:-}" = --skip-if-unavailable ] && SKIP_IF_UNAVAILABLE=true
REPORTS=$ROOT/reports/compose-smoke/$(date +%Y%m%d-%H%M%S)
T0=$(date +%s)
TIMINGS=()
say() { echo "[compose-smoke $(date +%T)] $*"; }
timed() {  # timed LABEL COMMAND...: run it, remember how long it took
    local label=$1 start=$SECONDS
    shift
    "$@"
    TIMINGS+=("$(printf '%-28s %4ss' "$label" $((SECONDS - start)))")
}

# Each password docker-compose.yml requires (.env.example lists them), random, for this run,
# before the first compose command (compose reads none of its commands without them).
new_password() { python3 -c 'import secrets; print(secrets.token_hex(16))'; }
for variable in $(sed -n 's/^\([A-Z_]*_PASSWORD\)=.*/\1/p' .env.example); do
    export "$variable=$(new_password)"
done

engine_up() { docker info >/dev/null 2>&1; }
standins_usable() { [ -x "$STANDINS" ] && [ "$(id -u)" = 0 ]; }

# Where the stack can come from ----------------------------------------------------------------
ENGINE_BEFORE=false
engine_up && ENGINE_BEFORE=true
if [ "$MODE" = auto ]; then
    if $ENGINE_BEFORE && timeout 300 docker compose pull --ignore-buildable -q >/dev/null 2>&1; then
        MODE=plain
    elif standins_usable; then
        MODE=standins
    elif $ENGINE_BEFORE; then
        say "the Docker engine reaches no registry, and there is no $STANDINS to run as root"
        exit 1
    else
        message="no Docker engine here, and no $STANDINS (run as root) to start one"
        if $SKIP_IF_UNAVAILABLE; then
            say "SKIPPED: $message"
            exit 0
        fi
        say "$message"
        exit 2
    fi
fi
if $ENGINE_BEFORE && [ -n "$(docker compose ps -q 2>/dev/null)" ]; then
    say "a chaos-shop stack is running already; the smoke brings up and removes its own" \
        "(volumes included): take yours down first (docker compose down)"
    exit 1
fi
say "mode: $MODE; reports under ${REPORTS#"$ROOT"/}"

teardown() {
    local code=$? start=$SECONDS
    trap - EXIT INT TERM
    set +e
    say "teardown (exit $code so far)"
    if [ "$code" != 0 ] && engine_up; then
        # what went wrong, before it is gone: the state of every container, and the last
        # lines of each one that is not running or not healthy
        docker compose ps -a
        for service in $(docker compose ps -a --format '{{.Service}} {{.Status}}' \
                         | awk '!/\(healthy\)|Exited \(0\)/ {print $1}'); do
            say "logs of $service (the last 40 lines)"
            docker compose logs --no-color --tail 40 "$service" 2>&1
        done
    fi
    if engine_up; then
        docker compose --profile load --profile observability down -v --remove-orphans \
            --timeout 20 >/dev/null 2>&1 \
            || say "docker compose down failed"
    fi
    # dockerd goes too when the stand-in tool started it for this run
    if [ "$MODE" = standins ] && ! $ENGINE_BEFORE && [ -f "$STANDINS_WORK/dockerd.pid" ]; then
        pid=$(cat "$STANDINS_WORK/dockerd.pid")
        kill "$pid" 2>/dev/null
        for _ in $(seq 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
        rm -f "$STANDINS_WORK/dockerd.pid"
        say "dockerd ($pid) stopped"
    fi
    TIMINGS+=("$(printf '%-28s %4ss' teardown $((SECONDS - start)))")
    echo
    say "timings"
    printf '   %s\n' "${TIMINGS[@]}"
    printf '   %-28s %4ss\n' total $(($(date +%s) - T0))
    if [ "$code" = 0 ]; then say "PASSED"; else say "FAILED"; fi
    exit "$code"
}
trap teardown EXIT
trap 'exit 130' INT TERM

# The project, the host's psql (PgBouncer's admin console) -------------------------------------
timed "set-up (.venv, psql)" bash scripts/setup.sh
CHAOS=$ROOT/.venv/bin/chaos-shop
PY=$ROOT/.venv/bin/python

# 1. up ---------------------------------------------------------------------------------------
# With a registry the observability profile comes up too (Prometheus + Grafana: step 5's
# screenshot); the stand-ins have no image for either.
up_plain() {
    COMPOSE_PROFILES=observability docker compose up -d --build --wait --wait-timeout 300
}
up_standins() { "$STANDINS" "$ROOT"; }
say "1. up ($MODE)"
timed "up ($MODE)" "up_$MODE"
docker compose ps --format '   {{.Service}}: {{.Status}}'

# Least privilege: each role logs in with its own password (over TCP, as PgBouncer does), and
# only the owner may change the catalog. SQL as ROLE on the writer (`postgres` at first start).
as_role() {  # as_role ROLE PASSWORD SQL: the password through the environment (-e NAME)
    PGPASSWORD="$2" docker compose exec -T -e PGPASSWORD postgres psql -h 127.0.0.1 -U "$1" \
        -d shop -v ON_ERROR_STOP=1 -XAtqc "$3" 2>&1
}
denied() {  # denied ROLE PASSWORD SQL: the statement is refused for lack of a privilege
    local out
    if out=$(as_role "$@"); then
        say "$1 may: $3"; return 1
    fi
    case $out in
        *"permission denied"*|*"must be owner"*) echo "   $1 may not: $3";;
        *) say "$1: $3 failed, but not for a privilege: $out"; return 1;;
    esac
}
allowed() {  # allowed ROLE PASSWORD SQL
    local out
    out=$(as_role "$@") || { say "$1 may not: $3: $out"; return 1; }
    echo "   $1 may: $3"
}
privileges_hold() {
    allowed shop_catalog "$POSTGRES_CATALOG_PASSWORD" 'SELECT count(*) FROM products'
    denied shop_catalog "$POSTGRES_CATALOG_PASSWORD" 'UPDATE products SET stock = stock'
    denied shop_catalog "$POSTGRES_CATALOG_PASSWORD" 'DELETE FROM orders'
    # the orders' role reads; only the order functions write orders and stock (0007)
    allowed shop_orders "$POSTGRES_ORDERS_PASSWORD" 'SELECT count(*) FROM orders'
    denied shop_orders "$POSTGRES_ORDERS_PASSWORD" \
        'UPDATE products SET stock = stock, updated_at = now() WHERE false'
    denied shop_orders "$POSTGRES_ORDERS_PASSWORD" "UPDATE orders SET status = 'confirmed'"
    denied shop_orders "$POSTGRES_ORDERS_PASSWORD" 'UPDATE products SET price = 0'
    denied shop_orders "$POSTGRES_ORDERS_PASSWORD" 'DROP TABLE orders'
}
say "1b. least privilege in the database"
timed "least privilege" privileges_hold

# The verdict of one experiment: its AFTER run in result.json -----------------------------------
verdict() {  # verdict NAME: the experiment's report folder holds one result.json
    local result
    result=$(find "$REPORTS/$1" -name result.json | head -1)
    [ -n "$result" ] || { say "$1: no result.json under $REPORTS/$1"; return 1; }
    "$PY" - "$1" "$result" <<'PY'
import json
import sys

name, path = sys.argv[1], sys.argv[2]
after = next(run for run in json.load(open(path))["runs"] if run["label"] == "AFTER")
counts = after["counts"]
checks = {
    "failed requests": after["failed"] == 0,  # the last try of each request
    "unexpected order answers": counts["write_other"] == 0,
    "false answers": after["false_answers"] == 0,  # None: not audited
    "lost orders": after["lost"] == 0,
    "steady state before": after["steady_before"],
    "healthy after": after["healthy_after"],
    "stock consistent": after["stock_consistent"] is not False,
}
print(f"VERDICT {name}: reads ok={counts['read_ok']} cache={counts['read_cache']} "
      f"fail={counts['read_fail']}; writes 201={counts['write_ok']} "
      f"202={counts['write_queued']} 409={counts['write_409']} fail={counts['write_fail']} "
      f"(tries); {after['retries']} retries, {after['failed']} failed; false answers "
      f"{after['false_answers']}; lost {after['lost']} of {after['accepted']}; during the "
      f"fault p50 {after['p50_during_fault_ms']} ms, p99 {after['p99_during_fault_ms']} ms; "
      f"fault to last failure {after['recovery_seconds']} s; {path}")
broken = [what for what, held in checks.items() if not held]
print(f"VERDICT {name}: " + ("HELD" if not broken else "BROKEN: " + ", ".join(broken)))
sys.exit(1 if broken else 0)
PY
}

experiment() {  # experiment NAME: run it against compose, then require its verdict
    "$CHAOS" experiment run "$1" --target compose --preset short --report-dir "$REPORTS/$1"
    verdict "$1"
}

# 2. failover ---------------------------------------------------------------------------------
say "2. failover"
timed "experiment failover" experiment failover

# 3. down and up after an odd number of failovers -----------------------------------------------
restart_and_order() {
    docker compose down --timeout 20
    docker compose up -d --wait --wait-timeout 300
    docker compose logs pgbouncer | grep 'route.sh:' | tail -1
    local deadline=$((SECONDS + 90)) port
    for port in 8002 8003; do  # each orders replica
        until curl -sf -o /dev/null "http://127.0.0.1:$port/health/deep"; do
            [ $SECONDS -lt $deadline ] || { say "orders on $port: /health/deep never passed"; \
                curl -s "http://127.0.0.1:$port/health/deep"; echo; return 1; }
            sleep 1
        done
    done
    local answer
    answer=$(curl -s -w ' %{http_code}' -X POST -H 'Content-Type: application/json' \
        -d '{"product_id":1,"quantity":1}' http://127.0.0.1:8080/orders || true)
    echo "   POST /orders -> $answer"
    [ "${answer##* }" = 201 ] || { say "the order was not confirmed at once (201)"; return 1; }
}
say "3. down and up again (the roles have swapped): writes still confirmed"
timed "down + up + order (201)" restart_and_order

# 4. db-outage, then the fleet's faults ----------------------------------------------------------
say "4. db-outage"
timed "experiment db-outage" experiment db-outage
for fault in fleet-crash rolling-deploy aws-slow; do
    say "4. $fault"
    timed "experiment $fault" experiment "$fault"
done

# 5. the dashboard as it saw the game day -----------------------------------------------------
say "5. the Grafana dashboard, headless Chromium"
timed "dashboard screenshot" bash scripts/dashboard-screenshot.sh --skip-if-unavailable \
    "$REPORTS/dashboard.png"
