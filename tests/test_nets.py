"""Tests of models/nets.py, models/train.py and models/evaluate.py: networks, training, metrics."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from models.evaluate import ANGLE_MARGIN_DEG, Predictions, bone_lengths, invalid_pose_share, summary_record
from models.geometry import axis_angle_to_matrix
from models.hand_layer import HandLayer
from models.nets import METHODS, HandNet, NetConfig, count_parameters, multiply_adds, rotation_from_6d
from models.poses import named_theta
from models.skeleton import ARTICULATION, theta_limits
from models.synth import Renderer, SynthConfig, render_shard, write_shard
from models.train import TrainConfig, learning_rate, load_model, main as train_main, mean_distance_mm


@pytest.fixture(scope="module")
def layer():
    return HandLayer()


@pytest.fixture(scope="module")
def shard_dir(tmp_path_factory):
    """One 32-frame train shard and one 16-frame val shard from the generator's own functions."""
    root = tmp_path_factory.mktemp("synth")
    renderer = Renderer(SynthConfig(chunk=16, hands_per_draw=16, seed=3))
    cameras = [c for c, _ in renderer.cfg.cameras]
    for split, n in (("train", 32), ("val", 16)):
        arrays, _ = render_shard(renderer, split, 0, n)
        write_shard(root / split / "shard_00000.npz", arrays, {"split": split, "shard": 0, "cameras": cameras})
    return root


# --------------------------------------------------------------------------- networks


def test_rotation_from_6d_is_a_rotation_and_keeps_the_first_column():
    x = torch.randn(64, 6, dtype=torch.float64)
    r = rotation_from_6d(x)
    eye = torch.eye(3, dtype=torch.float64).expand(64, 3, 3)
    assert torch.allclose(r.transpose(1, 2) @ r, eye, atol=1e-9)
    assert torch.allclose(torch.linalg.det(r), torch.ones(64, dtype=torch.float64), atol=1e-9)
    assert torch.allclose(r[:, :, 0], x[:, :3] / x[:, :3].norm(dim=1, keepdim=True), atol=1e-9)
    # The two columns of a rotation give it back exactly.
    r0 = axis_angle_to_matrix(torch.randn(8, 3, dtype=torch.float64))
    assert torch.allclose(rotation_from_6d(torch.cat((r0[:, :, 0], r0[:, :, 1]), 1)), r0, atol=1e-9)


def test_root_rotation_matrix_equals_axis_angle(layer):
    theta = torch.as_tensor(np.stack([named_theta("fist"), named_theta("point")]), dtype=torch.float32)
    a = layer(theta)
    b = layer(theta * torch.tensor([0.0] * 3 + [1.0] * 23), root_rotation=axis_angle_to_matrix(theta[:, :3]))
    assert torch.allclose(a.joints, b.joints, atol=1e-4) and torch.allclose(a.vertices, b.vertices, atol=1e-4)
    with pytest.raises(ValueError, match="root_rotation"):
        layer(theta, root_rotation=torch.eye(3).expand(3, 3, 3))


@pytest.mark.parametrize("method", METHODS)
def test_every_method_builds_and_runs(method):
    torch.manual_seed(0)
    net = HandNet(NetConfig(method=method)).eval()
    out = net(torch.rand(2, 1, 96, 96) * 2 - 1)
    assert out.joints.shape == (2, 21, 3) and torch.isfinite(out.joints).all()
    assert (out.vertices is not None) == NetConfig(method=method).uses_layer
    # Sizes the README states: about 0.9 M parameters and 29 M multiply-adds for the 2D nets,
    # 0.66 M and 38 M for the dense head (no fully connected layer, a decoder to 24 x 24);
    # 0.98 M and 38 M with DeepHPS's fully connected layer and parameter head beside it.
    if method == "dense":
        assert 0.6e6 < count_parameters(net) < 0.7e6
        assert 37e6 < multiply_adds(net) < 39e6
    elif method == "dense_hps":
        assert 0.95e6 < count_parameters(net) < 1.0e6
        assert 38e6 < multiply_adds(net) < 39e6
    elif method != "hand3d":
        assert 0.85e6 < count_parameters(net) < 1.0e6
        assert 28e6 < multiply_adds(net) < 30e6


