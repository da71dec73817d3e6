"""Hand finding in a depth frame: where to centre the crop (``models/crop.py``).

Frames and units (the ``calib`` conventions): camera frame x right, y down, z forward,
millimetres; pixels (u, v) with (0, 0) the centre of the top-left pixel; uvd = (u px, v px,
z mm). Depth images are (H, W) float32 mm; 0, NaN, inf and values outside
(min_depth_mm, max_depth_mm) are "no depth". Areas are front-projected surface areas in mm²:
a pixel at depth z covers z² / (fx fy) mm², so no threshold depends on the camera.

The target is the hand's centre, close to the PALM CENTRE (mean of the wrist and the four
finger MCPs, joints 0, 5, 9, 13, 17 of ``models/joints.py``; :func:`palm_centre`), not the
wrist: the crop cube is centred there. Both entry points are pure (no IO, no state; the pixel
rays of a camera with lens distortion are memoised per intrinsics) and vectorised with numpy
and OpenCV.

:func:`find_hand` (detection, DeepPrior++-style nearest-object slicing, then the free end of
the arm):

1. **Nearest object.** On a grid of every ``grid_px``-th pixel (its pinholes closed: a sample
   without depth amid one surface takes the nearest neighbouring depth, so that dropouts do
   not break a hand up), d_near is the depth of the
   ``near_samples``-th nearest valid sample; the slice [d_near, d_near + slice_mm] is split
   into 8-connected components. A component counts when its *core* (the samples whose eight
   neighbours are all in the slice) has at least ``min_core_mm2``: speckle, flying pixels and
   sensor noise at the image border have almost no core, a palm keeps most of its area. A
   *thin* component counts too: a hand seen edge-on (3-5k mm² in all, its fingers two or
   three samples wide) keeps a fifth to a third of its area as core, down to
   ``thin_core_mm2``, with at least ``thin_area_mm2`` in all (so does some real sensor noise,
   and thin components lose the near ties of stage 2). If
   nothing counts, the slice is peeled off and the search restarts behind it (at most
   ``max_rounds`` times). The candidates are ranked by a low percentile of their core's
   depths. A nearest candidate larger than ``max_area_mm2`` is the hand merged with what it
   touches (the body, a desk) or no hand at all (a wall): the slice is halved, down to
   ``min_slice_mm``, so that a hand held in front of the body separates from it; still too
   large means no hand.
2. **Where the arm comes from.** A candidate's *entry* is where it touches the image border
   or where its surface goes on smoothly (a depth step below ``continuity_mm`` between
   neighbouring samples) behind the slice: the forearm going out of view or back to the body.
   Silhouette edges, with a jump to the background, are not entries. Candidates within
   ``near_tie_mm`` of the nearest are equally near; of those, the one protruding farthest from
   its entry wins (a hand at the end of an arm beats a band of the lap or chest); a thin one
   wins only over other thin ones.
   **2b. An arm reaching away.** A winner that comes in through the image border and whose
   surface goes on behind the slice is the near part of an arm reaching away from the camera
   (a head-mounted view: the shoulder is just below the camera). It is replaced by the whole
   depth-continuous surface it belongs to, out to ``reach_mm`` behind d_near, whose entry is
   the border: the hand is that arm's far end. Kept as it is when that surface is larger than
   a hand and forearm (it joins a table or the body) or leaves the view a second time (the
   blob's border contact was the hand itself, its arm going away).
3. **The free end.** The hand is the end of the arm: the seed is the part of the blob
   farthest (in the image, by a distance transform) from its entry, i.e. the fingertips or
   knuckles (within ``tip_band_mm`` of the farthest sample). A blob with no entry at all (a
   hand alone, or a rendered forearm stub ending in the air) gives two seeds, both ends of its
   principal axis, and the end whose centre (stage 4) is nearer to the camera is the hand:
   the forearm goes back towards the body.
4. **Centre of mass, robust to the forearm.** From the seed, the area-weighted COM of the
   valid points inside a sphere of radius ``hand_radius_mm`` around the current centre is
   recomputed until it moves less than ``tolerance_mm`` (a flat-kernel mean shift, long steps
   over-relaxed; first on the ``grid_px`` grid, then on the ``refine_px`` grid). Started at
   the free end it walks down the fingers and stops at the palm, the densest part of the
   hand: the narrower wrist is a saddle of the surface density that the sphere does not
   cross. The COM of everything inside the 250 mm crop cube (DeepPrior++'s refinement), by
   contrast, slides onto the wrist and forearm. The sphere uses every valid pixel near the
   blob, not only the slice, so a hand cut by the slice is still whole. The result is moved
   ``surface_offset_mm`` along its viewing ray, from the visible surface to about the depth
   of the joints.

:func:`track_hand` (tracking by crop): the same refinement, started at the palm centre of the
previous frame's joints; ``None`` when too little surface is left near it or the centre would
move more than half a cube, and the caller then falls back to :func:`find_hand`.

Neither ever makes up a hand: an empty frame, far background only, NaN/inf values, or blobs
too small or too large for a hand give ``None``.

Limits: an object about as near as the hand or nearer (a cup, a box, a head, the other hand)
can be taken for it: :func:`find_hands` lists such objects, and other starting points on
them for a blob whose free end is not the hand (its arm's entry misread, or the hand held in
front of the body), so that the caller can check them (``models.estimator`` does, with the
pose network), and the app keeps a tracked hand unless a
detection agrees with it (``detection_agrees``). Measured on
500 whole synthetic frames with clutter (``models.synth generate --full-frames``; detection
alone, no tracking), the centre was more than 60 mm from the palm in 21 % of third-person and
10 % of head-mounted frames (30 % and 27 % before the arm-following and pinhole stages),
nearly always on another object. A head-mounted forearm lying on a table joins the table's
surface, and the centre stays on the forearm. A child's fist on its forearm has no
density saddle at the wrist: its centre lands 30-45 mm down the forearm, still well inside
the 250 mm cube. The distribution on rendered and real frames is checked by
``tests/test_handfind.py``.
"""
from __future__ import annotations

