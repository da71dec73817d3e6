"""Export a trained hand network as ONE ONNX engine: crop in, joints and mesh out, in mm.

    patch (B, 1, S, S) float32, normalised depth (``models.crop``; S = 96)
      -> joints   (B, 21, 3) float32, mm, camera axes, relative to the crop centre
      -> vertices (B, V, 3) float32, same frame (models with a hand layer only)

The hand layer is inside the graph, so one engine gives the joints and the skinned mesh.
The networks output normalised cube units ((xyz - com) / (cube_mm / 2)); the graph multiplies
by cube_mm / 2 at its end, so the app gets millimetres and only adds the crop centre
(``crop.cube_mm`` in the metadata says which cube the input must be cut with).

Variants (file names from :func:`variant_filename`):

    <name>.onnx              static batch 1, fp32: the live path (TensorRT builds the tightest engine)
    <name>.dynamic.onnx      dynamic batch, fp32: evaluation
    <name>.fp16.onnx         static batch 1; the backbone's residual stages and fully connected
                             layer in fp16 (97 % of its multiply-adds); the input, Hand3D's TSDF, the
                             stem convolution, the head, the hand layer and the mm scale in fp32;
                             inputs and outputs float32. ONNX Runtime's CPU provider runs it by
                             casting to fp32 where it has no fp16 kernel.

The FP16 split keeps the hand layer in fp32: it is cheap (0.44 ms in ONNX Runtime on the CPU at
batch 1, README) and in fp16 alone it is off by 0.15 mm on average and up to 0.55 mm (joints) /
0.74 mm (vertices) on 200 pose-bank poses, more than the 0.5 mm we allow the fp16 engine.

"Without the layer" (:class:`ParamsGraph`, for the benchmark): the same network up to the
layer's inputs, θ (B, 26), α (B, 6), β (B, 7) and the root rotation (B, 3, 3).
"""
from __future__ import annotations

import copy
import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from export.metadata import EngineMetadata, OutputSpec
from export.onnx_export import export_module
from models.crop import BACKGROUND, FRONT, CropConfig
from models.hand_layer import HandOutput
from models.joints import JOINT_NAMES, NUM_JOINTS
from models.nets import HandNet

INPUT_NAME = "patch"


@dataclass(frozen=True)
class ModelInfo:
    """Where a model comes from: name, version, training summary, weights hash."""

    name: str
    version: str
    training: dict[str, Any] = field(default_factory=dict)
    weights_sha256: str = ""


# --------------------------------------------------------------------------- graphs


class EngineGraph(nn.Module):
    """``HandNet`` -> (joints mm[, vertices mm]) relative to the crop centre (module docstring).

    ``fp16``: the backbone's residual stages and fully connected layer run in float16
    (:meth:`features`). The net is copied, never changed.
    """

    def __init__(self, net: HandNet, cube_mm: float, fp16: bool = False) -> None:
        super().__init__()
        self.net = copy.deepcopy(net).eval()
        self.half_mm = float(cube_mm) / 2.0
        self.fp16 = fp16
        if fp16:
            self.net.backbone.stages.half()
            if self.net.backbone.fc is not None:
                self.net.backbone.fc.half()

    def forward(self, patch: torch.Tensor) -> tuple[torch.Tensor, ...]:
        if self.net.cfg.dense:
            out = self.net.head(self.pyramid(patch), patch)
        else:
            out = self.net.head(self.features(patch))
        joints = out.joints * self.half_mm
        if out.vertices is None:
            return (joints,)
        return joints, out.vertices * self.half_mm

    def features(self, patch: torch.Tensor) -> torch.Tensor:
        """The backbone's (B, hidden) float32 features. In fp16: the input, Hand3D's TSDF and the
        stem convolution stay fp32 (the depth keeps its resolution: 1/2048 of cube/2 in fp16
        near the back of the cube is 0.06 mm), the residual stages and the fully connected
        layer run in fp16. Mirrors ``Backbone2D/3D.forward`` (tests check the parity)."""
        backbone = self.net.backbone
        if not self.fp16:
            return backbone(patch)
        x = backbone.volume(patch) if hasattr(backbone, "volume") else patch
        x = backbone.stem(x)
        return backbone.fc(backbone.stages(x.half())).float()

    def pyramid(self, patch: torch.Tensor) -> list[torch.Tensor]:
        """The dense methods' float32 pyramid (``Backbone2D.pyramid``); in fp16 the residual
        stages run in fp16 and the decoder and votes in fp32."""
        backbone = self.net.backbone
        if not self.fp16:
            return backbone.pyramid(patch)
        x = backbone.stem(patch).half()
        out = []
        for stage in backbone.stages:
            x = stage(x)
            out.append(x.float())
        return out