def test_dense_head_is_the_weighted_mean_of_its_votes():
    """Joint j = sum_i w_ij (a_i + o_ij), with a_i = (cell centre u, v, mean crop depth over
    the cell): with zero offsets and all weight on one cell, the joint is that cell's anchor."""
    torch.manual_seed(0)
    net = HandNet(NetConfig(method="dense")).eval()
    head = net.head
    # 24 x 24 cells of 4 px over [-1, 1]: cell (row 2, column 5) is centred at u = -1 + 5.5 / 12.
    assert head.anchor_uv.shape == (576, 2)
    assert torch.allclose(head.anchor_uv[2 * 24 + 5], torch.tensor([-1 + 5.5 / 12, -1 + 2.5 / 12]))
    with torch.no_grad():
        head.out.weight.zero_()
        head.out.bias.zero_()
        head.out.bias[3] = 50.0          # joint 3's logit: the same in every cell, so uniform
    patch = torch.ones(1, 1, 96, 96)
    patch[0, 0, 8:12, 20:24] = -0.5      # the cell at row 2, column 5 is nearer
    out = net(patch)
    # Uniform weights and no offsets: every joint is the mean anchor.
    mean_depth = (1.0 * 575 - 0.5) / 576
    assert torch.allclose(out.joints[0, 3], torch.tensor([0.0, 0.0, mean_depth]), atol=1e-5)
    assert torch.allclose(out.weights.sum(-1), torch.ones(1, 21))
    # All of joint 0's weight on one cell: the joint is that cell's anchor plus its offset.
    with torch.no_grad():
        out2 = head(net.backbone.pyramid(patch), patch)
    logits = torch.full((1, 21, 576), -1e4)
    logits[0, 0, 2 * 24 + 5] = 0.0
    w = torch.softmax(logits, -1)
    j = (w[..., None] * out2.votes).sum(2)
    assert torch.allclose(j[0, 0], torch.tensor([-1 + 5.5 / 12, -1 + 2.5 / 12, -0.5]), atol=1e-6)


def test_warm_start_makes_dense_hps_compute_what_deephps_computed():
    """A trained DeepHPS copied into dense_hps (models.nets.warm_start): the layer branch gives
    the same joints and mesh, to float rounding; only the vote head is left as initialised."""
    from models.nets import warm_start

    torch.manual_seed(0)
    src = HandNet(NetConfig(method="deephps")).eval()
    with torch.no_grad():
        src.head.out.weight.mul_(30.0)   # poses that differ from crop to crop
    net = HandNet(NetConfig(method="dense_hps")).eval()
    left = warm_start(net, src.state_dict())
    assert left and all(k.startswith("head.votes.") for k in left)
    x = torch.rand(4, 1, 96, 96) * 2 - 1
    with torch.no_grad():
        a, b = src(x), net(x)
    assert float((a.joints[0] - a.joints[1]).abs().max()) * 125 > 1.0   # mm
    assert torch.allclose(b.layer_joints, a.joints, atol=1e-6)
    assert torch.allclose(b.vertices, a.vertices, atol=1e-6)
    votes = (b.weights[..., None] * b.votes).sum(2)
    assert not torch.allclose(votes, a.joints, atol=1e-3)   # the votes' joints are its own


