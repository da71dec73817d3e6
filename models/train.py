"""Train a hand network on the synthetic shards: ``python -m models.train --method deephps``.

One run lives in one directory (``--out``, default ``runs/<name>``):

    config.json    the :class:`TrainConfig` and :class:`models.nets.NetConfig` of the run
    last.pt        checkpoint: weights, optimiser, schedule, step, elapsed time (written every
                   ``--checkpoint-min`` minutes, at the end, and on Ctrl-C)
    log.jsonl      one JSON object per log interval: step, samples, loss terms, learning rate,
                   samples/s, and (every ``--val-every`` steps) the validation errors in mm

``--init W`` starts a new run from the weights W where names and shapes match
(``models.nets.warm_start``: a trained DeepHPS into ``dense_hps``). Running the same command
again resumes from ``last.pt`` (same config required) and continues
to ``--steps``; raising ``--steps`` on a finished run trains it further (the cosine schedule is
stretched to the new end). ``--minutes`` stops a run early after that much wall time (it stays
resumable), ``--stop-at N`` at step N. Seeds: the network's initialisation and every batch (order and augmentation) are
functions of ``--seed`` and the step, so a run resumed from a checkpoint sees the same batches
it would have seen uninterrupted. Uses CUDA when present (``--device``).

Losses (``models/losses.py``), all in millimetres unless stated, on joints relative to the COM:

    deephps        mean joint distance + λ_v · mean hand-vertex distance (where the labels'
                   parameters are exact, ``Sample.params_valid``)
    deepmodel      mean joint distance + λ_limit · limit loss (rad; --limit-weight 0 for the ablation)
    direct_params  parameter loss: |R − R*| (Frobenius, dimensionless) · 100 mm + translation (mm)
                   + Σ|articulation error| (rad) · 20 mm + Σ|α, β error| · 10 mm; joints are only evaluated
    direct_joints  mean joint distance
    sdnet          mean joint distance + λ_sd · skeleton difference (dimensionless; λ_sd 1 mm)
    hand3d         mean joint distance
    dense          mean joint distance + λ_vote · weighted vote error: Σ_i w_ij |a_i + o_ij − j_j|
                   (mm; every cell's own vote, weighted as the joint weighs it, so the weights
                   go to cells that vote well, not to any set whose mean happens to be right)
    dense_hps      as dense, + the layer's mean joint distance + λ_v · mean hand-vertex distance
"""
from __future__ import annotations

import argparse
import copy
import json
import math
import os
import signal
import sys
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields, replace
from functools import partial
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np
import torch

from models.data import AugmentConfig, Batch, make_loader, set_epoch
from models.hand_layer import HandLayer
from models.handmesh import ASSET_PATH
from models.losses import anatomical_angle_thresholds, limit_loss, skeleton_difference_loss
from models.nets import METHODS, HandNet, NetConfig, NetOutput, count_parameters, warm_start
from models.skeleton import ARTICULATION, theta_limits

#: The augmentation used for every network (scale off: the data spans hand sizes 118-232 mm and
#: a scaled scene would break the mesh labels, see models.data.scale).
TRAIN_AUGMENT = AugmentConfig(scale_prob=0.0)

#: The methods trained on the hand's vertices too (module docstring).
VERTEX_LOSS_METHODS = ("deephps", "dense_hps")


@dataclass(frozen=True)
class TrainConfig:
    name: str = "deephps"
    train: str = "data/synth/train"
    val: str = "data/synth/val"
    steps: int = 20000
    batch: int = 64
    lr: float = 1e-3
    weight_decay: float = 1e-4
    warmup: int = 300
    seed: int = 0
    workers: int = 1
    threads: int = 1
    vertex_weight: float = 0.5
    limit_weight: float = 10.0      # mm per radian outside the limits
    sd_weight: float = 1.0          # mm per unit of SDNet's skeleton difference
    vote_weight: float = 0.5        # dense: weight of the weighted vote error (mm per mm)
    val_every: int = 500
    val_frames: int = 1000
    log_every: int = 50
    checkpoint_min: float = 5.0
    minutes: float = 0.0            # 0: no wall-time limit
    stop_at: int = 0                # > 0: stop (resumable) at this step, the schedule unchanged
    augment: int = 1                # 0: no augmentation (tests, overfitting checks)
    recentre: float = 0.0           # share of crops re-centred on the true palm (AugmentConfig.recentre_prob)
    fatten: float = 0.0             # share of crops with fattened foreground edges (AugmentConfig.fatten_prob)
    init: str = ""                  # a new run starts from these weights (models.nets.warm_start)
    device: str = "auto"


