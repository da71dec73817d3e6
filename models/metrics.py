"""Evaluation metrics of the field's protocol, pure numpy (plus one cv2 plot at the edge).

Units: joints and vertices in millimetres (prediction and target in the same frame);
θ in radians (``models/skeleton.py``); time in frames, so accelerations are mm/frame².
Inputs may be float32 or float64; every result is float64.

Protocol (NYU / ICVL / MSRA papers, V2V-PoseNet, A2J, SDNet §5.2):
- mean (and median) 3D joint error: the Euclidean distance per joint, averaged over all
  joints of all frames;
- success curve: the fraction of frames whose LARGEST joint error is ≤ t, for t = 0..80 mm
  in steps of 1 mm; a frame counts only if every joint is within t (the strict criterion);
- its area under the curve, normalised to [0, 1]: the trapezoid rule over the 1 mm grid,
  divided by 80 mm;
- temporal quality: acceleration error and jitter from second differences over frames.

Missing labels: ``joint_errors(..., valid=...)`` marks joints to leave out; they are NaN in
the error array and every statistic skips them (a frame's largest error is over its valid
joints; frames with no valid joint leave the success curve).
"""
from __future__ import annotations

from pathlib import Path
from typing import Mapping, NamedTuple

import cv2
import numpy as np

from models.joints import CONNECTIONS, NUM_JOINTS
from models.skeleton import THETA_DIM

SUCCESS_MAX_MM = 80
SUCCESS_STEP_MM = 1
#: Thresholds reported separately (mm).
SUCCESS_REPORT_MM: tuple[int, ...] = (10, 20, 30, 40, 50, 80)


# --- input checks ------------------------------------------------------------------------

def _points(name: str, x: object, num: int | None = None) -> np.ndarray:
    """An array of shape (N, K, 3) as float64, with a ValueError naming the expected shape."""
    a = np.asarray(x)
    expected = f"(N, {num if num is not None else 'K'}, 3)"
    if a.ndim != 3 or a.shape[-1] != 3 or (num is not None and a.shape[-2] != num):
        raise ValueError(f"expected {name} of shape {expected}, got {a.shape}")
    if not np.issubdtype(a.dtype, np.number):
        raise TypeError(f"expected a numeric {name}, got dtype {a.dtype}")
    return a.astype(np.float64, copy=False)


def _same_shape(pred: np.ndarray, target: np.ndarray) -> None:
    if pred.shape != target.shape:
        raise ValueError(f"pred and target must have the same shape, got {pred.shape} and {target.shape}")


# --- joint errors and the success curve ----------------------------------------------------

class JointErrors(NamedTuple):
    """Per-joint Euclidean errors.

    errors_mm: (N, J) float64, mm; NaN where the joint is not valid
    valid:     (N, J) bool
    """

    errors_mm: np.ndarray
    valid: np.ndarray


def joint_errors(pred: np.ndarray, target: np.ndarray, valid: np.ndarray | None = None) -> JointErrors:
    """pred, target (N, J, 3) mm; valid (N, J) bool or None (all valid) -> :class:`JointErrors`.

    Raises ValueError on shape mismatch or on a non-finite coordinate of a valid joint.
    """
    pred = _points("pred", pred)
    target = _points("target", target)
    _same_shape(pred, target)
    if valid is None:
        valid = np.ones(pred.shape[:2], dtype=bool)
    else:
        valid = np.asarray(valid)
        if valid.shape != pred.shape[:2] or valid.dtype != np.bool_:
            raise ValueError(f"expected valid of shape {pred.shape[:2]} and dtype bool, "
                             f"got {valid.shape} {valid.dtype}")
    finite = np.isfinite(pred).all(-1) & np.isfinite(target).all(-1)
    if not finite[valid].all():
        bad = np.argwhere(valid & ~finite)[:5].tolist()
        raise ValueError(f"expected finite coordinates for every valid joint, got non-finite at "
                         f"(frame, joint) {bad}")
    diff = np.where(valid[..., None], pred - target, np.nan)
    return JointErrors(errors_mm=np.linalg.norm(diff, axis=-1), valid=valid.copy())


class EvalSummary(NamedTuple):
    """The field's summary of joint errors. mm unless stated; fractions in [0, 1].

    num_frames, num_joints: N and J of the input.
    mean_mm, median_mm:     over all valid joints of all frames.
    per_joint_mean_mm:      (J,) mean over frames per joint (NaN for a joint never valid).
    thresholds_mm:          (81,) 0, 1, ..., 80.
    success:                (81,) fraction of frames whose largest joint error is ≤ threshold.
    success_at:             {10, 20, 30, 40, 50, 80: fraction} read off ``success``.
    auc:                    trapezoid area under ``success`` over 0-80 mm, / 80 mm, in [0, 1].
    """

    num_frames: int
    num_joints: int
    mean_mm: float
    median_mm: float
    per_joint_mean_mm: np.ndarray
    thresholds_mm: np.ndarray
    success: np.ndarray
    success_at: Mapping[int, float]
    auc: float