def test_bends_beyond_limits_is_the_evaluations_invalid_pose_measure(layer):
    """The graph's check (cosines) flags the same hands as models.losses.invalid_poses (angles),
    on valid hands and on hands with fingers bent backwards by 0-150 degrees at one joint."""
    from models.losses import invalid_poses
    from models.nets import bends_beyond_limits, max_bend_cosines

    rng = np.random.default_rng(0)
    lo, hi = theta_limits()
    n = 200
    theta = np.zeros((n, 26))
    theta[:, ARTICULATION] = rng.uniform(lo[ARTICULATION], hi[ARTICULATION], (n, 20))
    with torch.no_grad():
        joints = layer(torch.as_tensor(theta, dtype=torch.float32)).joints.double().numpy()
    # Break half of them: a finger's tip (joints 4, 8, ... 20) turned about its DIP.
    for k in range(0, n, 2):
        tip = 4 * rng.integers(1, 6)
        angle = math.radians(rng.uniform(0.0, 150.0))
        c, s_ = math.cos(angle), math.sin(angle)
        rel = joints[k, tip] - joints[k, tip - 1]
        joints[k, tip] = joints[k, tip - 1] + np.array([rel[0], c * rel[1] - s_ * rel[2], s_ * rel[1] + c * rel[2]])
    expected = invalid_poses(joints)
    assert 20 < expected.sum() < 100     # both kinds are there
    from models.losses import FINGER_CHAINS
    got = bends_beyond_limits(torch.as_tensor(joints), torch.as_tensor(FINGER_CHAINS), max_bend_cosines().double())
    assert (got.numpy() == expected).all()


def test_dense_hps_in_eval_mode_falls_back_to_the_layers_joints(layer):
    """Where the votes' joints are an impossible hand, the output is the layer's (always valid);
    elsewhere the votes'. In training the votes' joints are always the output (the loss is theirs)."""
    from models.losses import invalid_poses
    from models.nets import NetOutput

    torch.manual_seed(1)
    net = HandNet(NetConfig(method="dense_hps"))
    # The votes replaced by known hands: four valid ones, and the same with the index finger's
    # tip folded backwards by 120 degrees about its DIP.
    with torch.no_grad():
        theta = np.stack([named_theta(n, translation=(0.0, 0.0, 0.0)) for n in ("fist", "point", "pinch", "relaxed")])
        hands = layer(torch.as_tensor(theta, dtype=torch.float32)).joints / 125.0
    broken = hands.clone()
    rel = broken[:, 8] - broken[:, 7]
    c, s_ = math.cos(math.radians(120)), math.sin(math.radians(120))
    broken[:, 8] = broken[:, 7] + torch.stack((rel[:, 0], c * rel[:, 1] - s_ * rel[:, 2], s_ * rel[:, 1] + c * rel[:, 2]), -1)
    votes = torch.cat((hands, broken))
    assert invalid_poses(votes.double().numpy() * 125.0).tolist() == [False] * 4 + [True] * 4

    class Known(torch.nn.Module):
        def forward(self, pyramid, patch):
            return NetOutput(votes, None, None, None, None, None, votes[:, :, None], torch.ones(8, 21, 1))

    net.head.votes = Known()
    x = torch.rand(8, 1, 96, 96) * 2 - 1
    with torch.no_grad():
        out = net.eval()(x)
        trained = net.train()(x)
    assert torch.equal(out.joints[:4], hands)
    assert torch.equal(out.joints[4:], out.layer_joints[4:])
    assert torch.equal(trained.joints, votes)


def test_dense_vote_loss_hand_computed():
    """votes_mm = mean over joints of sum_i w_ij |vote_ij - joint_j| in mm: two cells, one joint
    off by 10 mm in x with weight 0.25 and by 0 with 0.75 -> 2.5 mm (cube 250 mm: half 125)."""
    from models.nets import NetOutput
    from models.train import compute_losses

    votes = torch.zeros(1, 21, 2, 3)
    votes[0, :, 0, 0] = 10.0 / 125.0
    weights = torch.tensor([0.25, 0.75]).expand(1, 21, 2)
    joints = (weights[..., None] * votes).sum(2)       # 2.5 mm off in x
    out = NetOutput(joints, None, None, None, None, None, votes, weights)

    class Tgt:
        half = torch.tensor([125.0])[:, None, None]
        joints = torch.zeros(1, 21, 3)

    terms = compute_losses("dense", out, Tgt(), TrainConfig(vote_weight=0.5), torch.ones(1, dtype=torch.bool),
                           None, None, None)
    assert float(terms["joints_mm"]) == pytest.approx(2.5, abs=1e-5)
    assert float(terms["votes_mm"]) == pytest.approx(0.25 * 10.0, abs=1e-5)
    assert float(terms["total"]) == pytest.approx(2.5 + 0.5 * 2.5, abs=1e-5)


