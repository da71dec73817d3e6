"""Where the hand is in a whole depth frame, learnt: ``python -m models.handspot``.

    python -m models.handspot prepare --frames data/synth_frames/train    # whole frames -> small inputs
    python -m models.handspot train                                        # resumable, runs/handspot
    python -m models.handspot ship                                         # models/weights/handspot.onnx
    python -m models.handspot evaluate --data data/handspot/val.npz        # the spot's errors
    python -m models.handspot picture                                      # docs/handspot.png

The hand finder (``models.handfind``) is geometry: the nearest object, the free end of the arm.
It fails where those rules do not hold: a table edge or a cup nearer than the hand, an arm
whose entry is misread so that its free end is the elbow, a hand held against the body. A small
fully convolutional network looks at the whole frame instead and says where the palm centre
is; its answer is one more candidate that the pose network checks with the finder's
(``models.estimator``, "Which object is the hand"), so it adds what the rules miss without
taking away what they find.

Input (:func:`spot_input`): the frame resized to ``width`` x ``height`` (nearest pixel, the
aspect ratio not kept: 848 x 480 and 512 x 424 sensors alike), each pixel's *nearness*
1 − z / ``far_mm`` for a depth within (``near_mm``, ``far_mm``), 0 for no depth or farther.
Output: logits on a grid of ``stride``-pixel cells of the input; their softmax over the frame
is where the palm centre (``models.joints.palm_centre``) projects. Trained with the
cross-entropy to a Gaussian of ``sigma_cells`` around the true cell position (a soft
one-hot: the centre between cells is not penalised as a miss).

Coordinates: normalised image coordinates (s, t) in [0, 1]: s = (u + 0.5) / W, t = (v + 0.5)
/ H for a pixel (u, v) of a W x H frame ((0, 0) the centre of the top-left pixel, the
``calib`` convention); cell (i, j) of the grid covers s in [j, j + 1) / columns.

From the spot to a candidate (:func:`spot_detection`): the depth around the spotted pixel
(a low percentile of the valid depths within ``window_mm`` of the ray at the hand's typical
distance, so the hand in front wins over what lies behind it) gives a 3D start, and the
finder's own centre-of-mass refinement (``models.handfind.track_centre``) moves it onto the
palm, so every candidate is centred the same way.

Network (``SpotNet``, :func:`make_net`): a four-stage encoder (stride 2 each; ``channels`` x 1,
2, 4, 4 channels; a single convolution in the first stage, two in the others) and a two-step
decoder with skip connections back to stride 4; at 8 channels 73,193 parameters and 19 M
multiply-adds for 128 x 96, 1.1 ms a frame in ONNX Runtime on one core. Trained on 16,000
whole synthetic frames (``models.synth generate --split train --full-frames``) with random
shifts of up to a tenth of the frame and 0-10 % pixel dropout (:func:`_augment`): 15,000 steps
of 48 frames, 32 min on one thread of a 2-core AMD EPYC; its card (data, steps, time, machine,
validation errors) is in the ONNX file's metadata (``HandSpotter.card``).

Frames and units: camera frame x right, y down, z forward, millimetres (the ``calib``
conventions). Pure math at the top; IO (the ONNX session, shards, training) below it.
"""
from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from calib import Intrinsics, backproject, project
from models.handfind import HandDetection, HandFinderConfig, track_centre

WEIGHTS_PATH = Path(__file__).resolve().parent / "weights" / "handspot.onnx"


@dataclass(frozen=True)
class SpotConfig:
    """The network's input and output grid. width, height: input pixels; stride: input pixels
    per output cell; near_mm, far_mm: the depth range it sees (mm); sigma_cells: the training
    target's spread; channels: the first stage's channels."""

    width: int = 128
    height: int = 96
    stride: int = 4
    near_mm: float = 100.0
    far_mm: float = 2000.0
    sigma_cells: float = 1.0
    channels: int = 8

    @property
    def grid(self) -> tuple[int, int]:
        """(rows, columns) of the output."""
        return self.height // self.stride, self.width // self.stride


class Spot(NamedTuple):
    """Where the network puts the palm centre: uv (2,) float64 pixels of the frame; confidence,
    the softmax's mass in the 3 x 3 cells around the peak (0-1); probs (rows, cols) float64, the
    whole softmax (for :func:`spot_mass` at other places)."""

    uv: np.ndarray
    confidence: float
    probs: np.ndarray


