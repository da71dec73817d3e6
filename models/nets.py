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
  ablation) and :class:`ParamHead` (θ, α, β through :class:`models.hand_layer.HandLayer`;
  DeepHPS, DeepModel, the "direct parameters" ablation).

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

METHODS = ("deephps", "deepmodel", "direct_params", "direct_joints", "sdnet", "hand3d")


@dataclass(frozen=True)
class NetConfig:
    """What a network is. ``method`` picks the input (crop or TSDF) and the head:

    deephps        2D CNN -> θ, α, β (bounded) -> hand layer          (DeepHPS)
    deepmodel      2D CNN -> θ (free articulations), template shape  (DeepModel FK layer)
    direct_params  2D CNN -> θ, α, β (bounded), trained on the parameters, not the joints
    direct_joints  2D CNN -> 63 numbers                               (SDNet's baseline)
    sdnet          2D CNN -> 63 numbers, trained with the skeleton difference (SDNet)
    hand3d         TSDF 32^3 [-> 3D refinement FCN] -> 3D CNN -> 63 numbers (Hand3D)
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
        return self.method in ("deephps", "deepmodel", "direct_params")

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
    """(B, 1, S, S) -> (B, hidden) features (module docstring)."""

    def __init__(self, width: int, hidden: int, size: int) -> None:
        super().__init__()
        w = width
        self.stem = nn.Sequential(nn.Conv2d(1, w, 5, 2, 2, bias=False), nn.BatchNorm2d(w), nn.ReLU())
        self.stages = nn.Sequential(ResBlock(w, 2 * w, 2), ResBlock(2 * w, 4 * w, 2),
                                    ResBlock(4 * w, 8 * w, 2), ResBlock(8 * w, 8 * w, 2))
        side = size // 32
        self.fc = nn.Sequential(nn.Flatten(), nn.Linear(8 * w * side * side, hidden), nn.ReLU())

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


class HandNet(nn.Module):
    """Backbone + head, configured by :class:`NetConfig`; ``forward(patch) -> NetOutput``."""

    def __init__(self, cfg: NetConfig = NetConfig(), cube_mm: float = 250.0, layer: HandLayer | None = None) -> None:
        super().__init__()
        self.cfg = cfg
        if cfg.method == "hand3d":
            self.backbone: nn.Module = Backbone3D(cfg.width, cfg.hidden, cfg.grid, cfg.refine_tsdf)
        else:
            self.backbone = Backbone2D(cfg.width, cfg.hidden, cfg.crop_size)
        if cfg.uses_layer:
            self.head: nn.Module = ParamHead(cfg.hidden, bounded=cfg.method != "deepmodel",
                                             fixed_shape=cfg.method == "deepmodel", cube_mm=cube_mm,
                                             layer=layer or HandLayer())
        else:
            self.head = JointHead(cfg.hidden)

    def forward(self, patch: torch.Tensor) -> NetOutput:
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
