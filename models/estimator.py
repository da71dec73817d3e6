"""Depth frame -> hand: the one inference pipeline the app and the evaluation share.

    depth (H, W) mm ─ find/track hand ─> COM ─ crop (models.crop) ─> patch ─ predictor ─>
    joints/vertices relative to the COM ─ + COM ─> camera frame

Frames and units (the ``calib`` conventions): camera frame x right, y down, z forward, mm;
uvd = (u px, v px, z mm). A predictor returns joints and vertices RELATIVE TO THE CROP CENTRE
in mm (camera axes); the estimator adds the centre.

Predictors (``Predictor``: patches (B, 1, S, S) float32 -> (joints (B, 21, 3), vertices
(B, V, 3) or None), mm relative to the crop centre):

* :class:`TorchPredictor` -- a :class:`models.nets.HandNet` (training checkpoints, shipped
  ``.pt`` weights);
* the ONNX engine of ``export`` (``.onnx`` files), through :func:`load_predictor`.

Left hands are mirrored: the image is flipped left-right (u -> W - 1 - u, the intrinsics
mirrored with it, :func:`mirror_intrinsics`), the right-hand network runs on the mirrored
frame, and the result is mirrored back (x -> -x in the camera frame, which is what flipping
the image does to the scene). The mesh's triangles then wind the other way; the viewer draws
both sides.

Hand finding per frame. Tracking (track by crop): :func:`models.handfind.track_centre`, the
mean shift started at the previous frame's joints (their palm centre) when they agree with the
previous crop centre to ``agree_mm``, else at the previous crop centre itself, so a wrong
prediction cannot drag the crop. Detection (:func:`models.handfind.find_hand`: nearest object,
free end of the arm, centre of mass; ~2 ms) when the hand is lost and every ``redetect_every``
frames, taken only within half a cube of the previous crop centre (another object that comes
nearer, the other hand or a cup, does not steal the track; tracking is used then). The default
``redetect_every = 1`` detects on every frame: on the demo recording the mean joint error was
40.7 mm that way and 43.6 mm with ``redetect_every = 5`` (interim model, step 2674), and mean
shift alone slid down the forearm within 60 frames when the hand moved up fast while the
network's joints were off; the detector re-anchors the crop on the free end of the arm.
:meth:`Estimator.reset` forgets the previous hand (a new sequence).

Two passes (``recrop``, on by default). The finder's centre of mass is that of the visible
points: 25 mm from the palm centre at the median in the training data (three quarters of its
crops centred by tracking from the previous joints), 32-38 mm on the demo recordings, where the
app detects on every frame and the centre slides towards the wrist. So the network runs twice:
on the crop around the finder's centre, then on a crop cut again (the same ``crop_depth``)
around the first pass's palm centre, if that is within a quarter cube of the first centre
(:func:`recrop_centre`); the second pass's joints are the result. DeepPrior++ (Oberweger &
Lepetit 2017) refines the detected centre before its pose network the same way, with a network
of its own; here the pose network's own palm does it, and training re-centres half its crops on
the true palm (``models.data.AugmentConfig.recentre_prob``) so that the second pass sees crops
like those it learnt from. The measured gains are in the README ("Results"); with the
step-23,000 model, one pass -> two: demo recording 30.7 -> 25.7 mm, a 600-frame render of the
demo's hand 31.3 -> 25.2 mm, NYU frame 1 34.4 -> 22.5 mm; a third pass gained nothing. It costs
a second crop and network run, counted in ``latency_ms["network"]``.

While a hand is tracked, the first pass does not start from the finder's centre: its crop is
cut at the previous frame's palm, moved as the finder's centre moved since that frame
(:meth:`Estimator._carried_palm`: the finder's centre moves with the hand, but sits away from
the palm, 44 mm at the median on the demo recording, 82 mm at the 90th percentile), and the
second pass is skipped when the first pass's palm lies within ``settled_mm`` (10 mm) of that
crop's centre, where a crop cut again would be nearly the same. (Not on a crop around the
finder's centre: on NYU frame 1 the first palm lay 8-9 mm from it, and the second pass still
gained 8.5 mm with one crop, step 56,000 and 70,000.) On the demo recording with the
step-70,000 model and four rotations: 16.66 -> 15.80 mm mean joint error, 5.1 -> 4.4 network
runs per frame (``settled_mm`` 0, never skipping: 15.83 mm, 5.1 runs; 5: 15.81, 4.7; 20:
15.94, 4.2). The offset is carried only while the previous palm lay within half a cube of the
finder's centre, a bound against carrying a wrong answer on (a quarter cube cost 0.5 mm there,
step 56,000).

Which object is the hand. With no hand tracked (the first frame, after a loss, or
``track=False``), the finder's nearest object can be something else about as near: a cup, a
box, a head. :func:`models.handfind.find_hands` gives up to ``candidates`` objects of the
nearest slice, then other starting points on them (the nearest part of a blob, the ends of its
long axis: where the arm's entry was misread, the finder's free end is the elbow or the body;
on the validation frames, in 86 of the 107 whose error was over 50 mm no candidate lay within
60 mm of the palm before these; validation mean 42.4 -> 38.4 mm with 4 candidates,
step-70,000 model); the network runs on each of their crops, turned too when the rotation
ensemble is on, and the one :mod:`models.handcheck` rates most likely the hand is kept: a
logistic score, fitted on the candidates of the 1000 validation frames (``python -m
models.handcheck --fit``), on how well the predicted hand explains the crop's surface
(:func:`surface_fit_mm`), how far the ensemble's four answers lie apart (a box or a ball is
not a hand from any side: median spread 32 mm on the validation candidates that were not the
hand, 8 mm on hands), how much of the predicted hand lies against free space (a hand is a
thin object; one the network puts on a table lies on it), how full the crop is, and whether
the candidate is the finder's own answer or a spare starting point. It replaced hand-set
margins (another candidate had to fit 5 mm better than the finder's first, a spare 15 mm:
on a real SR305 frame a corner of the torso fitted 3.4 mm better than the hand, on NYU frame
1 a spare on the body 12 mm better). Of the validation frames with two or more candidates
(733, step-70,000 model) it picks one within 60 mm of the palm in 678, the margins did in
668, the finder's first is one in 591, and 694 have one; on the test frames (1488 of 2000)
1340, 1327, 1180 and 1388. With single crops (``rotations = 1``, a score fitted without the
spread): validation 633 against 621 with the margins, test 1270 against 1242. On the real frames it
keeps the hand in all 20 (SR305 and NYU frame 1, where it rates the hand -3.1 and the body
-5.2). Measured with ``python -m models.evaluate --detect``: README, "Results". These runs
count in ``latency_ms["find"]``. Earlier, with the surface fit alone and then with the
spread added (step-46,000 model), ``python -m models.evaluate --detect`` on those 1000 frames
went 49.4 -> 43.4 mm mean, 16.6 -> 13.7 mm median (rotations 1 -> 4). A fist and a box
still look alike to it.

The learnt spotter (``spot``, on by default; :mod:`models.handspot`). The finder's rules fail
where their geometry does not hold: a table edge nearer than the hand, an arm whose free end
is the elbow, a hand against the body. A small network on the whole frame says where the palm
centre is (1 ms a frame); its spot, centred by the finder's own refinement, joins the
candidates when it lies on none of them, and every candidate carries the spotter's belief at
its centre (the softmax mass in the 3 x 3 cells there, the score's ``log_spot``). The finder
alone still says whether there is a hand at all (no candidates, no spot). Of the 1528 test
frames with two or more candidates the score then picks one within 60 mm of the palm in 1502
(1519 have one). Measured: README, "Results"; :mod:`models.handspot` for the network.

While a hand is tracked, the finder's answer more than half a cube from it
(``detection_agrees``) means another object or a hand that moved: the tracked object is
checked the same way against it and against the spotter's candidate (where that lies away
from both). The tracked one counts as the first (the score's ``first`` feature), so it stays
unless another rates higher still: the other hand or a cup coming nearer does not take the
crop, and a hand that jumped (frames that are not a sequence, a dropped stretch of frames) is
not lost to the table it left. When the tracker has lost the hand, the frame is detected as a
first one, except that the finder's own answer, when the check keeps it, is cropped as while
tracking (its first crop carries the palm). On the 1000 validation frames run as one
"sequence" (every frame a jump; ``python -m models.evaluate --detect --track [--no-spot]``):
52.2 mm mean when a lost hand took the finder's answer unchecked (session 12), 36.9 mm with
the detection for a lost hand, 19.3 mm with the spotter too (17.7 mm detecting each frame
alone); the demo recording is unchanged (15.80 mm). Checking every candidate of the detection
against the tracked object gained nothing more (19.3 mm) and cost the demo 8 % of its frame
rate (a second object beside the hand is checked in many frames). An object turned down
is not checked again in the next frame while it stays within ``TURNED_DOWN_MM`` of where it
was (the same crop would get the same answer): on the demo recording a second object next to
the hand was checked in 12 frames running, each check costing eight network runs.

Rotation ensemble (``rotations``, 4 by default). The last pass's crop is also run turned by
90°, 180° and 270° about the camera ray through its centre, cut from the patch exactly as
training's rotation augmentation cuts it (``models.data.rotate``: the network learnt every
turn, ±180°), and each answer is turned back and the four averaged (:func:`turned_patches`,
:func:`ensemble`). The four answers err differently, so the mean errs less: on 800 test-split
crops with the step-46,000 model the joint error went 20.6 -> 18.2 mm (2 turns 18.6, 3 18.3, 6
17.9, 8 17.8 on 600: four is the knee). A mean whose fingers bend beyond their anatomical range
(0.5 % of those frames: the members disagreed on which way a finger bends) is replaced by the
member nearest to it, so no invalid pose is made. It costs three more network runs, counted in
``latency_ms["network"]``; ``rotations = 1`` turns it off. Measured: README, "Results".

Model fit (``fit``, off by default; the app's ``--fit``). The last crop's answer (the
ensemble's, where it ran) is the start and the prior of :class:`models.fit.HandFitter`, which
fits the hand layer to the crop's depth; its joints and mesh are the frame's result and the
next frame is tracked from them. Counted in ``latency_ms["fit"]``. Measured: README, "Model
fitting".
"""
from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, NamedTuple, Protocol

