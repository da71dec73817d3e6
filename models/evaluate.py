"""Evaluate hand models the way the field does: ``python -m models.evaluate``.

    python -m models.evaluate --model models/weights/deephps.pt                 # synthetic test split
    python -m models.evaluate --model A.pt --model B.onnx --data data/synth/test --curve out.png
    python -m models.evaluate --model M --data nyu:DIR | icvl:DIR | msra:DIR | PNG_DIR | REC.db3 [--labels L]
    python -m models.evaluate --model M --data data/synth_frames/test --detect      # the app's own finder

Data. A directory of shards (``models.synth``; the test split by default): the crops in the
shards were cut by the same hand finder and crop as the app, so the network runs on them
directly. Two network passes as in the app (``models.estimator``, "Two passes") wherever the
whole frames are there to crop again: recordings, folders, and shards written with
``models.synth generate --full-frames``; one pass on shards of crops; ``--single-pass`` forces
one. Anything else is a ``--source`` of the app (``sources.open_source``) whose frames
carry labels: the full pipeline runs (:class:`models.estimator.Estimator`: find the hand, crop,
network), and predictions are compared in the labels' joint layout (``models.joints``
layouts: NYU 14, ICVL 16, MSRA 21 are fixed linear maps of our 21 joints). Frames where no
hand is found count as failures in the success curve and are left out of the mean errors
(both reported). ``--detect`` on shards with whole frames runs that pipeline too, each frame on
its own (no tracking), instead of using the generator's crops, and reports each view
(third-person, head-mounted) as well; ``--candidates N`` sets how many of the finder's objects
the network checks (``models.estimator``, "Which object is the hand"). The last crop of every
frame is also run turned, as in the app (``models.estimator``, "Rotation ensemble"), on every
kind of data; ``--rotations 1`` measures the network on the crop alone. ``--fit`` fits the hand
model to the last crop's depth as the app's ``--fit`` does (``models.fit``), on every kind of data.
``--fatten PX`` widens every near surface of the shards' crops by PX patch pixels first
(``models.data.fatten_patch``), as window-matching sensors do (Kinect v1, stereo): robustness.

Metrics (mm, camera frame; ``models.metrics``):

* mean and median 3D joint error, per-joint mean error;
* success: the fraction of frames whose LARGEST joint error is at most 10, 20, ... 80 mm, and
  the curve as a PNG (``--curve``);
* vertex error: mean distance of the HAND vertices (the forearm stub excluded) to the labels'
  mesh, for models with a mesh, on the synthetic split;
* pose validity: the share of frames with a bone-pair angle beyond the anatomical maximum
  (:func:`models.losses.anatomical_angle_thresholds` + ``ANGLE_MARGIN_DEG``, measured on the
  JOINTS so every method is judged alike; the labels of the test split score 0);
* bone-length error: mean |predicted − true| bone length over the 20 bones, mm (the test
  split's hands all differ, so a spread across frames means nothing there); on a labelled
  sequence of one hand also the spread (coefficient of variation) of each bone over frames.

Output: a table on stdout, ``--json OUT`` with every number (and the per-joint errors).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any, Iterable, NamedTuple

import numpy as np
import torch

from calib import Intrinsics
from models.crop import Crop, CropConfig, crop_depth, crop_window
from models.data import fatten_patch, intrinsics_from_arrays, shard_paths
from models.estimator import Estimator, EstimatorConfig, ensemble, load_predictor, recrop_centre, turned_patches
from models.fit import HandFitter
from models.hand_layer import HandLayer
from models.joints import CONNECTIONS, JOINT_NAMES, get_layout
from models.losses import ANGLE_MARGIN_DEG, invalid_poses
from models.metrics import EvalSummary, curve_auc, joint_errors, success_curve, success_curve_png, summarize


class Predictions(NamedTuple):
    """Predictions and labels of N frames, camera frame, mm. found (N,) bool."""

    joints: np.ndarray            # (N, 21, 3) predicted (NaN where not found)
    labels: np.ndarray            # (N, K, 3) in ``layout``
    layout: str
    vertices: np.ndarray | None   # (N, V, 3) predicted
    label_vertices: np.ndarray | None
    found: np.ndarray
    seconds: float


# --------------------------------------------------------------------------- metrics (pure)


def invalid_pose_share(joints_mm: np.ndarray, margin_deg: float = ANGLE_MARGIN_DEG) -> float:
    """Share of frames (N, 21, 3) with any bone-pair angle beyond its anatomical maximum + margin."""
    if len(joints_mm) == 0:
        return float("nan")
    return float(invalid_poses(joints_mm, margin_deg).mean())


def bone_lengths(joints_mm: np.ndarray) -> np.ndarray:
    """(N, 21, 3) -> (N, 20) bone lengths, mm, in ``CONNECTIONS`` order."""
    a, b = (np.array(c) for c in zip(*CONNECTIONS))
    return np.linalg.norm(joints_mm[:, b] - joints_mm[:, a], axis=-1)


def summary_record(pred: Predictions, hand_vertex_mask: np.ndarray | None = None) -> dict[str, Any]:
    """Every number of one evaluation (JSON-ready)."""
    layout = get_layout(pred.layout)
    f = pred.found
    out: dict[str, Any] = {"frames": int(len(f)), "hand_found": float(f.mean()) if len(f) else float("nan"),
                           "layout": pred.layout, "seconds": round(pred.seconds, 2)}
    if not f.any():
        return out
    mapped = np.einsum("kj,njc->nkc", layout.matrix, pred.joints[f])
    s: EvalSummary = summarize(joint_errors(mapped, pred.labels[f]))
    # Success over ALL frames: a frame without a hand never succeeds.
    per_frame_max = np.full(len(f), np.inf)
    per_frame_max[f] = np.linalg.norm(mapped - pred.labels[f], axis=-1).max(1)
    thresholds, success = success_curve(per_frame_max, s.thresholds_mm)
    out.update({
        "mean_mm": s.mean_mm, "median_mm": s.median_mm,
        "per_joint_mm": dict(zip(layout.names, np.round(s.per_joint_mean_mm, 2).tolist())),
        "success": {str(int(t)): float(success[int(t)]) for t in (10, 20, 30, 40, 50, 60, 70, 80)},
        "curve": [thresholds.tolist(), success.tolist()],
        "auc": curve_auc(thresholds, success),
        "invalid_pose": invalid_pose_share(pred.joints[f]),
    })
    if pred.layout == "canonical":
        out["bone_error_mm"] = float(np.abs(bone_lengths(pred.joints[f]) - bone_lengths(pred.labels[f])).mean())
        out["invalid_pose_labels"] = invalid_pose_share(pred.labels[f])
    if pred.vertices is not None and pred.label_vertices is not None:
        m = slice(None) if hand_vertex_mask is None else hand_vertex_mask
        out["vertices_mm"] = float(np.linalg.norm(pred.vertices[f][:, m] - pred.label_vertices[f][:, m],
                                                  axis=-1).mean())
    return out


# --------------------------------------------------------------------------- running models


def predict_shards(predictor: Any, split: str | Path, max_frames: int | None = None, batch: int = 250,
                   with_vertices: bool = True, recrop: bool = False, rotations: int = 1,
                   fit: bool = False, fatten_px: float = 0.0) -> Predictions:
    """Run ``predictor`` on the crops of a shard directory, a shard or the fixed test subset
    (any .npz with patch, com_mm, joints_mm, theta, alpha, beta, wrist), in file order.

    recrop: the app's second pass (``models.estimator``, "Two passes"): each frame is cropped
    again around the first pass's palm centre and the network runs again. It needs the whole
    frames (shards written with ``models.synth generate --full-frames``).
    rotations: the app's rotation ensemble on the last crop (``models.estimator``, "Rotation
    ensemble"; 1: the crop alone, the network's own accuracy). It needs each frame's camera
    (intrinsics, distortion, coeffs).
    fit: the hand layer fitted to the last crop, as the app's ``--fit`` (``models.fit``).
    fatten_px: every crop's foreground fattened by this many patch pixels first
        (``models.data.fatten_patch``, the same width everywhere): robustness to sensors that
        widen near surfaces (one pass only: a second crop would be cut from the clean frame).
    """
    if fatten_px and recrop:
        raise ValueError("fattening acts on the shards' crops: evaluate one pass (--single-pass)")
    layer = HandLayer()
    fitter = HandFitter(EstimatorConfig().fitting) if fit else None
    joints, labels, verts, label_verts = [], [], [], []
    n, t = 0, 0.0
    paths = [Path(split)] if Path(split).is_file() else shard_paths(split)
    keys = ("patch", "com_mm", "joints_mm", "theta", "alpha", "beta", "wrist")
    for path in paths:
        with np.load(path) as f:
            if recrop and "frame" not in f.files:
                raise ValueError(f"{path}: no whole frames to crop again (write them with "
                                 "`python -m models.synth generate --full-frames`, or evaluate one pass)")
            camera = ("intrinsics", "distortion", "coeffs") if recrop or rotations > 1 or fit else ()
            z = {k: f[k] for k in keys + camera + (("frame",) if recrop else ())}
        count = len(z["patch"]) if max_frames is None else min(len(z["patch"]), max_frames - n)
        for i in range(0, count, batch):
            sl = slice(i, min(i + batch, count))
            patch = z["patch"][sl].astype(np.float32)[:, None]
            if fatten_px:
                rng = np.random.default_rng(0)   # unused with ragged 0: the width is the same everywhere
                patch = np.stack([fatten_patch(p[0], rng, fatten_px, predictor.crop.cube_mm, ragged=0.0)
                                  for p in patch])[:, None]
            com = z["com_mm"][sl].astype(np.float64)[:, None]
            t0 = time.perf_counter()
            j, v = predictor(patch)
            if recrop:
                j, v, com, patch = _second_pass(predictor, z, sl, j + com)
            if rotations > 1:
                j, v = _turned_batch(predictor, z, sl, patch, com[:, 0], j, v, rotations)
            if fitter is not None:
                j, v = _fitted_batch(fitter, predictor.crop, z, sl, patch, com[:, 0], j, v)
            t += time.perf_counter() - t0
            joints.append(j + com)
            labels.append(z["joints_mm"][sl].astype(np.float64))
            if with_vertices and v is not None:
                verts.append(v + com)
                label_verts.append(_label_vertices(layer, z, sl))
        n += count
        if max_frames is not None and n >= max_frames:
            break
    if n == 0:
        raise ValueError(f"{split}: no frames")
    return Predictions(np.concatenate(joints), np.concatenate(labels), "canonical",
                       np.concatenate(verts) if verts else None, np.concatenate(label_verts) if label_verts else None,
                       np.ones(n, bool), t)


def _label_vertices(layer: HandLayer, z: dict[str, np.ndarray], sl: slice) -> np.ndarray:
    """(B, V, 3) float64 mm: the labels' meshes of shard frames ``sl`` (θ, α, β, wrist)."""
    with torch.no_grad():
        out = layer(*(torch.as_tensor(z[k][sl], dtype=torch.float32) for k in ("theta", "alpha", "beta", "wrist")))
    return out.vertices.numpy().astype(np.float64)


