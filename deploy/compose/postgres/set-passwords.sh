#!/usr/bin/env bash
# The credential-rotation fault's first step (chaos_lab.targets.compose), on the writer:
# new passwords for the app roles from POSTGRES_ORDERS_PASSWORD and POSTGRES_CATALOG_PASSWORD
# (handed over with `docker compose exec -e NAME`: from the caller's environment, never on a
# command line), then their sessions ended, so that new connections meet the new password
# while its source (the password files, PgBouncer's auth file) still has the old one.
set -euo pipefail
: "${POSTGRES_ORDERS_PASSWORD:?set POSTGRES_ORDERS_PASSWORD}"
: "${POSTGRES_CATALOG_PASSWORD:?set POSTGRES_CATALOG_PASSWORD}"
psql -v ON_ERROR_STOP=1 -U postgres -d postgres -XAtq <<'SQL'
\getenv orders_password POSTGRES_ORDERS_PASSWORD
\getenv catalog_password POSTGRES_CATALOG_PASSWORD
ALTER ROLE shop_orders PASSWORD :'orders_password';
ALTER ROLE shop_catalog PASSWORD :'catalog_password';
SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
    WHERE usename IN ('shop_orders', 'shop_catalog');
SQL