def success_curve(max_errors_mm: np.ndarray,
                  thresholds_mm: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(N,) largest joint error per frame, mm -> (thresholds (T,), fraction of frames ≤ each).

    Default thresholds: 0..80 mm in 1 mm steps.
    """
    e = np.asarray(max_errors_mm, dtype=np.float64)
    if e.ndim != 1 or e.size == 0:
        raise ValueError(f"expected max_errors_mm of shape (N,) with N >= 1, got {e.shape}")
    t = (np.arange(0, SUCCESS_MAX_MM + SUCCESS_STEP_MM, SUCCESS_STEP_MM, dtype=np.float64)
         if thresholds_mm is None else np.asarray(thresholds_mm, dtype=np.float64))
    return t, (e[None, :] <= t[:, None]).mean(axis=1)


def curve_auc(thresholds_mm: np.ndarray, fractions: np.ndarray) -> float:
    """Trapezoid area under a success curve divided by its threshold range, in [0, 1]."""
    t = np.asarray(thresholds_mm, dtype=np.float64)
    f = np.asarray(fractions, dtype=np.float64)
    if t.ndim != 1 or t.shape != f.shape or t.size < 2 or not (np.diff(t) > 0).all():
        raise ValueError(f"expected increasing thresholds (T,) with T >= 2 and fractions (T,), "
                         f"got {t.shape} and {f.shape}")
    return float(np.sum(0.5 * (f[1:] + f[:-1]) * np.diff(t)) / (t[-1] - t[0]))


def summarize(errors: JointErrors | np.ndarray) -> EvalSummary:
    """Per-joint errors (N, J) mm (NaN = left out) or a :class:`JointErrors` -> :class:`EvalSummary`."""
    e = errors.errors_mm if isinstance(errors, JointErrors) else np.asarray(errors, dtype=np.float64)
    if e.ndim != 2 or e.size == 0:
        raise ValueError(f"expected errors of shape (N, J) with N, J >= 1, got {e.shape}")
    ok = np.isfinite(e)
    if not ok.any():
        raise ValueError("expected at least one valid (finite) joint error, got none")
    if (e[ok] < 0).any():
        raise ValueError("expected non-negative errors (distances in mm), got negative values")
    values = e[ok]
    counts = ok.sum(0)
    per_joint = np.full(e.shape[1], np.nan)
    np.divide(np.where(ok, e, 0.0).sum(0), counts, out=per_joint, where=counts > 0)
    frames = ok.any(1)
    frame_max = np.where(ok, e, -np.inf).max(1)[frames]
    thresholds, success = success_curve(frame_max)
    at = {t: float(success[np.searchsorted(thresholds, t)]) for t in SUCCESS_REPORT_MM}
    return EvalSummary(
        num_frames=int(e.shape[0]), num_joints=int(e.shape[1]),
        mean_mm=float(values.mean()), median_mm=float(np.median(values)),
        per_joint_mean_mm=per_joint, thresholds_mm=thresholds, success=success,
        success_at=at, auc=curve_auc(thresholds, success),
    )


def vertex_error_mm(pred: np.ndarray, target: np.ndarray) -> float:
    """Mean Euclidean vertex error, mm, over all vertices of all frames. (N, V, 3) each."""
    pred = _points("pred", pred)
    target = _points("target", target)
    _same_shape(pred, target)
    return float(np.linalg.norm(pred - target, axis=-1).mean())


# --- model validity ----------------------------------------------------------------------

class PoseValidity(NamedTuple):
    """Joint-limit violations of predicted θ (DeepModel's "frames with out-of-range angles").

    invalid_fraction: share of frames with at least one θ entry outside its finite limits ± tol
    too_low, too_high: (26,) int, frames below lo − tol / above hi + tol per θ entry
    per_dof:          (26,) int, too_low + too_high (0 where the limits are ±inf)
    num_frames:       N
    """

    invalid_fraction: float
    too_low: np.ndarray
    too_high: np.ndarray
    per_dof: np.ndarray
    num_frames: int


def pose_validity(theta: np.ndarray, lo: np.ndarray, hi: np.ndarray, tol_rad: float = 1e-6) -> PoseValidity:
    """theta (N, 26) radians, lo/hi (26,) (±inf entries ignored) -> :class:`PoseValidity`."""
    theta = np.asarray(theta, dtype=np.float64)
    if theta.ndim != 2 or theta.shape[1] != THETA_DIM or theta.shape[0] == 0:
        raise ValueError(f"expected theta of shape (N, {THETA_DIM}) with N >= 1, got {theta.shape}")
    lo = np.asarray(lo, dtype=np.float64)
    hi = np.asarray(hi, dtype=np.float64)
    if lo.shape != (THETA_DIM,) or hi.shape != (THETA_DIM,):
        raise ValueError(f"expected lo and hi of shape ({THETA_DIM},), got {lo.shape} and {hi.shape}")
    if not tol_rad >= 0:
        raise ValueError(f"expected tol_rad >= 0, got {tol_rad}")
    low = theta < lo - tol_rad          # comparisons with ±inf are False: ignored
    high = theta > hi + tol_rad
    return PoseValidity(
        invalid_fraction=float((low | high).any(1).mean()),
        too_low=low.sum(0), too_high=high.sum(0), per_dof=(low | high).sum(0),
        num_frames=int(theta.shape[0]),
    )


class BoneLengthSpread(NamedTuple):
    """Bone lengths across frames, per bone in ``CONNECTIONS`` order (20,), float64.

    mean_mm, std_mm: over frames (population std, ddof = 0)
    cv:              std / mean, dimensionless (NaN where the mean length is 0)
    """

    mean_mm: np.ndarray
    std_mm: np.ndarray
    cv: np.ndarray


def bone_length_spread(joints: np.ndarray) -> BoneLengthSpread:
    """(N, 21, 3) joints of ONE hand, mm -> per-bone coefficient of variation over frames.

    A model-based network (fixed bones) gives cv ≈ 0; one that regresses joints directly
    shows bones that stretch from frame to frame.
    """
    joints = _points("joints", joints, num=NUM_JOINTS)
    parents, children = (np.array(c) for c in zip(*CONNECTIONS))
    length = np.linalg.norm(joints[:, children] - joints[:, parents], axis=-1)   # (N, 20)
    mean, std = length.mean(0), length.std(0)
    cv = np.full_like(mean, np.nan)
    np.divide(std, mean, out=cv, where=mean > 0)
    return BoneLengthSpread(mean_mm=mean, std_mm=std, cv=cv)


# --- temporal quality --------------------------------------------------------------------

def _second_difference(track: np.ndarray) -> np.ndarray:
    """(T, J, 3) -> (T − 2, J, 3): p_{t+1} − 2 p_t + p_{t−1}, mm/frame²."""
    return track[2:] - 2.0 * track[1:-1] + track[:-2]


def _track(name: str, x: np.ndarray) -> np.ndarray:
    a = np.asarray(x)
    if a.ndim != 3 or a.shape[-1] != 3 or a.shape[0] < 3:
        raise ValueError(f"expected {name} of shape (T, J, 3) with T >= 3, got {a.shape}")
    return a.astype(np.float64, copy=False)


def acceleration_error(pred: np.ndarray, target: np.ndarray) -> float:
    """Mean ‖Δ²pred − Δ²target‖ over frames t = 1..T−2 and joints, mm/frame². (T, J, 3) each."""
    pred, target = _track("pred", pred), _track("target", target)
    _same_shape(pred, target)
    return float(np.linalg.norm(_second_difference(pred) - _second_difference(target), axis=-1).mean())


def jitter(pred: np.ndarray) -> float:
    """Mean ‖p_{t+1} − 2 p_t + p_{t−1}‖ over frames t = 1..T−2 and joints, mm/frame². (T, J, 3)."""
    return float(np.linalg.norm(_second_difference(_track("pred", pred)), axis=-1).mean())


# --- plot (pure rendering + one file write) -----------------------------------------------

#: BGR colours of successive curves.
CURVE_COLOURS: tuple[tuple[int, int, int], ...] = (
    (200, 90, 20), (30, 120, 230), (40, 160, 40), (40, 40, 210), (160, 60, 150),
    (40, 140, 140), (120, 120, 120), (0, 0, 0),
)


def render_success_curves(curves: Mapping[str, tuple[np.ndarray, np.ndarray]],
                          size: tuple[int, int] = (720, 520)) -> np.ndarray:
    """Draw success curves: {name: (thresholds mm (T,), fractions (T,) in [0, 1])} -> (H, W, 3) uint8 BGR.

    x: 0-80 mm, ticks every 10 mm; y: 0-100 %, ticks every 10 %; a legend with each name
    and its AUC over the drawn range. ``size`` is (width, height) in pixels.
    """
    if not curves:
        raise ValueError("expected at least one curve, got none")
    width, height = size
    left, right, top, bottom = 80, 20, 40, 60
    x0, x1, y0, y1 = left, width - right, height - bottom, top      # plot box, y0 is 0 %
    img = np.full((height, width, 3), 255, np.uint8)
    font = cv2.FONT_HERSHEY_SIMPLEX

    def px(t: np.ndarray, f: np.ndarray) -> np.ndarray:
        u = x0 + (np.clip(t, 0, SUCCESS_MAX_MM) / SUCCESS_MAX_MM) * (x1 - x0)
        v = y0 + np.clip(f, 0, 1) * (y1 - y0)
        return np.round(np.stack((u, v), -1)).astype(np.int32)

    for mm in range(0, SUCCESS_MAX_MM + 1, 10):   # x grid and ticks every 10 mm
        u = int(round(x0 + mm / SUCCESS_MAX_MM * (x1 - x0)))
        cv2.line(img, (u, y0), (u, y1), (225, 225, 225), 1)
        cv2.line(img, (u, y0), (u, y0 + 5), (0, 0, 0), 1)
        (tw, _), _ = cv2.getTextSize(str(mm), font, 0.45, 1)
        cv2.putText(img, str(mm), (u - tw // 2, y0 + 22), font, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    for pct in range(0, 101, 10):                  # y grid and ticks every 10 %
        v = int(round(y0 + pct / 100 * (y1 - y0)))
        cv2.line(img, (x0, v), (x1, v), (225, 225, 225), 1)
        cv2.line(img, (x0 - 5, v), (x0, v), (0, 0, 0), 1)
        (tw, th), _ = cv2.getTextSize(str(pct), font, 0.45, 1)
        cv2.putText(img, str(pct), (x0 - 10 - tw, v + th // 2), font, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.rectangle(img, (x0, y1), (x1, y0), (0, 0, 0), 1)
    cv2.putText(img, "max joint error threshold (mm)", (x0 + (x1 - x0) // 2 - 140, height - 15),
                font, 0.55, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.putText(img, "frames within threshold (%)", (10, 25), font, 0.55, (0, 0, 0), 1, cv2.LINE_AA)

    legend = []
    for i, (name, (t, f)) in enumerate(curves.items()):
        t = np.asarray(t, dtype=np.float64)
        f = np.asarray(f, dtype=np.float64)
        if t.ndim != 1 or t.shape != f.shape or t.size < 2:
            raise ValueError(f"curve {name!r}: expected thresholds (T,) and fractions (T,) with T >= 2, "
                             f"got {t.shape} and {f.shape}")
        if not ((f >= 0) & (f <= 1)).all():
            raise ValueError(f"curve {name!r}: expected fractions in [0, 1], got range "
                             f"[{f.min()}, {f.max()}]")
        colour = CURVE_COLOURS[i % len(CURVE_COLOURS)]
        cv2.polylines(img, [px(t, f)], False, colour, 2, cv2.LINE_AA)
        drawn = (t >= 0) & (t <= SUCCESS_MAX_MM)
        auc = curve_auc(t[drawn], f[drawn]) if drawn.sum() >= 2 else float("nan")
        legend.append((f"{name} (AUC {auc:.3f})", colour))

    row = 22
    box_w = max(cv2.getTextSize(text, font, 0.5, 1)[0][0] for text, _ in legend) + 50
    bx1, by0 = x1 - 10, y0 - 10 - row * len(legend) - 8
    cv2.rectangle(img, (bx1 - box_w, by0), (bx1, y0 - 10), (255, 255, 255), -1)
    cv2.rectangle(img, (bx1 - box_w, by0), (bx1, y0 - 10), (0, 0, 0), 1)
    for i, (text, colour) in enumerate(legend):
        v = by0 + 8 + row * i + row // 2
        cv2.line(img, (bx1 - box_w + 8, v), (bx1 - box_w + 36, v), colour, 3)
        cv2.putText(img, text, (bx1 - box_w + 42, v + 5), font, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    return img


def success_curve_png(curves: Mapping[str, tuple[np.ndarray, np.ndarray]], path: str | Path,
                      size: tuple[int, int] = (720, 520)) -> Path:
    """Render :func:`render_success_curves` and write it as a PNG at ``path`` (folder must exist)."""
    path = Path(path)
    img = render_success_curves(curves, size)
    ok, buf = cv2.imencode(".png", img)
    if not ok:
        raise OSError(f"could not encode the success-curve PNG for {path}")
    path.write_bytes(buf.tobytes())
    return path
