#!/usr/bin/env bash
# The main job: set-up, the local lab, and both experiments with --compare (fragile settings,
# then resilient ones), printing the before/after tables. Reports (JSON + PNG timelines) go to
# reports/. Extra arguments go to both experiments, e.g. `--preset short` or `--scale 10`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
lab_dir=${CHAOS_LAB_DIR:-.lab}
trap '.venv/bin/chaos-shop lab down --dir "$lab_dir" >/dev/null 2>&1 || true' EXIT
.venv/bin/chaos-shop lab up --dir "$lab_dir"
.venv/bin/chaos-shop experiment run failover --compare --dir "$lab_dir" "$@"
.venv/bin/chaos-shop experiment run db-outage --compare --dir "$lab_dir" "$@"
