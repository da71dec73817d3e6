#!/usr/bin/env bash
# docs/app_viewer.png: frame N of the app's viewer on the demo recording, under Xvfb.
# Usage: bash scripts/app_screenshot.sh [N=75]
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-75}
tmp=$(mktemp -d)
xvfb-run -a -s "-screen 0 1920x1080x24" .venv/bin/python -m app --max-frames "$N" --as-fast-as-possible \
    --window 1280x720 --video "$tmp/run.mp4" > /dev/null
.venv/bin/python - "$tmp/run.mp4" <<'PY'
import sys, cv2
cap = cv2.VideoCapture(sys.argv[1]); last = None
while True:
    ok, f = cap.read()
    if not ok:
        break
    last = f
cv2.imwrite("docs/app_viewer.png", last)
print("docs/app_viewer.png")
PY
rm -rf "$tmp"