def shards_have_frames(split: str | Path) -> bool:
    """Whether the first shard of a directory holds whole frames (``--full-frames``)."""
    paths = shard_paths(split)
    with np.load(paths[0]) as f:
        return "frame" in f.files


def _second_pass(predictor: Any, z: dict[str, np.ndarray], sl: slice, first_joints_mm: np.ndarray
                 ) -> tuple[np.ndarray, np.ndarray | None, np.ndarray, np.ndarray]:
    """The Estimator's second pass on a batch of shard frames: (joints, vertices) relative to
    the new centres, the centres (B, 1, 3) and the patches (B, 1, S, S); frames whose palm is
    not trusted keep the first."""
    cfg = predictor.crop
    first_com = z["com_mm"][sl].astype(np.float64)
    com = first_com.copy()
    patches = []
    for b, k in enumerate(range(sl.start, sl.stop)):
        centre = recrop_centre(first_com[b], first_joints_mm[b], cfg.cube_mm)
        if centre is None:
            patches.append(z["patch"][k].astype(np.float32))
            continue
        intr = intrinsics_from_arrays(z["intrinsics"][k], z["distortion"][k], z["coeffs"][k])
        patches.append(crop_depth(z["frame"][k][:intr.height, :intr.width], intr, centre, cfg).patch)
        com[b] = centre
    patches = np.stack(patches)[:, None]
    j, v = predictor(patches)
    return j, v, com[:, None], patches


