#!/bin/sh
# PgBouncer's auth file: the owner (`shop`) and the admin console (`pgbouncer`) with
# POSTGRES_PASSWORD, the app roles (`shop_orders`, `shop_catalog`) with their password from
# the services' password files when there are (deploy/compose/secrets/write.sh: the same
# source the services read, so that a rotated password survives a restart), else from
# POSTGRES_ORDERS_PASSWORD / POSTGRES_CATALOG_PASSWORD, themselves defaulting to the owner's.
# Run by start.sh, and by the credential-rotation fault once it has rewritten the files (then
# SIGHUP: pgbouncer re-reads the file).
set -eu
RUN_DIR="${PGBOUNCER_RUN_DIR:-/tmp/pgbouncer}"
SECRETS_DIR="${SECRETS_DIR:-/run/chaos-shop}"
umask 077
mkdir -p "$RUN_DIR"
# userlist.txt quotes with double quotes; a double quote inside is doubled.
user() { printf '"%s" "%s"\n' "$1" "$(printf '%s' "$2" | sed 's/"/""/g')"; }
role_password() {  # ROLE DEFAULT: the role's file (first line) when it has one, else DEFAULT
    if [ -s "$SECRETS_DIR/$1/password" ]; then
        head -n 1 "$SECRETS_DIR/$1/password"
    else
        printf '%s' "$2"
    fi
}
orders=$(role_password shop_orders "${POSTGRES_ORDERS_PASSWORD:-$POSTGRES_PASSWORD}")
catalog=$(role_password shop_catalog "${POSTGRES_CATALOG_PASSWORD:-$POSTGRES_PASSWORD}")
{
    user shop "$POSTGRES_PASSWORD"
    user shop_orders "$orders"
    user shop_catalog "$catalog"
    user pgbouncer "$POSTGRES_PASSWORD"
} > "$RUN_DIR/userlist.txt.new"
mv "$RUN_DIR/userlist.txt.new" "$RUN_DIR/userlist.txt"
