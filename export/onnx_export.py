"""Export torch modules to ONNX and run them with ONNX Runtime.

Shapes and units are those of the exported module (the hand layer: θ (B, 26) radians/mm,
α (B, 6), β (B, 7) -> joints (B, 21, 3) mm, vertices (B, V, 3) mm).
"""
from __future__ import annotations

import json
import logging
import warnings
from pathlib import Path
from typing import Sequence

import torch
from torch import nn

from models.hand_layer import HandLayer
from models.joints import JOINT_NAMES
from models.skeleton import ALPHA_DIM, BETA_DIM, THETA_DIM


class HandLayerGraph(nn.Module):
    """The hand layer with tensor outputs only (ONNX has no NamedTuples)."""

    def __init__(self, layer: HandLayer) -> None:
        super().__init__()
        self.layer = layer

    def forward(self, theta: torch.Tensor, alpha: torch.Tensor, beta: torch.Tensor):
        out = self.layer(theta, alpha, beta)
        return out.joints, out.vertices


def export_module(module: nn.Module, example_inputs: tuple[torch.Tensor, ...], path: str | Path,
                  input_names: Sequence[str], output_names: Sequence[str], dynamic_batch: bool = True,
                  metadata: dict[str, str] | None = None) -> Path:
    """Export ``module`` with the dynamo-based exporter; batch dimension 0 dynamic if asked.

    The exporter's optimiser folds constants and batch norms and removes dead nodes.
    ``metadata`` is written into the model's ``metadata_props`` (strings). For a dynamic batch
    give example inputs with a batch of at least 2 (torch.export specialises a size of 1).
    """
    import onnx

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    dynamic_shapes = None
    if dynamic_batch:
        batch = torch.export.Dim("batch", min=1, max=4096)
        dynamic_shapes = tuple({0: batch} for _ in input_names)  # positional: any argument names
    # The exporter logs a warning per missing torchvision operator; none of ours is one.
    registration = logging.getLogger("torch.onnx._internal.exporter._registration")
    level = registration.level
    registration.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                module.eval(), example_inputs, str(path), input_names=list(input_names),
                output_names=list(output_names), dynamic_shapes=dynamic_shapes, dynamo=True,
                external_data=False, verbose=False,
            )
    finally:
        registration.setLevel(level)
    model = onnx.load(str(path))
    for key, value in (metadata or {}).items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def export_hand_layer(path: str | Path, dynamic_batch: bool = True) -> Path:
    """Export the hand pose-and-shape layer (float32) to ``path``."""
    layer = HandLayer(dtype=torch.float32)
    batch = 2 if dynamic_batch else 1
    example = (torch.zeros(batch, THETA_DIM), torch.ones(batch, ALPHA_DIM), torch.zeros(batch, BETA_DIM))
    meta = {
        "model": "hand_layer",
        "inputs": "theta (B,26) rad/mm; alpha (B,6); beta (B,7)",
        "outputs": "joints (B,21,3) mm; vertices (B,V,3) mm",
        "joint_names": json.dumps(JOINT_NAMES),
        "faces": json.dumps(layer.faces.tolist()),
    }
    return export_module(HandLayerGraph(layer), example, path, ("theta", "alpha", "beta"),
                         ("joints", "vertices"), dynamic_batch, meta)