def _turned_batch(predictor: Any, z: dict[str, np.ndarray], sl: slice, patches: np.ndarray, com: np.ndarray,
                  joints: np.ndarray, vertices: np.ndarray | None, rotations: int
                  ) -> tuple[np.ndarray, np.ndarray | None]:
    """The Estimator's rotation ensemble on a batch of shard frames' last crops (patches (B, 1,
    S, S) around com (B, 3), whose own runs gave ``joints`` / ``vertices``), the turned copies
    of all frames through the predictor at once."""
    turned, frames_r = [], []
    for crop, intr in zip(*_shard_crops(predictor.crop, z, sl, patches, com)):
        p, r = turned_patches(crop, intr, rotations)
        turned.append(p[1:])
        frames_r.append(r)
    j, v = predictor(np.concatenate(turned))
    j = j.reshape(len(frames_r), rotations - 1, *j.shape[1:])
    if vertices is not None and v is not None:
        v = v.reshape(len(frames_r), rotations - 1, *v.shape[1:])
    out = [ensemble(np.concatenate([joints[b:b + 1], j[b]]),
                    None if vertices is None or v is None else np.concatenate([vertices[b:b + 1], v[b]]), r)
           for b, r in enumerate(frames_r)]
    return (np.concatenate([o[0] for o in out]),
            None if out[0][1] is None else np.concatenate([o[1] for o in out]))


