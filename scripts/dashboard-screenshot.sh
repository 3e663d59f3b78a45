#!/usr/bin/env bash
# A screenshot of the shop's Grafana dashboard (deploy/compose/observability), taken with
# headless Chromium, for a game day's report: run it while the observability profile is up.
#
#   docker compose --profile observability up -d --build --wait
#   bash scripts/dashboard-screenshot.sh [OUT.png]       # default reports/dashboard-<time>.png
#
# GRAFANA_URL (default http://127.0.0.1:3000) is where Grafana answers; the dashboard is
# /d/chaos-shop in kiosk mode, seen as the anonymous viewer the profile allows, over the last
# DASHBOARD_FROM (default now-15m). Chromium is Debian's (`apt-get install chromium`, when
# root). Where Grafana does not answer (no Docker engine, no registry for its image), or no
# Chromium can be had, it says so and exits 0 with --skip-if-unavailable, 2 without.
set -euo pipefail
cd "$(dirname "$0")/.."
GRAFANA_URL=${GRAFANA_URL:-http://127.0.0.1:3000}
FROM=${DASHBOARD_FROM:-now-15m}
SKIP_IF_UNAVAILABLE=false
if [ "${1:-}" = --skip-if-unavailable ]; then
    SKIP_IF_UNAVAILABLE=true
    shift
fi
OUT=${1:-reports/dashboard-$(date +%Y%m%d-%H%M%S).png}
say() { echo "[dashboard-screenshot] $*"; }
unavailable() {
    if $SKIP_IF_UNAVAILABLE; then say "SKIPPED: $*"; exit 0; fi
    say "$*"; exit 2
}

if ! curl -sf -m 5 -o /dev/null "$GRAFANA_URL/api/health"; then
    unavailable "no Grafana answers at $GRAFANA_URL (start it: docker compose --profile" \
        "observability up -d); no screenshot taken"
fi
if ! curl -sf -m 5 -o /dev/null "$GRAFANA_URL/api/dashboards/uid/chaos-shop"; then
    unavailable "Grafana at $GRAFANA_URL has no dashboard chaos-shop (is it the profile's," \
        "with anonymous viewers?)"
fi

CHROMIUM=$(command -v chromium || command -v chromium-browser || true)
if [ -z "$CHROMIUM" ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    say "installing Debian's chromium"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null
    CHROMIUM=$(command -v chromium || true)
fi
[ -n "$CHROMIUM" ] || unavailable "no chromium here (apt-get install chromium)"

mkdir -p "$(dirname "$OUT")"
PROFILE_DIR=$(mktemp -d)  # a new empty profile each time: no state, no first-run prompts
trap 'rm -rf "$PROFILE_DIR"' EXIT
URL="$GRAFANA_URL/d/chaos-shop?kiosk&from=$FROM&to=now&refresh="
say "$URL -> $OUT"
# --virtual-time-budget lets the panels query and draw before the picture is taken.
timeout 120 "$CHROMIUM" --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
    --disable-background-networking --disable-component-update --disable-sync \
    --user-data-dir="$PROFILE_DIR" --hide-scrollbars --virtual-time-budget=15000 \
    --window-size=1600,1200 --screenshot="$OUT" "$URL" >/dev/null 2>&1 || true
[ -s "$OUT" ] || { say "chromium wrote no screenshot to $OUT"; exit 1; }
say "saved $OUT ($(stat -c %s "$OUT") bytes)"
