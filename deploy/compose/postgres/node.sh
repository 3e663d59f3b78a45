#!/usr/bin/env bash
# One PostgreSQL node of the compose pair (services postgres and postgres-replica), run as the
# image's entrypoint in front of its own docker-entrypoint.sh.
#
# The node decides its role at start, from its peer and from the data it has, so that the
# pair survives a failover and the old writer can come back as a replica:
#   - the peer is a writer: follow it; a base backup first when this node has no data, or when
#     its data is a writer's of its own (an old writer's data may have diverged: start over);
#   - otherwise start on the data it has; an empty node with NODE_ROLE=primary is initialised
#     by the image (initdb + initdb/*.sh), an empty NODE_ROLE=replica waits for a writer.
set -euo pipefail

: "${PEER_HOST:?set PEER_HOST}"
# The superuser's password (docker-compose.yml requires it; this says so again for a node
# started another way): replication between the nodes logs in with it.
if [ -z "${POSTGRES_PASSWORD:-}" ]; then
    echo "node: POSTGRES_PASSWORD is not set: set it (.env.example) before docker compose up" >&2
    exit 1
fi
ROLE="${NODE_ROLE:-primary}"
PGDATA="${PGDATA:-/var/lib/postgresql/data}"
export PGPASSWORD="$POSTGRES_PASSWORD" PGCONNECT_TIMEOUT=3

peer_is_writer() {
    [ "$(psql -h "$PEER_HOST" -U postgres -d postgres -XAtqc \
        'SELECT NOT pg_is_in_recovery()' 2>/dev/null)" = "t" ]
}

follow_peer() {
    echo "node: following the writer $PEER_HOST (fresh base backup)"
    find "$PGDATA" -mindepth 1 -delete
    # -R writes standby.signal and primary_conninfo (with the password from PGPASSWORD).
    gosu postgres pg_basebackup -h "$PEER_HOST" -U postgres -D "$PGDATA" -R -X stream \
        --checkpoint=fast
}

mkdir -p "$PGDATA"
chown postgres:postgres "$PGDATA"
chmod 700 "$PGDATA"

if [ "$ROLE" = replica ] && [ ! -s "$PGDATA/PG_VERSION" ]; then
    for _ in $(seq 120); do
        peer_is_writer && break
        sleep 1
    done
fi

if peer_is_writer; then
    if [ ! -s "$PGDATA/PG_VERSION" ] || [ ! -f "$PGDATA/standby.signal" ]; then
        follow_peer
    fi
elif [ "$ROLE" = replica ] && [ ! -s "$PGDATA/PG_VERSION" ]; then
    echo "node: no writer at $PEER_HOST to follow" >&2
    exit 1
fi

exec docker-entrypoint.sh "$@"