def test_bounded_head_stays_inside_the_joint_limits():
    torch.manual_seed(1)
    net = HandNet(NetConfig(method="deephps")).eval()
    with torch.no_grad():
        net.head.out.bias[9:29] = 100.0 * torch.tensor([1.0, -1.0] * 10)  # saturate every sigmoid
        net.head.out.bias[29:] = 100.0
        out = net(torch.rand(16, 1, 96, 96) * 2 - 1)
    lo, hi = (torch.as_tensor(x[ARTICULATION], dtype=torch.float32) for x in theta_limits())
    art = out.theta[:, ARTICULATION]
    assert (art >= lo - 1e-6).all() and (art <= hi + 1e-6).all()
    assert torch.allclose(art[:, 0::2], hi[0::2].expand(16, 10), atol=1e-5)  # saturated at the limits
    assert torch.allclose(art[:, 1::2], lo[1::2].expand(16, 10), atol=1e-5)
    assert torch.allclose(out.alpha, torch.full((16, 6), 1.2), atol=1e-5)


def test_deepmodel_has_template_shape_and_free_articulations():
    net = HandNet(NetConfig(method="deepmodel")).eval()
    with torch.no_grad():
        out = net(torch.zeros(1, 1, 96, 96))
    assert torch.equal(out.alpha, torch.ones(1, 6)) and torch.equal(out.beta, torch.zeros(1, 7))
    lo, hi = theta_limits()
    # Free articulations start at the middle of their ranges (bias), give or take the weights.
    mid = torch.as_tensor(0.5 * (lo[ARTICULATION] + hi[ARTICULATION]), dtype=torch.float32)
    assert (out.theta[0, ARTICULATION] - mid).abs().max() < 0.5


def test_network_output_is_in_normalised_units(layer):
    """The head's joints equal the layer's joints (mm, relative to the COM) / (cube / 2)."""
    net = HandNet(NetConfig(method="deephps"), cube_mm=250.0, layer=layer).eval()
    with torch.no_grad():
        out = net(torch.zeros(1, 1, 96, 96))
        again = layer(out.theta, out.alpha, out.beta, root_rotation=out.rotation)
    assert torch.allclose(out.joints * 125.0, again.joints, atol=1e-4)


# --------------------------------------------------------------------------- training


def test_mean_distance_mm_hand_computed():
    pred = torch.zeros(2, 2, 3)
    target = torch.zeros(2, 2, 3)
    target[0, 0, 0] = 0.03   # 0.03 x 125 mm = 3.75 mm
    target[1, 1, 1] = 0.04   # 5 mm
    half = torch.full((2, 1, 1), 125.0)
    assert math.isclose(float(mean_distance_mm(pred, target, half)), (3.75 + 5.0) / 4, rel_tol=1e-6)
    w = torch.tensor([True, False])
    assert math.isclose(float(mean_distance_mm(pred, target, half, w)), 3.75 / 2, rel_tol=1e-6)


def test_learning_rate_schedule():
    cfg = TrainConfig(steps=1000, warmup=100, lr=1e-3)
    assert math.isclose(learning_rate(0, cfg), 1e-5)
    assert math.isclose(learning_rate(99, cfg), 1e-3)
    assert math.isclose(learning_rate(100, cfg), 1e-3)
    assert math.isclose(learning_rate(550, cfg), 1e-3 * (0.01 + 0.99 * 0.5), rel_tol=1e-9)
    assert math.isclose(learning_rate(1000, cfg), 1e-5, rel_tol=1e-9)