def _fitted_batch(fitter: HandFitter, crop_cfg: CropConfig, z: dict[str, np.ndarray], sl: slice,
                  patches: np.ndarray, com: np.ndarray, joints: np.ndarray, vertices: np.ndarray | None
                  ) -> tuple[np.ndarray, np.ndarray | None]:
    """The Estimator's fit on a batch of shard frames' last crops (patches (B, 1, S, S) around
    com (B, 3), cut with ``crop_cfg``): joints and vertices (None stays None) relative to com,
    as the predictor gives them."""
    crops, intrs = _shard_crops(crop_cfg, z, sl, patches, com)
    fitted = [fitter(crops[i:i + 32], intrs[i:i + 32], joints[i:i + 32] + com[i:i + 32, None])
              for i in range(0, len(crops), 32)]   # 32 at a time: the Jacobians grow with the batch
    j = np.concatenate([f.joints for f in fitted]) - com[:, None]
    return j, None if vertices is None else np.concatenate([f.vertices for f in fitted]) - com[:, None]


def _shard_crops(crop_cfg: CropConfig, z: dict[str, np.ndarray], sl: slice, patches: np.ndarray,
                 com: np.ndarray) -> tuple[list[Crop], list[Intrinsics]]:
    """Shard frames ``sl`` as the crops (patches (B, 1, S, S) around com (B, 3), cut with
    ``crop_cfg``) and cameras the Estimator would have."""
    crops, intrs = [], []
    for b, k in enumerate(range(sl.start, sl.stop)):
        intr = intrinsics_from_arrays(z["intrinsics"][k], z["distortion"][k], z["coeffs"][k])
        crops.append(Crop(patches[b, 0], com[b], crop_window(com[b], intr, crop_cfg), crop_cfg.cube_mm))
        intrs.append(intr)
    return crops, intrs


