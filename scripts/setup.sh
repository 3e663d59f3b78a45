#!/usr/bin/env bash
# Set-up shared by the test and lab commands, idempotent: the system packages the lab runs
# (PostgreSQL 15 server binaries, PgBouncer, nginx, wrk, and Chromium for the report's test)
# and the project's virtualenv.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
[ -x /usr/lib/postgresql/15/bin/postgres ] || need+=(postgresql-15)
command -v psql >/dev/null || need+=(postgresql-client-15)
command -v pgbouncer >/dev/null || [ -x /usr/sbin/pgbouncer ] || need+=(pgbouncer)
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || need+=(nginx-light)
command -v wrk >/dev/null || need+=(wrk)
# headless Chromium: the test that opens the HTML report (tests/test_html_report.py)
command -v chromium >/dev/null || need+=(chromium)
if [ ${#need[@]} -gt 0 ]; then
  echo "setup: installing ${need[*]}"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

# The project's virtualenv, from the locks (scripts/lock.sh): every file checked against its
# sha256 (--require-hashes), then the project itself, editable, with nothing more fetched
# (--no-deps, and --no-build-isolation: the build backend is the locked one). Done again
# when pyproject.toml or a lock changes (the stamp is their hash).
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
stamp=.venv/.installed-$(cat pyproject.toml requirements/build.txt requirements/dev.txt | sha1sum | cut -c1-12)
if [ ! -f "$stamp" ]; then
  echo "setup: installing the project into .venv (requirements/dev.txt, hashes required)"
  .venv/bin/python -m pip install -q --require-hashes -r requirements/build.txt
  .venv/bin/python -m pip install -q --require-hashes -r requirements/dev.txt
  .venv/bin/python -m pip install -q --no-deps --no-build-isolation -e .
  rm -f .venv/.installed-*
  touch "$stamp"
fi
