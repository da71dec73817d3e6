"""The four papers' networks as configurations of shared parts.

Every network maps a normalised depth crop to 21 joints, and those with a hand layer also to
the mesh. Inputs and outputs (the ``models.crop`` conventions):

* input ``patch``: (B, 1, S, S) float32, normalised depth in [-1, 1] (S = 96), +1 background;
* output :class:`NetOutput`: ``joints`` (B, 21, 3) in normalised cube coordinates
  (xyz - com) / (cube_mm / 2), camera axes (x right, y down, z forward), canonical joint
  order (``models/joints.py``); ``vertices`` (B, V, 3) likewise or None; ``theta`` (B, 26)
  with its translation relative to the COM in mm, ``alpha`` (B, 6), ``beta`` (B, 7) or None.

Shared parts:

* :class:`Backbone2D` -- a small residual CNN on the 96 x 96 crop: a 5x5 stride-2 stem, four
  residual stages with stride 2 (48 -> 24 -> 12 -> 6 -> 3 px, width w, 2w, 4w, 8w, 8w
  channels), flattened, one hidden fully connected layer. With w = 16: 1.2 M parameters,
  29 M multiply-adds per crop. Why this and not a ResNet-18 or a MobileNet: ResNet-18 at 96 px
  is 0.6 G multiply-adds (20 times more, ~25 ms on one of our cores); depthwise convolutions
  train slowly on a CPU in PyTorch and gain little at this size. Flattening the 3 x 3 map,
  rather than global pooling, keeps where things are, which regression needs (DeepPrior++
  likewise ends in fully connected layers).
* :class:`Backbone3D` -- Hand3D's 3D CNN on the projective TSDF (``models/tsdf.py``, 32^3):
  a 5^3 stride-2 stem and two residual stages (16^3 -> 8^3 -> 4^3), flattened, one hidden
  layer; optionally preceded by :class:`TSDFRefiner`, a residual 3D FCN at full resolution.
* Heads: :class:`JointHead` (63 numbers: joints directly; SDNet, Hand3D, the "direct joints"
  ablation), :class:`ParamHead` (θ, α, β through :class:`models.hand_layer.HandLayer`;
  DeepHPS, DeepModel, the "direct parameters" ablation), :class:`DenseHead` (a decoder back to
  S/4 and per-cell votes for every joint; ``dense``) and :class:`DenseHPSHead` (both: the
  votes' joints and DeepHPS's parameters and mesh; ``dense_hps``, which
  :func:`warm_start` starts from a trained DeepHPS).

The parameter head. Global rotation: the 6D representation (two columns, Gram-Schmidt;
Zhou et al., CVPR 2019), continuous over all rotations, unlike axis-angle, which jumps at π
(our data has every roll). Translation: the wrist relative to the COM, in units of cube/2.
Articulations: ``bounded=True`` maps them into the joint limits with a sigmoid, so no
prediction can leave them (DeepHPS); ``bounded=False`` leaves them free (DeepModel, whose
limit loss then keeps them inside). α and β are bounded to the ranges of our training
subjects, slightly widened (``ALPHA_RANGE``, ``BETA_RANGE``); ``fixed_shape=True`` keeps the
template (α = 1, β = 0: DeepModel's fixed bone lengths).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import NamedTuple

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from models.hand_layer import HandLayer
from models.joints import NUM_JOINTS
from models.losses import ANGLE_MARGIN_DEG, FINGER_CHAINS, anatomical_angle_thresholds
from models.skeleton import ALPHA_DIM, ARTICULATION, BETA_DIM, BETA_NAMES, NUM_ARTICULATIONS, THETA_DIM, theta_limits
from models.tsdf import GRID, TsdfLayer

#: Bounds of the parameter head (the training subjects' ranges, models.sampling.ShapeConfig,
#: widened by 0.05 / 0.5 so the sigmoid is not saturated at the data's extremes).
ALPHA_RANGE = (0.80, 1.20)
BETA_RANGE = (-2.0, 2.0)
SIZE_BETA_RANGE = (-3.0, 3.0)


def beta_bounds() -> tuple[np.ndarray, np.ndarray]:
    """Lower and upper bounds of β (7,) float64 each: ``BETA_RANGE``, ``SIZE_BETA_RANGE`` for size."""
    lo, hi = np.full(BETA_DIM, BETA_RANGE[0]), np.full(BETA_DIM, BETA_RANGE[1])
    size = BETA_NAMES.index("size")
    lo[size], hi[size] = SIZE_BETA_RANGE
    return lo, hi

METHODS = ("deephps", "deepmodel", "direct_params", "direct_joints", "sdnet", "hand3d", "dense", "dense_hps")


@dataclass(frozen=True)
class NetConfig:
    """What a network is. ``method`` picks the input (crop or TSDF) and the head:

    deephps        2D CNN -> θ, α, β (bounded) -> hand layer          (DeepHPS)
    deepmodel      2D CNN -> θ (free articulations), template shape  (DeepModel FK layer)
    direct_params  2D CNN -> θ, α, β (bounded), trained on the parameters, not the joints
    direct_joints  2D CNN -> 63 numbers                               (SDNet's baseline)
    sdnet          2D CNN -> 63 numbers, trained with the skeleton difference (SDNet)
    hand3d         TSDF 32^3 [-> 3D refinement FCN] -> 3D CNN -> 63 numbers (Hand3D)
    dense          2D CNN encoder-decoder -> per-cell joint weights and 3D offsets -> 63 numbers
                   (pixel-wise voting, as A2J and dense 3D regression; :class:`DenseHead`)
    dense_hps      dense's joints, and θ, α, β regressed from the flattened features and
                   those joints -> hand layer -> mesh (:class:`DenseHPSHead`)
    """

    method: str = "deephps"
    width: int = 16            # channels of the first stage (2D); the 3D CNN uses width / 2
    hidden: int = 256          # the fully connected layer before the head
    crop_size: int = 96        # S, px
    grid: int = GRID           # Hand3D's TSDF grid
    refine_tsdf: bool = False  # Hand3D's TSDF refinement FCN

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"NetConfig.method: expected one of {METHODS}, got {self.method!r}")
        for name in ("width", "hidden", "crop_size", "grid"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"NetConfig.{name}: expected a positive int, got {v!r}")
        if self.crop_size % 32:
            raise ValueError(f"NetConfig.crop_size: expected a multiple of 32 (five stride-2 stages), "
                             f"got {self.crop_size}")

    @property
    def uses_layer(self) -> bool:
        return self.method in ("deephps", "deepmodel", "direct_params", "dense_hps")

    @property
    def dense(self) -> bool:
        return self.method in ("dense", "dense_hps")

    def to_dict(self) -> dict:
        return asdict(self)


class NetOutput(NamedTuple):
    """See the module docstring. joints (B, 21, 3) normalised; the rest None without a layer."""

    joints: torch.Tensor
    vertices: torch.Tensor | None
    theta: torch.Tensor | None
    alpha: torch.Tensor | None
    beta: torch.Tensor | None
    rotation: torch.Tensor | None
    votes: torch.Tensor | None = None     # dense: (B, 21, N, 3) each cell's vote, normalised
    weights: torch.Tensor | None = None   # dense: (B, 21, N) the softmax weight of each vote
    layer_joints: torch.Tensor | None = None   # dense_hps: (B, 21, 3) the hand layer's joints


class ResBlock(nn.Module):
    """Basic residual block (two 3x3 convs, batch norm), stride on the first; 2D or 3D."""

    def __init__(self, cin: int, cout: int, stride: int, dims: int = 2) -> None:
        super().__init__()
        conv = nn.Conv2d if dims == 2 else nn.Conv3d
        norm = nn.BatchNorm2d if dims == 2 else nn.BatchNorm3d
        self.conv1 = conv(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = norm(cout)
        self.conv2 = conv(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = norm(cout)
        # The projection: a 1x1 convolution of every stride-th sample, written as the slice and a
        # stride-1 convolution (the same numbers and weights as a strided 1x1 convolution, whose
        # channels-last backward crashes oneDNN on AVX-512 CPUs in torch 2.13: SIGABRT/SIGSEGV).
        self.skip = (nn.Sequential(conv(cin, cout, 1, 1, bias=False), norm(cout))
                     if stride != 1 or cin != cout else nn.Identity())
        self.skip_step = (slice(None, None, stride),) * dims if stride != 1 else ()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(y)) + self.skip(x[(..., *self.skip_step)]))


class Backbone2D(nn.Module):
    """(B, 1, S, S) -> (B, hidden) features (module docstring); ``flatten=False`` leaves out the
    fully connected layer for the dense head, which reads :meth:`pyramid`."""

    def __init__(self, width: int, hidden: int, size: int, flatten: bool = True) -> None:
        super().__init__()
        w = width
        self.stem = nn.Sequential(nn.Conv2d(1, w, 5, 2, 2, bias=False), nn.BatchNorm2d(w), nn.ReLU())
        self.stages = nn.Sequential(ResBlock(w, 2 * w, 2), ResBlock(2 * w, 4 * w, 2),
                                    ResBlock(4 * w, 8 * w, 2), ResBlock(8 * w, 8 * w, 2))
        side = size // 32
        self.fc = (nn.Sequential(nn.Flatten(), nn.Linear(8 * w * side * side, hidden), nn.ReLU())
                   if flatten else None)

    def pyramid(self, patch: torch.Tensor) -> list[torch.Tensor]:
        """The four stages' outputs: S/4, S/8, S/16, S/32 px with 2w, 4w, 8w, 8w channels."""
        x = self.stem(patch)
        out = []
        for stage in self.stages:
            x = stage(x)
            out.append(x)
        return out

    def forward(self, patch: torch.Tensor) -> torch.Tensor:
        return self.fc(self.stages(self.stem(patch)))


class TSDFRefiner(nn.Module):
    """Hand3D's volumetric refinement, kept small for the CPU: a residual 3D encoder-decoder
    (stride-2 3^3 conv to half resolution, a 3^3 conv there, a 4^3 transposed conv back up;
    c channels; 2.8 M multiply-adds at 32^3 and c = 4), output clamped back to [-1, 1].
    (A full-resolution FCN of the same width trains 5 times slower here.)"""

    def __init__(self, channels: int = 4) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Conv3d(1, channels, 3, 2, 1), nn.ReLU(),
                                 nn.Conv3d(channels, channels, 3, 1, 1), nn.ReLU(),
                                 nn.ConvTranspose3d(channels, 1, 4, 2, 1))

    def forward(self, volume: torch.Tensor) -> torch.Tensor:
        return torch.clamp(volume + self.net(volume), -1.0, 1.0)


