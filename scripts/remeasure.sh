#!/usr/bin/env bash
# Re-run every measurement behind the README's results and speed tables for the shipped
# default model (models/weights/deephps.pt and its .onnx engine), writing docs/results/*.json,
# docs/success_curves.png, the real-frame pictures and docs/app_viewer.png. Run it after
# `python -m models.ship ...` with nothing else loading the machine (12-45 min on 2 cores before
# the --fit runs were added, which take about 40 more since session 12).
#
# Needs the whole-frame splits (README, "Through the app's pipeline"):
#   python -m models.synth generate --split test --frames 2000 --out data/synth_frames --full-frames
#   python -m models.synth generate --split val --frames 1000 --out data/synth_frames --full-frames
# and renders the 600-frame demo into $DEMO600 (default /tmp/demo600) when it is missing.
# The bench runs write /tmp/bench_{r4,fit,r1,sp,sr305}_{1,2,3}.json (the README quotes their
# median); the median runs of the default and of --fit are copied to docs/results/app_bench_demo.json
# and app_bench_demo_fit.json.
# Usage: bash scripts/remeasure.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
M=models/weights/deephps.pt
E=models/weights/deephps.onnx
R=docs/results
DEMO600=${DEMO600:-/tmp/demo600}
DEMO="app/assets/demo.db3 --labels app/assets/demo.labels.jsonl"
NYU=nyu:../shared/data/nyu_sample
for split in test val; do
    [ -d "data/synth_frames/$split" ] || { echo "missing data/synth_frames/$split (see the header)" >&2; exit 2; }
done
[ -d "$DEMO600" ] || $PY -m app.demo_data --png "$DEMO600" --frames 600 --seed 11

step() { echo "== $(date -u +%H:%M:%S) $*"; }

step "synthetic test split, crops (ensemble; one crop is the model card's)"
$PY -m models.evaluate --model $M --json $R/test_rotations4.json
step "robustness: test crops with near surfaces widened by 2 patch pixels (5 mm, as a Kinect v1), one crop"
$PY -m models.evaluate --model $M --rotations 1 --fatten 2 --json $R/test_fatten2_rotations1.json
step "the app's own finder on whole test frames"
$PY -m models.evaluate --model $M --data data/synth_frames/test --detect --json $R/detect_test_spot.json
$PY -m models.evaluate --model $M --data data/synth_frames/test --detect --no-spot --json $R/detect_test_nospot.json
step "the validation frames as one tracked sequence of jumps, with and without the spotter"
$PY -m models.evaluate --model $E --data data/synth_frames/val --detect --track --json $R/detect_val_track.json
$PY -m models.evaluate --model $E --data data/synth_frames/val --detect --track --no-spot --json $R/detect_val_track_nospot.json
for r in 4 1; do
    step "through the pipeline, two passes, rotations $r"
    $PY -m models.evaluate --model $M --data data/synth_frames/test --rotations $r --json $R/frames_test_rotations$r.json
    $PY -m models.evaluate --model $M --data data/synth_frames/val --rotations $r --json $R/frames_val_rotations$r.json
    # shellcheck disable=SC2086  # DEMO is two arguments
    $PY -m models.evaluate --model $E --data $DEMO --rotations $r --json $R/demo_rotations$r.json
    $PY -m models.evaluate --model $E --data "$DEMO600" --rotations $r --json $R/demo600_rotations$r.json
    $PY -m models.evaluate --model $E --data $NYU --rotations $r --json $R/nyu1_rotations$r.json
done
step "one pass, no ensemble (the last line of each)"
for d in "$DEMO" "$DEMO600" "$NYU"; do
    # shellcheck disable=SC2086
    $PY -m models.evaluate --model $E --data $d --single-pass --rotations 1 2>&1 | tail -1
done
for d in data/synth_frames/test data/synth_frames/val; do   # batches of crops: the .pt, not the batch-1 engine
    $PY -m models.evaluate --model $M --data $d --single-pass --rotations 1 2>&1 | tail -1
done
step "model fit (--fit): test crops, recordings, NYU frame 1"
$PY -m models.evaluate --model $M --fit --json $R/test_rotations4_fit.json
$PY -m models.evaluate --model $M --rotations 1 --max-frames 2000 --fit --json $R/test2000_rotations1_fit.json
$PY -m models.evaluate --model $M --rotations 1 --max-frames 2000 --json $R/test2000_rotations1_nofit.json
# shellcheck disable=SC2086
$PY -m models.evaluate --model $E --data $DEMO --fit --json $R/demo_rotations4_fit.json
$PY -m models.evaluate --model $E --data "$DEMO600" --fit --json $R/demo600_rotations4_fit.json
$PY -m models.evaluate --model $E --data $NYU --fit --json $R/nyu1_rotations4_fit.json
for fit in nofit fit; do   # whole frames: the pipeline from the generator's centres
    flag=$([ $fit = fit ] && echo --fit || true)
    $PY -m models.evaluate --model $M --data data/synth_frames/test $flag --json $R/frames_test_rotations4_$fit.json
done
# the app's own finder and spotter (detect_test.json, detect_test_nofit.json, detect_test_fit.json: sessions 10 and 12)
$PY -m models.evaluate --model $M --data data/synth_frames/test --detect --fit --json $R/detect_test_spot_fit.json
step "temporal refinement on the demo, without and with the fit"
$PY -m app.refine_eval --json $R/refine_demo.json
$PY -m app.refine_eval --fit --json $R/refine_demo_fit.json
step "pictures: real frames and the viewer"
$PY -m app.real_pictures
$PY -m app.real_pictures --fit --out docs/real_frames_fit.png
bash scripts/app_screenshot.sh
step "speed, three runs each"
for i in 1 2 3; do   # the default and --fit interleaved: the machine's speed drifts
    $PY -m app bench --max-frames 1000 --json "/tmp/bench_r4_$i.json"
    $PY -m app bench --max-frames 1000 --fit --json "/tmp/bench_fit_$i.json"
done
# The median run (by FPS) of each is the one kept in docs/results.
keep_median() {
    $PY - "$@" <<'PY'
import json, shutil, sys
runs = sorted(sys.argv[2:], key=lambda p: json.load(open(p))["fps"])
shutil.copyfile(runs[1], sys.argv[1])
print(sys.argv[1], "from", runs[1])
PY
}
keep_median "$R/app_bench_demo.json" /tmp/bench_r4_{1,2,3}.json
keep_median "$R/app_bench_demo_fit.json" /tmp/bench_fit_{1,2,3}.json
for i in 1 2 3; do $PY -m app bench --max-frames 1000 --rotations 1 --json "/tmp/bench_r1_$i.json"; done
for i in 1 2 3; do $PY -m app bench --max-frames 1000 --single-pass --rotations 1 --json "/tmp/bench_sp_$i.json"; done
for i in 1 2 3; do $PY -m app bench --source sr305 --max-frames 1000 --json "/tmp/bench_sr305_$i.json"; done
step "speed: the viewer under Xvfb (FPS and draw time), the engine alone"
for i in 1 2 3; do xvfb-run -a $PY -m app --max-frames 300 --as-fast-as-possible 2>&1 | grep -E "FPS|^draw"; done
for i in 1 2 3; do $PY -m export bench --weights $M --runs 1000 2>&1 | tail -3; done
step "success curves of the default and the compared methods (one crop)"
$PY -m models.evaluate --model $M --model models/weights/compare/*.pt --max-frames 2000 --rotations 1 \
    --curve docs/success_curves.png --json $R/curves_2000.json
step "done"