import numpy as np
import torch

from calib import Intrinsics, project
from models.crop import BACKGROUND, FRONT, Crop, CropConfig, crop_depth, points_from_crop_uvd
from models.data import rotation_warp, warp_patch
from models.fit import FitConfig, FitResult, HandFitter
from models.handfind import HandDetection, HandFinderConfig, detection_agrees, find_hand, find_hands, track_centre
from models.handspot import HandSpotter, Spot, spot_detection, spot_mass
from models.joints import palm_centre
from models.losses import invalid_poses


class Predictor(Protocol):
    crop: CropConfig
    faces: np.ndarray | None

    def __call__(self, patches: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]: ...


class TorchPredictor:
    """A :class:`models.nets.HandNet` as a :class:`Predictor` (CPU or CUDA, no gradients)."""

    def __init__(self, net: torch.nn.Module, crop: CropConfig = CropConfig(), threads: int | None = None) -> None:
        self.net = net.eval()
        self.crop = crop
        self.half = crop.cube_mm / 2.0
        self.device = next(net.parameters()).device
        head_layer = getattr(getattr(net, "head", None), "layer", None)
        self.faces = head_layer.faces.cpu().numpy() if head_layer is not None else None
        if threads is not None:
            torch.set_num_threads(threads)

    @torch.no_grad()
    def __call__(self, patches: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        x = torch.as_tensor(np.ascontiguousarray(patches, dtype=np.float32), device=self.device)
        out = self.net(x)
        joints = (out.joints * self.half).cpu().numpy()
        vertices = None if out.vertices is None else (out.vertices * self.half).cpu().numpy()
        return joints, vertices


def load_predictor(path: str | Path, provider: str = "auto") -> Predictor:
    """A predictor from a model file: ``.onnx`` (exported engine) or ``.pt`` (weights/checkpoint).

    Raises FileNotFoundError / ValueError with the path for a missing or unreadable file.
    """
    path = Path(path)
    if path.suffix == ".onnx":
        from export.runtime import Engine  # lazy: onnxruntime only when an engine is used

        return EnginePredictor(Engine(path, provider=provider))
    from models.train import load_model

    device = "cuda" if provider in ("cuda", "tensorrt", "auto") and torch.cuda.is_available() else "cpu"
    return TorchPredictor(load_model(path, device))


class EnginePredictor:
    """An ONNX engine (``export.runtime.Engine``) as a :class:`Predictor`."""

    def __init__(self, engine) -> None:  # noqa: ANN001 -- export.runtime.Engine, imported lazily
        self.engine = engine
        meta = engine.metadata
        self.crop = CropConfig(cube_mm=float(meta.cube_mm), size=int(meta.input_size))
        self.faces = None if meta.faces is None else np.asarray(meta.faces)

    def __call__(self, patches: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        out = self.engine.run(np.ascontiguousarray(patches, dtype=np.float32))
        return out.joints_mm, out.vertices_mm


# --------------------------------------------------------------------------- mirroring (pure)


def mirror_intrinsics(intr: Intrinsics) -> Intrinsics:
    """Intrinsics of the left-right flipped image (u' = W - 1 - u): cx' = W - 1 - cx; of the
    lens coefficients only Brown-Conrady's p2 changes sign (x -> -x in its tangential terms)."""
    coeffs = list(intr.coeffs)
    if intr.distortion in ("brown_conrady", "inverse_brown_conrady"):
        coeffs[3] = -coeffs[3]
    return replace(intr, cx=intr.width - 1 - intr.cx, coeffs=tuple(coeffs))


def mirror_points(points_mm: np.ndarray) -> np.ndarray:
    """(..., 3) camera-frame points of the flipped image <-> the real scene: x -> -x."""
    out = np.array(points_mm, dtype=np.float64, copy=True)
    out[..., 0] *= -1.0
    return out


# --------------------------------------------------------------------------- the pipeline


class Estimate(NamedTuple):
    """One frame's result. Camera frame, mm; None where ``hand_found`` is False.

    joints_mm (21, 3), joints_uvd (21, 3) (u px, v px, z mm), vertices_mm (V, 3) or None,
    com_mm (3,) the crop centre, crop the :class:`models.crop.Crop` (of the mirrored frame for
    a left hand), method "detect" / "spare" / "learnt" / "track" / "", latency_ms {"find", "crop", "network", "fit", "total"},
    spread_mm how much the rotation ensemble's answers disagree (their mean joint distance from
    their mean, mm: an uncertainty; on test crops the quarter of frames with the least spread
    erred 13 mm on average, the quarter with the most 24 mm), None without the ensemble.
    """

    hand_found: bool
    joints_mm: np.ndarray | None
    joints_uvd: np.ndarray | None
    vertices_mm: np.ndarray | None
    com_mm: np.ndarray | None
    crop: Crop | None
    method: str
    latency_ms: dict[str, float]
    spread_mm: float | None = None


def recrop_centre(first_centre_mm: np.ndarray, joints_mm: np.ndarray, cube_mm: float) -> np.ndarray | None:
    """The second pass's crop centre: the first pass's palm centre (mm, camera frame), or None
    when it lies more than a quarter cube from the first crop centre (the prediction is not
    trusted that far; the first pass stands). Module docstring: "Two passes"."""
    palm = palm_centre(joints_mm)
    return palm if np.linalg.norm(palm - first_centre_mm) <= 0.25 * cube_mm else None


def surface_fit_mm(crop: Crop, intr: Intrinsics, hand_vertices_mm: np.ndarray, radius_mm: float = 80.0,
                   cap_mm: float = 30.0, stride: int = 2) -> float:
    """How badly a predicted hand explains the depth it was predicted from, mm (lower: better).

    crop: the crop the hand was predicted from; hand_vertices_mm: (V, 3) mm, camera frame, the
    predicted mesh's hand vertices. The mean distance, capped at ``cap_mm``, from each
    observed point near the hand (every ``stride``-th patch pixel with a depth inside the cube,
    within ``radius_mm`` of the vertices' centroid) to its nearest vertex; ``cap_mm`` when no
    point is there. A hand's crop scores 5-12 mm (10th-90th percentile on whole synthetic
    frames); a box, a ball or a head the network is shown 8-19 mm: their surfaces near the
    hand the network puts there are not shaped like one. Parameters chosen on the 1000
    validation frames (``data/synth_frames/val``): module docstring, "Which object is the hand".
    """
    from scipy.spatial import cKDTree

    patch = crop.patch[::stride, ::stride]
    v, u = np.nonzero((patch > FRONT) & (patch < BACKGROUND))
    verts = np.asarray(hand_vertices_mm, dtype=np.float64)
    if u.size == 0 or len(verts) == 0:
        return float(cap_mm)
    uvd = np.stack([u * float(stride), v * float(stride), patch[v, u].astype(np.float64)], -1)
    points = points_from_crop_uvd(uvd, crop, intr)
    points = points[np.linalg.norm(points - verts.mean(0), axis=1) < radius_mm]
    if len(points) == 0:
        return float(cap_mm)
    distance, _ = cKDTree(verts).query(points, distance_upper_bound=cap_mm)
    return float(np.minimum(distance, cap_mm).mean())


def turned_patches(crop: Crop, intr: Intrinsics, count: int) -> tuple[np.ndarray, np.ndarray]:
    """The crop's patch and the crops of its scene turned by 360° k / ``count`` (k = 1 ..
    count - 1) about the camera ray through the crop centre, cut from the patch exactly as
    training's rotation augmentation cuts them (``models.data.rotate``): patches (count, 1, S, S)
    float32, k = 0 the crop's own, and the scene rotations (count, 3, 3) float64 (p -> R·p,
    camera frame; the centre stays put). Module docstring, "Rotation ensemble"."""
    size = crop.patch.shape[-1]
    cfg = CropConfig(crop.cube_mm, size)
    unused_mask = np.zeros((size, size), bool)
    patches, rotations = [np.asarray(crop.patch, np.float32)], [np.eye(3)]
    for k in range(1, count):
        r, warp = rotation_warp(crop.com_mm, intr, cfg, 2.0 * math.pi * k / count)
        patches.append(warp_patch(crop.patch, unused_mask, [warp])[0])
        rotations.append(r)
    return np.stack(patches)[:, None], np.stack(rotations)


def turned_back(points_rel_mm: np.ndarray, rotations: np.ndarray) -> np.ndarray:
    """(K, N, 3) points predicted on :func:`turned_patches`' K patches (mm, relative to the crop
    centre, each in its turned scene) -> (K, N, 3) float64, each turned back (p -> Rᵀ·p: a
    rotation about a ray through the centre turns offsets from the centre alike)."""
    # Row vectors: p·R is Rᵀ·p. matmul, not einsum: 15x faster on (4, 778, 3).
    return np.matmul(np.asarray(points_rel_mm, dtype=np.float64), np.asarray(rotations, dtype=np.float64))


def ensemble(joints_rel_mm: np.ndarray, vertices_rel_mm: np.ndarray | None,
             rotations: np.ndarray) -> tuple[np.ndarray, np.ndarray | None, float]:
    """The rotation ensemble's hand from the predictions on :func:`turned_patches`' K patches:
    joints (K, 21, 3) and vertices (K, V, 3) or None, mm relative to the crop centre, each in
    its turned scene -> joints (1, 21, 3) and vertices (1, V, 3) or None, float64: the mean of
    the predictions turned back. Where the mean bends a finger beyond its anatomical range
    (:func:`models.losses.invalid_poses`; members that disagree on which way a finger bends),
    the member nearest to the mean instead, a network output and so a valid hand. Also the
    spread, mm: the members' mean joint distance from their mean (how much they disagree)."""
    joints = turned_back(joints_rel_mm, rotations)
    vertices = None if vertices_rel_mm is None else turned_back(vertices_rel_mm, rotations)
    mean = joints.mean(0)
    distance = np.linalg.norm(joints - mean, axis=-1).mean(-1)
    spread = float(distance.mean())
    if not invalid_poses(mean[None])[0]:
        return mean[None], None if vertices is None else vertices.mean(0)[None], spread
    k = int(np.argmin(distance))
    return joints[k:k + 1], None if vertices is None else vertices[k:k + 1], spread


#: While a hand is tracked, a detection within this of the one the check turned down in the
#: frame before is that object again and is not checked again, mm per frame (module
#: docstring, "Which object is the hand").
TURNED_DOWN_MM = 20.0

#: The spotter's candidate is checked unless a finder's candidate is centred this near it, mm: one
#: 25-70 mm away is the same object cropped elsewhere, and better centred where the spotter is
#: right (validation whole frames 17.58 -> 17.47 mm against a hand radius of 70 mm, score unchanged).
SPOT_DISTINCT_MM = 25.0

logger = logging.getLogger("models.estimator")


@dataclass(frozen=True)
class EstimatorConfig:
    """hand: "right" or "left" (mirrored); track: re-centre from the previous joints;
    recrop: run the network twice, the second time on a crop centred on the first's palm,
    unless that crop was the tracked palm's and the palm is within ``settled_mm`` of its centre;
    candidates: when no hand is tracked, the finder's candidates to check with the network
    (module docstring, "Which object is the hand"; 1: take the finder's first); rotations: the
    last pass's crop is also run turned, and the results averaged (module docstring,
    "Rotation ensemble"; 1: the crop alone); fit: the hand layer fitted to the last crop's
    depth, starting from the network's answer (``models.fit``; ``fitting`` its settings); spot:
    the learnt spotter's candidate and belief in the check (module docstring, "The learnt
    spotter"; needs ``models/weights/handspot.onnx``)."""

    hand: str = "right"
    track: bool = True
    agree_mm: float = 40.0   # previous joints' palm centre vs crop centre, mm: tracking starts at the palm
    redetect_every: int = 1  # frames between full detections (1: every frame, see the module docstring)
    recrop: bool = True      # second pass on a crop centred on the first pass's palm (module docstring)
    settled_mm: float = 10.0  # no second pass when a tracked first crop's palm is this near its centre, mm
    candidates: int = 4      # objects checked with the network when no hand is tracked (module docstring)
    rotations: int = 4       # turned copies of the last crop, the crop included (module docstring)
    finder: HandFinderConfig = field(default_factory=HandFinderConfig)
    fit: bool = False        # fit the hand layer to the last crop's depth (models.fit)
    fitting: FitConfig = field(default_factory=FitConfig)
    spot: bool = True        # the learnt spotter's candidate joins the finder's (models.handspot)

    def __post_init__(self) -> None:
        if self.hand not in ("right", "left"):
            raise ValueError(f"EstimatorConfig.hand: expected 'right' or 'left', got {self.hand!r}")
        settled = self.settled_mm
        if isinstance(settled, bool) or not isinstance(settled, (int, float)) or not settled >= 0:
            raise ValueError(f"EstimatorConfig.settled_mm: expected a number >= 0 (mm), got {settled!r}")
        for name in ("candidates", "rotations"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"EstimatorConfig.{name}: expected an int >= 1, got {value!r}")


class _Checked(NamedTuple):
    """A candidate's run kept from :meth:`Estimator._checked_choice` for the frame's pass: its
    detection, crop, joints (1, 21, 3) and vertices (1, V, 3) relative to the crop centre, and
    the rotation ensemble's spread when they are its answer already."""

    found: HandDetection
    crop: Crop
    joints_rel: np.ndarray
    vertices_rel: np.ndarray | None
    spread_mm: float | None  # the rotation ensemble's (None: not run yet)


class Estimator:
    """Stateful (tracking) pipeline: ``estimator(depth_mm, intrinsics) -> Estimate``.
    Thread: one caller at a time (it keeps the previous frame's hand)."""

    def __init__(self, predictor: Predictor, cfg: EstimatorConfig = EstimatorConfig(),
                 clock: Callable[[], float] = time.perf_counter) -> None:
        self.predictor, self.cfg, self.clock = predictor, cfg, clock
        self.crop_cfg: CropConfig = predictor.crop
        if cfg.finder.cube_mm != self.crop_cfg.cube_mm:
            self.cfg = replace(cfg, finder=replace(cfg.finder, cube_mm=self.crop_cfg.cube_mm))
        # Crop centre and palm centre of the joints of the last frame, in the network's (mirrored) frame.
        self._previous: np.ndarray | None = None
        self._previous_palm: np.ndarray | None = None
        self._previous_found: np.ndarray | None = None  # the finder's (or tracker's) centre in the frame before, mm
        self._since_detect = 0
        # The first pass already run on the chosen candidate (_checked_choice), for __call__ to reuse.
        self._checked: _Checked | None = None
        # Where the last frame's detection was that the check turned down for the tracked hand.
        self._turned_down: np.ndarray | None = None
        self._hand_vertices: np.ndarray | None = None
        self._check: Callable[[np.ndarray], np.ndarray] | None = None  # models.handcheck.HandCheck, loaded on first use
        self._fitter = HandFitter(self.cfg.fitting) if self.cfg.fit else None
        self._previous_fit: FitResult | None = None  # the last frame's fit: the next one's start while tracked
        # models.handspot.HandSpotter, loaded on first use; False: its weights are missing
        self._spotter: Callable[[np.ndarray, Intrinsics], Spot] | None | bool = None

    def reset(self) -> None:
        self._previous = self._previous_palm = self._previous_found = None
        self._previous_fit = None
        self._checked = None
        self._turned_down = None

    def locate(self, depth_mm: np.ndarray, intr: Intrinsics) -> HandDetection | None:
        """Detection every ``redetect_every`` frames (checked against the previous crop centre)
        and tracking from the previous frame's hand in between and as the fallback."""
        turned_down, self._turned_down = self._turned_down, None  # only ever the frame before's
        if not self.cfg.track or self._previous is None:
            self._since_detect = 0
            return self._detect(depth_mm, intr)
        self._since_detect += 1
        tracked = None
        if self._since_detect < self.cfg.redetect_every:
            tracked = self._track(depth_mm, intr)
            if tracked is not None:
                return tracked
        self._since_detect = 0
        found = find_hand(depth_mm, intr, self.cfg.finder)
        cube = self.crop_cfg.cube_mm
        if detection_agrees(found, self._previous, cube):
            return found
        tracked = tracked or self._track(depth_mm, intr)
        if tracked is None:   # the hand is lost: detect as on a first frame
            chosen = self._detect(depth_mm, intr)
            if chosen is not None and found is not None and \
                    np.linalg.norm(chosen.com_mm - found.com_mm) <= self.cfg.finder.hand_radius_mm:
                self._checked = None
                return found      # the finder's own answer: its first crop carries the palm, as tracked
            return chosen
        if found is None:
            return tracked
        if turned_down is not None and np.linalg.norm(found.com_mm - turned_down) <= TURNED_DOWN_MM:
            self._turned_down = found.com_mm  # the object turned down last frame, where it was
            return tracked
        # Another object: the tracked one stays unless the network finds the detection, or the
        # spotter's candidate away from both, more of a hand (the hand jumped, or the frames are
        # not a sequence).
        spot = self.spot(depth_mm, intr)
        rivals = [found]
        spotted = self._spotted(depth_mm, intr, spot, rivals)
        if spotted is not None and not detection_agrees(spotted, tracked.com_mm, cube):
            rivals.append(spotted)
        chosen = self._checked_choice(depth_mm, intr, [tracked, *rivals], spot)
        if chosen is tracked:
            self._turned_down = found.com_mm
        return chosen

    def _can_check(self) -> bool:
        """Whether candidates are checked: asked for, and a mesh to check the depth against."""
        return self.cfg.candidates > 1 and getattr(self.predictor, "faces", None) is not None

    def _detect(self, depth_mm: np.ndarray, intr: Intrinsics) -> HandDetection | None:
        """Detection with no hand to follow: of the finder's candidates, the one whose crop the
        network explains best (:func:`surface_fit_mm`; module docstring, "Which object is the hand")."""
        self._checked = None
        if not self._can_check():
            return find_hand(depth_mm, intr, self.cfg.finder)
        spot = self.spot(depth_mm, intr)
        found = self.candidates(depth_mm, intr, spot)
        if len(found) < 2:
            return found[0] if found else None
        return self._checked_choice(depth_mm, intr, found, spot)

    def spot(self, depth_mm: np.ndarray, intr: Intrinsics) -> Spot | None:
        """The learnt spotter's answer on the frame (None: ``spot`` off, candidates not checked,
        or no spotter: its weights missing, said once in the log, and detection goes on without)."""
        if not (self.cfg.spot and self._can_check()) or self._spotter is False:
            return None
        if self._spotter is None:
            try:
                self._spotter = HandSpotter()
            except FileNotFoundError as exc:
                logger.warning("hand spotter off: %s", exc)
                self._spotter = False
                return None
        return self._spotter(depth_mm, intr)

    def candidates(self, depth_mm: np.ndarray, intr: Intrinsics, spot: Spot | None) -> list[HandDetection]:
        """The objects detection checks (module docstring, "Which object is the hand"): the
        finder's (:func:`models.handfind.find_hands`), then the spotter's unless one of them is
        centred within ``SPOT_DISTINCT_MM`` of it (only when the finder found something: the
        finder alone says "no hand")."""
        found = find_hands(depth_mm, intr, self.cfg.finder, self.cfg.candidates)
        spotted = self._spotted(depth_mm, intr, spot, found) if found else None
        return found if spotted is None else [*found, spotted]

    def _spotted(self, depth_mm: np.ndarray, intr: Intrinsics, spot: Spot | None,
                 others: list[HandDetection]) -> HandDetection | None:
        """The spotter's candidate (:func:`models.handspot.spot_detection`), or None: no spot, no
        surface there, or one of ``others`` centred within ``SPOT_DISTINCT_MM`` of it."""
        spotted = None if spot is None else spot_detection(depth_mm, intr, spot, self.cfg.finder)
        if spotted is None or any(np.linalg.norm(spotted.com_mm - o.com_mm) <= SPOT_DISTINCT_MM for o in others):
            return None
        return spotted

    def candidate_features(self, depth_mm: np.ndarray, intr: Intrinsics, found: HandDetection,
                           first: bool, spot: Spot | None = None) -> tuple[np.ndarray, _Checked]:
        """The network's run on a candidate's crop (with the rotation ensemble when it is on)
        and that run's :func:`models.handcheck.candidate_features` (first: the finder's own
        answer or the tracked hand; spot: the frame's :meth:`spot`). Needs a predictor with a
        mesh (``_can_check``)."""
        from models.handcheck import candidate_features

        if self._hand_vertices is None:
            from models.train import hand_vertex_mask

            self._hand_vertices = hand_vertex_mask().numpy()
        crop = crop_depth(depth_mm, intr, found.com_mm, self.crop_cfg)
        # One crop at a time: the app's ONNX engines take batch 1.
        joints_rel, vertices_rel = self.predictor(crop.patch[None, None])
        spread = None
        if self.cfg.rotations > 1:
            joints_rel, vertices_rel, spread = self._turned(crop, intr, joints_rel, vertices_rel)
        hand = vertices_rel[0]
        if len(self._hand_vertices) == len(hand):
            hand = hand[self._hand_vertices]
        hand = hand.astype(np.float64) + crop.com_mm
        mass = None if spot is None else spot_mass(spot, found.com_uvd[:2], intr)
        features = candidate_features(crop, intr, hand, surface_fit_mm(crop, intr, hand), spread or 0.0,
                                      first, found.method == "spare", mass)
        return features, _Checked(found, crop, joints_rel, vertices_rel, spread)

    def _checked_choice(self, depth_mm: np.ndarray, intr: Intrinsics, found: list[HandDetection],
                        spot: Spot | None) -> HandDetection:
        """Of several objects (the first: the finder's own answer or the tracked hand), the one
        :mod:`models.handcheck` rates most likely the hand (module docstring, "Which object is
        the hand")."""
        self._checked = None
        if not self._can_check():
            return found[0]
        if self._check is None:
            from models import handcheck

            self._check = handcheck.load(ensemble=self.cfg.rotations > 1)
        runs = [self.candidate_features(depth_mm, intr, f, first=(k == 0), spot=spot) for k, f in enumerate(found)]
        b = int(np.argmax(self._check(np.stack([x for x, _ in runs]))))
        self._checked = runs[b][1]
        return found[b]

    def _turned(self, crop: Crop, intr: Intrinsics, joints_rel: np.ndarray,
                vertices_rel: np.ndarray | None) -> tuple[np.ndarray, np.ndarray | None, float]:
        """The rotation ensemble on ``crop``, whose own run gave ``joints_rel`` / ``vertices_rel``
        (module docstring, "Rotation ensemble"), and its spread, mm. One patch at a time: the
        app's engines take batch 1."""
        patches, rotations = turned_patches(crop, intr, self.cfg.rotations)
        runs = [(joints_rel, vertices_rel)] + [self.predictor(p[None]) for p in patches[1:]]
        vertices = None if vertices_rel is None else np.concatenate([v for _, v in runs])
        return ensemble(np.concatenate([j for j, _ in runs]), vertices, rotations)

    def _carried_palm(self, found: HandDetection) -> np.ndarray | None:
        """While a hand is tracked, the first pass's crop centre, mm: the previous frame's palm
        moved as the finder's centre moved, if that palm lay within half a cube of the finder's
        centre (a sanity bound: a wrong hand is not carried on); else None, and the first crop
        is the finder's (module docstring, "Two passes")."""
        if not self.cfg.track or self._previous_palm is None or self._previous_found is None:
            return None
        offset = self._previous_palm - self._previous_found
        if np.linalg.norm(offset) > 0.5 * self.crop_cfg.cube_mm:
            return None
        return found.com_mm + offset

    def _track(self, depth_mm: np.ndarray, intr: Intrinsics) -> HandDetection | None:
        start = self._previous
        if self._previous_palm is not None and np.linalg.norm(self._previous_palm - start) <= self.cfg.agree_mm:
            start = self._previous_palm
        return track_centre(depth_mm, intr, start, self.cfg.finder)

    def __call__(self, depth_mm: np.ndarray, intr: Intrinsics) -> Estimate:
        t0 = self.clock()
        left = self.cfg.hand == "left"
        if left:
            depth_mm, intr = np.ascontiguousarray(depth_mm[:, ::-1]), mirror_intrinsics(intr)
        found = self.locate(depth_mm, intr)
        t1 = self.clock()
        if found is None:
            self._previous = self._previous_palm = self._previous_found = None
            ms = {"find": 1e3 * (t1 - t0), "crop": 0.0, "network": 0.0, "fit": 0.0, "total": 1e3 * (t1 - t0)}
            return Estimate(False, None, None, None, None, None, "", ms)
        t2 = self.clock()
        carried = None
        if self._checked is not None and self._checked.found is found:
            _, crop, joints_rel, vertices_rel, spread = self._checked  # its first pass ran in _checked_choice
        else:
            carried = self._carried_palm(found)
            crop = crop_depth(depth_mm, intr, found.com_mm if carried is None else carried, self.crop_cfg)
            t2 = self.clock()
            joints_rel, vertices_rel = self.predictor(crop.patch[None, None])
            spread = None
        self._checked = None
        joints = joints_rel[0].astype(np.float64) + crop.com_mm
        # A carried crop whose palm is where it was cut needs no second pass.
        settled = carried is not None and np.linalg.norm(palm_centre(joints) - crop.com_mm) <= self.cfg.settled_mm
        centre = recrop_centre(crop.com_mm, joints, self.crop_cfg.cube_mm) if self.cfg.recrop and not settled else None
        if centre is not None:
            crop = crop_depth(depth_mm, intr, centre, self.crop_cfg)
            joints_rel, vertices_rel = self.predictor(crop.patch[None, None])
            spread = None
        if self.cfg.rotations > 1 and spread is None:
            joints_rel, vertices_rel, spread = self._turned(crop, intr, joints_rel, vertices_rel)
        joints = joints_rel[0].astype(np.float64) + crop.com_mm
        vertices = None if vertices_rel is None else vertices_rel[0].astype(np.float64) + crop.com_mm
        t3 = self.clock()
        if self._fitter is not None:
            tracked = self._previous_fit if self.cfg.track and self._previous is not None else None
            self._previous_fit = self._fitter([crop], [intr], joints[None], tracked)
            joints = self._previous_fit.joints[0]
            vertices = None if vertices is None else self._previous_fit.vertices[0]
        t4 = self.clock()
        self._previous, self._previous_palm = crop.com_mm, palm_centre(joints)
        self._previous_found = found.com_mm
        com = crop.com_mm
        if left:
            joints, com = mirror_points(joints), mirror_points(com)
            vertices = None if vertices is None else mirror_points(vertices)
            intr = mirror_intrinsics(intr)  # back to the real camera
        uvd = project(joints, intr)
        ms = {"find": 1e3 * (t1 - t0), "crop": 1e3 * (t2 - t1), "network": 1e3 * (t3 - t2),
              "fit": 1e3 * (t4 - t3), "total": 1e3 * (self.clock() - t0)}
        return Estimate(True, joints, uvd, vertices, com, crop, found.method, ms, spread)
