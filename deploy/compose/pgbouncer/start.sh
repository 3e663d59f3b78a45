#!/bin/sh
# The pgbouncer container's entrypoint: the user list from the environment (no password in
# the repository), the endpoints' routes, then pgbouncer in the foreground.
set -eu
: "${POSTGRES_PASSWORD:?set POSTGRES_PASSWORD}"
HERE=$(dirname "$0")
RUN_DIR="${PGBOUNCER_RUN_DIR:-/tmp/pgbouncer}"
umask 077
mkdir -p "$RUN_DIR"
# userlist.txt quotes with double quotes; a double quote inside is doubled.
password=$(printf '%s' "$POSTGRES_PASSWORD" | sed 's/"/""/g')
printf '"shop" "%s"\n"pgbouncer" "%s"\n' "$password" "$password" > "$RUN_DIR/userlist.txt"
sh "$HERE/route.sh" "${WRITER_HOST:-postgres}" "${READER_HOST:-postgres-replica}"
exec pgbouncer "${PGBOUNCER_INI:-$HERE/pgbouncer.ini}"