class _NoLayer(nn.Module):
    """Stands in for the hand layer: empty outputs, so the graph ends at the layer's inputs."""

    def forward(self, theta: torch.Tensor, alpha: torch.Tensor, beta: torch.Tensor,
                root_rotation: torch.Tensor | None = None) -> HandOutput:
        empty = theta[:, :0]
        return HandOutput(empty, empty, empty)


class ParamsGraph(nn.Module):
    """A layer model up to the layer: patch -> θ (B, 26), α (B, 6), β (B, 7), rotation (B, 3, 3)."""

    def __init__(self, net: HandNet) -> None:
        super().__init__()
        if not net.cfg.uses_layer:
            raise ValueError(f"method {net.cfg.method!r} has no hand layer to leave out")
        self.net = copy.deepcopy(net).eval()
        self.net.head.layer = _NoLayer()

    def forward(self, patch: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out = self.net(patch)
        return out.theta, out.alpha, out.beta, out.rotation


PARAMS_OUTPUTS = ("theta", "alpha", "beta", "rotation")


# --------------------------------------------------------------------------- metadata (pure)


def variant_filename(name: str, dynamic: bool = False, fp16: bool = False) -> str:
    """``<name>[.dynamic][.fp16].onnx``."""
    return f"{name}{'.dynamic' if dynamic else ''}{'.fp16' if fp16 else ''}.onnx"


def output_names(net: HandNet) -> tuple[str, ...]:
    return ("joints", "vertices") if net.cfg.uses_layer else ("joints",)


def build_metadata(net: HandNet, info: ModelInfo, *, dynamic: bool, fp16: bool, cube_mm: float,
                   hand_vertex_mask: np.ndarray | None) -> EngineMetadata:
    """The metadata of ``net`` exported as one variant. ``hand_vertex_mask``: (V,) bool for
    layer models (``models.train.hand_vertex_mask()``), ignored otherwise."""
    batch: int | str = "batch" if dynamic else 1
    outputs = [OutputSpec("joints", (batch, NUM_JOINTS, 3))]
    faces = mask = None
    if net.cfg.uses_layer:
        layer = net.head.layer
        faces = layer.faces.cpu().numpy().astype(np.int64)
        n_vertices = int(layer.rest_offsets.shape[0])
        outputs.append(OutputSpec("vertices", (batch, n_vertices, 3)))
        if hand_vertex_mask is not None:
            mask = np.asarray(hand_vertex_mask, dtype=bool)
            if mask.shape != (n_vertices,):
                raise ValueError(f"hand_vertex_mask: expected ({n_vertices},), got {mask.shape}")
    return EngineMetadata(
        name=info.name, version=info.version, method=net.cfg.method, net_config=net.cfg.to_dict(),
        precision="fp16" if fp16 else "fp32", batch=None if dynamic else 1, input_name=INPUT_NAME,
        input_size=net.cfg.crop_size, cube_mm=float(cube_mm), background=BACKGROUND, front=FRONT,
        outputs=tuple(outputs), joint_names=tuple(JOINT_NAMES), faces=faces, hand_vertex_mask=mask,
        training=info.training, weights_sha256=info.weights_sha256,
    )


def check_cube(net: HandNet, cube_mm: float) -> None:
    """A layer model converts to mm with its own cube; it must be the crop's."""
    if net.cfg.uses_layer and abs(2.0 * net.head.half - cube_mm) > 1e-6:
        raise ValueError(f"the network was built for a {2 * net.head.half} mm cube, the crop uses {cube_mm} mm")


def summarise_checkpoint(ckpt: dict[str, Any], path: Path, sha256: str) -> ModelInfo:
    """Name, version and training summary from a weights file's "card" or a checkpoint's
    "train" config (``models.train``). Pure: ``ckpt`` is the loaded dict."""
    default_name = path.parent.name if path.stem in ("last", "best") else path.stem
    card = ckpt.get("card")
    if isinstance(card, dict):
        name = str(card.get("name", default_name))
        version = str(card.get("version", sha256[:12]))
        training = {k: v for k, v in card.items() if k not in ("name", "version")}
        return ModelInfo(name, version, training, sha256)
    train = ckpt.get("train") or {}
    step = ckpt.get("step")
    name = str(train.get("name", default_name))
    version = f"step{step}-{sha256[:8]}" if step is not None else sha256[:12]
    training = {"source": "training checkpoint", "step": step, "elapsed_s": ckpt.get("elapsed_s"),
                "data": train.get("train"), "config": train}
    return ModelInfo(name, version, training, sha256)


# --------------------------------------------------------------------------- IO


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def load_for_export(weights: str | Path) -> tuple[HandNet, ModelInfo]:
    """The eval-mode network and its :class:`ModelInfo` from a checkpoint or shipped weights."""
    from models.train import load_model

    path = Path(weights)
    net = load_model(path)  # FileNotFoundError / ValueError with the path
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    return net, summarise_checkpoint(ckpt, path, file_sha256(path))


def default_hand_vertex_mask() -> np.ndarray:
    from models.train import hand_vertex_mask

    return hand_vertex_mask().numpy()


def export_engine(net: HandNet, path: str | Path, info: ModelInfo, *, dynamic: bool = False,
                  fp16: bool = False, cube_mm: float = CropConfig().cube_mm) -> Path:
    """Write one engine variant of ``net`` (module docstring) with its metadata to ``path``."""
    check_cube(net, cube_mm)
    mask = default_hand_vertex_mask() if net.cfg.uses_layer else None
    meta = build_metadata(net, info, dynamic=dynamic, fp16=fp16, cube_mm=cube_mm, hand_vertex_mask=mask)
    size = net.cfg.crop_size
    example = torch.full((2 if dynamic else 1, 1, size, size), BACKGROUND)
    return export_module(EngineGraph(net, cube_mm, fp16), (example,), path, (INPUT_NAME,),
                         output_names(net), dynamic_batch=dynamic, metadata=meta.to_props())


def export_params(net: HandNet, path: str | Path, dynamic: bool = False) -> Path:
    """Write the network without its hand layer (:class:`ParamsGraph`; benchmarks only)."""
    size = net.cfg.crop_size
    example = torch.full((2 if dynamic else 1, 1, size, size), BACKGROUND)
    return export_module(ParamsGraph(net), (example,), path, (INPUT_NAME,), PARAMS_OUTPUTS,
                         dynamic_batch=dynamic, metadata={"model": f"{net.cfg.method} without the hand layer"})


def export_variants(net: HandNet, info: ModelInfo, out_dir: str | Path, *, static: bool = True,
                    dynamic: bool = True, fp16: bool = False) -> list[Path]:
    """The asked variants into ``out_dir`` (fp16 for each asked batch mode); returns the paths."""
    out_dir = Path(out_dir)
    paths = []
    for is_dynamic in [d for d, asked in ((False, static), (True, dynamic)) if asked]:
        for half in (False, True) if fp16 else (False,):
            path = out_dir / variant_filename(info.name, is_dynamic, half)
            paths.append(export_engine(net, path, info, dynamic=is_dynamic, fp16=half))
    return paths
