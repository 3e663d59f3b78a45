#!/bin/sh
# Point the writer endpoint (`shop`) and the reader endpoint (`shop_reader`) at PostgreSQL
# hosts: `route.sh WRITER_HOST READER_HOST`. Takes effect when pgbouncer reloads (SIGHUP);
# the failover's DNS flip (chaos_lab.targets.compose).
set -eu
if [ $# -ne 2 ]; then
    echo "usage: route.sh WRITER_HOST READER_HOST" >&2
    exit 2
fi
RUN_DIR="${PGBOUNCER_RUN_DIR:-/tmp/pgbouncer}"
mkdir -p "$RUN_DIR"
printf 'shop = host=%s port=5432 dbname=shop\nshop_reader = host=%s port=5432 dbname=shop\n' \
    "$1" "$2" > "$RUN_DIR/databases.ini.new"
mv "$RUN_DIR/databases.ini.new" "$RUN_DIR/databases.ini"
echo "route.sh: shop -> $1, shop_reader -> $2"
