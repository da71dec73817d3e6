"""Which candidate object is the hand: a logistic score on what the pose network makes of it.

The hand finder (``models.handfind.find_hands``) can offer several objects; the estimator runs
the pose network on each one's crop (``models.estimator``, "Which object is the hand") and
keeps the one this score rates highest. Features of one candidate (:func:`candidate_features`,
:data:`FEATURES`):

* ``log_fit``: log of :func:`models.estimator.surface_fit_mm` (mm): how far the observed
  points near the predicted hand lie from its vertices. Hands score 4.6-10.5 mm (10th-90th
  percentile on the validation candidates, step-70,000 model), the other objects 9-24: their
  surfaces are not shaped like one.
* ``log_spread``: log(1 + the rotation ensemble's spread, mm): the network's four answers on
  the crop turned by 90° steps agree on a hand (median 8 mm on the validation candidates) and
  not on a box or a ball (32 mm). 0 without the ensemble (the same for every candidate, so it
  does not change which one wins).
* ``free``: the share of the predicted hand's vertices whose crop pixel shows no surface or
  one more than ``FREE_MM`` behind the vertex: a hand is a thin object, its silhouette edges
  lie against the background; a hand the network puts on a flat surface (a table, the body)
  lies on it (median 0.27 on hands, 0.08 on the rest).
* ``filled``: the share of crop pixels with a surface inside the cube: a hand fills about
  a seventh of its crop (median 0.15), a box face or the body more (0.25, 90th percentile
  0.63).
* ``first``: 1 for the finder's own answer (or the tracked hand), 0 for the others.
* ``spare``: 1 for a spare starting point (``method`` "spare": the other ends of a blob).
* ``log_spot``: log of the learnt spotter's belief that the palm centre is at the candidate's
  centre (:func:`models.handspot.spot_mass`, floored at ``SPOT_FLOOR``; the floor for every
  candidate without the spotter). It has the largest weight: of the 1528 test frames with two
  or more candidates, the score picks one within 60 mm of the palm in 1502 with it, 1340 of
  1488 without it (the spotter adds its own candidate too).

Score = w · (features - mean) / scale + bias: the log-odds that the candidate lies within
``HAND_MM`` (60 mm) of the palm. Two scores: one for candidates run with the rotation
ensemble, one for a single crop (``rotations = 1``), whose spread is 0. Without it the
other features rank differently: a small object the network puts an overhanging hand on has
as much free space around the hand as a hand (the score fitted with the ensemble, used on
single crops, took an object more than 150 mm from the palm in 11 of the demo recording's
first 60 frames, the surface fit with the old margins in none, the single-crop score in
one). Both
are fitted by ``python -m models.handcheck --fit`` on the candidates of the 1000 whole
validation frames (``data/synth_frames/val``, Newton's method, L2 ``L2``) and stored with
their data and accuracy in ``models/assets/hand_check.json``. Pure functions; only
:func:`load` and :func:`main` read or write files.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any, NamedTuple, Sequence

import numpy as np

from calib import Intrinsics
from models.crop import BACKGROUND, Crop, uvd_in_crop

__all__ = ["ASSET_PATH", "FEATURES", "HandCheck", "candidate_features", "fit_logistic", "load", "main"]

FEATURES = ("log_fit", "log_spread", "free", "filled", "first", "spare", "log_spot")
#: The floor of the spotter's mass in ``log_spot`` (and its value without the spotter).
SPOT_FLOOR = 1e-4

#: A vertex with observed surface this far behind it (or none) lies in free space, mm.
FREE_MM = 20.0
#: A candidate within this of the palm centre is the hand (the label of the fit), mm.
HAND_MM = 60.0
#: L2 penalty of the logistic fit, on standardised features.
L2 = 1e-2

ASSET_PATH = Path(__file__).resolve().parent / "assets" / "hand_check.json"


class HandCheck(NamedTuple):
    """A fitted score: mean and scale (F,) standardise the features, weights (F,) and bias."""

    mean: np.ndarray
    scale: np.ndarray
    weights: np.ndarray
    bias: float

    def __call__(self, features: np.ndarray) -> np.ndarray:
        """(N, F) or (F,) features -> (N,) or () log-odds of being the hand."""
        return ((np.asarray(features, np.float64) - self.mean) / self.scale) @ self.weights + self.bias


def candidate_features(crop: Crop, intr: Intrinsics, hand_vertices_mm: np.ndarray, fit_mm: float,
                       spread_mm: float, first: bool, spare: bool, spot_mass: float | None = None) -> np.ndarray:
    """(F,) float64 features of one candidate (module docstring, in :data:`FEATURES` order).

    crop: the candidate's crop; hand_vertices_mm: (V, 3) mm, camera frame, the predicted mesh's
    hand vertices on it; fit_mm: their :func:`models.estimator.surface_fit_mm`; spread_mm: the
    rotation ensemble's spread (0 without it); spot_mass: the spotter's mass at the candidate's
    centre (:func:`models.handspot.spot_mass`; None without the spotter: the floor for every
    candidate, which changes no choice)."""
    patch = np.asarray(crop.patch)
    size = patch.shape[0]
    uvd = uvd_in_crop(np.asarray(hand_vertices_mm, np.float64), crop, intr)
    u = np.clip(np.round(uvd[:, 0]).astype(np.int64), 0, size - 1)
    v = np.clip(np.round(uvd[:, 1]).astype(np.int64), 0, size - 1)
    free = float(np.mean(patch[v, u] > uvd[:, 2] + FREE_MM / (0.5 * crop.cube_mm)))
    filled = float(np.mean(patch < BACKGROUND))
    return np.array([math.log(max(fit_mm, 0.1)), math.log1p(max(spread_mm, 0.0)), free, filled,
                     float(first), float(spare), math.log(max(spot_mass or 0.0, SPOT_FLOOR))])


def fit_logistic(features: np.ndarray, labels: np.ndarray, l2: float = L2, iterations: int = 50) -> HandCheck:
    """Logistic regression by Newton's method on standardised features: (N, F), (N,) 0/1."""
    x = np.asarray(features, np.float64)
    y = np.asarray(labels, np.float64)
    if x.ndim != 2 or len(x) != len(y) or len(x) == 0:
        raise ValueError(f"features (N, F) and labels (N,): got {x.shape} and {y.shape}")
    mean, scale = x.mean(0), x.std(0)
    scale = np.where(scale > 0.0, scale, 1.0)
    z = np.c_[(x - mean) / scale, np.ones(len(x))]
    w = np.zeros(z.shape[1])
    penalty = l2 * np.r_[np.ones(z.shape[1] - 1), 0.0]  # not on the bias
    for _ in range(iterations):
        p = 1.0 / (1.0 + np.exp(-(z @ w)))
        gradient = z.T @ (p - y) + penalty * w
        hessian = (z * (p * (1.0 - p))[:, None]).T @ z + np.diag(penalty + 1e-9)
        step = np.linalg.solve(hessian, gradient)
        w -= step
        if float(np.abs(step).max()) < 1e-10:
            break
    return HandCheck(mean, scale, w[:-1], float(w[-1]))