# --------------------------------------------------------------------------- losses (pure)


def hand_vertex_mask(path: str | Path = ASSET_PATH) -> torch.Tensor:
    """(V,) bool: the hand's vertices (every part but the forearm stub, part 6)."""
    return torch.as_tensor(np.load(path)["part"] != 6)


class Targets:
    """Ground truth of a batch in the network's frame: joints and vertices relative to the COM,
    normalised by cube/2 (``NetOutput``'s units), computed once per batch."""

    def __init__(self, batch: Batch, layer: HandLayer, device: torch.device, need_vertices: bool) -> None:
        self.half = (batch.cube_mm.to(device) / 2.0)[:, None, None]
        self.com = batch.com_mm.to(device)[:, None, :]
        self.joints = batch.joints.to(device)
        self.valid = batch.params_valid.to(device)
        self.theta, self.alpha, self.beta = (t.to(device) for t in (batch.theta, batch.alpha, batch.beta))
        self.vertices = None
        if need_vertices:
            with torch.no_grad():
                v = layer(self.theta, self.alpha, self.beta, batch.wrist.to(device)).vertices
            self.vertices = (v - self.com) / self.half


def mean_distance_mm(pred: torch.Tensor, target: torch.Tensor, half_mm: torch.Tensor,
                     weights: torch.Tensor | None = None) -> torch.Tensor:
    """Mean Euclidean distance in mm between normalised point sets (B, N, 3)."""
    d = torch.linalg.vector_norm((pred - target) * half_mm, dim=-1)
    if weights is None:
        return d.mean()
    w = weights.to(d.dtype)[:, None].expand_as(d)
    return (d * w).sum() / w.sum().clamp_min(1.0)


def compute_losses(method: str, out: NetOutput, tgt: Targets, cfg: TrainConfig, vertex_mask: torch.Tensor,
                   lo: torch.Tensor, hi: torch.Tensor, thresholds: torch.Tensor) -> dict[str, torch.Tensor]:
    """The loss terms of ``method`` (module docstring); 'total' is what is minimised."""
    terms: dict[str, torch.Tensor] = {}
    joints_mm = mean_distance_mm(out.joints, tgt.joints, tgt.half)
    if method == "direct_params":
        from models.geometry import axis_angle_to_matrix
        rot_gt = axis_angle_to_matrix(tgt.theta[:, 0:3])
        trans_gt = tgt.theta[:, 3:6] - tgt.com[:, 0]
        terms["rotation"] = 100.0 * (out.rotation - rot_gt).square().sum((-1, -2)).clamp_min(1e-12).sqrt().mean()
        terms["translation"] = torch.linalg.vector_norm(out.theta[:, 3:6] - trans_gt, dim=-1).mean()
        terms["articulation"] = 20.0 * (out.theta[:, ARTICULATION] - tgt.theta[:, ARTICULATION]).abs().sum(-1).mean()
        terms["shape"] = 10.0 * ((out.alpha - tgt.alpha).abs().sum(-1) + (out.beta - tgt.beta).abs().sum(-1)).mean()
        terms["total"] = sum(terms.values())
        terms["joints_mm"] = joints_mm.detach()
        return terms
    terms["joints_mm"] = joints_mm
    total = joints_mm
    if out.layer_joints is not None:      # dense_hps: the hand layer's joints beside the votes'
        terms["layer_joints_mm"] = mean_distance_mm(out.layer_joints, tgt.joints, tgt.half)
        total = total + terms["layer_joints_mm"]
    if method in VERTEX_LOSS_METHODS and cfg.vertex_weight > 0:
        m = vertex_mask.to(out.vertices.device)
        terms["vertices_mm"] = mean_distance_mm(out.vertices[:, m], tgt.vertices[:, m], tgt.half, tgt.valid)
        total = total + cfg.vertex_weight * terms["vertices_mm"]
    if method == "deepmodel":
        terms["limit_rad"] = limit_loss(out.theta, lo, hi)
        total = total + cfg.limit_weight * terms["limit_rad"]
    if method == "sdnet" and cfg.sd_weight > 0:
        sd = skeleton_difference_loss(out.joints * tgt.half, tgt.joints * tgt.half, 1.0, 1.0, thresholds)
        terms["skeleton_difference"] = sd.total
        total = total + cfg.sd_weight * sd.total
    if out.votes is not None and cfg.vote_weight > 0:
        d = torch.linalg.vector_norm((out.votes - tgt.joints[:, :, None]) * tgt.half[:, :, None], dim=-1)
        terms["votes_mm"] = (out.weights * d).sum(-1).mean()
        total = total + cfg.vote_weight * terms["votes_mm"]
    terms["total"] = total
    return terms