def test_channels_last_training_computes_the_same_gradients(layer):
    """train.py runs 2D networks channels-last (faster on oneDNN); the numbers must not change."""
    torch.manual_seed(0)
    net = HandNet(NetConfig(method="deephps", width=8, hidden=64), layer=layer)
    fast = HandNet(NetConfig(method="deephps", width=8, hidden=64), layer=layer)
    fast.load_state_dict(net.state_dict())
    fast = fast.to(memory_format=torch.channels_last)
    assert fast.backbone.stem[0].weight.is_contiguous(memory_format=torch.channels_last)
    patch = torch.rand(4, 1, 96, 96) * 2 - 1
    grads = []
    for model, x in ((net, patch), (fast, patch.contiguous(memory_format=torch.channels_last))):
        out = model(x)
        (out.joints.abs().mean() + out.vertices.abs().mean()).backward()
        grads.append({k: p.grad.clone() for k, p in model.named_parameters()})
    for k, g in grads[0].items():
        scale = float(g.abs().max()) + 1e-12
        assert float((grads[1][k] - g).abs().max()) <= 1e-4 * scale, k


def _train(shard_dir, out, steps, method="deephps", extra=()):
    args = ["--method", method, "--train", str(shard_dir / "train"), "--val", str(shard_dir / "val"),
            "--steps", str(steps), "--batch", "8", "--workers", "0", "--warmup", "2", "--log-every", "1",
            "--val-every", str(steps), "--val-frames", "16", "--lr", "3e-3", "--width", "8", "--hidden", "64",
            "--out", str(out), *extra]
    assert train_main(args) == 0
    return [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]


def test_train_augment_reads_a_runs_shares_old_checkpoints_included():
    from models.train import TRAIN_AUGMENT, train_augment

    aug = train_augment(TrainConfig(recentre=0.5, fatten=0.25))
    assert (aug.recentre_prob, aug.fatten_prob) == (0.5, 0.25)
    assert aug.scale_prob == TRAIN_AUGMENT.scale_prob == 0.0
    old = train_augment({"recentre": 0.5})            # a checkpoint's config from before --fatten
    assert (old.recentre_prob, old.fatten_prob) == (0.5, 0.0)
    assert train_augment() == TRAIN_AUGMENT


def test_tiny_training_run_reduces_the_loss(shard_dir, tmp_path):
    log = _train(shard_dir, tmp_path / "run", 40, "direct_joints", extra=("--augment", "0"))
    first = np.mean([r["joints_mm"] for r in log[:5]])
    last = np.mean([r["joints_mm"] for r in log[-5:]])
    assert last < 0.8 * first, (first, last)  # measured: 62 -> 43 mm
    assert "val_joints_mm" in log[-1] and log[-1]["val_frames"] == 16


def test_resume_gives_the_same_weights_as_an_uninterrupted_run(shard_dir, tmp_path):
    _train(shard_dir, tmp_path / "once", 6)
    _train(shard_dir, tmp_path / "twice", 6, extra=("--stop-at", "3"))
    _train(shard_dir, tmp_path / "twice", 6)           # resumes at step 3
    a = torch.load(tmp_path / "once" / "last.pt", weights_only=True)
    b = torch.load(tmp_path / "twice" / "last.pt", weights_only=True)
    assert a["step"] == b["step"] == 6
    for k in a["model"]:
        assert torch.allclose(a["model"][k].float(), b["model"][k].float(), atol=1e-5), k
    net = load_model(tmp_path / "once" / "last.pt")
    assert not net.training and net.cfg.method == "deephps"


