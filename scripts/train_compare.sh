#!/usr/bin/env bash
# The comparison runs of the README table: every method and ablation at the same budget
# (STEPS steps of BATCH crops, one CPU thread each), one after another, resumable.
# Usage: nohup bash scripts/train_compare.sh > logs/compare.log 2>&1 &
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
STEPS=${STEPS:-1500}
BATCH=${BATCH:-32}
common=(--steps "$STEPS" --batch "$BATCH" --workers 0 --threads 1 --val-every 500 --warmup 100)
run() { local name=$1; shift; "$PY" -m models.train --name "$name" --out "runs/compare/$name" "${common[@]}" "$@"; }
run deephps            --method deephps
run direct_joints      --method direct_joints                     # SDNet's baseline (no SD loss)
run sdnet              --method sdnet
run deepmodel          --method deepmodel                         # FK layer + limit loss
run deepmodel_nolimit  --method deepmodel --limit-weight 0        # FK layer, no limit loss
run direct_params      --method direct_params
run hand3d             --method hand3d
run hand3d_refine      --method hand3d --refine-tsdf
