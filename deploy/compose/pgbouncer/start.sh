#!/bin/sh
# The pgbouncer container's entrypoint: the user list from the environment (no password in
# the repository), the endpoints' routes, then pgbouncer in the foreground.
#
# The users, on both endpoints: `shop` (the owner: the migrate step only), `shop_orders` (the
# orders service and the order-worker), `shop_catalog` (the catalog), and `pgbouncer` (the
# admin console), each with its own password. PgBouncer logs in to the node as the client's
# user with the same password (userlist.sh writes them); it never has the superuser's.
#
# The routes follow the nodes' roles, asked of the nodes themselves: after a failover the
# nodes keep their names while their roles swap, so `docker compose down && up` after an odd
# number of failovers has `postgres-replica` as the writer. The writer endpoint goes to
# whichever of WRITER_HOST and READER_HOST is not in recovery (WRITER_HOST first), the reader
# endpoint to the other one (asked as the owner); without a writer within ROUTE_WAIT_SECONDS,
# no start at all.
set -eu
for variable in POSTGRES_OWNER_PASSWORD PGBOUNCER_ADMIN_PASSWORD; do
    if [ -z "$(printenv "$variable" || true)" ]; then
        echo "pgbouncer: $variable is not set: set it (.env.example) before docker compose up" >&2
        exit 1
    fi
done
HERE=$(dirname "$0")
RUN_DIR="${PGBOUNCER_RUN_DIR:-/tmp/pgbouncer}"
FIRST="${WRITER_HOST:-postgres}"
SECOND="${READER_HOST:-postgres-replica}"
WAIT="${ROUTE_WAIT_SECONDS:-60}"
# The users and their passwords: the app roles' from their password files (a rotation
# survives a restart), else from the environment, as the node's init has them.
sh "$HERE/userlist.sh"

is_writer() {  # the node answers, and is not in recovery
    [ "$(PGPASSWORD="$POSTGRES_OWNER_PASSWORD" PGCONNECT_TIMEOUT=3 psql -h "$1" -p 5432 -U shop \
        -d shop -XAtqc 'SELECT NOT pg_is_in_recovery()' 2>/dev/null)" = t ]
}

waited=0
while :; do
    if is_writer "$FIRST"; then
        writer=$FIRST reader=$SECOND
        break
    elif is_writer "$SECOND"; then
        writer=$SECOND reader=$FIRST
        break
    elif [ "$waited" -ge "$WAIT" ]; then
        echo "pgbouncer: neither $FIRST nor $SECOND is a writer after ${WAIT}s: not starting" >&2
        exit 1
    fi
    sleep 1
    waited=$((waited + 1))
done
sh "$HERE/route.sh" "$writer" "$reader"
exec pgbouncer "${PGBOUNCER_INI:-$HERE/pgbouncer.ini}"