def load(path: str | Path = ASSET_PATH, ensemble: bool = True) -> HandCheck:
    """The fitted score stored by :func:`main`: the one for candidates run with the rotation
    ensemble (``ensemble``), or the one for a single crop, whose ``log_spread`` is always 0."""
    d = json.loads(Path(path).read_text())
    if tuple(d["features"]) != FEATURES:
        raise ValueError(f"{path}: features {d['features']}, expected {list(FEATURES)}; refit it "
                         "(python -m models.handcheck --fit)")
    s = d[_kind(ensemble)]
    return HandCheck(np.array(s["mean"]), np.array(s["scale"]), np.array(s["weights"]), float(s["bias"]))


def _kind(ensemble: bool) -> str:
    return "ensemble" if ensemble else "single"


# --------------------------------------------------------------------------- fitting (IO)


def _frame_candidates(estimator: Any, depth_mm: np.ndarray, intr: Intrinsics) -> list[tuple[Any, np.ndarray]]:
    """(detection, features) of every candidate the estimator checks on a frame."""
    spot = estimator.spot(depth_mm, intr)
    found = estimator.candidates(depth_mm, intr, spot)
    return [(f, estimator.candidate_features(depth_mm, intr, f, first=(k == 0), spot=spot)[0])
            for k, f in enumerate(found)]


