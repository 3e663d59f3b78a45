#!/bin/sh
# PgBouncer's auth file, each user with its own password: the owner (`shop`) from
# POSTGRES_OWNER_PASSWORD, the admin console (`pgbouncer`) from PGBOUNCER_ADMIN_PASSWORD, the
# app roles (`shop_orders`, `shop_catalog`) from PgBouncer's copy of their password file when
# there is one (deploy/compose/secrets/write.sh: the same source the services read, so that a
# rotated password survives a restart), else from POSTGRES_ORDERS_PASSWORD /
# POSTGRES_CATALOG_PASSWORD. No password falls back to another. Run by start.sh, and by the
# credential-rotation fault once it has rewritten the files (then SIGHUP: pgbouncer re-reads
# the file). The file is 0600 (umask), PgBouncer's own.
set -eu
RUN_DIR="${PGBOUNCER_RUN_DIR:-/tmp/pgbouncer}"
SECRETS_DIR="${SECRETS_DIR:-/run/chaos-shop}"
umask 077
mkdir -p "$RUN_DIR"
# userlist.txt quotes with double quotes; a double quote inside is doubled.
user() { printf '"%s" "%s"\n' "$1" "$(printf '%s' "$2" | sed 's/"/""/g')"; }
role_password() {  # ROLE VARIABLE: PgBouncer's copy of the role's file (first line), else $VARIABLE
    if [ -s "$SECRETS_DIR/$1/password.pgbouncer" ]; then
        head -n 1 "$SECRETS_DIR/$1/password.pgbouncer"
    elif [ -n "$(printenv "$2" || true)" ]; then
        printenv "$2"
    else
        echo "pgbouncer: no password for $1: neither $SECRETS_DIR/$1/password.pgbouncer nor $2" >&2
        exit 1
    fi
}
orders=$(role_password shop_orders POSTGRES_ORDERS_PASSWORD)
catalog=$(role_password shop_catalog POSTGRES_CATALOG_PASSWORD)
{
    user shop "${POSTGRES_OWNER_PASSWORD:?set POSTGRES_OWNER_PASSWORD}"
    user shop_orders "$orders"
    user shop_catalog "$catalog"
    user pgbouncer "${PGBOUNCER_ADMIN_PASSWORD:?set PGBOUNCER_ADMIN_PASSWORD}"
} > "$RUN_DIR/userlist.txt.new"
mv "$RUN_DIR/userlist.txt.new" "$RUN_DIR/userlist.txt"
