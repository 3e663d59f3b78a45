#!/usr/bin/env bash
# First start of the first writer (the image runs this once, after initdb): the shop's role
# and database (the services migrate the schema themselves), replication over the network, and
# synchronous commits, as the lab has them: a commit the writer acknowledged survives its crash.
set -euo pipefail

psql -v ON_ERROR_STOP=1 -U postgres -d postgres -v password="$POSTGRES_PASSWORD" <<'SQL'
CREATE ROLE shop LOGIN PASSWORD :'password';
CREATE DATABASE shop OWNER shop;
ALTER SYSTEM SET synchronous_standby_names = '*';
SQL

echo "host replication all all scram-sha-256" >> "$PGDATA/pg_hba.conf"
