"""Synthetic depth frames rendered live from our hand model: ``synthetic[:key=value,...]``.

Conventions: as ``sources.frame``; labels are the rendered hand's 21 joints, "canonical"
layout, camera frame, mm (exact: the depth was ray-cast from the same mesh).

Each frame is one hand drawn by ``models.sampling`` (pose, shape, view), placed in a scene
and seen through the camera's sensor model, exactly as ``models.synth`` renders training
data (``Renderer.render_depth``), but as whole frames at the camera's full resolution and
with the camera's nominal intrinsics (no per-frame jitter). Hands the sampled sensor could
not see (outside its range) are drawn again. Options:

    seed=INT          random seed (default 0): the same seed gives the same frames
    camera=PRESET     a ``calib`` preset with a sensor model (default d435_848x480)
    frames=INT        stop after this many frames (default: endless, num_frames None)
    split=NAME        the sampler's split, train / val / test (default test)

Timestamps are index * 1000 / fps (30); ``realtime=True`` keeps that pace. Imports torch and
the hand model lazily (when the source is opened). Thread: the caller's.
"""

from __future__ import annotations

import time
from typing import Mapping

import numpy as np

from calib import Intrinsics, SourceError, get_preset

from .depth import DepthCheck
from .files import DEFAULT_FPS, Pacer
from .frame import Frame, Labels, Source

__all__ = ["SYNTHETIC_OPTIONS", "SyntheticSource", "parse_synthetic_options"]

SYNTHETIC_OPTIONS = {"seed": 0, "camera": "d435_848x480", "frames": None, "split": "test"}
_MAX_DRAWS = 1000  # hands drawn for one frame before giving up


def parse_synthetic_options(text: str) -> dict:
    """"seed=3,camera=sr305_640x480" -> the options (defaults filled in); ValueError if bad."""
    options = dict(SYNTHETIC_OPTIONS)
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or key not in options:
            raise ValueError(f"expected key=value with a key in {sorted(options)}, got {item!r}")
        value = value.strip()
        if key in ("seed", "frames"):
            try:
                options[key] = int(value)
            except ValueError:
                raise ValueError(f"{key}: expected an integer, got {value!r}") from None
        else:
            options[key] = value
    if options["frames"] is not None and options["frames"] < 1:
        raise ValueError(f"frames: expected >= 1, got {options['frames']}")
    if options["split"] not in ("train", "val", "test"):
        raise ValueError(f"split: expected train, val or test, got {options['split']!r}")
    return options


class SyntheticSource(Source):
    """Live synthetic frames (see the module docstring for the options)."""

    def __init__(self, options: Mapping | None = None, *, realtime: bool = False) -> None:
        super().__init__()
        opts = dict(SYNTHETIC_OPTIONS, **(options or {}))
        import torch

        from models.sensor import sample_sensor
        from models.synth import Renderer, SynthConfig

        self._camera = str(opts["camera"])
        try:
            self._intrinsics: Intrinsics = get_preset(self._camera).intrinsics
            sample_sensor(np.random.default_rng(0), self._camera)  # the preset has a sensor model
        except (ValueError, KeyError) as exc:
            raise SourceError(f"synthetic: camera {self._camera!r}: {exc}") from exc
        # Whole frames at full resolution: no coarse ray casting (see Renderer._raycast).
        self._renderer = Renderer(SynthConfig(chunk=1, full_frames=True, max_rays_per_crop_px=1e9))
        self._torch = torch
        self._rng = np.random.default_rng(int(opts["seed"]))
        self._split = str(opts["split"])
        self._limit = opts["frames"]
        self._check = DepthCheck(self._intrinsics, "synthetic")
        self._period_ms = 1000.0 / DEFAULT_FPS
        self._pacer = Pacer() if realtime else None
        self._index = 0
        self.num_frames = self._limit
        self.name = (f"synthetic hands (seed {opts['seed']}, {self._camera} {self._intrinsics.width}x"
                     f"{self._intrinsics.height}, {self._split} split)")

    @property
    def intrinsics(self) -> Intrinsics:
        return self._intrinsics

    def _render(self) -> tuple[np.ndarray, np.ndarray]:
        """One hand the sensor can see: ((H, W) float32 mm depth, (21, 3) float64 joints mm)."""
        from models.joints import palm_centre
        from models.sampling import View, sample_hands
        from models.sensor import sample_sensor

        intr, rng = self._intrinsics, self._rng
        margin = self._renderer.policy.range_margin_mm
        for _ in range(_MAX_DRAWS):
            hands = sample_hands(rng, 1, intr, self._split)
            with self._torch.inference_mode():
                out = self._renderer.layer(*(self._torch.as_tensor(x) for x in (hands.theta, hands.alpha, hands.beta)),
                                           wrist=self._torch.as_tensor(hands.wrist))
            verts, joints = out.vertices[0].numpy(), out.joints[0].numpy().astype(np.float64)
            sensor = sample_sensor(rng, self._camera)
            if not sensor.min_range_mm + margin < palm_centre(joints)[2] < sensor.max_range_mm - margin:
                continue
            egocentric = int(hands.view[0]) == int(View.EGOCENTRIC)
            depth, _ = self._renderer.render_depth(rng, sensor, intr, (0, 0, intr.width, intr.height), verts,
                                                   joints, egocentric)
            return depth, joints
        raise SourceError(f"synthetic: no hand within the {self._camera} sensor's range in {_MAX_DRAWS} draws")

    def _next_frame(self) -> Frame | None:
        if self._limit is not None and self._index >= self._limit:
            return None
        depth, joints = self._render()
        arrival_s = time.perf_counter()
        timestamp_ms = self._index * self._period_ms
        if self._pacer is not None:
            arrival_s = self._pacer.wait(timestamp_ms, arrival_s)
        checked = self._check(depth.astype(np.float32, copy=False), str(self._index))
        if checked is None:  # cannot happen: rendered at the intrinsics' size
            raise SourceError(f"synthetic: rendered {depth.shape}, expected the intrinsics' size")
        frame = Frame(self._index, str(self._index), timestamp_ms, arrival_s, checked, self._intrinsics,
                      Labels(joints, "canonical"))
        self._index += 1
        return frame
