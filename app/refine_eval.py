"""Temporal refinement on a labelled recording: ``python -m app.refine_eval``.

    python -m app.refine_eval [--source demo] [--labels PATH] [--model PATH] [--fit] [--json OUT]

Runs the app's estimator (hand finding, crop, network, with ``--fit`` the model fit;
``models.estimator``) over every frame of a labelled source (default: the shipped demo
recording and its labels), then replays the estimator's joints through the temporal
refinement with each stage off and on (``app.refine.evaluate_refinement``: off, hierarchical
refinement only, One Euro only, both; each stage with the app's settings,
``app.refine.temporal_refiner_config``, so with ``--fit`` the filter's higher speed term) and
prints the mean joint error (mm) and the jitter
(mean acceleration, mm/frame²) and acceleration error against the labels of each. Frames without a hand or without labels are skipped (the
sequence is cut there; the demo has a hand in every frame).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np


def main(argv: list[str] | None = None) -> int:
    from app.__main__ import resolve_source
    from app.refine import evaluate_refinement, temporal_refiner_config
    from models.estimator import Estimator, EstimatorConfig, load_predictor
    from sources import open_source

    ap = argparse.ArgumentParser(prog="python -m app.refine_eval", description=__doc__.split("\n")[0])
    ap.add_argument("--source", default="demo")
    ap.add_argument("--labels", default=None, help="labels .jsonl (default: beside the demo recording)")
    ap.add_argument("--model", type=Path, default=Path("models/weights/deephps.onnx"))
    ap.add_argument("--fit", action="store_true", help="the app's --fit: the hand model fitted to the depth")
    ap.add_argument("--json", type=Path, default=None)
    a = ap.parse_args(argv)
    spec = resolve_source(a.source)
    labels = a.labels
    if labels is None and spec.endswith(".db3"):
        labels = str(Path(spec).with_name(Path(spec).stem + ".labels.jsonl"))
    est = Estimator(load_predictor(a.model, "cpu"), EstimatorConfig(fit=a.fit))
    pred, lab, depth, stamps = [], [], [], []
    intr = None
    with open_source(spec, labels=labels) as src:
        for f in src:
            e = est(f.depth_mm, f.intrinsics)
            if not e.hand_found or f.labels is None or f.labels.layout != "canonical":
                continue
            pred.append(e.joints_mm)
            lab.append(f.labels.xyz_mm)
            depth.append(f.depth_mm)
            stamps.append(f.timestamp_ms)
            intr = f.intrinsics
    if len(pred) < 3:
        print("error: fewer than 3 labelled frames with a hand", file=sys.stderr)
        return 2
    r = evaluate_refinement(np.array(pred), np.array(lab), depth, intr, np.array(stamps),
                            temporal_refiner_config(a.fit))
    print(f"{len(pred)} frames of {spec}; model {a.model}{' + fit' if a.fit else ''}")
    print(f"{'mode':<10}{'error mm':>10}{'jitter':>10}{'accel err':>11}{'ms/frame':>10}")
    for mode, v in r.items():
        if mode == "labels":
            continue
        print(f"{mode:<10}{v['mean_error_mm']:10.2f}{v['jitter_mm_per_frame2']:10.2f}"
              f"{v['accel_error_mm_per_frame2']:11.2f}{v['ms_per_frame']:10.2f}")
    print(f"labels' own jitter: {r['labels']['jitter_mm_per_frame2']:.2f} mm/frame²")
    if a.json:
        a.json.write_text(json.dumps(r, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