class Backbone3D(nn.Module):
    """(B, 1, S, S) patch -> TSDF (B, 1, G, G, G) [-> refiner] -> 3D CNN -> (B, hidden)."""

    def __init__(self, width: int, hidden: int, grid: int, refine: bool) -> None:
        super().__init__()
        if grid % 8:
            raise ValueError(f"grid: expected a multiple of 8 (three stride-2 stages), got {grid}")
        w = max(4, width // 2)
        self.tsdf = TsdfLayer(grid)
        self.refiner = TSDFRefiner() if refine else None
        self.stem = nn.Sequential(nn.Conv3d(1, w, 5, 2, 2, bias=False), nn.BatchNorm3d(w), nn.ReLU())
        self.stages = nn.Sequential(ResBlock(w, 2 * w, 2, dims=3), ResBlock(2 * w, 4 * w, 2, dims=3))
        side = grid // 8
        self.fc = nn.Sequential(nn.Flatten(), nn.Linear(4 * w * side ** 3, hidden), nn.ReLU())

    def volume(self, patch: torch.Tensor) -> torch.Tensor:
        v = self.tsdf(patch)
        return self.refiner(v) if self.refiner is not None else v

    def forward(self, patch: torch.Tensor) -> torch.Tensor:
        return self.fc(self.stages(self.stem(self.volume(patch))))


class JointHead(nn.Module):
    """(B, hidden) -> joints (B, 21, 3) normalised."""

    def __init__(self, hidden: int) -> None:
        super().__init__()
        self.out = nn.Linear(hidden, NUM_JOINTS * 3)

    def forward(self, features: torch.Tensor) -> NetOutput:
        joints = self.out(features).view(-1, NUM_JOINTS, 3)
        return NetOutput(joints, None, None, None, None, None)


class DenseHead(nn.Module):
    """Pixel-wise voting: the backbone's pyramid -> joints (B, 21, 3) normalised.

    A decoder (1x1 lateral convolutions, nearest 2x upsampling, a 3x3 convolution at each level)
    brings the S/32 features back to a grid of N = (S/4)^2 cells (24 x 24 for S = 96, one cell
    per 4 x 4 crop pixels, ~10 mm of a 250 mm cube). Each cell i votes for each joint j: its
    anchor a_i (the cell centre's normalised crop coordinates u, v and the crop's mean depth
    over the cell) plus a predicted offset o_ij; a softmax over the cells gives the weights
    w_ij, and joint j = sum_i w_ij (a_i + o_ij) (A2J, Xiong et al. ICCV 2019; dense 3D
    regression, Wan et al. CVPR 2018). Why: every cell sees the hand through the same
    convolutions, so what is learnt at one place holds at another, where a fully connected
    layer must learn each position anew. The votes and weights are returned for the loss
    (``models.train``: the weighted vote error, which bounds the joint error from above).
    """

    def __init__(self, width: int, size: int, channels: int = 32) -> None:
        super().__init__()
        w = width
        self.lateral = nn.ModuleList(nn.Conv2d(c, channels, 1) for c in (8 * w, 8 * w, 4 * w, 2 * w))
        self.smooth = nn.ModuleList(
            nn.Sequential(nn.Conv2d(channels, channels, 3, 1, 1, bias=False), nn.BatchNorm2d(channels), nn.ReLU())
            for _ in range(3))
        self.out = nn.Conv2d(channels, NUM_JOINTS * 4, 1)
        with torch.no_grad():   # start with uniform weights and no offsets
            self.out.weight.mul_(0.1)
            self.out.bias.zero_()
        cells = size // 4
        centre = (torch.arange(cells, dtype=torch.float32) + 0.5) * (2.0 / cells) - 1.0
        v, u = torch.meshgrid(centre, centre, indexing="ij")
        self.register_buffer("anchor_uv", torch.stack((u, v), -1).reshape(-1, 2))   # (N, 2)

    def forward(self, pyramid: list[torch.Tensor], patch: torch.Tensor) -> NetOutput:
        x = self.lateral[0](pyramid[3])
        for lateral, smooth, skip in zip(self.lateral[1:], self.smooth, pyramid[2::-1]):
            x = smooth(F.interpolate(x, scale_factor=2.0, mode="nearest") + lateral(skip))
        y = self.out(x).flatten(2)                                      # (B, 4J, N)
        batch, n = y.shape[0], y.shape[2]
        weights = torch.softmax(y[:, :NUM_JOINTS], -1)                  # (B, J, N)
        offsets = y[:, NUM_JOINTS:].reshape(batch, 3, NUM_JOINTS, n).permute(0, 2, 3, 1)
        depth = F.avg_pool2d(patch, 4).reshape(batch, n, 1)
        anchors = torch.cat((self.anchor_uv.expand(batch, n, 2), depth), -1)   # (B, N, 3)
        votes = anchors[:, None] + offsets                              # (B, J, N, 3)
        joints = (weights[..., None] * votes).sum(2)
        return NetOutput(joints, None, None, None, None, None, votes, weights)


def rotation_from_6d(x: torch.Tensor) -> torch.Tensor:
    """(B, 6) -> (B, 3, 3): Gram-Schmidt on two 3-vectors, which become the first two columns."""
    a, b = x[:, 0:3], x[:, 3:6]
    c1 = a / torch.sqrt((a * a).sum(-1, keepdim=True) + 1e-12)
    b = b - (c1 * b).sum(-1, keepdim=True) * c1
    c2 = b / torch.sqrt((b * b).sum(-1, keepdim=True) + 1e-12)
    c3 = torch.linalg.cross(c1, c2)
    return torch.stack((c1, c2, c3), -1)


def _bounded(x: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor) -> torch.Tensor:
    return lo + (hi - lo) * torch.sigmoid(x)


class ParamHead(nn.Module):
    """(B, hidden) -> rotation (6D), translation, articulations, α, β -> hand layer.

    ``cube_mm`` converts the normalised translation to mm and the layer's output back.
    """

    def __init__(self, hidden: int, bounded: bool, fixed_shape: bool, cube_mm: float, layer: HandLayer) -> None:
        super().__init__()
        self.bounded, self.fixed_shape, self.half = bounded, fixed_shape, cube_mm / 2.0
        n_shape = 0 if fixed_shape else ALPHA_DIM + BETA_DIM
        self.out = nn.Linear(hidden, 6 + 3 + NUM_ARTICULATIONS + n_shape)
        with torch.no_grad():   # start at the identity rotation and the middle of every range
            self.out.bias.zero_()
            self.out.bias[0:6] = torch.tensor([1.0, 0.0, 0.0, 0.0, 1.0, 0.0])
            self.out.weight.mul_(0.1)
        lo, hi = theta_limits()
        self.register_buffer("art_lo", torch.as_tensor(lo[ARTICULATION], dtype=torch.float32))
        self.register_buffer("art_hi", torch.as_tensor(hi[ARTICULATION], dtype=torch.float32))
        if not bounded:
            # Free articulations start at the middle of their range, in radians.
            with torch.no_grad():
                self.out.bias[9:9 + NUM_ARTICULATIONS] = 0.5 * (self.art_lo + self.art_hi)
        beta_lo, beta_hi = beta_bounds()
        self.register_buffer("beta_lo", torch.as_tensor(beta_lo, dtype=torch.float32))
        self.register_buffer("beta_hi", torch.as_tensor(beta_hi, dtype=torch.float32))
        self.layer = layer

    def forward(self, features: torch.Tensor) -> NetOutput:
        y = self.out(features)
        batch = y.shape[0]
        rotation = rotation_from_6d(y[:, 0:6])
        trans = y[:, 6:9] * self.half
        art = y[:, 9:9 + NUM_ARTICULATIONS]
        if self.bounded:
            art = _bounded(art, self.art_lo, self.art_hi)
        if self.fixed_shape:
            alpha = y.new_ones(batch, ALPHA_DIM)
            beta = y.new_zeros(batch, BETA_DIM)
        else:
            s = y[:, 9 + NUM_ARTICULATIONS:]
            alpha = _bounded(s[:, :ALPHA_DIM], y.new_tensor(ALPHA_RANGE[0]), y.new_tensor(ALPHA_RANGE[1]))
            beta = _bounded(s[:, ALPHA_DIM:], self.beta_lo, self.beta_hi)
        theta = torch.cat((y.new_zeros(batch, 3), trans, art), 1)
        out = self.layer(theta, alpha, beta, root_rotation=rotation)
        return NetOutput(out.joints / self.half, out.vertices / self.half, theta, alpha, beta, rotation)


class DenseHPSHead(nn.Module):
    """DeepHPS with a dense joint head beside it: :class:`DenseHead`'s joints, and DeepHPS's
    fully connected layer (on the flattened S/32 features, as :class:`Backbone2D`, and on the
    votes' joints, detached) -> :class:`ParamHead` -> θ, α, β -> hand layer -> mesh.

    The output's ``joints`` are the votes', its ``vertices`` and ``layer_joints`` the layer's;
    in eval mode (and so in the exported engines), where the votes' joints bend a finger
    beyond its anatomical range (the evaluation's invalid-pose measure,
    :func:`bends_beyond_limits`), the layer's joints instead: like DeepHPS, no output is an
    impossible hand.
    The votes' joints enter the parameter branch detached (the layer's losses do not pull the
    votes); with their weights zero it is exactly DeepHPS, which is how
    :func:`warm_start` starts it from a trained DeepHPS network.
    """

    def __init__(self, width: int, size: int, hidden: int, cube_mm: float, layer: HandLayer) -> None:
        super().__init__()
        side = size // 32
        self.votes = DenseHead(width, size)
        self.fc = nn.Sequential(nn.Linear(8 * width * side * side + NUM_JOINTS * 3, hidden), nn.ReLU())
        self.params = ParamHead(hidden, bounded=True, fixed_shape=False, cube_mm=cube_mm, layer=layer)
        self.register_buffer("chains", torch.as_tensor(FINGER_CHAINS), persistent=False)
        self.register_buffer("max_bend_cos", max_bend_cosines(), persistent=False)

    @property
    def half(self) -> float:
        return self.params.half

    @property
    def layer(self) -> nn.Module:
        return self.params.layer

    @layer.setter
    def layer(self, value: nn.Module) -> None:   # export.model_export.ParamsGraph swaps it out
        self.params.layer = value

    def forward(self, pyramid: list[torch.Tensor], patch: torch.Tensor) -> NetOutput:
        dense = self.votes(pyramid, patch)
        features = torch.cat((pyramid[3].flatten(1), dense.joints.detach().flatten(1)), 1)
        hps = self.params(self.fc(features))
        joints = dense.joints
        if not self.training:
            beyond = bends_beyond_limits(joints, self.chains, self.max_bend_cos)
            joints = torch.where(beyond[:, None, None], hps.joints, joints)
        return hps._replace(joints=joints, votes=dense.votes, weights=dense.weights, layer_joints=hps.joints)


def max_bend_cosines(margin_deg: float = ANGLE_MARGIN_DEG) -> torch.Tensor:
    """(5, 3) float32: cos of each finger's bone pairs' largest bend + margin
    (``models.losses.anatomical_angle_thresholds``, the evaluation's invalid-pose measure),
    angles capped at π."""
    angles = anatomical_angle_thresholds(math.radians(margin_deg)).clamp(max=math.pi)
    return torch.cos(angles).reshape(5, 3).float()


def bends_beyond_limits(joints: torch.Tensor, chains: torch.Tensor, max_bend_cos: torch.Tensor) -> torch.Tensor:
    """(B, 21, 3) joints -> (B,) bool: a pair of consecutive bones along a finger
    (``chains``: ``models.losses.FINGER_CHAINS``) bends further than allowed, i.e. the cosine
    of the angle between them is at most ``max_bend_cos`` (:func:`max_bend_cosines`).
    ``models.losses.invalid_poses`` in cosines: no atan2, so it exports to ONNX."""
    points = joints[:, chains]                                         # (B, 5, 5, 3)
    bones = points[:, :, 1:] - points[:, :, :-1]
    unit = bones / torch.sqrt((bones * bones).sum(-1, keepdim=True) + 1e-12)
    cos = (unit[:, :, :-1] * unit[:, :, 1:]).sum(-1)                   # (B, 5, 3)
    return (cos <= max_bend_cos).flatten(1).any(1)


def dense_hps_name(name: str) -> str:
    """:func:`warm_start`: a DeepHPS parameter's name -> its name in ``dense_hps`` (the fully
    connected layer moves into the head; the parameter head becomes ``head.params``)."""
    if name.startswith("backbone.fc.1."):
        return "head.fc.0." + name[len("backbone.fc.1."):]
    if name.startswith("head."):
        return "head.params." + name[len("head."):]
    return name


@torch.no_grad()
def warm_start(net: nn.Module, source: dict[str, torch.Tensor]) -> list[str]:
    """Copy a trained network's ``source`` state dict into ``net`` where names and shapes match;
    a DeepHPS source into a ``dense_hps`` net also maps its fully connected layer and parameter
    head (:func:`dense_hps_name`): the fully connected layer's columns of the flattened
    features are copied, those of the votes' joints zeroed, so the parameter branch computes
    what DeepHPS computed. Returns the names of ``net``'s state left as initialised."""
    state = net.state_dict()
    done = set()
    for name, value in source.items():
        target = dense_hps_name(name) if "head.fc.0.weight" in state and name not in state else name
        if target not in state:
            continue
        dst = state[target]
        if dst.shape == value.shape:
            dst.copy_(value.to(dst.dtype))
        elif target == "head.fc.0.weight" and dst.shape[0] == value.shape[0] and dst.shape[1] > value.shape[1]:
            dst.zero_()
            dst[:, :value.shape[1]] = value.to(dst.dtype)
        else:
            continue
        done.add(target)
    return [k for k in state if k not in done]


class HandNet(nn.Module):
    """Backbone + head, configured by :class:`NetConfig`; ``forward(patch) -> NetOutput``."""

    def __init__(self, cfg: NetConfig = NetConfig(), cube_mm: float = 250.0, layer: HandLayer | None = None) -> None:
        super().__init__()
        self.cfg = cfg
        if cfg.method == "hand3d":
            self.backbone: nn.Module = Backbone3D(cfg.width, cfg.hidden, cfg.grid, cfg.refine_tsdf)
        else:
            self.backbone = Backbone2D(cfg.width, cfg.hidden, cfg.crop_size, flatten=not cfg.dense)
        if cfg.method == "dense":
            self.head = DenseHead(cfg.width, cfg.crop_size)
        elif cfg.method == "dense_hps":
            self.head = DenseHPSHead(cfg.width, cfg.crop_size, cfg.hidden, cube_mm, layer or HandLayer())
        elif cfg.uses_layer:
            self.head: nn.Module = ParamHead(cfg.hidden, bounded=cfg.method != "deepmodel",
                                             fixed_shape=cfg.method == "deepmodel", cube_mm=cube_mm,
                                             layer=layer or HandLayer())
        else:
            self.head = JointHead(cfg.hidden)

    def forward(self, patch: torch.Tensor) -> NetOutput:
        if self.cfg.dense:
            return self.head(self.backbone.pyramid(patch), patch)
        return self.head(self.backbone(patch))


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def multiply_adds(net: HandNet) -> int:
    """Multiply-adds of one forward pass of the backbone's convolutions and linear layers
    (batch 1), counted with forward hooks; the hand layer and the TSDF are not counted."""
    total = 0

    def hook(mod: nn.Module, _: tuple, out: torch.Tensor) -> None:
        nonlocal total
        if isinstance(mod, (nn.Conv2d, nn.Conv3d)):
            k = math.prod(mod.kernel_size) * mod.in_channels // mod.groups
            total += int(out[0].numel()) * k
        elif isinstance(mod, nn.Linear):
            total += mod.in_features * mod.out_features

    handles = [m.register_forward_hook(hook) for m in net.modules()
               if isinstance(m, (nn.Conv2d, nn.Conv3d, nn.Linear))]
    was = net.training
    net.eval()
    with torch.no_grad():
        net(torch.zeros(1, 1, net.cfg.crop_size, net.cfg.crop_size))
    net.train(was)
    for h in handles:
        h.remove()
    return total


assert THETA_DIM == 6 + NUM_ARTICULATIONS and np.isfinite(theta_limits()[0][ARTICULATION]).all()
