#!/usr/bin/env bash
# First start of the first writer (the image runs this once, after initdb): the shop's roles
# and database, replication over the network, and synchronous commits, as the lab has them: a
# commit the writer acknowledged survives its crash.
#
# Least privilege (README.md): `shop` owns the database and the tables and only the migrate
# step logs in as it; the services log in as `shop_orders` (orders, order-worker) and
# `shop_catalog` (catalog, read only), granted their rights by migration 0004. Roles are
# cluster-wide: a replica's base backup brings them along, passwords included.
set -euo pipefail

# Each role's password is its own variable (docker-compose.yml requires each; none falls back
# to another), set at this first start only (changed later: ALTER ROLE, or down -v). They
# reach psql through its environment (\getenv), never its command line.
: "${POSTGRES_OWNER_PASSWORD:?set POSTGRES_OWNER_PASSWORD}"
: "${POSTGRES_ORDERS_PASSWORD:?set POSTGRES_ORDERS_PASSWORD}"
: "${POSTGRES_CATALOG_PASSWORD:?set POSTGRES_CATALOG_PASSWORD}"
psql -v ON_ERROR_STOP=1 -U postgres -d postgres <<'SQL'
\getenv password POSTGRES_OWNER_PASSWORD
\getenv orders_password POSTGRES_ORDERS_PASSWORD
\getenv catalog_password POSTGRES_CATALOG_PASSWORD
CREATE ROLE shop LOGIN PASSWORD :'password';
CREATE ROLE shop_orders LOGIN PASSWORD :'orders_password';
CREATE ROLE shop_catalog LOGIN PASSWORD :'catalog_password';
CREATE DATABASE shop OWNER shop;
-- the roles get their rights on the tables from migration 0004; nothing else of the database
REVOKE ALL ON DATABASE shop FROM PUBLIC;
GRANT CONNECT ON DATABASE shop TO shop_orders, shop_catalog;
ALTER SYSTEM SET synchronous_standby_names = '*';
SQL

echo "host replication all all scram-sha-256" >> "$PGDATA/pg_hba.conf"