def detect_shards(predictor: Any, split: str | Path, max_frames: int | None = None,
                  recrop: bool = True, candidates: int = EstimatorConfig.candidates,
                  rotations: int = EstimatorConfig.rotations, fit: bool = False, spot: bool = EstimatorConfig.spot,
                  track: bool = False) -> tuple[Predictions, np.ndarray]:
    """The whole pipeline on the whole frames of shards (``models.synth generate
    --full-frames``): the app's :class:`models.estimator.Estimator` finds the hand in each
    frame itself (detection only: the frames are independent, no tracking), where
    :func:`predict_shards` uses the generator's crops. Returns the predictions (frames where
    no hand is found are failures, as for recordings) and each frame's view (N,) int8
    (``models.sampling.View``). candidates, rotations, spot: ``EstimatorConfig``'s; track: the
    frames in order as one sequence instead (each a jump of the hand: the tracked-hand logic)."""
    est = Estimator(predictor, EstimatorConfig(track=track, recrop=recrop, candidates=candidates, rotations=rotations,
                                               fit=fit, spot=spot))
    layer = HandLayer()
    joints, labels, verts, label_verts, found, views = [], [], [], [], [], []
    n, t = 0, 0.0
    keys = ("frame", "intrinsics", "distortion", "coeffs", "joints_mm", "view", "theta", "alpha", "beta", "wrist")
    for path in shard_paths(split):
        with np.load(path) as f:
            if "frame" not in f.files:
                raise ValueError(f"{path}: no whole frames (write them with "
                                 "`python -m models.synth generate --full-frames`)")
            z = {k: f[k] for k in keys}
        count = len(z["view"]) if max_frames is None else min(len(z["view"]), max_frames - n)
        for k in range(count):
            intr = intrinsics_from_arrays(z["intrinsics"][k], z["distortion"][k], z["coeffs"][k])
            t0 = time.perf_counter()
            e = est(np.ascontiguousarray(z["frame"][k][:intr.height, :intr.width]), intr)
            t += time.perf_counter() - t0
            found.append(e.hand_found)
            joints.append(e.joints_mm if e.hand_found else np.full((21, 3), np.nan))
            verts.append(e.vertices_mm)
        label_verts.append(_label_vertices(layer, z, slice(0, count)))
        labels.append(z["joints_mm"][:count].astype(np.float64))
        views.append(z["view"][:count])
        n += count
        if max_frames is not None and n >= max_frames:
            break
    if n == 0:
        raise ValueError(f"{split}: no frames")
    shape = next((v.shape for v in verts if v is not None), None)
    vertices = None if shape is None else np.stack([np.full(shape, np.nan) if v is None else v for v in verts])
    return (Predictions(np.stack(joints), np.concatenate(labels), "canonical", vertices,
                        None if vertices is None else np.concatenate(label_verts), np.array(found), t),
            np.concatenate(views))


def subset(pred: Predictions, keep: np.ndarray) -> Predictions:
    """The predictions of the frames ``keep`` (a bool mask or indices)."""
    def pick(a: np.ndarray | None) -> np.ndarray | None:
        return None if a is None else a[keep]

    return pred._replace(joints=pred.joints[keep], labels=pred.labels[keep], vertices=pick(pred.vertices),
                         label_vertices=pick(pred.label_vertices), found=pred.found[keep])


def predict_frames(predictor: Any, frames: Iterable[Any], hand: str = "right",
                   max_frames: int | None = None, recrop: bool = True, candidates: int = EstimatorConfig.candidates,
                   rotations: int = EstimatorConfig.rotations, fit: bool = False,
                   spot: bool = EstimatorConfig.spot) -> Predictions:
    """Run the full pipeline (find, crop, network[, fit]) on labelled :class:`sources.Frame` s, as the app does."""
    est = Estimator(predictor, EstimatorConfig(hand=hand, recrop=recrop, candidates=candidates, rotations=rotations,
                                               fit=fit, spot=spot))
    joints, labels, found = [], [], []
    layout = None
    t0 = time.perf_counter()
    for k, frame in enumerate(frames):
        if max_frames is not None and k >= max_frames:
            break
        if frame.labels is None:
            continue
        if layout is None:
            layout = frame.labels.layout
        elif frame.labels.layout != layout:
            raise ValueError(f"frame {frame.source_id}: labels in layout {frame.labels.layout}, expected {layout}")
        e = est(frame.depth_mm, frame.intrinsics)
        found.append(e.hand_found)
        joints.append(e.joints_mm if e.hand_found else np.full((21, 3), np.nan))
        labels.append(np.asarray(frame.labels.xyz_mm, dtype=np.float64))
    if not labels:
        raise ValueError("no labelled frames in the source (labels are needed to evaluate)")
    return Predictions(np.stack(joints), np.stack(labels), layout, None, None, np.array(found),
                       time.perf_counter() - t0)


