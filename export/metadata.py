"""What an exported hand engine carries about itself: :class:`EngineMetadata`.

Everything the app needs to use an engine without hard-coding anything is stored in the ONNX
file's ``metadata_props``, one key per field, each value JSON:

=================  =====================================================================
key                value
=================  =====================================================================
format             ``"handtrack.engine/1"``
name, version      the model's name and version (the weights file's card, else the checkpoint)
method             ``models.nets.NetConfig.method``; ``net_config`` the whole NetConfig
precision          ``"fp32"`` or ``"fp16"`` (weights and compute; inputs and outputs are float32)
input              ``{"name", "shape": [1 or "batch", 1, S, S], "dtype": "float32"}``
crop               ``{"cube_mm", "size", "background", "front", "depth", "resample"}``: the
                   ``models.crop`` contract the input must follow
outputs            ``[{"name", "shape", "units", "frame"}]``: joints and (layer models) vertices
joint_names        the 21 names of ``models.joints.JOINT_NAMES``, output order
faces              (F, 3) vertex indices of the mesh triangles, or null without vertices
hand_vertex_mask   (V,) 0/1, 1 for a hand vertex (0: the forearm stub), or null
training           a summary of the training run (data, steps, ...)
weights_sha256     SHA-256 of the weights file the engine was exported from
=================  =====================================================================

Units: outputs in millimetres, camera axes (x right, y down, z forward), relative to the
crop centre ``com_mm`` (add ``com_mm`` for camera coordinates). The scale cube_mm / 2 from the
network's normalised units is applied inside the graph; ``crop.cube_mm`` says which cube the
input must be cut with.

Pure: no file access here (``export.runtime`` reads files, ``export.model_export`` writes them).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np

FORMAT = "handtrack.engine/1"

#: How the crop normalises depth (``models.crop``), written into every engine.
DEPTH_RULE = ("d = (z - com_z) / (cube_mm / 2), clipped to [front, background]; no depth, behind the "
              "cube or outside the image: background; in front of the cube: front")
OUTPUT_FRAME = "camera axes (x right, y down, z forward), relative to the crop centre com_mm"


@dataclass(frozen=True)
class OutputSpec:
    """One graph output: name, shape ("batch" for a dynamic first axis), units, frame."""

    name: str
    shape: tuple[int | str, ...]
    units: str = "mm"
    frame: str = OUTPUT_FRAME


@dataclass(frozen=True)
class EngineMetadata:
    """The typed view of an engine's ``metadata_props`` (module docstring).

    faces: (F, 3) int64 triangle vertex indices, or None for joint-only models.
    hand_vertex_mask: (V,) bool, True for a hand vertex (False: forearm stub), or None.
    batch: 1 for a static engine (the live path), None for a dynamic batch.
    """

    name: str
    version: str
    method: str
    net_config: dict[str, Any]
    precision: str
    batch: int | None
    input_name: str
    input_size: int
    cube_mm: float
    background: float
    front: float
    outputs: tuple[OutputSpec, ...]
    joint_names: tuple[str, ...]
    faces: np.ndarray | None = field(default=None, compare=False)
    hand_vertex_mask: np.ndarray | None = field(default=None, compare=False)
    training: dict[str, Any] = field(default_factory=dict)
    weights_sha256: str = ""

    def __post_init__(self) -> None:
        if self.precision not in ("fp32", "fp16"):
            raise ValueError(f"precision: expected 'fp32' or 'fp16', got {self.precision!r}")
        if self.batch is not None and self.batch != 1:
            raise ValueError(f"batch: expected 1 (static) or None (dynamic), got {self.batch!r}")
        if self.input_size < 1 or self.cube_mm <= 0:
            raise ValueError(f"input_size / cube_mm: expected positive, got {self.input_size} / {self.cube_mm}")
        names = self.output_names
        if not names or names[0] != "joints":
            raise ValueError(f"outputs: expected 'joints' first, got {names}")
        if self.has_vertices != (self.faces is not None):
            raise ValueError("outputs/faces: an engine with a 'vertices' output needs faces, and only then")
        if self.faces is not None:
            faces = np.asarray(self.faces)
            if faces.ndim != 2 or faces.shape[1] != 3:
                raise ValueError(f"faces: expected (F, 3), got {faces.shape}")
        if self.hand_vertex_mask is not None and self.faces is None:
            raise ValueError("hand_vertex_mask: only for engines with vertices")

    @property
    def output_names(self) -> tuple[str, ...]:
        return tuple(o.name for o in self.outputs)

    @property
    def has_vertices(self) -> bool:
        return "vertices" in self.output_names

    @property
    def input_shape(self) -> tuple[int | str, ...]:
        """(1 or "batch", 1, S, S)."""
        return (self.batch if self.batch is not None else "batch", 1, self.input_size, self.input_size)

    def to_props(self) -> dict[str, str]:
        """The ``metadata_props`` to write: key -> JSON text."""
        values: dict[str, Any] = {
            "format": FORMAT,
            "name": self.name,
            "version": self.version,
            "method": self.method,
            "net_config": self.net_config,
            "precision": self.precision,
            "input": {"name": self.input_name, "shape": list(self.input_shape), "dtype": "float32"},
            "crop": {"cube_mm": self.cube_mm, "size": self.input_size, "background": self.background,
                     "front": self.front, "depth": DEPTH_RULE, "resample": "nearest"},
            "outputs": [{"name": o.name, "shape": list(o.shape), "units": o.units, "frame": o.frame}
                        for o in self.outputs],
            "joint_names": list(self.joint_names),
            "faces": None if self.faces is None else np.asarray(self.faces).astype(int).tolist(),
            "hand_vertex_mask": (None if self.hand_vertex_mask is None
                                 else np.asarray(self.hand_vertex_mask).astype(int).tolist()),
            "training": self.training,
            "weights_sha256": self.weights_sha256,
        }
        return {k: json.dumps(v, separators=(",", ":"), default=str) for k, v in values.items()}

    @classmethod
    def from_props(cls, props: Mapping[str, str], source: str = "engine") -> "EngineMetadata":
        """Parse and check ``metadata_props``; ValueError naming ``source`` and the bad key."""
        if "format" not in props:
            raise ValueError(f"{source}: no hand-engine metadata (key 'format' missing); export it with "
                             f"`python -m export model`")
        values: dict[str, Any] = {}
        for key, text in props.items():
            try:
                values[key] = json.loads(text)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{source}: metadata '{key}' is not JSON ({exc})") from None
        if values["format"] != FORMAT:
            raise ValueError(f"{source}: metadata format {values['format']!r}, expected {FORMAT!r}")
        try:
            inp, crop = values["input"], values["crop"]
            shape = inp["shape"]
            if len(shape) != 4 or shape[1] != 1 or shape[2] != shape[3]:
                raise ValueError(f"input shape: expected (B, 1, S, S), got {shape}")
            if shape[2] != crop["size"]:
                raise ValueError(f"input size {shape[2]} differs from the crop size {crop['size']}")
            faces = values["faces"]
            mask = values["hand_vertex_mask"]
            return cls(
                name=str(values["name"]), version=str(values["version"]), method=str(values["method"]),
                net_config=dict(values["net_config"]), precision=values["precision"],
                batch=shape[0] if isinstance(shape[0], int) else None,
                input_name=str(inp["name"]), input_size=int(shape[2]), cube_mm=float(crop["cube_mm"]),
                background=float(crop["background"]), front=float(crop["front"]),
                outputs=tuple(OutputSpec(o["name"], tuple(o["shape"]), o["units"], o["frame"])
                              for o in values["outputs"]),
                joint_names=tuple(values["joint_names"]),
                faces=None if faces is None else np.asarray(faces, dtype=np.int64).reshape(-1, 3),
                hand_vertex_mask=None if mask is None else np.asarray(mask, dtype=bool),
                training=dict(values.get("training") or {}),
                weights_sha256=str(values.get("weights_sha256", "")),
            )
        except KeyError as exc:
            raise ValueError(f"{source}: metadata key {exc} missing") from None
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{source}: bad metadata ({exc})") from None