import functools
import math
import numbers
from dataclasses import dataclass, fields
from typing import Any, NamedTuple

import cv2
import numpy as np

from calib import Intrinsics, backproject, check_depth_mm, project
from models.joints import palm_centre

__all__ = ["HandDetection", "HandFinderConfig", "detection_agrees", "find_hand", "find_hands", "track_centre",
           "track_hand"]



_MAY_BE_ZERO = ("surface_offset_mm",)


@dataclass(frozen=True)
class HandFinderConfig:
    """Parameters of :func:`find_hand` and :func:`track_hand` (stages as in the module doc).

    Range:
    min_depth_mm: nearer depths are sensor noise (below the SR305 / D4xx minimum range), mm.
    max_depth_mm: farther depths are background, never a hand, mm (the SR305 reaches 1.5 m).

    1. Nearest object:
    grid_px: stride of the grid the slice is segmented on, pixels of the input image.
    near_samples: d_near is the depth of the near_samples-th nearest grid sample (a few
        isolated flying pixels do not set it; larger speckle is peeled by the area test).
    slice_mm: depth of the nearest-object slice [d_near, d_near + slice_mm], mm.
    min_slice_mm: the slice is halved down to this while the nearest object is too large, mm.
    min_area_mm2: least surface inside the final centre-of-mass sphere, front-projected mm².
        At 1 m it is min_area_mm2 * fx * fy / 1e6 px.
    min_core_mm2: least core area of a hand's component, front-projected mm² (a child's fist
        far away keeps about 1500 mm² of core, speckle under 800).
    thin_core_mm2, thin_area_mm2: a *thin* component, with less core than min_core_mm2,
        counts when it has at least thin_core_mm2 of core and thin_area_mm2 of surface in
        all, mm². On the 1000 validation frames 12 of 927 hands had less than 1200 mm² of
        core, nine of them 900-1100 with 2800-4600 in all (hands seen edge-on); without
        this the slice went to whatever lay behind them. Thin components lose near ties to
        the others whatever their protrusion: a patch of noise at a real SR305's image
        corner (948 mm² of core, no entry) must not take the first place from the hand in
        front of it. The remains of a scene shrunk into the sensor's minimum range (a test)
        have 1.6k mm² in all; two head-mounted hands seen end-on on the test split 2.2-2.4k.
        The app's estimator without tracking, first 1000 frames, step-70,000 model: on
        validation 7 frames went from 100-420 mm to 14-31 mm, one more hand was found and one
        frame went from 16 to 266 mm (mean 38.4 -> 36.5 mm); on test 8 frames went from
        200-540 mm to 13-168 mm and 5 more hands were found (46.4 -> 43.3 mm).
    max_area_mm2: largest hand-plus-forearm component, front-projected mm².
    near_percentile: a component's distance is this percentile (0-100) of its core's depths.
    max_rounds: how many slices of speckle are peeled off before giving up.

    2.-3. Entry and free end:
    reach_mm: an arm reaching away from the camera (stage 2b) is followed this far behind the
        nearest sample, mm: a head-mounted camera's shoulder to fingertips is 0.6-0.8 m.
    continuity_mm: largest depth step between neighbouring grid samples of one surface, mm.
    near_tie_mm: components within this of the nearest one are equally near; the one
        protruding farthest from its entry wins, mm.
    tip_band_mm: the seed is the blob's surface within this distance (in the image, at the
        blob's depth) of its farthest point from the entry, mm.

    4. Centre of mass:
    hand_radius_mm: radius of the centre-of-mass sphere, mm: about half a palm plus the
        fingers' first phalanges; small enough to leave the forearm out.
    refine_px: stride of the pixel grid of the final iterations, pixels.
    max_iterations: cap on the iterations per grid.
    tolerance_mm: the iterations stop when the centre moves less than this, mm.
    surface_offset_mm: the COM of the visible surface is moved this far along its viewing
        ray, mm: the camera sees the front of the hand, and its joints lie about half a palm's
        thickness (25-35 mm) behind it. 0 keeps the surface COM (DeepPrior++).

    Tracking:
    cube_mm: edge of the crop cube, mm; :func:`track_hand` reports the hand lost when the
        centre would move more than cube_mm / 2 from the previous palm centre.
    """

    min_depth_mm: float = 100.0
    max_depth_mm: float = 1500.0
    grid_px: int = 4
    near_samples: int = 4
    slice_mm: float = 200.0
    min_slice_mm: float = 40.0
    min_area_mm2: float = 1200.0
    min_core_mm2: float = 1200.0
    thin_core_mm2: float = 850.0
    thin_area_mm2: float = 2000.0
    max_area_mm2: float = 60000.0
    near_percentile: float = 5.0
    max_rounds: int = 6
    reach_mm: float = 700.0
    continuity_mm: float = 30.0
    near_tie_mm: float = 50.0
    tip_band_mm: float = 25.0
    hand_radius_mm: float = 70.0
    refine_px: int = 2
    max_iterations: int = 20
    tolerance_mm: float = 1.0
    surface_offset_mm: float = 15.0
    cube_mm: float = 250.0

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if f.type == "int":
                if isinstance(value, bool) or not isinstance(value, numbers.Integral):
                    raise TypeError(f"HandFinderConfig.{f.name}: expected an int, got {type(value).__name__}")
                lowest = 0 if f.name in _MAY_BE_ZERO else 1
                if value < lowest:
                    raise ValueError(f"HandFinderConfig.{f.name}: expected >= {lowest}, got {value}")
                object.__setattr__(self, f.name, int(value))
            else:
                if isinstance(value, bool) or not isinstance(value, numbers.Real):
                    raise TypeError(f"HandFinderConfig.{f.name}: expected a number, got {type(value).__name__}")
                lowest_ok = 0.0 if f.name in _MAY_BE_ZERO else math.ulp(0.0)
                if not math.isfinite(value) or value < lowest_ok:
                    raise ValueError(f"HandFinderConfig.{f.name}: expected a finite "
                                     f"{'non-negative' if lowest_ok == 0.0 else 'positive'} number, got {value}")
                object.__setattr__(self, f.name, float(value))
        if self.max_depth_mm <= self.min_depth_mm:
            raise ValueError(f"HandFinderConfig: expected min_depth_mm < max_depth_mm, got "
                             f"{self.min_depth_mm} and {self.max_depth_mm}")
        if self.thin_core_mm2 > self.min_core_mm2:
            raise ValueError(f"HandFinderConfig: expected thin_core_mm2 <= min_core_mm2, got "
                             f"{self.thin_core_mm2} and {self.min_core_mm2}")
        if self.min_slice_mm > self.slice_mm:
            raise ValueError(f"HandFinderConfig: expected min_slice_mm <= slice_mm, got "
                             f"{self.min_slice_mm} and {self.slice_mm}")
        if self.near_percentile > 100.0:
            raise ValueError(f"HandFinderConfig.near_percentile: expected a percentile in (0, 100], "
                             f"got {self.near_percentile}")
        if self.min_area_mm2 >= self.max_area_mm2:
            raise ValueError(f"HandFinderConfig: expected min_area_mm2 < max_area_mm2, got "
                             f"{self.min_area_mm2} and {self.max_area_mm2}")


