"""Model fitting: a predicted hand refined against the depth it was predicted from.

    predicted joints ─ IK on the hand layer ─> (θ, α, β) ─ Levenberg-Marquardt on the depth ─> hand

The network regresses a hand from one crop; the hand layer says where that hand's surface
is, and the crop says where the real surface is. A few Gauss-Newton steps bring them together:
the generative half of hybrid trackers (Tagliasacchi et al. 2015, Taylor et al. 2016), which
DeepModel and DeepHPS leave out. The start needs only joints, so the fit refines any method's
answer (the rotation ensemble's averaged joints included) and always returns a hand of the
layer: joints and mesh, articulations, α and β within their ranges, and a possible pose.

1. **Start** (:meth:`HandFitter.start`): the palm (wrist, thumb CMC, four MCPs) of the template
   rigidly onto the predicted one (Kabsch), then Levenberg-Marquardt on the predicted joints
   alone (inverse kinematics, α and β free with a weak pull to the template). While tracking,
   the frame before's fit instead, with fewer such steps (``warm_mm``, ``warm_start_iterations``).
2. **Fit** (:meth:`HandFitter.__call__`), minimising over θ (26), α (6), β (7):

   * data: each observed crop point within ``near_mm`` of the starting hand, to its nearest
     front-facing surface sample (the mesh's vertices and face centroids): point-to-plane
     plus ``point_weight`` x point-to-point (point-to-plane alone lets a flat palm slide along
     itself), Cauchy-weighted with scale ``robust_mm``; points nearest the forearm stub are
     the arm's and are left out;
   * silhouette: the hand's vertices (forearm stub left out) that project where the crop saw
     nothing (background, or depth behind the cube) are pushed towards the observed silhouette
     by the distance to it (Tagliasacchi et al. 2015's 2D term): the data term alone does not
     mind a finger laid over empty space;
   * prior: the joints stay near the prediction, ``prior_mm`` per coordinate;
   * shape: α and β stay near their start (``shape_weight``);
   * limits: articulations, α and β are clamped to their ranges after every step;
   * possible pose: the articulation limits hold in the template's frames, but α and β move the
     rest joints, and at some corners of their ranges (a short palm with long spread fingers)
     a finger within its limits bends beyond its anatomical maximum
     (:func:`models.losses.invalid_poses`, the evaluation's measure). Where the last step
     leaves such a hand, the hand's last iterate without one is returned, and where none had
     one (an impossible start), the start's pose on the template's shape: 1 of the first
     2000 test crops (tighter α, β ranges or a stiffer shape term also removed it, but cost
     0.1 mm on the others).

   The pose columns of the Jacobian are in closed form (:meth:`HandFitter._jacobians`), the
   shape columns by forward differences through the layer's own stages, every ``shape_every``
   steps; one layer call per step.

Frames and units: camera frame x right, y down, z forward, millimetres; radians. Parameters
``x`` (B, 39): rotation update ω (3, rad, camera frame: R ← exp(ω) R), the wrist's position
(3, mm), articulations (20, rad), α (6), β (7); the root rotation R (B, 3, 3) is kept apart.
Pure math on tensors: no IO.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple, Sequence

import numpy as np
import torch

from calib import Intrinsics
from models.crop import BACKGROUND, FRONT, Crop, points_from_crop_uvd, uvd_in_crop
from models.geometry import axis_angle_to_matrix, kabsch
from models.hand_layer import HandLayer
from models.ik import KinematicTables
from models.joints import NUM_JOINTS, Joint
from models.losses import invalid_pose_mask
from models.nets import ALPHA_RANGE, beta_bounds
from models.skeleton import ALPHA_DIM, ARTICULATION, BETA_DIM, NUM_ARTICULATIONS, theta_limits
from models.threads import torch_threads

#: Fitted parameters per hand: ω (3), wrist (3), articulations (20), α (6), β (7).
NUM_PARAMS = 3 + 3 + NUM_ARTICULATIONS + ALPHA_DIM + BETA_DIM
_SHAPE = slice(6 + NUM_ARTICULATIONS, NUM_PARAMS)
#: The template's palm, placed rigidly by the start.
PALM_JOINTS = (Joint.WRIST, Joint.THUMB_CMC, Joint.INDEX_MCP, Joint.MIDDLE_MCP, Joint.RING_MCP, Joint.LITTLE_MCP)


@dataclass(frozen=True)
class FitConfig:
    """How the hand is fitted (module docstring). Lengths in mm.

    start_iterations: IK steps on the predicted joints; iterations: steps on the depth;
    points: observed points per crop (a fixed random subset); near_mm: observed points
    farther than this from the starting hand are not used; data_mm, prior_mm: the scale of
    the data and prior residuals (one of that size costs 1); point_weight: the point-to-point
    share of the data term; robust_mm: Cauchy scale of the data term; shape_weight: cost of a
    unit change of α or β; silhouette_mm: the scale of the silhouette residual (a vertex this
    far outside the observed silhouette, at the crop centre's depth, costs 1; 0 leaves the term
    out); slack_px: patch pixels next to the silhouette that cost nothing (the sensors drop a
    pixel or two at depth edges); shape_every: the shape columns of the Jacobian are differenced
    again every this many steps on the depth and reused in between (the pose moves them little;
    every 4 instead of every step: 32 % faster, validation error unchanged within 0.02 mm);
    damping: Levenberg-Marquardt's λ on diag(JᵀJ); seed: the subset;
    threads: torch's threads while fitting (its small operations run faster on one: in the app
    on 2 cores the fit took 89 ms a frame at p50 on two threads, 52 ms on one); warm_mm,
    warm_start_iterations: while tracking, the frame before's fit starts the next one when its
    joints lie within ``warm_mm`` (mean) of the new prediction, with this many IK steps
    instead of the Kabsch start and ``start_iterations`` (the steps on the depth stay
    ``iterations``: with 4 instead of 8 from the warm start, the demo recording's error rose
    from 11.1 to 11.8 mm, on 384 points).
    """

    start_iterations: int = 5
    iterations: int = 8
    points: int = 1024
    near_mm: float = 30.0
    data_mm: float = 3.0
    prior_mm: float = 12.0
    point_weight: float = 0.5
    robust_mm: float = 10.0
    shape_weight: float = 1.0
    silhouette_mm: float = 3.0
    slack_px: float = 1.0
    shape_every: int = 4
    damping: float = 1e-2
    seed: int = 0
    threads: int = 1
    warm_mm: float = 20.0
    warm_start_iterations: int = 2

    def __post_init__(self) -> None:
        for name in ("points", "start_iterations", "threads", "shape_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"FitConfig.{name}: expected >= 1, got {getattr(self, name)}")
        for name in ("iterations", "warm_start_iterations"):
            if getattr(self, name) < 0:
                raise ValueError(f"FitConfig.{name}: expected >= 0, got {getattr(self, name)}")
        for name in ("near_mm", "data_mm", "prior_mm", "robust_mm"):
            if not getattr(self, name) > 0.0:
                raise ValueError(f"FitConfig.{name}: expected > 0 mm, got {getattr(self, name)}")
        for name, unit in (("silhouette_mm", "mm"), ("slack_px", "px")):
            if not getattr(self, name) >= 0.0:
                raise ValueError(f"FitConfig.{name}: expected >= 0 {unit}, got {getattr(self, name)}")


class HandParams(NamedTuple):
    """Hands in the layer's parameters, float64: rotation (B, 3, 3) camera_from_hand, x (B, 39)
    (module docstring; ω = 0)."""

    rotation: torch.Tensor
    x: torch.Tensor


class FitResult(NamedTuple):
    """joints (B, 21, 3), vertices (B, V, 3): mm, camera frame; rotation (B, 3, 3)
    camera_from_hand; theta (B, 26) (θ[0:3] = 0: ``rotation`` is the root), alpha (B, 6),
    beta (B, 7); float64."""

    joints: np.ndarray
    vertices: np.ndarray
    rotation: np.ndarray
    theta: np.ndarray
    alpha: np.ndarray
    beta: np.ndarray


class Observed(NamedTuple):
    """Observed points of B crops: points (B, M, 3) mm, camera frame; valid (B, M) bool."""

    points: torch.Tensor
    valid: torch.Tensor


def observed_points(crops: Sequence[Crop], intrs: Sequence[Intrinsics], count: int, seed: int = 0) -> Observed:
    """Up to ``count`` points per crop: a random subset of its pixels with a depth inside the
    cube (not background, not clamped to the front face), back-projected to the camera frame."""
    if len(crops) != len(intrs):
        raise ValueError(f"crops and intrs: expected the same length, got {len(crops)} and {len(intrs)}")
    rng = np.random.default_rng(seed)
    points = np.zeros((len(crops), count, 3))
    valid = np.zeros((len(crops), count), bool)
    for i, (crop, intr) in enumerate(zip(crops, intrs)):
        patch = np.asarray(crop.patch, np.float32)
        v, u = np.nonzero((patch > FRONT) & (patch < BACKGROUND))
        if u.size == 0:
            continue
        pick = rng.choice(u.size, size=min(count, u.size), replace=False)
        uvd = np.stack([u[pick], v[pick], patch[v[pick], u[pick]]], -1).astype(np.float64)
        points[i, :len(pick)] = points_from_crop_uvd(uvd, crop, intr)
        valid[i, :len(pick)] = True
    return Observed(torch.as_tensor(points), torch.as_tensor(valid))


class Silhouettes(NamedTuple):
    """How far each patch pixel of B crops lies outside the observed silhouette: distance (B, S, S)
    patch px, less the slack (0 on and near the silhouette); gradient (B, 2, S, S), its derivative
    along patch u and v."""

    distance: torch.Tensor
    gradient: torch.Tensor


def silhouettes(crops: Sequence[Crop], slack_px: float) -> Silhouettes:
    """The crops' :class:`Silhouettes`. Observed: any depth inside the cube or in front of it (an
    occluder may hide the hand there). A crop with nothing observed has distance 0 everywhere."""
    import cv2

    distance, gradient = [], []
    for crop in crops:
        empty = (np.asarray(crop.patch) >= BACKGROUND).astype(np.uint8)
        d = np.zeros(empty.shape) if empty.all() else cv2.distanceTransform(empty, cv2.DIST_L2, 5)
        d = np.maximum(d.astype(np.float64) - slack_px, 0.0)
        distance.append(d)
        gradient.append(np.stack(np.gradient(d)[::-1]))            # (d/du, d/dv)
    return Silhouettes(torch.as_tensor(np.stack(distance)), torch.as_tensor(np.stack(gradient)))


def _bounds() -> tuple[torch.Tensor, torch.Tensor]:
    lo, hi = theta_limits()
    beta_lo, beta_hi = beta_bounds()
    lower = np.concatenate([np.full(6, -np.inf), lo[ARTICULATION], np.full(ALPHA_DIM, ALPHA_RANGE[0]), beta_lo])
    upper = np.concatenate([np.full(6, np.inf), hi[ARTICULATION], np.full(ALPHA_DIM, ALPHA_RANGE[1]), beta_hi])
    return torch.as_tensor(lower), torch.as_tensor(upper)


def mesh_normals(vertices: torch.Tensor, faces: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, V, 3), (F, 3) -> unit vertex normals (B, V, 3) (area-weighted) and face normals
    (B, F, 3); outward for our mesh's winding."""
    f = vertices[:, faces]
    n = torch.linalg.cross(f[:, :, 1] - f[:, :, 0], f[:, :, 2] - f[:, :, 0])   # twice the area
    per_vertex = torch.zeros_like(vertices)
    for k in range(3):
        per_vertex.index_add_(1, faces[:, k], n)
    return (per_vertex / per_vertex.norm(dim=-1, keepdim=True).clamp_min(1e-12),
            n / n.norm(dim=-1, keepdim=True).clamp_min(1e-12))