def test_init_starts_a_new_run_from_other_weights(shard_dir, tmp_path):
    """--init: a new run starts from the given weights (no steps: its checkpoint is them), a
    resumed run ignores it, and the shipped card counts the steps before (models.ship)."""
    from models.ship import init_summary

    _train(shard_dir, tmp_path / "a", 4)
    _train(shard_dir, tmp_path / "b", 0, extra=("--init", str(tmp_path / "a" / "last.pt")))
    a = torch.load(tmp_path / "a" / "last.pt", weights_only=True)["model"]
    b = torch.load(tmp_path / "b" / "last.pt", weights_only=True)["model"]
    fresh = HandNet(NetConfig(method="deephps", width=8, hidden=64)).state_dict()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert any(not torch.equal(a[k], fresh[k]) for k in a if a[k].is_floating_point())
    card = {"version": "step5-x", "data": {"train": "d"},
            "training": {"steps": 5, "samples": 320, "minutes": 1.5, "before": {"steps": 10, "samples": 640, "minutes": 2.0}}}
    torch.save({"card": card}, tmp_path / "w.pt")
    s = init_summary(str(tmp_path / "w.pt"))
    assert (s["steps"], s["samples"], s["minutes"], s["version"]) == (15, 960, 3.5, "step5-x")
    assert init_summary("") is None


def test_resume_refuses_another_network(shard_dir, tmp_path):
    _train(shard_dir, tmp_path / "run", 1)
    args = ["--method", "sdnet", "--train", str(shard_dir / "train"), "--val", "", "--steps", "2", "--batch", "8",
            "--workers", "0", "--out", str(tmp_path / "run")]
    assert train_main(args) == 2


def test_load_model_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.pt"):
        load_model(tmp_path / "nope.pt")
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="bad.pt"):
        load_model(bad)


# --------------------------------------------------------------------------- evaluation metrics


def _pose_joints(layer, names):
    theta = torch.as_tensor(np.stack([named_theta(n) for n in names]), dtype=torch.float32)
    with torch.no_grad():
        return layer(theta).joints.numpy().astype(np.float64)


def test_invalid_pose_share_on_real_and_broken_hands(layer):
    joints = _pose_joints(layer, ["rest", "fist", "point", "pinch", "spread"])
    assert invalid_pose_share(joints) == 0.0
    broken = joints.copy()
    # Fold the index fingertip straight back over its DIP (a 180 degree bend): invalid.
    broken[1, 8] = broken[1, 7] - (broken[1, 8] - broken[1, 7])
    assert invalid_pose_share(broken) == pytest.approx(1 / 5)
    assert ANGLE_MARGIN_DEG == 15.0


def test_bone_lengths_hand_computed():
    j = np.zeros((1, 21, 3))
    j[0, 1] = [3.0, 4.0, 0.0]     # wrist -> thumb CMC: 5 mm
    j[0, 2] = [3.0, 4.0, 12.0]    # CMC -> MCP: 12 mm
    b = bone_lengths(j)
    assert b.shape == (1, 20) and b[0, 0] == pytest.approx(5.0) and b[0, 1] == pytest.approx(12.0)


def test_summary_record_hand_computed(layer):
    labels = _pose_joints(layer, ["rest", "fist", "point", "pinch"])
    pred = labels.copy()
    pred[0] += [3.0, 4.0, 0.0]            # every joint 5 mm off
    pred[1, 8] += [0.0, 0.0, 30.0]        # one joint 30 mm off
    found = np.array([True, True, True, False])
    pred[3] = np.nan
    r = summary_record(Predictions(pred, labels, "canonical", None, None, found, 1.0))
    assert r["frames"] == 4 and r["hand_found"] == 0.75
    assert r["mean_mm"] == pytest.approx((21 * 5.0 + 30.0) / 63)
    assert r["median_mm"] == pytest.approx(0.0)
    # Largest errors per frame: 5, 30, 0 and not found -> success at 10 mm is 2 of 4 frames.
    assert r["success"]["10"] == 0.5 and r["success"]["30"] == 0.75 and r["success"]["80"] == 0.75
    # Frame 0 is only moved (bones unchanged); in frame 1 one bone (index DIP -> tip) changed.
    stretched = np.linalg.norm(pred[1, 8] - pred[1, 7]) - np.linalg.norm(labels[1, 8] - labels[1, 7])
    assert r["bone_error_mm"] == pytest.approx(abs(stretched) / (3 * 20))
    assert r["invalid_pose_labels"] == 0.0


