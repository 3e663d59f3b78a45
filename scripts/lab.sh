#!/usr/bin/env bash
# The main job: set-up, the local lab, then every experiment of the catalog (chaos-shop
# gameday --compare): for each, the fragile (BEFORE) settings then the resilient (AFTER) ones,
# the before/after table with each tolerance of its hypothesis, measured, ok or FAIL; then one
# verdict table. Exits non-zero when an AFTER run violates its hypothesis (BEFORE failing is
# the point), when a steady state before was not met, or when an experiment file is malformed.
# Journals (result.json, junit.xml for CI, timeline.png, report.html) go to reports/, and the
# gameday's one page with every experiment to reports/gameday-<time>/report.html. Extra
# arguments go to gameday, e.g. `--preset short` or `--scale 10`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
lab_dir=${CHAOS_LAB_DIR:-.lab}
trap '.venv/bin/chaos-shop lab down --lab-dir "$lab_dir" >/dev/null 2>&1 || true' EXIT
.venv/bin/chaos-shop lab up --lab-dir "$lab_dir"
.venv/bin/chaos-shop gameday --compare --lab-dir "$lab_dir" "$@"
