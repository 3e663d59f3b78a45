#!/bin/sh
# The app roles' passwords where the services read them (SHOP_DATABASE_PASSWORD_FILE): one
# small volume per role, mounted only where that role logs in (its service, and PgBouncer),
# as a Secrets Manager secret is on AWS. The one-shot `secrets` runs this before PgBouncer
# and the services start:
#   write.sh            each file written from POSTGRES_ORDERS_PASSWORD / POSTGRES_CATALOG_PASSWORD
#                       (defaulting to POSTGRES_PASSWORD) if it has none yet: on the first start
#                       of empty volumes, as the database's roles are (initdb/10-shop.sh);
#   write.sh --rotate   both rewritten from those variables: the credential-rotation fault's
#                       second step (chaos_lab.targets.compose), after ALTER ROLE on the writer.
# A file is replaced in one rename: a reader never sees half a password.
set -eu
if [ -z "${POSTGRES_PASSWORD:-}" ]; then
    echo "secrets: POSTGRES_PASSWORD is not set: export it before docker compose up" >&2
    exit 1
fi
SECRETS_DIR="${SECRETS_DIR:-/run/chaos-shop}"
ROTATE=false
[ "${1:-}" = --rotate ] && ROTATE=true

write() {  # ROLE PASSWORD
    file="$SECRETS_DIR/$1/password"
    if [ -s "$file" ] && ! $ROTATE; then
        echo "secrets: $1: kept (its password was written before)"
        return
    fi
    mkdir -p "$SECRETS_DIR/$1"
    printf '%s\n' "$2" > "$file.new"
    # readable by the services' user and PgBouncer's, which are not root; the volume is
    # mounted only into the containers that log in as the role
    chmod 0444 "$file.new"
    mv "$file.new" "$file"
    echo "secrets: $1: written"
}
write shop_orders "${POSTGRES_ORDERS_PASSWORD:-$POSTGRES_PASSWORD}"
write shop_catalog "${POSTGRES_CATALOG_PASSWORD:-$POSTGRES_PASSWORD}"
