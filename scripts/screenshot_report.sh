#!/usr/bin/env bash
# Render a run's report.html in headless Chromium and save a PNG, to check what a person sees.
#   scripts/screenshot_report.sh runs/demo/report.html report.png
# Needs Debian's chromium (apt-get install chromium). The report is self-contained, so no
# network is needed; the flags keep Chromium from reaching out at start-up.
set -euo pipefail
html=$(realpath "$1")
out=$(realpath -m "${2:-report.png}")
profile=$(mktemp -d)
trap 'rm -rf "$profile"' EXIT
chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
  --disable-background-networking --disable-component-update --disable-sync \
  --user-data-dir="$profile" --hide-scrollbars --window-size=1100,${W2S_SHOT_HEIGHT:-1700} \
  --screenshot="$out" "file://$html" >/dev/null 2>&1
echo "wrote $out"