class HandDetection(NamedTuple):
    """Where the hand is.

    com_mm: (3,) float64, mm, camera frame: the crop centre (close to the palm centre).
    com_uvd: (3,) float64: its pixel (u px, v px) and depth z mm.
    num_pixels: depth pixels inside the final centre-of-mass sphere (counted on the
        ``refine_px`` grid and scaled by refine_px², i.e. in full-resolution pixels).
    method: "detect" (:func:`find_hand`, the objects of :func:`find_hands`), "spare" (the
        other starting points of :func:`find_hands`), "track" (:func:`track_hand`) or "learnt"
        (:func:`models.handspot.spot_detection`: the learnt spotter's, centred like a track).
    """

    com_mm: np.ndarray
    com_uvd: np.ndarray
    num_pixels: int
    method: str


# --------------------------------------------------------------------------- input checks


def _checked_inputs(depth_mm: Any, intr: Any, cfg: Any) -> None:
    if not isinstance(intr, Intrinsics):
        raise TypeError(f"intr: expected calib.Intrinsics, got {type(intr).__name__}")
    if not isinstance(cfg, HandFinderConfig):
        raise TypeError(f"cfg: expected HandFinderConfig, got {type(cfg).__name__}")
    check_depth_mm(depth_mm, intr)


# --------------------------------------------------------------------------- pixel rays


@functools.lru_cache(maxsize=8)
def _distorted_rays(intr: Intrinsics, stride: int) -> tuple[np.ndarray, np.ndarray]:
    """Rays (x/z, y/z) of the pixels (stride * i, stride * j) of a camera with lens
    distortion: two (ceil(H / stride), ceil(W / stride)) float32 arrays, memoised."""
    u = np.arange(0, intr.width, stride, dtype=np.float64)
    v = np.arange(0, intr.height, stride, dtype=np.float64)
    uu, vv = np.meshgrid(u, v)
    rays = backproject(np.stack([uu, vv, np.ones_like(uu)], -1), intr)
    rx = np.ascontiguousarray(rays[..., 0], dtype=np.float32)
    ry = np.ascontiguousarray(rays[..., 1], dtype=np.float32)
    rx.setflags(write=False)
    ry.setflags(write=False)
    return rx, ry