# --------------------------------------------------------------------------- pure math


def spot_input(depth_mm: np.ndarray, intr: Intrinsics, cfg: SpotConfig = SpotConfig()) -> np.ndarray:
    """(H, W) depth (mm; 0, NaN, inf: none) of a frame of ``intr`` -> (height, width) float32
    nearness in [0, 1) (module docstring)."""
    import cv2

    depth = np.asarray(depth_mm, dtype=np.float32)
    if depth.shape != (intr.height, intr.width):
        raise ValueError(f"depth_mm: expected shape ({intr.height}, {intr.width}), got {depth.shape}")
    small = cv2.resize(depth, (cfg.width, cfg.height), interpolation=cv2.INTER_NEAREST)
    ok = np.isfinite(small) & (small > cfg.near_mm) & (small < cfg.far_mm)
    return np.where(ok, 1.0 - small / cfg.far_mm, 0.0).astype(np.float32)


def target_cells(st: np.ndarray, cfg: SpotConfig = SpotConfig()) -> np.ndarray:
    """(B, 2) normalised (s, t) -> (B, rows, cols) float32 Gaussian target, each summing to 1."""
    rows, cols = cfg.grid
    x = st[:, 0, None] * cols - 0.5                      # cell units, cell centres at integers
    y = st[:, 1, None] * rows - 0.5
    gx = np.exp(-0.5 * ((np.arange(cols)[None] - x) / cfg.sigma_cells) ** 2)
    gy = np.exp(-0.5 * ((np.arange(rows)[None] - y) / cfg.sigma_cells) ** 2)
    g = gy[:, :, None] * gx[:, None, :]
    return (g / np.maximum(g.sum((1, 2), keepdims=True), 1e-12)).astype(np.float32)