def test_summary_record_maps_to_the_labels_layout(layer):
    from models.joints import get_layout

    joints = _pose_joints(layer, ["fist", "point"])
    nyu = np.einsum("kj,njc->nkc", get_layout("nyu14").matrix, joints)
    r = summary_record(Predictions(joints, nyu, "nyu14", None, None, np.ones(2, bool), 1.0))
    assert r["mean_mm"] == pytest.approx(0.0, abs=1e-9) and len(r["per_joint_mm"]) == 14


def test_recompute_batchnorm_gives_the_exact_mean_of_the_batches():
    from models.train import recompute_batchnorm

    torch.manual_seed(0)
    net = HandNet(NetConfig(method="direct_joints", width=8, hidden=32))
    batches = [torch.rand(4, 1, 96, 96) * 2 - 1 for _ in range(3)]
    recompute_batchnorm(net, batches)
    assert not net.training
    bn = net.backbone.stem[1]
    with torch.no_grad():
        acts = [net.backbone.stem[0](x) for x in batches]
    per_batch_means = torch.stack([a.mean((0, 2, 3)) for a in acts])
    assert torch.allclose(bn.running_mean, per_batch_means.mean(0), atol=1e-6)
    assert bn.momentum == 0.1   # restored for further training


# --------------------------------------------------------------------------- evaluation with whole frames


@pytest.fixture(scope="module")
def frame_shard(tmp_path_factory):
    """An 8-frame test shard with whole frames (``generate --full-frames``)."""
    cfg = SynthConfig(chunk=4, hands_per_draw=4, seed=5, full_frames=True, max_rays_per_crop_px=1e9)
    renderer = Renderer(cfg)
    arrays, _ = render_shard(renderer, "test", 0, 8)
    path = tmp_path_factory.mktemp("frames") / "test" / "shard_00000.npz"
    write_shard(path, arrays, {"split": "test", "shard": 0, "cameras": [c for c, _ in cfg.cameras]})
    return path, renderer.frame_shape


def test_whole_frames_are_padded_and_reproduce_the_stored_crops(frame_shard):
    from models.crop import crop_depth
    from models.data import intrinsics_from_arrays

    path, shape = frame_shard
    z = dict(np.load(path))
    assert z["frame"].shape == (8, *shape) and shape == (576, 848)   # Azure NFOV height, D435 width
    for k in range(8):
        intr = intrinsics_from_arrays(z["intrinsics"][k], z["distortion"][k], z["coeffs"][k])
        frame = z["frame"][k]
        assert not frame[intr.height:].any() and not frame[:, intr.width:].any()   # the padding is "no depth"
        crop = crop_depth(frame[:intr.height, :intr.width], intr, z["com_mm"][k].astype(np.float64))
        # The stored patch is float16: within its rounding (2^-11 relative; |patch| <= 1).
        np.testing.assert_allclose(crop.patch, z["patch"][k].astype(np.float32), atol=1e-3)


def test_shard_evaluation_second_pass_crops_around_the_palm(frame_shard, offset_predictor):
    from models.crop import crop_depth
    from models.data import intrinsics_from_arrays
    from models.evaluate import predict_shards

    path, _ = frame_shard
    z = dict(np.load(path))
    offset = np.array([12.0, -8.0, 20.0])
    one = predict_shards(offset_predictor(offset), path, with_vertices=False)
    p = offset_predictor(offset)
    two = predict_shards(p, path, with_vertices=False, recrop=True)
    com = z["com_mm"].astype(np.float64)
    every = lambda centres: np.broadcast_to(centres[:, None], (8, 21, 3))  # noqa: E731
    np.testing.assert_allclose(one.joints, every(com + offset), atol=1e-4)
    np.testing.assert_allclose(two.joints, every(com + 2 * offset), atol=1e-4)   # cropped at com + offset
    assert len(p.patches) == 2
    for k in range(8):
        intr = intrinsics_from_arrays(z["intrinsics"][k], z["distortion"][k], z["coeffs"][k])
        expected = crop_depth(z["frame"][k][:intr.height, :intr.width], intr, com[k] + offset).patch
        np.testing.assert_array_equal(p.patches[1][k], expected)
    far = predict_shards(offset_predictor([80.0, 0.0, 0.0]), path, with_vertices=False, recrop=True)  # > cube / 4
    np.testing.assert_allclose(far.joints, every(com + [80.0, 0.0, 0.0]), atol=1e-4)