def _nearest_front(points: torch.Tensor, samples: torch.Tensor,
                   normals: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Each point's nearest sample among those facing the camera (normal · position < 0):
    points (B, M, 3), samples and normals (B, S, 3) -> distance (B, M) mm (inf: none faces
    the camera) and the sample's index (B, M)."""
    from scipy.spatial import cKDTree

    dist = torch.full(points.shape[:2], float("inf"), dtype=torch.float64)
    index = torch.zeros(points.shape[:2], dtype=torch.long)
    front = ((normals * samples).sum(-1) < 0.0).numpy()
    for b in range(len(points)):
        which = np.flatnonzero(front[b])
        if which.size:
            d, i = cKDTree(samples[b, which].numpy()).query(points[b].numpy())
            dist[b], index[b] = torch.as_tensor(d), torch.as_tensor(which[i])
    return dist, index


def _near_points(obs: Observed, vertices: torch.Tensor, near_mm: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The observed points within ``near_mm`` of a vertex (B, V, 3), first in each row, and the
    columns no row needs dropped: points (B, M', 3) and valid (B, M') with M' <= M."""
    from scipy.spatial import cKDTree

    valid = obs.valid.clone()
    for b in range(len(vertices)):
        d, _ = cKDTree(vertices[b].numpy()).query(obs.points[b].numpy(), distance_upper_bound=near_mm)
        valid[b] &= torch.as_tensor(d < near_mm)
    order = torch.argsort((~valid).to(torch.int8), dim=1, stable=True)
    keep = max(int(valid.sum(1).max()), 1)
    rows = torch.arange(len(valid))[:, None]
    return obs.points[rows, order][:, :keep], valid[rows, order][:, :keep]


def _where(mask: torch.Tensor, a: HandParams, b: HandParams) -> HandParams:
    """Per hand: a where mask (B,) bool, else b."""
    return HandParams(torch.where(mask[:, None, None], a.rotation, b.rotation),
                      torch.where(mask[:, None], a.x, b.x))


def _normal_equations(w: torch.Tensor, r: torch.Tensor, j: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Σ w JᵀJ and Σ w Jᵀr over residuals: w, r (B, N), j (B, N, P) -> (B, P, P), (B, P)."""
    wj = w[..., None] * j
    return wj.transpose(1, 2) @ j, (wj * r[..., None]).sum(1)


class HandFitter:
    """Fits the hand layer to predicted joints and to crops. Runs on the caller's thread; holds
    only constants (the layer in float64, the mesh's sample tables)."""

    def __init__(self, cfg: FitConfig = FitConfig(), layer: HandLayer | None = None) -> None:
        from models.train import hand_vertex_mask

        self.cfg = cfg
        self.layer = (layer or HandLayer()).double()
        self.lower, self.upper = _bounds()
        self.faces = self.layer.faces
        hand = hand_vertex_mask()
        self.vertex_hand = hand
        v = hand.shape[0]
        # Surface samples: the V vertices, then the F face centroids, each as 3 corner vertices.
        self.sample_corners = torch.cat([torch.arange(v)[:, None].repeat(1, 3), self.faces], 0)
        self.sample_hand = hand[self.sample_corners].all(-1)
        self.start_shape = torch.cat([torch.ones(ALPHA_DIM), torch.zeros(BETA_DIM)]).double()
        self.tables = KinematicTables.of(self.layer)
        # (21, 20): frame d turns with articulation i when d is its joint or below it.
        self.turns_with = (self.tables.path[:, self.tables.art_joint] > 0).double()

    # ----------------------------------------------------------------- the layer, by stages

    def _posed(self, rotation: torch.Tensor, x: torch.Tensor, mesh: bool = True
               ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
        """rotation (N, 3, 3), x (N, 39) -> the layer's joints (N, 21, 3) mm, vertices (N, V, 3)
        mm (None without ``mesh``) and joint frames camera_from_joint (N, 21, 3, 3). The forearm
        stub is not bent (no wrist angles here)."""
        n = x.shape[0]
        theta = torch.cat([x.new_zeros(n, 3), x[:, 3:26]], 1)
        root = axis_angle_to_matrix(x[:, 0:3]) @ rotation
        if not mesh:
            frames = self.layer.frames(theta, x[:, 26:32], x[:, 32:39], root_rotation=root)
            return frames[..., :3, 3], None, frames[..., :3, :3]
        out = self.layer(theta, x[:, 26:32], x[:, 32:39], root_rotation=root)
        return out.joints, out.vertices, out.transforms[..., :3, :3]

    def _jacobians(self, rotation: torch.Tensor, x: torch.Tensor, mesh: bool = True, eps: float = 1e-6,
                   shape_columns: tuple[torch.Tensor, torch.Tensor | None] | None = None
                   ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor, torch.Tensor | None]:
        """Joints (B, 21, 3), vertices (B, V, 3) and their Jacobians (B, 21, 3, P), (B, V, 3, P)
        (without ``mesh``: None for the vertices and theirs).

        Pose columns in closed form: ω_a turns everything about the wrist (e_a × (p − wrist)), the
        translation moves it, an articulation turns what hangs on its joint about its axis in the
        camera frame (a × (p − joint); a vertex by the share of its skinning weight on those
        bones, which is exact for joints and for vertices not blended across that joint). Shape
        columns (α, β) by forward differences (one layer call of batch 14 B), or ``shape_columns``
        (those of joints (B, 21, 3, 13) and vertices (B, V, 3, 13) of an earlier call) again,
        with one layer call of batch B."""
        b, p = x.shape
        n_shape = 0 if shape_columns is not None else _SHAPE.stop - _SHAPE.start
        xs = x[:, None, :].repeat(1, n_shape + 1, 1)
        if n_shape:
            xs[:, 1:, _SHAPE] += eps * torch.eye(n_shape, dtype=x.dtype)
        joints, verts, frames = self._posed(rotation.repeat_interleave(n_shape + 1, 0), xs.reshape(-1, p), mesh)
        joints = joints.reshape(b, n_shape + 1, NUM_JOINTS, 3)
        frames = frames.reshape(b, n_shape + 1, NUM_JOINTS, 3, 3)[:, 0]
        base = joints[:, 0]
        # camera-frame axes of the 20 articulations: an abduction (applied first) turns about its
        # axis in the parent's frame carried to the joint's rest frame, a flexion in the joint's
        tb, rest = self.tables, self.layer.rest_rotations
        par = tb.parent[tb.art_joint]
        first = frames[:, par] @ (rest[par].transpose(-1, -2) @ rest[tb.art_joint] @ tb.art_axis[..., None])
        second = frames[:, tb.art_joint] @ tb.art_axis[..., None]
        axes = torch.where(tb.art_first[:, None, None], first, second)[..., 0]                  # (B, 20, 3)
        pivots = base[:, tb.art_joint]                                                             # (B, 20, 3)
        wrist = base[:, :1]
        eye = torch.eye(3, dtype=x.dtype)

        def pose_columns(points: torch.Tensor, share: torch.Tensor) -> torch.Tensor:
            """points (B, N, 3), share (N, 20) -> (B, N, 3, 26)."""
            rot = torch.linalg.cross(eye.expand(*points.shape[:2], 3, 3),
                                     (points - wrist)[:, :, None, :].expand(-1, -1, 3, -1))      # (B, N, 3 axes, 3)
            art = torch.linalg.cross(axes[:, None].expand(-1, points.shape[1], -1, -1),
                                     points[:, :, None, :] - pivots[:, None])                    # (B, N, 20, 3)
            art = art * share[None, :, :, None]
            trans = eye.expand(*points.shape[:2], 3, 3)
            return torch.cat([rot.transpose(-1, -2), trans, art.transpose(-1, -2)], -1)

        if shape_columns is None:
            shape_j, shape_v = ((joints[:, 1:] - joints[:, :1]) / eps).permute(0, 2, 3, 1), None
        else:
            shape_j, shape_v = shape_columns
        jj = torch.cat([pose_columns(base, self.turns_with), shape_j], -1)
        if verts is None:
            return base, None, jj, None
        verts = verts.reshape(b, n_shape + 1, -1, 3)
        if shape_v is None:
            shape_v = ((verts[:, 1:] - verts[:, :1]) / eps).permute(0, 2, 3, 1)
        share = self.layer.weights[:, :NUM_JOINTS] @ self.turns_with                               # (V, 20)
        jv = torch.cat([pose_columns(verts[:, 0], share), shape_v], -1)
        return base, verts[:, 0], jj, jv

    def _step(self, params: HandParams, h: torch.Tensor, g: torch.Tensor, shape_anchor: torch.Tensor) -> HandParams:
        """One damped step on JᵀJ = h, Jᵀr = g, plus the pull of α, β towards ``shape_anchor``
        (B, 13), clamped to the ranges."""
        x = params.x
        reg = torch.zeros(NUM_PARAMS, dtype=x.dtype)
        reg[_SHAPE] = self.cfg.shape_weight
        h = h + torch.diag_embed(reg.expand(len(x), -1))
        g = g + reg * (x - torch.cat([x[:, :_SHAPE.start], shape_anchor], 1))
        diag = torch.diagonal(h, dim1=1, dim2=2)
        h = h + torch.diag_embed(self.cfg.damping * diag + 1e-9)
        x = x + torch.linalg.solve(h, -g[..., None])[..., 0]
        x = torch.maximum(torch.minimum(x, self.upper), self.lower)
        rotation = axis_angle_to_matrix(x[:, 0:3]) @ params.rotation
        x = torch.cat([torch.zeros_like(x[:, 0:3]), x[:, 3:]], 1)
        return HandParams(rotation, x)

    def _silhouette_terms(self, sil: Silhouettes, crops: Sequence[Crop], intrs: Sequence[Intrinsics],
                          verts: torch.Tensor, jv: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """JᵀJ and Jᵀr of the silhouette term: each hand vertex inside the patch and the cube's depth
        range, at its pixel's distance outside the silhouette (nearest pixel). The derivative of the
        patch pixel by the vertex is the pinhole's (the lens distortion's share left out)."""
        b, size = len(verts), sil.distance.shape[-1]
        uvd = torch.stack([uvd_in_crop(verts[i], crops[i], intrs[i]) for i in range(b)])        # (B, V, 3)
        scale = torch.tensor([[c.crop_from_image[0, 0] * k.fx, c.crop_from_image[1, 1] * k.fy]
                              for c, k in zip(crops, intrs)], dtype=torch.float64)               # (B, 2) px
        x, y, z = verts.unbind(-1)
        zero = torch.zeros_like(z)
        du = scale[:, 0, None, None] * torch.stack([1.0 / z, zero, -x / z ** 2], -1)             # (B, V, 3)
        dv = scale[:, 1, None, None] * torch.stack([zero, 1.0 / z, -y / z ** 2], -1)
        u, v = uvd[..., 0].round().long(), uvd[..., 1].round().long()
        inside = (u >= 0) & (u < size) & (v >= 0) & (v < size) & (uvd[..., 2].abs() < 1.0) & self.vertex_hand
        u, v = u.clamp(0, size - 1), v.clamp(0, size - 1)
        rows = torch.arange(b)[:, None]
        r = sil.distance[rows, v, u] * inside                                                    # (B, V) px
        grad = sil.gradient.permute(0, 2, 3, 1)[rows, v, u]                                     # (B, V, 2)
        jr = ((grad[..., :1] * du + grad[..., 1:] * dv)[..., None] * jv).sum(-2)                  # (B, V, P)
        px_mm = torch.tensor([c.cube_mm / size for c in crops], dtype=torch.float64)[:, None]   # at the centre's depth
        w = (r > 0).double() * (px_mm / self.cfg.silhouette_mm) ** 2
        return _normal_equations(w, r, jr)

    def _prior_terms(self, joints: torch.Tensor, jj: torch.Tensor,
                     target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b = len(joints)
        w = torch.full((b, NUM_JOINTS * 3), 1.0 / self.cfg.prior_mm ** 2, dtype=torch.float64)
        return _normal_equations(w, (joints - target).reshape(b, -1), jj.reshape(b, -1, NUM_PARAMS))

    # ----------------------------------------------------------------- public

    def start(self, joints_mm: np.ndarray | torch.Tensor) -> HandParams:
        """(B, 21, 3) predicted joints (mm, camera frame) -> the layer's hand nearest to them."""
        with torch.no_grad(), torch_threads(self.cfg.threads):
            return self._start(joints_mm)

    def _start(self, joints_mm: np.ndarray | torch.Tensor, previous: FitResult | None = None) -> HandParams:
        target = torch.as_tensor(np.asarray(joints_mm), dtype=torch.float64)
        if target.ndim != 3 or target.shape[1:] != (NUM_JOINTS, 3):
            raise ValueError(f"joints_mm: expected (B, {NUM_JOINTS}, 3) mm, got {tuple(target.shape)}")
        b = len(target)
        iterations = self.cfg.start_iterations
        if previous is not None and previous.joints.shape == tuple(target.shape) and \
                np.linalg.norm(previous.joints - target.numpy(), axis=-1).mean(-1).max() < self.cfg.warm_mm:
            x = torch.cat([torch.zeros(b, 3), torch.as_tensor(previous.theta[:, 3:26]),
                           torch.as_tensor(previous.alpha), torch.as_tensor(previous.beta)], 1).double()
            params = HandParams(torch.as_tensor(previous.rotation, dtype=torch.float64), x)
            iterations = self.cfg.warm_start_iterations
        else:
            palm = list(map(int, PALM_JOINTS))
            rest = self.layer.rest_joints[None, palm].expand(b, -1, -1)
            rotation, t = kabsch(rest, target[:, palm])                  # camera_from_hand
            x = torch.zeros(b, NUM_PARAMS, dtype=torch.float64)
            x[:, 3:6] = t + rotation @ self.layer.rest_joints[0]         # the template's wrist, placed
            rotation = rotation @ self.layer.rest_rotations[0]           # camera_from_wrist-frame
            x[:, _SHAPE] = self.start_shape
            params = HandParams(rotation, x)
        template = self.start_shape.expand(b, -1)
        for _ in range(iterations):
            joints, _, jj, _ = self._jacobians(params.rotation, params.x, mesh=False)
            h, g = self._prior_terms(joints, jj, target)
            params = self._step(params, h, g, template)
        return params

    def __call__(self, crops: Sequence[Crop], intrs: Sequence[Intrinsics],
                 joints_mm: np.ndarray | torch.Tensor, previous: FitResult | None = None) -> FitResult:
        """Fit B hands to their crops. joints_mm (B, 21, 3): the prediction (mm, camera frame),
        the prior and the start (:meth:`start`); ``previous``: the same hands' fit in the frame
        before (tracking), the start instead where its joints lie within ``warm_mm`` of these."""
        with torch.no_grad(), torch_threads(self.cfg.threads):
            return self._fit(crops, intrs, joints_mm, previous)

    def _fit(self, crops: Sequence[Crop], intrs: Sequence[Intrinsics], joints_mm: np.ndarray | torch.Tensor,
             previous: FitResult | None) -> FitResult:
        cfg = self.cfg
        target = torch.as_tensor(np.asarray(joints_mm), dtype=torch.float64)
        params = self._start(target, previous)
        if len(crops) != len(params.x):
            raise ValueError(f"crops: expected {len(params.x)} (one per hand), got {len(crops)}")
        shape_anchor = params.x[:, _SHAPE].clone()
        obs = observed_points(crops, intrs, cfg.points, cfg.seed)
        sil = silhouettes(crops, cfg.slack_px) if cfg.silhouette_mm > 0.0 else None
        b = len(params.x)
        rows = torch.arange(b)[:, None]
        valid, shape_columns = None, None
        # Per hand, the last iterate with a possible pose; before the first, the start's pose on
        # the template's shape (its rest bones lie within 11° of straight: possible at any θ
        # within the limits).
        kept = HandParams(params.rotation, torch.cat([params.x[:, :_SHAPE.start],
                                                      self.start_shape.expand(b, -1)], 1))
        for step in range(cfg.iterations):
            if step % cfg.shape_every == 0:
                shape_columns = None
            joints, verts, jj, jv = self._jacobians(params.rotation, params.x, shape_columns=shape_columns)
            kept = _where(~invalid_pose_mask(joints), params, kept)
            shape_columns = jj[..., _SHAPE], jv[..., _SHAPE]                     # jv (B, V, 3, P)
            if valid is None:   # points far from the starting hand are not the hand's; the rest first
                points, valid = _near_points(obs, verts, cfg.near_mm)
            fv = verts[:, self.faces]
            samples = torch.cat([verts, fv.mean(2)], 1)                          # (B, S, 3)
            normals = torch.cat(mesh_normals(verts, self.faces), 1)
            dist, k = _nearest_front(points, samples, normals)                 # (B, M)
            use = valid & self.sample_hand[k] & torch.isfinite(dist)
            js = jv[rows[..., None], self.sample_corners[k]].mean(2)            # (B, M, 3, P)
            nk = normals[rows, k]
            offset = samples[rows, k] - points                                   # (B, M, 3)
            w = use.double() / (1.0 + (dist.nan_to_num(posinf=0.0) / cfg.robust_mm) ** 2) / cfg.data_mm ** 2
            h, g = self._prior_terms(joints, jj, target)
            h_plane, g_plane = _normal_equations(w, (offset * nk).sum(-1), (nk[..., None] * js).sum(-2))
            h_point, g_point = _normal_equations((w * cfg.point_weight).repeat_interleave(3, 1),
                                                 offset.reshape(b, -1), js.reshape(b, -1, NUM_PARAMS))
            h, g = h + h_plane + h_point, g + g_plane + g_point
            if sil is not None:
                h_sil, g_sil = self._silhouette_terms(sil, crops, intrs, verts, jv)
                h, g = h + h_sil, g + g_sil
            params = self._step(params, h, g, shape_anchor)
        joints, verts, _ = self._posed(params.rotation, params.x)
        impossible = invalid_pose_mask(joints)
        if impossible.any():
            params = _where(impossible, kept, params)
            joints, verts, _ = self._posed(params.rotation, params.x)
        x = params.x
        theta = torch.cat([x.new_zeros(b, 3), x[:, 3:26]], 1)
        return FitResult(joints.numpy(), verts.numpy(), params.rotation.numpy(), theta.numpy(),
                         x[:, 26:32].numpy(), x[:, 32:39].numpy())