def decode(logits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(B, rows, cols) logits -> normalised (s, t) (B, 2) of the peak and the softmax mass in
    the 3 x 3 cells around it (B,). Sub-cell position: a parabola through the peak's log-softmax
    and its two neighbours along each axis (exact for a Gaussian, the training target's shape)."""
    b, rows, cols = logits.shape
    z = logits.reshape(b, -1).astype(np.float64)
    logp = (z - z.max(1, keepdims=True))
    logp = (logp - np.log(np.exp(logp).sum(1, keepdims=True))).reshape(b, rows, cols)
    peak = logp.reshape(b, -1).argmax(1)
    i, j = np.divmod(peak, cols)
    st, mass = np.zeros((b, 2)), np.zeros(b)

    def offset(lo: float, mid: float, hi: float) -> float:
        curve = lo - 2.0 * mid + hi
        return float(np.clip(0.5 * (lo - hi) / curve, -0.5, 0.5)) if curve < 0.0 else 0.0

    for k in range(b):
        r, c, lp = i[k], j[k], logp[k]
        dx = offset(lp[r, c - 1], lp[r, c], lp[r, c + 1]) if 0 < c < cols - 1 else 0.0
        dy = offset(lp[r - 1, c], lp[r, c], lp[r + 1, c]) if 0 < r < rows - 1 else 0.0
        st[k] = (c + dx + 0.5) / cols, (r + dy + 0.5) / rows
        mass[k] = np.exp(lp[max(r - 1, 0):r + 2, max(c - 1, 0):c + 2]).sum()
    return st, mass


def spot_mass(spot: Spot, uv: np.ndarray, intr: Intrinsics) -> float:
    """The spotter's softmax mass in the 3 x 3 cells around pixel ``uv`` of the frame (0 outside
    it): how much the network believes the palm centre is there."""
    rows, cols = spot.probs.shape
    s, t = st_from_uv(uv, intr)
    c, r = int(math.floor(s * cols)), int(math.floor(t * rows))
    if not (0 <= c < cols and 0 <= r < rows):
        return 0.0
    return float(spot.probs[max(r - 1, 0):r + 2, max(c - 1, 0):c + 2].sum())


def st_from_uv(uv: np.ndarray, intr: Intrinsics) -> np.ndarray:
    """(..., 2) pixels -> normalised (s, t)."""
    return (np.asarray(uv, np.float64) + 0.5) / np.array([intr.width, intr.height], np.float64)


def uv_from_st(st: np.ndarray, intr: Intrinsics) -> np.ndarray:
    """(..., 2) normalised (s, t) -> pixels."""
    return np.asarray(st, np.float64) * np.array([intr.width, intr.height], np.float64) - 0.5


def start_point(depth_mm: np.ndarray, intr: Intrinsics, uv: np.ndarray, window_mm: float = 40.0,
                typical_mm: float = 600.0, percentile: float = 20.0) -> np.ndarray | None:
    """A 3D start (mm, camera frame) on the surface seen around pixel ``uv``: the ``percentile``
    of the valid depths within a square of ``window_mm`` (at ``typical_mm`` from the camera)
    around it, on the ray through it; None when there is no depth there."""
    half = max(2, int(round(window_mm * intr.fx / typical_mm)))
    u, v = int(round(uv[0])), int(round(uv[1]))
    if not (0 <= u < intr.width and 0 <= v < intr.height):
        return None
    win = np.asarray(depth_mm[max(v - half, 0):v + half + 1, max(u - half, 0):u + half + 1], np.float64)
    ok = win[np.isfinite(win) & (win > 0)]
    if ok.size == 0:
        return None
    z = float(np.percentile(ok, percentile))
    return np.asarray(backproject(np.array([uv[0], uv[1], z]), intr), np.float64)


# --------------------------------------------------------------------------- network


def _net_class() -> Any:
    """``SpotNet``, defined on first use: torch is imported only to train and ship (the app runs
    the ONNX graph)."""
    import torch
    from torch import nn
    from torch.nn import functional as F

    def block(cin: int, cout: int, stride: int) -> nn.Sequential:
        return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
                             nn.Conv2d(cout, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))

    class SpotNet(nn.Module):
        """(B, 1, height, width) nearness -> (B, height / 4, width / 4) logits (module docstring)."""

        def __init__(self, channels: int = SpotConfig.channels) -> None:
            super().__init__()
            c = channels
            self.enc1 = nn.Sequential(nn.Conv2d(1, c, 3, 2, 1, bias=False), nn.BatchNorm2d(c), nn.ReLU(inplace=True))
            self.enc2 = block(c, 2 * c, 2)                                        # 1/2, 1/4
            self.enc3, self.enc4 = block(2 * c, 4 * c, 2), block(4 * c, 4 * c, 2)  # 1/8, 1/16
            self.dec3 = block(8 * c, 4 * c, 1)
            self.dec2 = block(6 * c, 2 * c, 1)
            self.head = nn.Conv2d(2 * c, 1, 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            e2 = self.enc2(self.enc1(x))
            e3 = self.enc3(e2)
            e4 = self.enc4(e3)
            d3 = self.dec3(torch.cat([F.interpolate(e4, size=e3.shape[-2:], mode="nearest"), e3], 1))
            d2 = self.dec2(torch.cat([F.interpolate(d3, size=e2.shape[-2:], mode="nearest"), e2], 1))
            return self.head(d2)[:, 0]

    return SpotNet


def make_net(cfg: SpotConfig = SpotConfig()) -> Any:
    """A freshly initialised ``SpotNet`` (a torch module) for ``cfg``."""
    return _net_class()(cfg.channels)


class HandSpotter:
    """The shipped network in ONNX Runtime: ``spotter(depth_mm, intr) -> Spot``. Thread: one
    caller at a time (one session, batch 1)."""

    def __init__(self, path: str | Path = WEIGHTS_PATH) -> None:
        import onnxruntime as ort

        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no hand-spotting network (python -m models.handspot ship)")
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        self.session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        meta = self.session.get_modelmeta().custom_metadata_map
        self.cfg = SpotConfig(**json.loads(meta["spot_config"]))
        self.card: dict[str, Any] = json.loads(meta.get("card", "{}"))   # ship(): data, steps, time, errors

    def __call__(self, depth_mm: np.ndarray, intr: Intrinsics) -> Spot:
        x = spot_input(depth_mm, intr, self.cfg)[None, None]
        logits = self.session.run(None, {"nearness": x})[0]
        st, mass = decode(logits)
        z = logits[0].astype(np.float64)
        probs = np.exp(z - z.max())
        return Spot(uv_from_st(st[0], intr), float(mass[0]), probs / probs.sum())


def spot_detection(depth_mm: np.ndarray, intr: Intrinsics, spot: Spot,
                   finder_cfg: HandFinderConfig = HandFinderConfig()) -> HandDetection | None:
    """The spot as a :class:`models.handfind.HandDetection` (method "learnt"), centred by the
    finder's own refinement from the surface there; None when there is no surface there or
    the refinement loses it."""
    start = start_point(depth_mm, intr, spot.uv)
    if start is None:
        return None
    det = track_centre(depth_mm, intr, start, finder_cfg)
    return None if det is None else det._replace(method="learnt")


# --------------------------------------------------------------------------- data, training, shipping


def prepare(frames_dir: Path, out: Path, cfg: SpotConfig = SpotConfig()) -> dict[str, Any]:
    """Whole-frame shards (``models.synth generate --full-frames``) -> ``out`` (.npz): inputs
    (N, height, width) float16, the palm centre's normalised (s, t) (N, 2) and depth (N,) mm,
    the view (N,)."""
    from models.data import intrinsics_from_arrays, shard_paths
    from models.joints import palm_centre

    xs, sts, zs, views = [], [], [], []
    for path in shard_paths(frames_dir):
        with np.load(path) as f:
            if "frame" not in f.files:
                raise ValueError(f"{path}: no whole frames (models.synth generate --full-frames)")
            z = {k: f[k] for k in ("frame", "intrinsics", "distortion", "coeffs", "joints_mm", "view")}
        for k in range(len(z["view"])):
            intr = intrinsics_from_arrays(z["intrinsics"][k], z["distortion"][k], z["coeffs"][k])
            xs.append(spot_input(z["frame"][k][:intr.height, :intr.width], intr, cfg).astype(np.float16))
            palm = palm_centre(z["joints_mm"][k].astype(np.float64))
            sts.append(st_from_uv(np.asarray(project(palm, intr))[:2], intr))
            zs.append(palm[2])
        views.append(z["view"])
        print(f"{path}: {len(xs)} frames", file=sys.stderr)
    arrays = {"x": np.stack(xs), "st": np.stack(sts).astype(np.float32), "z_mm": np.array(zs, np.float32),
              "view": np.concatenate(views)}
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez(out, **arrays)
    return {"frames": len(xs), "out": str(out)}


@dataclass(frozen=True)
class SpotTrainConfig:
    """How the spotter is trained (:func:`train`; the defaults are the shipped network's recipe,
    which ran on one thread): data, val: :func:`prepare`'s files; out: the run directory
    (``last.pt``, ``log.jsonl``, ``config.json``); AdamW with a cosine schedule from ``lr``;
    seed: the initialisation and every batch (a function of the seed and the step, so a
    resumed run sees the batches it would have seen); log_every: steps per log line (the
    validation errors every ten); checkpoint_min: minutes between checkpoints."""

    data: str = "data/handspot/train.npz"
    val: str = "data/handspot/val.npz"
    out: str = "runs/handspot"
    steps: int = 15000
    batch: int = 48
    lr: float = 2e-3
    weight_decay: float = 1e-4
    seed: int = 0
    threads: int = 2
    log_every: int = 100
    checkpoint_min: float = 5.0


def _augment(x: "Any", st: "Any", gen: "Any") -> tuple[Any, Any]:
    """A random shift of the frame by up to a tenth of its size (the hand is anywhere in a
    real frame) and depth dropout of 0-10 % of the pixels."""
    import torch

    b, h, w = x.shape[0], x.shape[-2], x.shape[-1]
    dx = torch.randint(-w // 10, w // 10 + 1, (1,), generator=gen).item()
    dy = torch.randint(-h // 10, h // 10 + 1, (1,), generator=gen).item()
    x = torch.roll(x, (dy, dx), (-2, -1))
    if dx > 0:
        x[..., :dx] = 0
    elif dx < 0:
        x[..., dx:] = 0
    if dy > 0:
        x[..., :dy, :] = 0
    elif dy < 0:
        x[..., dy:, :] = 0
    st = st + torch.tensor([dx / w, dy / h])
    keep = torch.rand(x.shape, generator=gen) >= torch.rand((b, 1, 1, 1), generator=gen) * 0.1
    return x * keep, st


def train(cfg: SpotTrainConfig, net_cfg: SpotConfig = SpotConfig()) -> dict[str, Any]:
    """Train (or resume from ``out/last.pt``) the spotting network; returns the last log record."""
    import torch
    from torch.nn import functional as F

    torch.set_num_threads(cfg.threads)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    d = np.load(cfg.data)
    x_all, st_all = torch.as_tensor(d["x"]), torch.as_tensor(d["st"])
    inside = ((st_all > 0) & (st_all < 1)).all(1)
    x_all, st_all = x_all[inside], st_all[inside]
    val = np.load(cfg.val) if cfg.val else None
    torch.manual_seed(cfg.seed)
    net = make_net(net_cfg)
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    step, elapsed = 0, 0.0
    ckpt = out / "last.pt"
    if ckpt.exists():
        c = torch.load(ckpt, weights_only=False)
        net.load_state_dict(c["model"])
        opt.load_state_dict(c["optimizer"])
        step, elapsed = c["step"], c["elapsed_s"]
        print(f"resuming {out} at step {step}", file=sys.stderr)
    (out / "config.json").write_text(json.dumps({"train": asdict(cfg), "net": asdict(net_cfg)}, indent=2))
    log = (out / "log.jsonl").open("a")
    t0 = t_ckpt = time.perf_counter()

    def save(now: float) -> None:
        torch.save({"model": net.state_dict(), "optimizer": opt.state_dict(), "step": step,
                    "elapsed_s": elapsed + now - t0, "net": asdict(net_cfg)}, ckpt)

    last: dict[str, Any] = {}
    total = 0.0
    net.train()
    try:
        while step < cfg.steps:
            gen = torch.Generator().manual_seed(cfg.seed * 1_000_003 + step)
            idx = torch.randint(0, len(x_all), (cfg.batch,), generator=gen)
            x, st = _augment(x_all[idx].float()[:, None], st_all[idx], gen)
            target = torch.as_tensor(target_cells(st.numpy(), net_cfg))
            logits = net(x)
            loss = -(target.flatten(1) * F.log_softmax(logits.flatten(1), 1)).sum(1).mean()
            lr = cfg.lr * 0.5 * (1 + math.cos(math.pi * step / cfg.steps))
            for g in opt.param_groups:
                g["lr"] = lr
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            total += loss.item()
            now = time.perf_counter()
            if step % cfg.log_every == 0 or step == cfg.steps:
                last = {"step": step, "loss": round(total / cfg.log_every, 4), "lr": lr,
                        "elapsed_min": round((elapsed + now - t0) / 60, 2)}
                total = 0.0
                if val is not None and (step % (10 * cfg.log_every) == 0 or step == cfg.steps):
                    net.eval()
                    last.update(spot_errors(_predict(net, val["x"]), val["st"], val["view"]))
                    net.train()
                log.write(json.dumps(last) + "\n")
                log.flush()
                print(json.dumps(last), file=sys.stderr)
            if now - t_ckpt > cfg.checkpoint_min * 60 or step == cfg.steps:
                save(now)
                t_ckpt = now
    except KeyboardInterrupt:
        save(time.perf_counter())
    log.close()
    return last


def _predict(net: Any, x: np.ndarray, batch: int = 256) -> np.ndarray:
    import torch

    out = []
    with torch.no_grad():
        for i in range(0, len(x), batch):
            out.append(net(torch.as_tensor(x[i:i + batch]).float()[:, None]).numpy())
    return np.concatenate(out)


def spot_errors(logits: np.ndarray, st: np.ndarray, view: np.ndarray) -> dict[str, float]:
    """Distances of the decoded spot to the truth in normalised units x 100 (percent of the
    frame's size), median and share within 5 %, overall and per view."""
    pred, _ = decode(logits)
    e = np.linalg.norm(pred - st, axis=1) * 100
    r = {"median_pct": round(float(np.median(e)), 2), "within5_pct": round(float((e < 5).mean()), 4)}
    for v, name in ((0, "third_person"), (1, "egocentric")):
        s = view == v
        if s.any():
            r[f"within5_pct_{name}"] = round(float((e[s] < 5).mean()), 4)
    return r


def _cpu_name() -> str:
    """The CPU's model name (Linux), else the platform's."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def ship(run: Path, out: Path = WEIGHTS_PATH, val: Path | None = Path(SpotTrainConfig.val)) -> dict[str, Any]:
    """The run's weights as a static batch-1 ONNX graph; its metadata hold the
    :class:`SpotConfig` (``spot_config``) and the card (``card``: data, steps, time, machine, the
    validation errors). Returns the card."""
    import onnx
    import torch

    c = torch.load(run / "last.pt", weights_only=False)
    net_cfg = SpotConfig(**c["net"])
    train_cfg = json.loads((run / "config.json").read_text())["train"]
    net = make_net(net_cfg)
    net.load_state_dict(c["model"])
    net.eval()
    card: dict[str, Any] = {
        "name": "handspot", "step": int(c["step"]), "batch": train_cfg["batch"], "data": train_cfg["data"],
        "frames": int(len(np.load(train_cfg["data"])["st"])) if Path(train_cfg["data"]).is_file() else None,
        "train_minutes": round(c["elapsed_s"] / 60, 1), "parameters": sum(p.numel() for p in net.parameters()),
        "machine": f"{_cpu_name()}, torch threads: {train_cfg['threads']}",
        "date": time.strftime("%Y-%m-%d"),
    }
    if val is not None and Path(val).is_file():
        d = np.load(val)
        card["val"] = {"data": str(val), "frames": int(len(d["x"])), **spot_errors(_predict(net, d["x"]), d["st"], d["view"])}
    x = torch.zeros(1, 1, net_cfg.height, net_cfg.width)
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.onnx.export(net, x, str(out), input_names=["nearness"], output_names=["logits"], opset_version=17,
                      dynamo=False)
    model = onnx.load(str(out))
    for key, value in (("spot_config", json.dumps(asdict(net_cfg))), ("card", json.dumps(card))):
        model.metadata_props.add(key=key, value=value)
    onnx.save(model, str(out))
    if out == WEIGHTS_PATH:
        from models.ship import write_cards

        write_cards()
    return card


def picture(frames_dir: Path, real_dir: Path, count: int = 8, height: int = 200) -> np.ndarray:
    """A BGR picture: the 19 annotated real SR305 frames' first four with the spot (red) and the
    annotated palm centre (green), then the first ``count`` frames of ``frames_dir`` where the
    finder's own first candidate (blue) lies more than 60 mm from the palm and the app's choice
    with the spotter (red: the crop centre) within 60 mm of it (green: the true palm centre)."""
    import cv2

    from models.data import intrinsics_from_arrays, shard_paths
    from models.estimator import Estimator, EstimatorConfig, load_predictor
    from models.handfind import find_hands
    from models.joints import palm_centre

    def grey(depth: np.ndarray) -> np.ndarray:
        near = np.clip((np.asarray(depth, np.float32) - 200.0) / 1300.0, 0.0, 1.0)
        img = (255 * (1.0 - near)).astype(np.uint8)
        img[~(np.asarray(depth) > 0)] = 0
        return cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)

    def mark(img: np.ndarray, uv: np.ndarray, colour: tuple[int, int, int]) -> None:
        cv2.circle(img, (int(round(uv[0])), int(round(uv[1]))), max(4, img.shape[1] // 60), colour, 3)

    def tile(img: np.ndarray, label: str) -> np.ndarray:
        out = cv2.resize(img, (int(round(img.shape[1] * height / img.shape[0])), height), interpolation=cv2.INTER_AREA)
        cv2.putText(out, label, (4, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 255, 255), 1, cv2.LINE_AA)
        return out

    spotter = HandSpotter()
    meta = json.loads((real_dir / "hand_centres.json").read_text())
    k = meta["intrinsics"]
    intr = Intrinsics(fx=k["fx"], fy=k["fy"], cx=k["cx"], cy=k["cy"], width=k["width"], height=k["height"],
                      depth_scale=meta["depth_unit_mm"] / 1000.0)
    top = []
    for name, uv in list(meta["palm_centre_uv"].items())[::5]:
        depth = cv2.imread(str(real_dir / name), cv2.IMREAD_UNCHANGED).astype(np.float32) * meta["depth_unit_mm"]
        img = grey(depth)
        mark(img, np.array(uv), (0, 200, 0))
        mark(img, spotter(depth, intr).uv, (0, 0, 255))
        top.append(tile(img, f"real SR305 {name}"))
    est = Estimator(load_predictor(WEIGHTS_PATH.with_name("deephps.onnx"), "cpu"), EstimatorConfig(track=False))
    rest = []
    for path in shard_paths(frames_dir):
        with np.load(path) as f:
            z = {key: f[key] for key in ("frame", "intrinsics", "distortion", "coeffs", "joints_mm")}
        for i in range(len(z["joints_mm"])):
            fi = intrinsics_from_arrays(z["intrinsics"][i], z["distortion"][i], z["coeffs"][i])
            depth = np.ascontiguousarray(z["frame"][i][:fi.height, :fi.width])
            palm = palm_centre(z["joints_mm"][i].astype(np.float64))
            first = find_hands(depth, fi, est.cfg.finder, 1)
            if not first or np.linalg.norm(first[0].com_mm - palm) <= 60.0:
                continue
            est.reset()
            e = est(depth, fi)
            if not e.hand_found or np.linalg.norm(e.com_mm - palm) > 60.0:
                continue
            img = grey(depth)
            mark(img, np.asarray(project(palm, fi))[:2], (0, 200, 0))
            mark(img, first[0].com_uvd[:2], (255, 0, 0))
            mark(img, np.asarray(project(e.com_mm, fi))[:2], (0, 0, 255))
            rest.append(tile(img, f"{path.parent.name} frame {i}"))
            if len(rest) >= count:
                break
        if len(rest) >= count:
            break
    rows = [np.hstack(top)] + [np.hstack(rest[j:j + 4]) for j in range(0, len(rest) - len(rest) % 4, 4)]
    width = max(r.shape[1] for r in rows)
    return np.vstack([np.pad(r, ((0, 0), (0, width - r.shape[1]), (0, 0))) for r in rows])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m models.handspot", description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="command", required=True)
    p = sub.add_parser("prepare", help="whole-frame shards -> the network's inputs and targets")
    p.add_argument("--frames", type=Path, required=True)
    p.add_argument("--out", type=Path, default=None, help="default data/handspot/<split>.npz")
    t = sub.add_parser("train", help="train or resume")
    for name, value in asdict(SpotTrainConfig()).items():
        t.add_argument("--" + name.replace("_", "-"), type=type(value), default=value)
    t.add_argument("--channels", type=int, default=SpotConfig.channels, help="the network's first-stage channels")
    s = sub.add_parser("ship", help="a run's weights -> models/weights/handspot.onnx")
    s.add_argument("--run", type=Path, default=Path(SpotTrainConfig.out))
    s.add_argument("--out", type=Path, default=WEIGHTS_PATH)
    e = sub.add_parser("evaluate", help="the shipped network on prepared frames")
    e.add_argument("--data", type=Path, default=Path(SpotTrainConfig.val))
    e.add_argument("--model", type=Path, default=WEIGHTS_PATH)
    pic = sub.add_parser("picture", help="spots on real SR305 frames and on synthetic frames the finder got wrong")
    pic.add_argument("--frames", type=Path, default=Path("data/synth_frames/val"))
    pic.add_argument("--real", type=Path, default=Path("tests/data/sr305"))
    pic.add_argument("--out", type=Path, default=Path("docs/handspot.png"))
    a = ap.parse_args(argv)
    try:
        if a.command == "picture":
            import cv2

            a.out.parent.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(a.out), picture(a.frames, a.real))
            print(f"wrote {a.out}")
        elif a.command == "prepare":
            out = a.out or Path("data/handspot") / f"{a.frames.name}.npz"
            print(json.dumps(prepare(a.frames, out)))
        elif a.command == "train":
            cfg = SpotTrainConfig(**{k: getattr(a, k) for k in asdict(SpotTrainConfig())})
            print(json.dumps(train(cfg, SpotConfig(channels=a.channels))))
        elif a.command == "ship":
            print(json.dumps(ship(a.run, a.out)))
            print(f"wrote {a.out}", file=sys.stderr)
        else:
            import onnxruntime as ort

            d = np.load(a.data)
            sess = ort.InferenceSession(str(a.model), providers=["CPUExecutionProvider"])
            logits = np.concatenate([sess.run(None, {"nearness": d["x"][i:i + 1, None].astype(np.float32)})[0]
                                     for i in range(len(d["x"]))])
            print(json.dumps(spot_errors(logits, d["st"], d["view"])))
    except (FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