def batch1_latency_ms(predictor: Any, size: int, runs: int = 200) -> dict[str, float]:
    """Median and p99 time of one crop through the predictor (after 20 warm-up runs), ms."""
    x = np.ones((1, 1, size, size), np.float32)
    for _ in range(20):
        predictor(x)
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        predictor(x)
        times.append(1e3 * (time.perf_counter() - t))
    return {"median": float(np.median(times)), "p99": float(np.percentile(times, 99))}


# --------------------------------------------------------------------------- CLI


def _format(name: str, r: dict[str, Any]) -> str:
    if "mean_mm" not in r:
        return f"{name:<28} frames {r['frames']}, no hand found"
    vert = f"{r['vertices_mm']:7.2f}" if "vertices_mm" in r else "      -"
    lat = f"{r['latency_ms']['median']:6.2f}" if "latency_ms" in r else "     -"
    params = f"{r['parameters']:>9,}" if "parameters" in r else f"{'':>9}"
    return (f"{name:<28} {r['mean_mm']:7.2f} {r['median_mm']:7.2f} {vert} {r['success']['20']:6.3f} "
            f"{r['success']['40']:6.3f} {r['invalid_pose']:7.3f} {r['hand_found']:6.3f} {lat} {params}")


HEADER = (f"{'model':<28} {'mean':>7} {'median':>7} {'vertex':>7} {'<20mm':>6} {'<40mm':>6} {'invalid':>7} "
          f"{'found':>6} {'ms':>6} {'params':>9}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m models.evaluate", description=__doc__.split("\n")[0])
    ap.add_argument("--model", action="extend", nargs="+", required=True,
                    help="one or more .pt or .onnx models (the option may be repeated)")
    ap.add_argument("--data", default="data/synth/test", help="shard directory or an app --source with labels")
    ap.add_argument("--labels", default=None, help="labels file for a PNG folder or a recording")
    ap.add_argument("--hand", choices=("right", "left"), default="right")
    ap.add_argument("--max-frames", type=int, default=None)
    ap.add_argument("--provider", default="cpu", help="ONNX Runtime provider for .onnx models")
    ap.add_argument("--latency", action="store_true", help="also time batch-1 inference (one thread)")
    ap.add_argument("--single-pass", action="store_true",
                    help="one network pass on the finder's crop (default: two, as the app, where there are "
                         "whole frames: recordings, folders, shards written with --full-frames)")
    ap.add_argument("--detect", action="store_true",
                    help="shards with whole frames: the app's hand finder picks each crop (detection only, the "
                         "frames are independent) instead of the generator's crops; errors also per view")
    ap.add_argument("--candidates", type=int, default=EstimatorConfig.candidates,
                    help="objects the network checks when no hand is tracked (models.estimator, 'Which object is "
                         "the hand'; 1: the finder's first), for --detect and labelled sources")
    ap.add_argument("--track", action="store_true",
                    help="with --detect: the frames in order as one sequence, tracked (each frame a jump of the hand)")
    ap.add_argument("--no-spot", action="store_true",
                    help="detection without the learnt hand spotter (models.handspot): the finder's candidates alone")
    ap.add_argument("--rotations", type=int, default=EstimatorConfig.rotations,
                    help="the last crop is also run turned by 360/N degree steps and the results averaged, as the "
                         "app does (models.estimator, 'Rotation ensemble'; 1: the crop alone, the network's own "
                         "accuracy)")
    ap.add_argument("--fit", action="store_true",
                    help="fit the hand model to the last crop's depth, as the app's --fit (models.fit)")
    ap.add_argument("--fatten", type=float, default=0.0, metavar="PX",
                    help="shards' crops, one pass: fatten each crop's near surfaces by PX patch pixels first "
                         "(models.data.fatten_patch; robustness to sensors that widen silhouettes, e.g. Kinect v1)")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--curve", type=Path, default=None, help="PNG of the success curves")
    a = ap.parse_args(argv)
    from models.sampling import View
    from models.train import hand_vertex_mask

    is_shards = Path(a.data).is_dir() and any(Path(a.data).glob("shard_*.npz"))
    if a.detect and not (is_shards and shards_have_frames(a.data)):
        print(f"error: --detect needs shards with whole frames (`models.synth generate --full-frames`), "
              f"not {a.data}", file=sys.stderr)
        return 2
    if a.fatten and (not is_shards or a.detect):
        print("error: --fatten acts on the crops of shards (not with --detect or a --source)", file=sys.stderr)
        return 2
    if a.track and not a.detect:
        print("error: --track goes with --detect (tracking across whole frames)", file=sys.stderr)
        return 2
    # Two passes as in the app wherever the whole frames are there to crop again.
    recrop = not a.single_pass and not a.fatten and (not is_shards or shards_have_frames(a.data))
    print(f"passes: {2 if recrop else 1}" + ("" if recrop or a.single_pass else
          " (the shards hold crops only; `models.synth generate --full-frames` writes whole frames)"), file=sys.stderr)
    if a.rotations < 1:
        print(f"error: --rotations: expected an int >= 1, got {a.rotations}", file=sys.stderr)
        return 2
    print(f"rotations: {a.rotations}", file=sys.stderr)
    results: dict[str, Any] = {}
    print(f"data: {a.data}", file=sys.stderr)
    print(HEADER)
    for model in a.model:
        try:
            predictor = load_predictor(model, a.provider)
            views = None
            if is_shards and a.detect:
                pred, views = detect_shards(predictor, a.data, a.max_frames, recrop=recrop, candidates=a.candidates,
                                            rotations=a.rotations, fit=a.fit, spot=not a.no_spot, track=a.track)
            elif is_shards:
                pred = predict_shards(predictor, a.data, a.max_frames, recrop=recrop, rotations=a.rotations,
                                      fit=a.fit, fatten_px=a.fatten)
            else:
                from sources import open_source

                with open_source(a.data, labels=a.labels) as src:
                    pred = predict_frames(predictor, src, a.hand, a.max_frames, recrop=recrop,
                                          candidates=a.candidates, rotations=a.rotations, fit=a.fit,
                                          spot=not a.no_spot)
        except (FileNotFoundError, ValueError, OSError) as exc:
            print(f"error: {model}: {exc}", file=sys.stderr)
            return 2
        r = summary_record(pred, hand_vertex_mask().numpy())
        r["passes"] = 2 if recrop else 1
        r["rotations"] = a.rotations
        r["fit"] = a.fit
        if a.fatten:
            r["fatten_px"] = a.fatten
        if not is_shards or a.detect:
            r["candidates"] = a.candidates
            r["spot"] = not a.no_spot
        if a.detect:
            r["track"] = a.track
        if views is not None:
            r["finder"] = "detect"
            r["views"] = {View(v).name.lower(): summary_record(subset(pred, views == v), hand_vertex_mask().numpy())
                          for v in np.unique(views)}
        net = getattr(predictor, "net", None)
        if net is not None:
            r["parameters"] = sum(p.numel() for p in net.parameters())
        if a.latency:
            torch.set_num_threads(1)
            r["latency_ms"] = batch1_latency_ms(predictor, predictor.crop.size)
        name = Path(model).parent.name if Path(model).stem == "last" else Path(model).stem
        if name in results:  # e.g. models/weights/deephps.pt and models/weights/compare/deephps.pt
            name = f"{Path(model).parent.name}/{name}"
        results[name] = r
        print(_format(name, r), flush=True)
        for view, rv in r.get("views", {}).items():
            print(_format(f"  {view}", rv), flush=True)
    if a.json:
        a.json.parent.mkdir(parents=True, exist_ok=True)
        a.json.write_text(json.dumps({"data": a.data, "results": results}, indent=1))
    if a.curve:
        curves = {k: (np.array(v["curve"][0]), np.array(v["curve"][1])) for k, v in results.items() if "curve" in v}
        a.curve.parent.mkdir(parents=True, exist_ok=True)
        success_curve_png(curves, a.curve)
    return 0


if __name__ == "__main__":
    sys.exit(main())