def test_shard_evaluation_can_fatten_the_crops_first(frame_shard, offset_predictor):
    from models.data import fatten_patch
    from models.evaluate import predict_shards

    path, _ = frame_shard
    stored = np.load(path)["patch"].astype(np.float32)
    p = offset_predictor(np.zeros(3))
    predict_shards(p, path, with_vertices=False, fatten_px=2.0)
    seen = p.patches[0]
    for k in range(len(stored)):
        expected = fatten_patch(stored[k], np.random.default_rng(0), 2.0, 250.0, ragged=0.0)
        np.testing.assert_array_equal(seen[k], expected)
    assert (seen <= stored).all() and (seen < stored).mean() > 0.01   # near surfaces grew over farther ones
    with pytest.raises(ValueError, match="one pass"):
        predict_shards(p, path, with_vertices=False, recrop=True, fatten_px=2.0)


def test_shard_evaluation_second_pass_needs_whole_frames(shard_dir, offset_predictor):
    from models.evaluate import predict_shards

    with pytest.raises(ValueError, match="--full-frames"):
        predict_shards(offset_predictor([0.0, 0.0, 0.0]), shard_dir / "train", recrop=True)


def test_shard_evaluation_with_the_apps_finder(frame_shard, offset_predictor):
    """``--detect``: the app's Estimator finds the hand in every whole frame itself (detection
    only, frames independent); the labels, views and misses come along frame by frame."""
    from models.data import intrinsics_from_arrays
    from models.evaluate import detect_shards, subset
    from models.handfind import find_hand

    path, _ = frame_shard
    z = dict(np.load(path))
    offset = np.array([12.0, -8.0, 20.0])
    pred, views = detect_shards(offset_predictor(offset), path.parent, recrop=False, rotations=1)
    np.testing.assert_array_equal(views, z["view"])
    np.testing.assert_array_equal(pred.labels, z["joints_mm"].astype(np.float64))
    assert pred.vertices is None and pred.layout == "canonical"
    for k in range(8):
        intr = intrinsics_from_arrays(z["intrinsics"][k], z["distortion"][k], z["coeffs"][k])
        det = find_hand(np.ascontiguousarray(z["frame"][k][:intr.height, :intr.width]), intr)
        assert bool(pred.found[k]) == (det is not None)
        if det is not None:  # every joint at the finder's centre + the offset, mm
            np.testing.assert_allclose(pred.joints[k], np.broadcast_to(det.com_mm + offset, (21, 3)), atol=1e-3)
        else:
            assert np.isnan(pred.joints[k]).all()
    again, _ = detect_shards(offset_predictor(offset), path.parent, max_frames=3, recrop=False, rotations=1)
    np.testing.assert_array_equal(again.joints, pred.joints[:3])  # no state carried between frames
    ego = subset(pred, views == 1)
    np.testing.assert_array_equal(ego.joints, pred.joints[views == 1])
    assert len(ego.found) == int((views == 1).sum())


def test_detect_needs_whole_frames(shard_dir, capsys):
    from models.evaluate import main

    assert main(["--model", "none.pt", "--data", str(shard_dir / "train"), "--detect"]) == 2
    assert "--full-frames" in capsys.readouterr().err
    assert main(["--model", "none.pt", "--data", str(shard_dir / "train"), "--track"]) == 2
    assert "--track goes with --detect" in capsys.readouterr().err