def learning_rate(step: int, cfg: TrainConfig) -> float:
    """Linear warm-up, then cosine decay to 1 % of ``lr`` at ``steps``."""
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    t = min(1.0, (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup))
    return cfg.lr * (0.01 + 0.99 * 0.5 * (1.0 + math.cos(math.pi * t)))


# --------------------------------------------------------------------------- checkpoints (IO)


def save_checkpoint(path: Path, net: HandNet, opt: torch.optim.Optimizer, step: int, elapsed_s: float,
                    net_cfg: NetConfig, cfg: TrainConfig) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save({"model": net.state_dict(), "optimizer": opt.state_dict(), "step": step, "elapsed_s": elapsed_s,
                "net": net_cfg.to_dict(), "train": asdict(cfg)}, tmp)
    os.replace(tmp, path)  # atomic: an interrupted save never leaves a broken last.pt


def load_model(path: str | Path, device: str | torch.device = "cpu") -> HandNet:
    """A trained :class:`HandNet` (eval mode) from a checkpoint or a shipped weights file.

    Shipped weights (``models/weights/*.pt``) hold {"net": NetConfig dict, "model": state dict
    (float16 or float32), "card": {...}}; training checkpoints hold more. Raises
    FileNotFoundError / ValueError with the path when the file is missing or not a model.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"model file not found: {path}")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 -- torch raises many types for a corrupt file
        raise ValueError(f"{path}: not a readable model file ({type(exc).__name__}: {exc})") from None
    if not isinstance(ckpt, dict) or "net" not in ckpt or "model" not in ckpt:
        raise ValueError(f"{path}: expected a dict with 'net' and 'model', got "
                         f"{sorted(ckpt) if isinstance(ckpt, dict) else type(ckpt).__name__}")
    net = HandNet(NetConfig(**ckpt["net"]))
    state = {k: v.float() if v.is_floating_point() else v for k, v in ckpt["model"].items()}
    net.load_state_dict(state)
    return net.to(device).eval()


# --------------------------------------------------------------------------- batch-norm statistics


def train_augment(train: TrainConfig | Mapping[str, Any] = TrainConfig()) -> AugmentConfig:
    """A run's augmentation: :data:`TRAIN_AUGMENT` with the run's shares of palm-centred crops
    and of fattened edges. ``train``: its config, or the config dict saved in its checkpoint
    (runs from before a field existed have its default there)."""
    get = train.get if isinstance(train, Mapping) else partial(getattr, train)
    return replace(TRAIN_AUGMENT, recentre_prob=float(get("recentre", 0.0)), fatten_prob=float(get("fatten", 0.0)))


def training_patches(train: str | Path, batches: int, augment: AugmentConfig = TRAIN_AUGMENT, batch: int = 64,
                     seed: int = 1234) -> Iterator[torch.Tensor]:
    """``batches`` batches of training patches (B, 1, S, S) augmented with ``augment`` (the run's:
    :func:`train_augment`), deterministic in ``seed``."""
    loader = make_loader(train, batch, augment, seed=seed, workers=0)
    set_epoch(loader, 0)
    for k, b in enumerate(loader):
        if k >= batches:
            return
        yield b.patch


@torch.no_grad()
def recompute_batchnorm(net: HandNet, patches: Iterable[torch.Tensor], device: torch.device | str = "cpu") -> HandNet:
    """Replace the batch-norm running statistics by their exact mean over the given batches
    ("precise BN"; use :func:`training_patches`), then eval mode.

    Why: the running averages (momentum 0.1) follow the last dozen batches, whose statistics
    vary with the cameras and distances in them; at some checkpoints they were far enough off to
    raise the validation error from 32 to 50 mm (measured on val shard 0 at step 2674). Shipped
    weights and validation use recomputed statistics.
    """
    norms = [m for m in net.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the batches
    net.train()
    for x in patches:
        net(x.to(device))
    for m, mom in zip(norms, momenta):
        m.momentum = mom
    return net.eval()


# --------------------------------------------------------------------------- validation


@torch.no_grad()
def validate(net: HandNet, loader: Any, device: torch.device, vertex_mask: torch.Tensor, layer: HandLayer,
             max_frames: int, train: str | None = None, augment: AugmentConfig = TRAIN_AUGMENT) -> dict[str, float]:
    """Mean joint and (with a layer) hand-vertex error in mm over up to ``max_frames`` frames,
    of ``net`` as it would ship: a copy with batch-norm statistics recomputed on ``train``'s
    crops augmented with ``augment`` (the run's)."""
    if train:
        net = recompute_batchnorm(copy.deepcopy(net), training_patches(train, 20, augment), device)
    was = net.training
    net.eval()
    j_sum = v_sum = 0.0
    n = 0
    for batch in loader:
        tgt = Targets(batch, layer, device, net.cfg.uses_layer)
        out = net(batch.patch.to(device))
        b = batch.patch.shape[0]
        j_sum += float(mean_distance_mm(out.joints, tgt.joints, tgt.half)) * b
        if out.vertices is not None:
            m = vertex_mask.to(device)
            v_sum += float(mean_distance_mm(out.vertices[:, m], tgt.vertices[:, m], tgt.half)) * b
        n += b
        if n >= max_frames:
            break
    net.train(was)
    res = {"val_joints_mm": j_sum / max(n, 1), "val_frames": n}
    if net.cfg.uses_layer:
        res["val_vertices_mm"] = v_sum / max(n, 1)
    return res


# --------------------------------------------------------------------------- the loop


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def _progress(step: int, total: int, terms: dict[str, float], rate: float, elapsed: float) -> None:
    width = 24
    done = int(width * step / max(total, 1))
    left = (total - step) / max(rate, 1e-9) / 60.0
    loss = " ".join(f"{k} {v:.2f}" for k, v in terms.items() if k != "total")
    sys.stderr.write(f"\r[{'#' * done}{' ' * (width - done)}] {step}/{total} {loss} "
                     f"{rate:.1f} steps/s {elapsed / 60:.1f} min, {left:.1f} min left   ")
    sys.stderr.flush()


def train(cfg: TrainConfig, net_cfg: NetConfig, out_dir: Path) -> dict[str, Any]:
    """Train (or resume) one run; returns the last logged record."""
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(cfg.threads)
    device = _device(cfg.device)
    config_path = out_dir / "config.json"
    ckpt_path = out_dir / "last.pt"
    record = {"net": net_cfg.to_dict(), "train": asdict(cfg)}
    if config_path.exists():
        old = json.loads(config_path.read_text())
        if old["net"] != record["net"]:
            raise ValueError(f"{out_dir}: the existing run has network {old['net']}, not {record['net']}; "
                             "use another --out")
    config_path.write_text(json.dumps(record, indent=2))

    torch.manual_seed(cfg.seed)
    layer = HandLayer().to(device)
    # Channels-last 2D convolutions train ~30 % faster on the CPU (oneDNN) and on tensor cores;
    # the weights and checkpoints are the same numbers in another memory layout.
    fmt = torch.contiguous_format if net_cfg.method == "hand3d" else torch.channels_last
    net = HandNet(net_cfg, layer=layer).to(device, memory_format=fmt)
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    step, elapsed = 0, 0.0
    if ckpt_path.exists():
        ckpt = torch.load(ckpt_path, map_location=device, weights_only=True)
        net.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["optimizer"])
        step, elapsed = int(ckpt["step"]), float(ckpt["elapsed_s"])
        print(f"resuming {out_dir} at step {step} ({elapsed / 60:.1f} min trained)", file=sys.stderr)
    elif cfg.init:
        if not Path(cfg.init).is_file():
            raise FileNotFoundError(f"--init: weights file not found: {cfg.init}")
        source = torch.load(cfg.init, map_location=device, weights_only=True)
        if not isinstance(source, dict) or "model" not in source:
            raise ValueError(f"--init {cfg.init}: expected a checkpoint or weights file with 'model'")
        left = warm_start(net, {k: v.float() if v.is_floating_point() else v for k, v in source["model"].items()})
        print(f"started from {cfg.init}; {len(left)} tensors of {len(net.state_dict())} as initialised",
              file=sys.stderr)
    print(f"{cfg.name}: {net_cfg.method}, {count_parameters(net):,} parameters, device {device}, "
          f"batch {cfg.batch}, steps {cfg.steps}", file=sys.stderr)

    loader = make_loader(cfg.train, cfg.batch, train_augment(cfg) if cfg.augment else None, seed=cfg.seed, workers=cfg.workers, drop_last=True)
    val_loader = make_loader(cfg.val, 250, None, seed=0, workers=0, shuffle=False) if cfg.val else None
    vertex_mask = hand_vertex_mask()
    lo_np, hi_np = theta_limits()
    lo, hi = torch.as_tensor(lo_np, device=device), torch.as_tensor(hi_np, device=device)
    thresholds = anatomical_angle_thresholds().to(device)
    per_epoch = len(loader.dataset) // cfg.batch

    stop = {"flag": False}
    signal.signal(signal.SIGTERM, lambda *_: stop.update(flag=True))
    log = (out_dir / "log.jsonl").open("a")
    t_start = t_ckpt = t_log = time.perf_counter()
    elapsed0 = elapsed
    sums: dict[str, float] = {}
    logged_steps = 0                      # steps summed in ``sums`` (a resumed run starts mid-interval)
    last: dict[str, Any] = {}
    net.train()
    try:
        while step < cfg.steps and not stop["flag"] and not (cfg.stop_at > 0 and step >= cfg.stop_at):
            epoch, within = divmod(step, per_epoch)
            set_epoch(loader, epoch, within * cfg.batch)
            for batch in loader:
                for g in opt.param_groups:
                    g["lr"] = learning_rate(step, cfg)
                tgt = Targets(batch, layer, device, net_cfg.method in VERTEX_LOSS_METHODS)
                out = net(batch.patch.to(device, memory_format=fmt))
                terms = compute_losses(net_cfg.method, out, tgt, cfg, vertex_mask, lo, hi, thresholds)
                opt.zero_grad(set_to_none=True)
                terms["total"].backward()
                torch.nn.utils.clip_grad_norm_(net.parameters(), 10.0)
                opt.step()
                step += 1
                logged_steps += 1
                for k, v in terms.items():
                    sums[k] = sums.get(k, 0.0) + float(v.detach())
                now = time.perf_counter()
                elapsed = elapsed0 + now - t_start
                if step % cfg.log_every == 0 or step == cfg.steps:
                    n = logged_steps
                    means = {k: v / n for k, v in sums.items()}
                    rate = n / max(now - t_log, 1e-9)   # over the last log interval
                    t_log = now
                    last = {"step": step, "samples": step * cfg.batch, "elapsed_min": round(elapsed / 60, 2),
                            "lr": learning_rate(step - 1, cfg), "steps_per_s": round(rate, 3),
                            **{k: round(v, 4) for k, v in means.items()}}
                    if val_loader is not None and (step % cfg.val_every == 0 or step == cfg.steps):
                        last.update(validate(net, val_loader, device, vertex_mask, layer, cfg.val_frames, cfg.train,
                                              train_augment(cfg)))
                    log.write(json.dumps(last) + "\n")
                    log.flush()
                    sums, logged_steps = {}, 0
                    _progress(step, cfg.steps, means, rate, elapsed)
                if now - t_ckpt > cfg.checkpoint_min * 60:
                    save_checkpoint(ckpt_path, net, opt, step, elapsed, net_cfg, cfg)
                    t_ckpt = now
                if (step >= cfg.steps or stop["flag"] or (cfg.stop_at > 0 and step >= cfg.stop_at)
                        or (cfg.minutes > 0 and now - t_start > cfg.minutes * 60)):
                    stop["flag"] = stop["flag"] or step < cfg.steps
                    break
                if step % per_epoch == 0:
                    break  # next epoch: new order and augmentation
    except KeyboardInterrupt:
        print("\ninterrupted: saving the checkpoint", file=sys.stderr)
    finally:
        save_checkpoint(ckpt_path, net, opt, step, elapsed, net_cfg, cfg)
        log.close()
    print(f"\n{cfg.name}: step {step}/{cfg.steps}, {elapsed / 60:.1f} min, checkpoint {ckpt_path}", file=sys.stderr)
    return last


