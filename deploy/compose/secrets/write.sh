#!/bin/sh
# The app roles' passwords where the services read them (SHOP_DATABASE_PASSWORD_FILE): one
# small volume per role, mounted only where that role logs in (its service, and PgBouncer),
# as a Secrets Manager secret is on AWS. The one-shot `secrets` runs this before PgBouncer
# and the services start:
#   write.sh            each role's files written from POSTGRES_ORDERS_PASSWORD /
#                       POSTGRES_CATALOG_PASSWORD if it has none yet: on the first start of
#                       empty volumes, as the database's roles are (initdb/10-shop.sh);
#   write.sh --rotate   rewritten from those variables: the credential-rotation fault's
#                       second step (chaos_lab.targets.compose), after ALTER ROLE on the writer.
# Two copies of each password, each 0600 (created under umask 077) and owned by its one
# reader: `password` by the services' user (SERVICE_UID, the images' 10001), and
# `password.pgbouncer` by PgBouncer's (PGBOUNCER_USER, the user its image runs as). A file is
# replaced in one rename: a reader never sees half a password.
set -eu
for variable in POSTGRES_ORDERS_PASSWORD POSTGRES_CATALOG_PASSWORD; do
    if [ -z "$(printenv "$variable" || true)" ]; then
        echo "secrets: $variable is not set: set it (.env.example) before docker compose up" >&2
        exit 1
    fi
done
SECRETS_DIR="${SECRETS_DIR:-/run/chaos-shop}"
SERVICE_UID="${SERVICE_UID:-10001}"
PGBOUNCER_USER="${PGBOUNCER_USER:-postgres}"
ROTATE=false
[ "${1:-}" = --rotate ] && ROTATE=true
umask 077

owner() {  # USER: its uid:gid (a number stands for itself, with a group of the same number)
    case $1 in
        *[!0-9]*) echo "$(id -u "$1"):$(id -g "$1")";;
        *) echo "$1:$1";;
    esac
}

put() {  # FILE PASSWORD USER: written 0600, then given to its reader (when we may: as root)
    printf '%s\n' "$2" > "$1.new"
    if [ "$(id -u)" = 0 ]; then
        chown "$(owner "$3")" "$1.new"
    fi
    mv "$1.new" "$1"
}

write() {  # ROLE PASSWORD
    folder="$SECRETS_DIR/$1"
    if [ -s "$folder/password" ] && [ -s "$folder/password.pgbouncer" ] && ! $ROTATE; then
        echo "secrets: $1: kept (its password was written before)"
        return
    fi
    mkdir -p "$folder"
    # the folder is the volume's root: its readers must be able to enter it
    chmod 0755 "$folder"
    put "$folder/password" "$2" "$SERVICE_UID"
    put "$folder/password.pgbouncer" "$2" "$PGBOUNCER_USER"
    echo "secrets: $1: written"
}
write shop_orders "$POSTGRES_ORDERS_PASSWORD"
write shop_catalog "$POSTGRES_CATALOG_PASSWORD"