def _collect(estimator: Any, split: str | Path, max_frames: int | None) -> list[list[tuple[float, np.ndarray]]]:
    """Per frame: (distance of each candidate from the palm centre in mm, its features)."""
    from models.data import intrinsics_from_arrays, shard_paths
    from models.joints import palm_centre

    frames: list[list[tuple[float, np.ndarray]]] = []
    for path in shard_paths(split):
        with np.load(path) as f:
            z = {k: f[k] for k in ("frame", "intrinsics", "distortion", "coeffs", "joints_mm")}
        for k in range(len(z["joints_mm"])):
            if max_frames is not None and len(frames) >= max_frames:
                return frames
            intr = intrinsics_from_arrays(z["intrinsics"][k], z["distortion"][k], z["coeffs"][k])
            depth = np.ascontiguousarray(z["frame"][k][:intr.height, :intr.width])
            palm = palm_centre(z["joints_mm"][k].astype(np.float64))
            frames.append([(float(np.linalg.norm(f.com_mm - palm)), x)
                           for f, x in _frame_candidates(estimator, depth, intr)])
    return frames


def _picked_right(check: HandCheck, frames: Sequence[list[tuple[float, np.ndarray]]]) -> dict[str, int]:
    """Frames with two or more candidates, and in how many the score's pick / the finder's
    first / any candidate lies within HAND_MM of the palm."""
    multi = [f for f in frames if len(f) >= 2]
    pick = [f[int(np.argmax(check(np.stack([x for _, x in f]))))][0] < HAND_MM for f in multi]
    return {"frames": len(multi), "score": int(sum(pick)), "first": sum(f[0][0] < HAND_MM for f in multi),
            "any": sum(min(d for d, _ in f) < HAND_MM for f in multi)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m models.handcheck", description=__doc__.split("\n")[0])
    ap.add_argument("--fit", action="store_true", help="fit both scores and write them to --out")
    ap.add_argument("--data", type=Path, default=Path("data/synth_frames/val"),
                    help="whole synthetic frames (models.synth generate --full-frames)")
    ap.add_argument("--evaluate", type=Path, default=None,
                    help="also count the right picks on these whole frames (e.g. data/synth_frames/test)")
    ap.add_argument("--model", type=Path, default=Path("models/weights/deephps.onnx"))
    ap.add_argument("--max-frames", type=int, default=None)
    ap.add_argument("--out", type=Path, default=ASSET_PATH)
    a = ap.parse_args(argv)
    from models.estimator import Estimator, EstimatorConfig, load_predictor

    predictor = load_predictor(a.model, "cpu")
    record: dict[str, Any] = {"features": list(FEATURES), "label_mm": HAND_MM, "l2": L2, "model": str(a.model),
                              "command": "python -m models.handcheck " + " ".join(argv if argv is not None else sys.argv[1:])}
    for ensemble in (True, False):
        rotations = EstimatorConfig.rotations if ensemble else 1
        estimator = Estimator(predictor, EstimatorConfig(track=False, rotations=rotations))
        frames = _collect(estimator, a.data, a.max_frames)
        if a.fit:
            rows = [(d, x) for f in frames if len(f) >= 2 for d, x in f]
            check = fit_logistic(np.stack([x for _, x in rows]), np.array([d < HAND_MM for d, _ in rows]))
        else:
            check = load(a.out, ensemble)
        report = {"rotations": rotations, "data": str(a.data), **_picked_right(check, frames)}
        if a.evaluate is not None:
            report["evaluate"] = {"data": str(a.evaluate),
                                  **_picked_right(check, _collect(estimator, a.evaluate, a.max_frames))}
        print(_kind(ensemble), json.dumps(report, indent=1), flush=True)
        record[_kind(ensemble)] = {"mean": check.mean.tolist(), "scale": check.scale.tolist(),
                                   "weights": check.weights.tolist(), "bias": check.bias, "picked_right": report}
    if a.fit:
        a.out.write_text(json.dumps(record, indent=1) + "\n")
        print(a.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