def _parse(argv: list[str] | None) -> tuple[TrainConfig, NetConfig, Path]:
    ap = argparse.ArgumentParser(prog="python -m models.train", description=__doc__.split("\n")[0])
    ap.add_argument("--method", choices=METHODS, default="deephps")
    ap.add_argument("--width", type=int, default=NetConfig.width)
    ap.add_argument("--hidden", type=int, default=NetConfig.hidden)
    ap.add_argument("--refine-tsdf", action="store_true", help="Hand3D: the TSDF refinement FCN")
    ap.add_argument("--out", type=Path, default=None, help="run directory (default runs/<name>)")
    for f in fields(TrainConfig):
        if f.name in ("name",):
            continue
        ap.add_argument("--" + f.name.replace("_", "-"), type=type(f.default), default=f.default)
    ap.add_argument("--name", default=None, help="run name (default: the method)")
    a = ap.parse_args(argv)
    name = a.name or a.method
    cfg = TrainConfig(name=name, **{f.name: getattr(a, f.name) for f in fields(TrainConfig) if f.name != "name"})
    net_cfg = NetConfig(method=a.method, width=a.width, hidden=a.hidden, refine_tsdf=a.refine_tsdf)
    return cfg, net_cfg, a.out or Path("runs") / name


def main(argv: list[str] | None = None) -> int:
    cfg, net_cfg, out = _parse(argv)
    try:
        train(cfg, net_cfg, out)
    except (FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