def _rays_at(intr: Intrinsics, stride: int, box: tuple[slice, slice], sel: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rays (x/z, y/z), (N,) float32 each, of the selected samples ``sel`` (an (h, w) bool mask
    of the grid box (rows, cols)) of the pixels (stride * i, stride * j)."""
    rows, cols = box
    if intr.has_distortion:
        rx, ry = _distorted_rays(intr, stride)
        return rx[box][sel], ry[box][sel]
    # Pinhole: x/z depends on u only and y/z on v only.
    j, i = np.nonzero(sel)
    rx = ((i + cols.start) * stride - intr.cx) * (1.0 / intr.fx)
    ry = ((j + rows.start) * stride - intr.cy) * (1.0 / intr.fy)
    return rx.astype(np.float32), ry.astype(np.float32)


def _sampled_depth(depth: np.ndarray, stride: int, cfg: HandFinderConfig) -> np.ndarray:
    """Every stride-th pixel; anything that is not a depth in range becomes 0."""
    g = depth[::stride, ::stride]
    ok = (g > cfg.min_depth_mm) & (g < cfg.max_depth_mm)  # False for NaN and +-inf
    return np.where(ok, g, np.float32(0.0))


_NEIGHBOURS = ((-1, -1), (-1, 0), (-1, 1), (0, -1), (0, 1), (1, -1), (1, 0), (1, 1))


def _filled(g: np.ndarray, continuity_mm: float, rounds: int = 2) -> np.ndarray:
    """The sampled depth with its pinholes closed: ``rounds`` times, a sample with no depth
    whose eight neighbours include at least four within ``continuity_mm`` of the nearest of
    them takes that nearest depth. Sensor dropouts speckle a hand (the SR305 at its edges, our
    sensor model anywhere) and would break up its core; silhouettes, holes wider than a few
    samples and the gap between two surfaces (a forearm in front of the body) stay."""
    for _ in range(rounds):
        valid = (g > 0.0).view(np.uint8)
        count = cv2.boxFilter(valid, cv2.CV_16S, (3, 3), normalize=False, borderType=cv2.BORDER_CONSTANT)
        rows, cols = np.nonzero((valid == 0) & (count >= 4))  # holes with four valid neighbours
        if rows.size == 0:
            break
        padded = np.pad(g, 1)
        offsets = np.array([dy * padded.shape[1] + dx for dy, dx in _NEIGHBOURS])
        around = padded.ravel()[((rows + 1) * padded.shape[1] + cols + 1)[:, None] + offsets]  # (N, 8)
        nearest = np.where(around > 0.0, around, np.float32(np.inf)).min(1)
        close = ((around > 0.0) & (around - nearest[:, None] < continuity_mm)).sum(1)
        keep = close >= 4
        if not keep.any():
            break
        g = g.copy()
        g[rows[keep], cols[keep]] = nearest[keep]
    return g


def _sample_area(intr: Intrinsics, stride: int) -> float:
    """Front-projected area of one grid sample per mm² of depth²: mm² = this * z²."""
    return stride * stride / (intr.fx * intr.fy)


# --------------------------------------------------------------------------- 1.-3. the hand's blob


_KERNEL_3X3 = np.ones((3, 3), np.uint8)


class _Blob(NamedTuple):
    rows: slice             # the grid box holding the component (one sample of margin)
    cols: slice
    mask: np.ndarray        # (h, w) bool in the box: the component
    entry: np.ndarray       # (h, w) bool: its samples where the arm (or body) continues
    from_entry: np.ndarray  # (h, w) float32 grid px: distance of each sample from the entry
    protrusion_mm: float    # how far its free end sticks out of the entry, mm (inf: no entry)


def _percentile(values: np.ndarray, pct: float) -> float:
    """Nearest-rank percentile (0-100) of a non-empty 1-D array; cheaper than np.percentile."""
    k = int(round(pct / 100.0 * (values.size - 1)))
    return float(np.partition(values, k)[k])


def _bounding_box(mask: np.ndarray) -> tuple[slice, slice]:
    """(rows, cols) slices of the smallest box holding the True samples of a non-empty mask."""
    rows = np.flatnonzero(mask.any(1))
    cols = np.flatnonzero(mask.any(0))
    return slice(int(rows[0]), int(rows[-1]) + 1), slice(int(cols[0]), int(cols[-1]) + 1)


def _on_image_border(mask: np.ndarray, rows: slice, cols: slice, shape: tuple[int, int]) -> np.ndarray:
    """The samples of ``mask`` (a grid box (rows, cols) of a grid of ``shape``) that lie on
    the image border."""
    border = np.zeros_like(mask)
    if rows.start == 0:
        border[0] |= mask[0]
    if rows.stop == shape[0]:
        border[-1] |= mask[-1]
    if cols.start == 0:
        border[:, 0] |= mask[:, 0]
    if cols.stop == shape[1]:
        border[:, -1] |= mask[:, -1]
    return border


def _blob(g: np.ndarray, intr: Intrinsics, labels: np.ndarray, label: int, box: tuple[slice, slice],
          far_mm: float, cfg: HandFinderConfig) -> _Blob:
    """Component ``label`` (in the grid box ``box``) with its entry, distances from the entry
    and protrusion.

    The entry: samples on the image border, or with a neighbour behind the slice's far end
    by less than ``continuity_mm`` (the same surface going on behind the slice).
    """
    height, width = g.shape
    rows = slice(max(0, box[0].start - 1), min(height, box[0].stop + 1))
    cols = slice(max(0, box[1].start - 1), min(width, box[1].stop + 1))
    sub = g[rows, cols]
    mask = labels[rows, cols] == label
    entry = _on_image_border(mask, rows, cols, g.shape)
    # The nearest neighbour behind the slice (a 3 x 3 minimum filter), closer than
    # continuity_mm to the sample itself: the surface goes on behind the slice.
    beyond = np.where(sub > far_mm, sub, np.float32(np.inf))
    nearest_beyond = cv2.erode(beyond, _KERNEL_3X3, borderType=cv2.BORDER_CONSTANT, borderValue=np.inf)
    entry |= mask & (nearest_beyond - sub < cfg.continuity_mm)
    if not entry.any():
        return _Blob(rows, cols, mask, entry, np.zeros(mask.shape, np.float32), math.inf)
    # Image distance (grid px) of every sample from the nearest entry sample.
    from_entry = cv2.distanceTransform((~entry).view(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_5)
    mm_per_px = _percentile(sub[mask], 50.0) * cfg.grid_px / math.sqrt(intr.fx * intr.fy)
    return _Blob(rows, cols, mask, entry, from_entry, float(from_entry[mask].max()) * mm_per_px)


def _hand_blobs(g: np.ndarray, intr: Intrinsics, cfg: HandFinderConfig, limit: int = 1) -> list[_Blob]:
    """Stages 1-2: the nearest hand-sized component of the nearest-object slice first, then
    up to ``limit - 1`` other hand-sized components of that slice, nearest first (candidates
    for :func:`find_hands`); empty when there is none."""
    per_z2 = _sample_area(intr, cfg.grid_px)
    g2 = (g.astype(np.float64) ** 2).ravel()
    remaining = g > 0
    for _ in range(cfg.max_rounds):
        values = g[remaining]
        if values.size == 0:
            return []
        k = min(cfg.near_samples, values.size) - 1
        d_near = float(np.partition(values, k)[k])
        width = cfg.slice_mm
        while True:
            far = d_near + width
            mask = remaining & (g <= far)
            n, labels = cv2.connectedComponents(mask.view(np.uint8), connectivity=8)
            flat = labels.ravel()
            # Core: samples whose 8 neighbours are all in the slice. Speckle and flying pixels
            # have almost none; a palm keeps most of its area.
            core = cv2.erode(mask.view(np.uint8), _KERNEL_3X3, borderType=cv2.BORDER_REPLICATE).view(bool)
            in_core = core.ravel()
            core_area = np.bincount(flat[in_core], weights=g2[in_core], minlength=n) * per_z2
            core_area[0] = 0.0
            in_slice = mask.ravel()
            area = np.bincount(flat[in_slice], weights=g2[in_slice], minlength=n) * per_z2
            thick = core_area >= cfg.min_core_mm2
            big = np.flatnonzero(thick | ((core_area >= cfg.thin_core_mm2) & (area >= cfg.thin_area_mm2)))
            if big.size == 0:
                remaining &= ~mask  # only speckle this near: peel it and look behind
                break
            # A component's distance: a low percentile of its core's depths.
            boxes = [_bounding_box(labels == i) for i in big]
            near = np.array([_percentile(g[box][(labels[box] == i) & core[box]], cfg.near_percentile)
                             for i, box in zip(big, boxes)])
            order = np.argsort(near)
            if area[big[order[0]]] > cfg.max_area_mm2:
                if width <= cfg.min_slice_mm:
                    return []  # a wall, a body, a desk: nothing hand-sized in front of it
                width = max(cfg.min_slice_mm, 0.5 * width)
                continue
            # Components about as near as the nearest compete on how far they stick out of
            # where they are attached: a hand at the end of an arm beats a band of the body.
            tied: list[_Blob] = []
            tied_thick: list[bool] = []  # which of the tied are not thin
            others: list[_Blob] = []
            for j in order:
                i = int(big[j])
                is_tied = near[j] <= near[order[0]] + cfg.near_tie_mm
                if area[i] > cfg.max_area_mm2 or (not is_tied and len(tied) + len(others) >= limit):
                    continue
                (tied if is_tied else others).append(_blob(g, intr, labels, i, boxes[j], far, cfg))
                if is_tied:
                    tied_thick.append(bool(thick[i]))
            if not tied:
                return []
            best = max(range(len(tied)), key=lambda t: (tied_thick[t], tied[t].protrusion_mm))
            rest = tied[:best] + tied[best + 1:] + others
            return ([_follow_arm(g, intr, tied[best], d_near, cfg)] + rest)[:limit]
    return []


#: Grid samples of slack around a blob's own border contact when asking whether its surface
#: leaves the view somewhere else (stage 2b).
_BORDER_SLACK = 3


def _follow_arm(g: np.ndarray, intr: Intrinsics, blob: _Blob, near_mm: float, cfg: HandFinderConfig) -> _Blob:
    """Stage 2b: a blob that comes in through the image border and whose surface goes on
    behind the slice is an arm reaching away from the camera (a head-mounted view, or an arm
    stretched in from the side): the hand is the far end of that surface, past the slice, not
    the slice's free end (the middle of the forearm). The blob is replaced by the whole
    depth-continuous surface it belongs to (neighbouring grid samples less than
    ``continuity_mm`` apart, no farther than ``near_mm + reach_mm``), whose entry is where it
    leaves the image; unchanged when that surface is larger than ``max_area_mm2`` (the arm
    lies on a table, or joins the body)."""
    on_border = _on_image_border(blob.mask, blob.rows, blob.cols, g.shape)
    if not on_border.any() or not (blob.entry & ~on_border).any():
        return blob
    far = near_mm + cfg.reach_mm
    valid = (g > 0.0) & (g <= far)
    # Samples next to a depth step (a silhouette) split the surfaces apart.
    highest = cv2.dilate(np.where(valid, g, np.float32(0.0)), _KERNEL_3X3)
    lowest = cv2.erode(np.where(valid, g, np.float32(np.inf)), _KERNEL_3X3)
    surface = valid & (highest - g < cfg.continuity_mm) & (g - lowest < cfg.continuity_mm)
    _, labels = cv2.connectedComponents(surface.view(np.uint8), connectivity=8)
    ids = np.unique(labels[blob.rows, blob.cols][blob.mask])
    ids = ids[ids > 0]
    if ids.size == 0:
        return blob
    grown = np.isin(labels, ids)
    grown[blob.rows, blob.cols] |= blob.mask
    area = float((g[grown].astype(np.float64) ** 2).sum()) * _sample_area(intr, cfg.grid_px)
    if area > cfg.max_area_mm2:
        return blob
    arm = _blob(g, intr, grown.view(np.uint8), 1, _bounding_box(grown), far, cfg)
    # An arm has one way into the view. A surface that also leaves it elsewhere (the image
    # border, or on behind reach_mm) means the blob's border contact was the hand, held at the
    # edge of the view with its arm going away.
    entered = np.zeros(g.shape, bool)
    entered[blob.rows, blob.cols] = on_border
    entered = cv2.dilate(entered.view(np.uint8), np.ones((2 * _BORDER_SLACK + 1,) * 2, np.uint8)).view(bool)
    if np.count_nonzero(arm.entry & ~entered[arm.rows, arm.cols]) > _BORDER_SLACK:
        return blob
    return arm


def _selected(sub: np.ndarray, sel: np.ndarray, intr: Intrinsics, stride: int,
              box: tuple[slice, slice]) -> np.ndarray:
    """(N, 3) float64 points of the samples ``sel`` of ``sub``, the depth grid's box ``box``."""
    rx, ry = _rays_at(intr, stride, box, sel)
    d = sub[sel].astype(np.float64)
    return np.stack([rx * d, ry * d, d], -1)


def _weighted_mean(p: np.ndarray) -> np.ndarray:
    w = p[:, 2] ** 2  # front-projected area per sample is proportional to z²
    return (p * w[:, None]).sum(0) / w.sum()


def _free_end_seeds(g: np.ndarray, intr: Intrinsics, blob: _Blob, cfg: HandFinderConfig) -> list[np.ndarray]:
    """Stage 3: starting points at the blob's free end (two candidates when it has no entry)."""
    box = (blob.rows, blob.cols)
    sub, mask = g[box], blob.mask
    if math.isfinite(blob.protrusion_mm):
        mm_per_px = _percentile(sub[mask], 50.0) * cfg.grid_px / math.sqrt(intr.fx * intr.fy)
        far = float(blob.from_entry[mask].max())
        tip = mask & (blob.from_entry >= far - cfg.tip_band_mm / mm_per_px)
        return [_weighted_mean(_selected(sub, tip, intr, cfg.grid_px, box))]
    # No entry: both ends of the principal axis.
    return _axis_ends(_selected(sub, mask, intr, cfg.grid_px, box), cfg)


def _axis_ends(p: np.ndarray, cfg: HandFinderConfig) -> list[np.ndarray]:
    """Both ends of the long (principal) axis of points ``p`` (N, 3) mm: the mean of the
    points within ``tip_band_mm`` of each extreme along it."""
    q = p - _weighted_mean(p)
    _, vecs = np.linalg.eigh(q.T @ q)
    t = q @ vecs[:, -1]
    return [_weighted_mean(p[tt >= float(tt.max()) - cfg.tip_band_mm]) for tt in (t, -t)]


def _other_seeds(g: np.ndarray, intr: Intrinsics, blob: _Blob, cfg: HandFinderConfig) -> list[np.ndarray]:
    """More starting points on a blob, for :func:`find_hands`' spare candidates: its part
    nearest to the camera (within ``tip_band_mm`` of its nearest sample: a hand held in front
    of the body) and, for a blob with an entry, both ends of its long axis (a hand at the end
    of an arm whose entry was misread; a blob without one was seeded at both already)."""
    box = (blob.rows, blob.cols)
    p = _selected(g[box], blob.mask, intr, cfg.grid_px, box)
    nearest = _weighted_mean(p[p[:, 2] <= p[:, 2].min() + cfg.tip_band_mm])
    return [nearest] + (_axis_ends(p, cfg) if math.isfinite(blob.protrusion_mm) else [])


# --------------------------------------------------------------------------- 4. centre of mass


class _Mass(NamedTuple):
    com_mm: np.ndarray  # (3,) float64
    area_mm2: float     # front-projected area inside the sphere
    pixels: int         # image pixels inside the sphere (samples * stride²)


class _Points(NamedTuple):
    """Valid points of the pixels (stride * i, stride * j) of a window, flattened (one array
    per coordinate: elementwise work on (N,) arrays is several times faster than on (N, 3))."""

    x: np.ndarray     # (N,) float32 mm, camera frame
    y: np.ndarray
    z: np.ndarray
    area: np.ndarray  # (N,) float64 front-projected area of each sample, mm²
    stride: int


def _window(intr: Intrinsics, centre: np.ndarray, radius: float, stride: int,
            cfg: HandFinderConfig) -> tuple[slice, slice] | None:
    """Grid box (rows, cols) of the pixels that can see a sphere, clipped to the image."""
    x, y, z = (float(c) for c in centre)
    if not (math.isfinite(x) and math.isfinite(y) and math.isfinite(z) and z > 0.0):
        return None
    if intr.has_distortion:
        u, v, _ = (float(c) for c in project(np.asarray(centre, dtype=np.float64), intr))
    else:
        u, v = intr.fx * x / z + intr.cx, intr.fy * y / z + intr.cy
    z_front = max(z - radius, cfg.min_depth_mm)
    half_u = radius * intr.fx / z_front + stride
    half_v = radius * intr.fy / z_front + stride
    i0 = max(0, math.ceil((u - half_u) / stride))
    i1 = min(-(-intr.width // stride), math.floor((u + half_u) / stride) + 1)
    j0 = max(0, math.ceil((v - half_v) / stride))
    j1 = min(-(-intr.height // stride), math.floor((v + half_v) / stride) + 1)
    if i0 >= i1 or j0 >= j1:
        return None
    return slice(j0, j1), slice(i0, i1)


def _box_points(depth: np.ndarray, intr: Intrinsics, stride: int, box: tuple[slice, slice],
                cfg: HandFinderConfig, sampled: np.ndarray | None = None) -> _Points:
    """The valid points of the pixels (stride * i, stride * j) in the grid box (rows, cols);
    ``sampled`` is the whole image already sampled by ``_sampled_depth`` at this stride."""
    rows, cols = box
    if sampled is None:
        d = _sampled_depth(depth[rows.start * stride:rows.stop * stride, cols.start * stride:cols.stop * stride],
                           stride, cfg)
    else:
        d = sampled[box]
    box = (slice(rows.start, rows.start + d.shape[0]), slice(cols.start, cols.start + d.shape[1]))  # clipped
    valid = d > 0.0
    rx, ry = _rays_at(intr, stride, box, valid)
    z = d[valid]
    return _Points(rx * z, ry * z, z, z.astype(np.float64) ** 2 * _sample_area(intr, stride),
                   stride)


def _sphere_mass(points: _Points, centre: np.ndarray, radius: float) -> _Mass | None:
    """Area-weighted COM of the points within ``radius`` mm of ``centre``."""
    cx, cy, cz = (float(c) for c in centre)
    d2 = points.x - cx
    d2 *= d2
    t = points.y - cy
    t *= t
    d2 += t
    t = points.z - cz
    t *= t
    d2 += t
    inside = d2 < radius * radius
    area = points.area[inside]
    if area.size == 0:
        return None
    total = float(area.sum())
    com = np.array([area @ points.x[inside], area @ points.y[inside], area @ points.z[inside]]) / total
    return _Mass(com, total, int(area.size) * points.stride ** 2)


def _mean_shift(points: _Points, start: np.ndarray, cfg: HandFinderConfig) -> _Mass | None:
    """Recentre the sphere on its COM until it moves less than tolerance_mm. Long steps are
    over-relaxed by half (the flat-kernel mean shift creeps along a ridge of surface), short
    ones taken as they are, so the end point is a mean-shift fixed point."""
    centre = np.asarray(start, dtype=np.float64)
    mass = None
    for _ in range(cfg.max_iterations):
        mass = _sphere_mass(points, centre, cfg.hand_radius_mm)
        if mass is None:
            return None
        shift = mass.com_mm - centre
        step = math.sqrt(float(shift @ shift))
        if step < cfg.tolerance_mm:
            break
        centre = centre + (1.5 if step > 5.0 * cfg.tolerance_mm else 1.0) * shift
    return mass


def _hand_end(masses: list[_Mass]) -> _Mass | None:
    """Of two candidate ends (a blob with no entry), the nearer: the forearm goes back
    towards the body."""
    return min(masses, key=lambda m: float(m.com_mm[2]), default=None)


def _refine(depth: np.ndarray, coarse: _Points, intr: Intrinsics, starts: list[np.ndarray],
            cfg: HandFinderConfig) -> _Mass | None:
    """Stage 4: mean shift from each start on ``coarse`` (grid_px samples around the hand);
    of several ends the nearer (see :func:`_hand_end`), refined on the refine_px samples
    around it."""
    mass = _hand_end([m for m in (_mean_shift(coarse, s, cfg) for s in starts) if m is not None])
    if mass is None or cfg.refine_px == coarse.stride:
        return mass
    # The fine points cover the sphere with a margin for the last millimetres of travel.
    box = _window(intr, mass.com_mm, cfg.hand_radius_mm + 10.0, cfg.refine_px, cfg)
    if box is None:
        return None
    return _mean_shift(_box_points(depth, intr, cfg.refine_px, box, cfg), mass.com_mm, cfg)


def _detection(mass: _Mass | None, intr: Intrinsics, cfg: HandFinderConfig, method: str) -> HandDetection | None:
    if mass is None or mass.area_mm2 < cfg.min_area_mm2:
        return None
    com = mass.com_mm * (1.0 + cfg.surface_offset_mm / float(np.linalg.norm(mass.com_mm)))
    if not (cfg.min_depth_mm < com[2] < cfg.max_depth_mm):
        return None
    return HandDetection(com, np.asarray(project(com, intr), dtype=np.float64), mass.pixels, method)


# --------------------------------------------------------------------------- public


def find_hand(depth_mm: np.ndarray, intr: Intrinsics,
              cfg: HandFinderConfig = HandFinderConfig()) -> HandDetection | None:
    """Detect the hand nearest to the camera; ``None`` when there is none.

    depth_mm: (H, W) float32, mm, (H, W) = (intr.height, intr.width); 0, NaN, inf and
        out-of-range values are "no depth".
    returns HandDetection(method="detect") centred near the palm centre, or None.
    Raises TypeError / ValueError only for wrong argument types, dtype or shape.
    """
    _checked_inputs(depth_mm, intr, cfg)
    found = _candidates(depth_mm, intr, cfg, 1, spares=False)
    return found[0] if found else None


def find_hands(depth_mm: np.ndarray, intr: Intrinsics, cfg: HandFinderConfig = HandFinderConfig(),
               limit: int = 3) -> list[HandDetection]:
    """Up to ``limit`` candidates: :func:`find_hand`'s answer first (when it has one), then
    the other hand-sized objects of the nearest slice, nearest first (a cup or a head about
    as near as the hand, the other hand), then, while there is room, other starting points
    on those same objects (:func:`_other_seeds`: where an arm's entry was misread, its free
    end is the elbow or the body, and the hand is elsewhere on the blob). For a caller that
    can tell a hand from them (``models.estimator``: the one ``models.handcheck`` rates most
    likely the hand). Candidates within ``hand_radius_mm`` of an earlier one are dropped; the
    spare ones have ``method`` "spare". Same arguments and errors as :func:`find_hand`."""
    _checked_inputs(depth_mm, intr, cfg)
    if isinstance(limit, bool) or not isinstance(limit, numbers.Integral) or limit < 1:
        raise ValueError(f"limit: expected an int >= 1, got {limit!r}")
    return _candidates(depth_mm, intr, cfg, int(limit), spares=True)


def _candidates(depth_mm: np.ndarray, intr: Intrinsics, cfg: HandFinderConfig, limit: int,
                spares: bool) -> list[HandDetection]:
    """:func:`find_hands` on checked inputs; ``spares``: also the other starting points."""
    g = _filled(_sampled_depth(depth_mm, cfg.grid_px, cfg), cfg.continuity_mm)
    found: list[HandDetection] = []

    def add(seeds: list[np.ndarray], coarse: _Points, method: str) -> None:
        det = _detection(_refine(depth_mm, coarse, intr, seeds, cfg), intr, cfg, method)
        if det is not None and all(np.linalg.norm(det.com_mm - f.com_mm) > cfg.hand_radius_mm for f in found):
            found.append(det)

    blobs = []
    for blob in _hand_blobs(g, intr, cfg, limit):
        # Every sphere of the mean shift lies within hand_radius_mm of the blob.
        near = float(g[blob.rows, blob.cols][blob.mask].min())
        margin = math.ceil(cfg.hand_radius_mm * max(intr.fx, intr.fy)
                           / max(near - cfg.hand_radius_mm, cfg.min_depth_mm) / cfg.grid_px) + 1
        box = (slice(max(0, blob.rows.start - margin), blob.rows.stop + margin),
               slice(max(0, blob.cols.start - margin), blob.cols.stop + margin))
        coarse = _box_points(depth_mm, intr, cfg.grid_px, box, cfg, sampled=g)
        add(_free_end_seeds(g, intr, blob, cfg), coarse, "detect")
        blobs.append((blob, coarse))
    if not spares:
        return found
    for blob, coarse in blobs:
        if len(found) >= limit:
            break
        for seed in _other_seeds(g, intr, blob, cfg):
            add([seed], coarse, "spare")
            if len(found) >= limit:
                break
    return found


def track_hand(depth_mm: np.ndarray, intr: Intrinsics, previous_joints_mm: np.ndarray,
               cfg: HandFinderConfig = HandFinderConfig()) -> HandDetection | None:
    """Re-centre on the hand near the previous frame's joints; ``None`` when it is lost.

    previous_joints_mm: (21, 3) mm, camera frame, finite (the previous frame's estimate).
    The refinement starts at their palm centre (:func:`palm_centre`); see :func:`track_centre`.
    """
    joints = np.asarray(previous_joints_mm, dtype=np.float64)
    if joints.shape != (21, 3):
        raise ValueError(f"previous_joints_mm: expected shape (21, 3) mm, got {joints.shape}")
    if not np.all(np.isfinite(joints)):
        raise ValueError("previous_joints_mm: expected finite values, got NaN or inf")
    return track_centre(depth_mm, intr, palm_centre(joints), cfg)  # models.joints


def detection_agrees(found: HandDetection | None, previous_centre_mm: np.ndarray, cube_mm: float) -> bool:
    """Whether a detection belongs to the hand tracked so far: its centre within half a crop
    cube of the previous hand's centre (mm, camera frame). A detection farther away is another
    object that came nearer (the other hand, a cup); the tracker should take over."""
    if found is None:
        return False
    return float(np.linalg.norm(found.com_mm - np.asarray(previous_centre_mm, dtype=np.float64))) <= 0.5 * cube_mm


def track_centre(depth_mm: np.ndarray, intr: Intrinsics, previous_centre_mm: np.ndarray,
                 cfg: HandFinderConfig = HandFinderConfig()) -> HandDetection | None:
    """Re-centre on the hand near a previous centre (mm, camera frame); ``None`` when lost.

    The refinement starts at ``previous_centre_mm`` (e.g. the previous frame's crop centre,
    which does not depend on the network's output). Lost (None): less than ``min_area_mm2``
    of surface near it, or the centre moving more than cube_mm / 2.
    """
    _checked_inputs(depth_mm, intr, cfg)
    start = np.asarray(previous_centre_mm, dtype=np.float64)
    if start.shape != (3,) or not np.all(np.isfinite(start)):
        raise ValueError(f"previous_centre_mm: expected 3 finite values (mm), got {start!r}")
    if not (cfg.min_depth_mm < start[2] < cfg.max_depth_mm):
        return None
    # The hand can have moved up to half a cube since the previous frame.
    box = _window(intr, start, cfg.hand_radius_mm + 0.5 * cfg.cube_mm, cfg.grid_px, cfg)
    if box is None:
        return None
    mass = _refine(depth_mm, _box_points(depth_mm, intr, cfg.grid_px, box, cfg), intr, [start], cfg)
    if mass is None or np.linalg.norm(mass.com_mm - start) > 0.5 * cfg.cube_mm:
        return None
    return _detection(mass, intr, cfg, "track")
