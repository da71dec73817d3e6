"""The hand model: joint order, skeleton, mesh, the pose-and-shape layer and its ONNX export."""
from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest
import torch

from models.geometry import axis_angle_to_matrix, kabsch, matrix_to_axis_angle
from models.hand_layer import HandLayer, HandModelConstants
from models.handmesh import ASSET_PATH, HandSpec, build_model_asset, generate, spec_from_beta
from models.joints import (
    CONNECTIONS, FINGER_JOINTS, JOINT_NAMES, LAYOUTS, NUM_JOINTS, PARENTS, Joint, get_layout,
)
from models.poses import NAMED_POSES_DEG, named_theta
from models.skeleton import (
    ALPHA_OF_JOINT, ARTICULATIONS, BETA_NAMES, THETA_DIM, THETA_NAMES, theta_limits,
)


@pytest.fixture(scope="module")
def layer64() -> HandLayer:
    return HandLayer(dtype=torch.float64)


@pytest.fixture(scope="module")
def layer32() -> HandLayer:
    return HandLayer(dtype=torch.float32)


def _theta(batch: int = 1, **named: float) -> torch.Tensor:
    theta = torch.zeros(batch, THETA_DIM, dtype=torch.float64)
    for name, value in named.items():
        theta[:, THETA_NAMES.index(name)] = value
    return theta


def _random_theta(rng: np.random.Generator, batch: int) -> torch.Tensor:
    lo, hi = theta_limits()
    theta = np.zeros((batch, THETA_DIM))
    theta[:, 0:3] = rng.normal(0.0, 1.0, (batch, 3))
    theta[:, 3:6] = rng.normal(0.0, 100.0, (batch, 3)) + [0, 0, 500]
    theta[:, 6:] = rng.uniform(lo[6:], hi[6:], (batch, 20))
    return torch.as_tensor(theta)


# --- joint order and layouts ------------------------------------------------------------

def test_joint_order_is_mediapipe():
    assert Joint.WRIST == 0 and Joint.THUMB_TIP == 4 and Joint.INDEX_MCP == 5
    assert Joint.MIDDLE_TIP == 12 and Joint.RING_MCP == 13 and Joint.LITTLE_TIP == 20
    assert len(JOINT_NAMES) == NUM_JOINTS == 21
    assert len(CONNECTIONS) == 20
    assert all(PARENTS[j] < j for j in range(1, NUM_JOINTS))  # parents come first
    assert FINGER_JOINTS[1] == (5, 6, 7, 8)


@pytest.mark.parametrize("name", sorted(LAYOUTS))
def test_layout_rows_are_affine(name):
    layout = get_layout(name)
    assert layout.matrix.shape == (layout.num_joints, NUM_JOINTS)
    np.testing.assert_allclose(layout.matrix.sum(1), 1.0, atol=1e-12)
    # An affine map: translating the hand translates every layout point the same way.
    joints = np.random.default_rng(0).normal(size=(21, 3))
    shift = np.array([10.0, -5.0, 3.0])
    np.testing.assert_allclose(layout.from_canonical(joints + shift), layout.from_canonical(joints) + shift, atol=1e-9)


def test_layout_values():
    joints = np.arange(63, dtype=np.float64).reshape(21, 3)
    msra = get_layout("msra21").from_canonical(joints)
    assert msra.shape == (21, 3)
    np.testing.assert_array_equal(msra[0], joints[Joint.WRIST])
    np.testing.assert_array_equal(msra[1], joints[Joint.INDEX_MCP])      # index MCP comes first
    np.testing.assert_array_equal(msra[20], joints[Joint.THUMB_TIP])     # thumb last
    nyu = get_layout("nyu14").from_canonical(joints)
    np.testing.assert_array_equal(nyu[0], joints[Joint.LITTLE_TIP])
    np.testing.assert_array_equal(nyu[9], joints[Joint.THUMB_IP])
    np.testing.assert_allclose(nyu[11], joints[0] + 0.3 * (joints[17] - joints[5]))
    icvl = get_layout("icvl16").from_canonical(joints)
    np.testing.assert_array_equal(icvl[3], joints[Joint.THUMB_TIP])
    with pytest.raises(ValueError, match="unknown joint layout"):
        get_layout("bighand")
    with pytest.raises(ValueError, match=r"\(\.\.\., 21, 3\)"):
        get_layout("nyu14").from_canonical(np.zeros((14, 3)))


# --- skeleton and limits ----------------------------------------------------------------

def test_limits():
    lo, hi = theta_limits()
    assert lo.shape == hi.shape == (26,)
    assert np.all(np.isinf(lo[:6])) and np.all(np.isinf(hi[:6]))
    assert np.all(lo[6:] < hi[6:])
    assert np.all(lo[6:] >= math.radians(-45)) and np.all(hi[6:] <= math.radians(120))
    flex = [d for d in ARTICULATIONS if d.kind == "flex"]
    assert all(d.hi_deg >= 60 for d in flex)  # every flexion can curl the finger
    assert all(d.source for d in ARTICULATIONS)
    for name, pose in NAMED_POSES_DEG.items():
        rad = np.radians(pose)
        assert np.all(rad >= lo[6:] - 1e-12) and np.all(rad <= hi[6:] + 1e-12), name


def test_alpha_groups():
    assert ALPHA_OF_JOINT[Joint.INDEX_MCP] == 0 and ALPHA_OF_JOINT[Joint.THUMB_CMC] == 0  # palm bones
    assert ALPHA_OF_JOINT[Joint.THUMB_TIP] == 1 and ALPHA_OF_JOINT[Joint.INDEX_PIP] == 2
    assert ALPHA_OF_JOINT[Joint.LITTLE_TIP] == 5


# --- forward kinematics -----------------------------------------------------------------

def test_rest_bone_lengths(layer64):
    joints = layer64(_theta()).joints[0].numpy()
    spec = HandSpec()
    for f, finger in enumerate(spec.fingers):
        chain = FINGER_JOINTS[f]
        np.testing.assert_allclose(joints[chain[0]], finger.base_xyz, atol=1e-9)  # mm
        lengths = np.linalg.norm(np.diff(joints[list(chain)], axis=0), axis=1)
        np.testing.assert_allclose(lengths, finger.lengths, atol=1e-9)  # mm
    np.testing.assert_allclose(joints[Joint.WRIST], 0.0, atol=1e-12)
    # Middle finger: wrist-to-MCP 90.3 mm, three phalanges 45 + 28 + 21 mm.
    assert np.linalg.norm(joints[Joint.MIDDLE_TIP] - joints[Joint.MIDDLE_MCP]) == pytest.approx(94.0, abs=1e-9)


def test_fk_known_angles(layer64):
    """Index finger: 90° MCP flexion points the finger along the palm normal (+z)."""
    rest = layer64(_theta()).joints[0].numpy()
    mcp = rest[Joint.INDEX_MCP]
    out = layer64(_theta(index_mcp_flex=math.pi / 2)).joints[0].numpy()
    z = np.array([0.0, 0.0, 1.0])
    np.testing.assert_allclose(out[Joint.INDEX_PIP], mcp + 40.0 * z, atol=1e-9)  # mm
    np.testing.assert_allclose(out[Joint.INDEX_DIP], mcp + 64.0 * z, atol=1e-9)
    np.testing.assert_allclose(out[Joint.INDEX_TIP], mcp + 84.0 * z, atol=1e-9)
    np.testing.assert_allclose(out[Joint.MIDDLE_TIP], rest[Joint.MIDDLE_TIP], atol=1e-9)  # others stay

    # 20° abduction turns the index (splayed 6° at rest) to 26° towards the thumb.
    out = layer64(_theta(index_mcp_abd=math.radians(20))).joints[0].numpy()
    d = np.array([math.sin(math.radians(26)), math.cos(math.radians(26)), 0.0])
    np.testing.assert_allclose(out[Joint.INDEX_PIP], mcp + 40.0 * d, atol=1e-9)

    # Abduction then flexion: flexing 90° after abducting still points along +z.
    out = layer64(_theta(index_mcp_abd=0.3, index_mcp_flex=math.pi / 2)).joints[0].numpy()
    np.testing.assert_allclose(out[Joint.INDEX_PIP], mcp + 40.0 * z, atol=1e-9)

    # PIP 90° and DIP 90°: the middle finger folds back towards the wrist.
    out = layer64(_theta(middle_pip_flex=math.pi / 2, middle_dip_flex=math.pi / 2)).joints[0].numpy()
    pip = rest[Joint.MIDDLE_PIP]
    np.testing.assert_allclose(out[Joint.MIDDLE_DIP], pip + 28.0 * z, atol=1e-9)
    np.testing.assert_allclose(out[Joint.MIDDLE_TIP], pip + 28.0 * z - 21.0 * np.array([0, 1.0, 0]), atol=1e-9)


def test_global_transform(layer64):
    rng = np.random.default_rng(1)
    theta = _random_theta(rng, 4)
    local = theta.clone()
    local[:, :6] = 0.0
    hand = layer64(local)
    out = layer64(theta)
    rot = axis_angle_to_matrix(theta[:, :3])
    expect_j = hand.joints @ rot.transpose(1, 2) + theta[:, None, 3:6]
    expect_v = hand.vertices @ rot.transpose(1, 2) + theta[:, None, 3:6]
    torch.testing.assert_close(out.joints, expect_j, atol=1e-9, rtol=0)  # mm
    torch.testing.assert_close(out.vertices, expect_v, atol=1e-9, rtol=0)  # mm
    np.testing.assert_allclose(out.joints[:, 0].numpy(), theta[:, 3:6].numpy(), atol=1e-9)  # wrist = translation
    torch.testing.assert_close(out.transforms[..., :3, 3], out.joints, atol=0, rtol=0)


@pytest.mark.parametrize("batch", [1, 3, 17])
def test_batch_consistency(layer64, batch):
    rng = np.random.default_rng(batch)
    theta = _random_theta(rng, batch)
    alpha = torch.as_tensor(rng.uniform(0.8, 1.2, (batch, 6)))
    beta = torch.as_tensor(rng.normal(0.0, 0.5, (batch, 7)))
    out = layer64(theta, alpha, beta)
    assert out.joints.shape == (batch, 21, 3)
    assert out.vertices.shape == (batch, layer64.num_vertices, 3)
    assert out.transforms.shape == (batch, 21, 4, 4)
    single = layer64(theta[-1:], alpha[-1:], beta[-1:])
    torch.testing.assert_close(out.vertices[-1:], single.vertices, atol=1e-9, rtol=0)
    # Rotations stay orthonormal.
    r = out.transforms[..., :3, :3]
    torch.testing.assert_close(r @ r.transpose(-1, -2), torch.eye(3, dtype=torch.float64).expand_as(r), atol=1e-12, rtol=0)


def test_float32_matches_float64(layer32, layer64):
    theta = _random_theta(np.random.default_rng(2), 8)
    a = layer64(theta)
    b = layer32(theta.float())
    assert b.vertices.dtype == torch.float32
    np.testing.assert_allclose(b.vertices.numpy(), a.vertices.numpy(), atol=2e-3)  # mm
    np.testing.assert_allclose(b.joints.numpy(), a.joints.numpy(), atol=2e-3)  # mm


def test_bad_input(layer32):
    with pytest.raises(ValueError, match=r"theta of shape \(B, 26\)"):
        layer32(torch.zeros(2, 25))
    with pytest.raises(ValueError, match=r"alpha of shape \(B, 6\)"):
        layer32(torch.zeros(2, 26), torch.ones(2, 5))
    with pytest.raises(ValueError, match="batch sizes differ"):
        layer32(torch.zeros(2, 26), torch.ones(3, 6))
    with pytest.raises(TypeError, match="float64"):
        layer32(torch.zeros(2, 26, dtype=torch.float64))
    with pytest.raises(FileNotFoundError, match="models.handmesh"):
        HandModelConstants.load("/nonexistent/hand_model.npz")


def test_gradcheck(layer64):
    rng = np.random.default_rng(3)
    theta = _random_theta(rng, 2)
    theta[0, :3] = 0.0  # the Rodrigues small-angle branch
    theta.requires_grad_(True)
    alpha = torch.as_tensor(rng.uniform(0.9, 1.1, (2, 6)), dtype=torch.float64).requires_grad_(True)
    beta = torch.as_tensor(rng.normal(0, 0.5, (2, 7)), dtype=torch.float64).requires_grad_(True)
    wrist = torch.as_tensor(rng.normal(0, 0.3, (2, 2)), dtype=torch.float64).requires_grad_(True)
    pick = torch.as_tensor(rng.choice(layer64.num_vertices, 40, replace=False))

    def fn(t, a, b, w):
        out = layer64(t, a, b, w)
        return out.joints, out.vertices[:, pick]

    assert torch.autograd.gradcheck(fn, (theta, alpha, beta, wrist), eps=1e-6, atol=1e-5)
    t0 = _theta().requires_grad_(True)
    (g,) = torch.autograd.grad(layer64(t0).joints.sum(), t0)
    assert torch.isfinite(g).all()  # finite at the all-zero pose


# --- the mesh -----------------------------------------------------------------------------

def test_shipped_asset_matches_generator():
    built = build_model_asset()
    with np.load(ASSET_PATH) as shipped:
        for key, value in built.items():
            np.testing.assert_allclose(shipped[key], value, atol=1e-9, err_msg=key)


def test_mesh_is_closed_and_outward(layer64):
    c = HandModelConstants.load()
    rest = c.anchors @ c.rest_joints + c.rest_offsets
    assert 1000 <= len(rest) <= 2000
    np.testing.assert_allclose(c.weights.sum(1), 1.0, atol=1e-12)
    assert c.weights.min() >= 0.0
    np.testing.assert_allclose(c.anchors.sum(1), 1.0, atol=1e-12)
    assert np.all(c.weights[:, list(f[-1] for f in FINGER_JOINTS)] == 0.0)  # tips carry no skin
    _, _, topo = generate(HandSpec())
    for part in range(7):
        faces = c.faces[np.all(topo.part[c.faces] == part, 1)]
        edges = Counter((int(f[i]), int(f[(i + 1) % 3])) for f in faces for i in range(3))
        assert all(n == 1 and edges[(b, a)] == 1 for (a, b), n in edges.items()), f"part {part} not closed"
        volume = np.einsum("ij,ij->i", rest[faces[:, 0]], np.cross(rest[faces[:, 1]], rest[faces[:, 2]])).sum() / 6
        assert volume > 0, f"part {part} faces point inwards"


def _inside_any_part(vertices: np.ndarray, faces: np.ndarray, part: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Whether each point is inside at least one closed part (parity counting needs one part at a time)."""
    import open3d as o3d

    inside = np.zeros(len(points), dtype=bool)
    for p in np.unique(part):
        scene = o3d.t.geometry.RaycastingScene()
        f = faces[np.all(part[faces] == p, 1)]
        scene.add_triangles(o3d.core.Tensor(vertices.astype(np.float32)), o3d.core.Tensor(f.astype(np.uint32)))
        inside |= scene.compute_occupancy(o3d.core.Tensor(points.astype(np.float32)), nsamples=3).numpy() > 0
    return inside


@pytest.mark.parametrize("pose", ["rest", "fist", "pinch"])
def test_skeleton_inside_mesh(layer64, pose):
    """The joints lie inside the skin; fingertip joints 3 mm under the fingertip surface."""
    theta = torch.as_tensor(named_theta(pose))[None]
    out = layer64(theta)
    v, j = out.vertices[0].numpy(), out.joints[0].numpy()
    faces = layer64.faces.numpy()
    inner = [k for k in range(21) if k not in (4, 8, 12, 16, 20)]
    _, _, topo = generate(HandSpec())
    inside = _inside_any_part(v, faces, topo.part, j[inner])
    assert inside.all(), [JOINT_NAMES[inner[k]] for k in np.where(~inside)[0]]
    import open3d as o3d

    scene = o3d.t.geometry.RaycastingScene()
    scene.add_triangles(o3d.core.Tensor(v.astype(np.float32)), o3d.core.Tensor(faces.astype(np.uint32)))
    tips = j[[4, 8, 12, 16, 20]].astype(np.float32)
    dist = scene.compute_distance(o3d.core.Tensor(tips)).numpy()
    assert np.all(dist < 4.0) and np.all(dist > 1.0), dist  # mm


def test_hand_size_range(layer64):
    """β_size spans children (~120 mm hand length) to large adults (~230 mm)."""
    def length(beta_size: float) -> float:
        beta = torch.zeros(1, 7, dtype=torch.float64)
        beta[0, BETA_NAMES.index("size")] = beta_size
        rest = layer64.rest_shape(torch.ones(1, 6, dtype=torch.float64), beta)
        return float(rest.vertices[0, :, 1].max())  # wrist (y = 0) to the middle fingertip, mm

    assert length(0.0) == pytest.approx(187.0, abs=3.0)
    assert length(-1.4) == pytest.approx(121.0, abs=4.0)
    assert length(1.0) == pytest.approx(233.0, abs=4.0)


def test_morph_targets_are_the_generator(layer64):
    """At α = 1, Ψ(e_t) is exactly the generator's hand for β = e_t (linear morphable model)."""
    ones = torch.ones(1, 6, dtype=torch.float64)
    for t in range(7):
        beta = torch.zeros(1, 7, dtype=torch.float64)
        beta[0, t] = 1.0
        rest = layer64.rest_shape(ones, beta)
        joints, verts, _ = generate(spec_from_beta(beta[0].numpy()))
        np.testing.assert_allclose(rest.vertices[0].numpy(), verts, atol=1e-9, err_msg=BETA_NAMES[t])
        np.testing.assert_allclose(rest.joints[0].numpy(), joints, atol=1e-9)


def test_alpha_stretches_finger_surface(layer64):
    alpha = torch.ones(1, 6, dtype=torch.float64)
    alpha[0, 2] = 1.25  # index
    zero = torch.zeros(1, 7, dtype=torch.float64)
    base = layer64.rest_shape(torch.ones(1, 6, dtype=torch.float64), zero)
    long = layer64.rest_shape(alpha, zero)
    mcp = base.joints[0, Joint.INDEX_MCP]
    np.testing.assert_allclose(
        (long.joints[0, Joint.INDEX_TIP] - mcp).norm().item(), 1.25 * (base.joints[0, Joint.INDEX_TIP] - mcp).norm().item(), atol=1e-9)
    _, _, topo = generate(HandSpec())
    index = topo.part == 2
    reach = lambda r: (r.vertices[0, index] - mcp).norm(dim=1).max().item()  # noqa: E731
    assert reach(long) == pytest.approx(1.25 * reach(base), abs=4.0)  # mm: the surface stretches with the bones
    torch.testing.assert_close(long.vertices[0, topo.part == 3], base.vertices[0, topo.part == 3])  # middle untouched


def test_wrist_moves_only_forearm(layer64):
    theta = torch.as_tensor(named_theta("relaxed"))[None]
    a = layer64(theta)
    b = layer64(theta, wrist=torch.tensor([[0.5, 0.2]], dtype=torch.float64))
    _, _, topo = generate(HandSpec())
    moved = (a.vertices - b.vertices).norm(dim=-1)[0].numpy()
    assert moved[topo.part == 6].max() > 50.0  # mm, the far end of the forearm
    assert moved[topo.part >= 1][topo.part[topo.part >= 1] <= 5].max() < 1e-9
    torch.testing.assert_close(a.joints, b.joints)


# --- geometry helpers ---------------------------------------------------------------------

def test_axis_angle_round_trip():
    rng = np.random.default_rng(4)
    r = torch.as_tensor(rng.normal(size=(64, 3)))
    r = r / r.norm(dim=1, keepdim=True) * torch.as_tensor(rng.uniform(0, math.pi - 1e-3, (64, 1)))
    torch.testing.assert_close(matrix_to_axis_angle(axis_angle_to_matrix(r)), r, atol=1e-9, rtol=0)
    m = axis_angle_to_matrix(torch.tensor([[0.0, 0.0, math.pi / 2]], dtype=torch.float64))[0]
    torch.testing.assert_close(m @ torch.tensor([1.0, 0, 0], dtype=torch.float64), torch.tensor([0.0, 1, 0], dtype=torch.float64))


def test_kabsch_recovers_rigid_motion():
    rng = np.random.default_rng(5)
    src = torch.as_tensor(rng.normal(size=(3, 10, 3)))
    rot = axis_angle_to_matrix(torch.as_tensor(rng.normal(size=(3, 3))))
    t = torch.as_tensor(rng.normal(size=(3, 3)))
    r_fit, t_fit = kabsch(src, src @ rot.transpose(1, 2) + t[:, None])
    torch.testing.assert_close(r_fit, rot, atol=1e-9, rtol=0)
    torch.testing.assert_close(t_fit, t, atol=1e-9, rtol=0)


def test_raycast_depth_is_z():
    from models.render import raycast

    from calib import Intrinsics

    cam = Intrinsics(fx=100.0, fy=100.0, cx=31.5, cy=23.5, width=64, height=48, depth_scale=0.001)
    # A triangle in the plane z = 500 mm covering the view: every pixel has depth 500.
    verts = np.array([[-1e4, -1e4, 500.0], [1e4, -1e4, 500.0], [0.0, 1e4, 500.0]])
    res = raycast([(verts, np.array([[0, 1, 2]]))], cam)
    assert np.all(res.geometry_id == 0)
    np.testing.assert_allclose(res.depth, 500.0, rtol=1e-6)  # mm, also at the corners


# --- ONNX ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def layer_onnx(tmp_path_factory):
    from export.onnx_export import export_hand_layer

    return export_hand_layer(tmp_path_factory.mktemp("onnx") / "hand_layer.onnx")


def test_onnx_matches_torch(layer_onnx, layer32):
    import onnxruntime as ort

    session = ort.InferenceSession(str(layer_onnx), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(6)
    for batch in (1, 5):
        theta = _random_theta(rng, batch).float()
        alpha = torch.as_tensor(rng.uniform(0.8, 1.2, (batch, 6)), dtype=torch.float32)
        beta = torch.as_tensor(rng.normal(0.0, 0.7, (batch, 7)), dtype=torch.float32)
        joints, vertices = session.run(None, {"theta": theta.numpy(), "alpha": alpha.numpy(), "beta": beta.numpy()})
        with torch.no_grad():
            ref = layer32(theta, alpha, beta)
        np.testing.assert_allclose(joints, ref.joints.numpy(), atol=1e-3, rtol=0)  # mm
        np.testing.assert_allclose(vertices, ref.vertices.numpy(), atol=1e-3, rtol=0)  # mm
    import onnx

    meta = {p.key: p.value for p in onnx.load(str(layer_onnx)).metadata_props}
    assert "index_mcp" in meta["joint_names"]


def test_raycast_follows_the_lens_model():
    """A point rendered through a fisheye lands on the pixel calib.project predicts."""
    from calib import Intrinsics, project
    from models.render import raycast

    cam = Intrinsics(fx=250.0, fy=250.0, cx=159.5, cy=119.5, width=320, height=240, depth_scale=0.001,
                     distortion="kannala_brandt4", coeffs=(0.1, -0.02, 0.0, 0.0, 0.0))
    # A small square facing the camera, 200 mm off axis at 500 mm depth.
    c = np.array([200.0, 80.0, 500.0])
    verts = c + np.array([[-4.0, -4.0, 0.0], [4.0, -4.0, 0.0], [4.0, 4.0, 0.0], [-4.0, 4.0, 0.0]])
    res = raycast([(verts, np.array([[0, 1, 2], [0, 2, 3]]))], cam)
    v, u = np.nonzero(res.geometry_id == 0)
    expected = project(c, cam)
    assert abs(u.mean() - expected[0]) < 0.6 and abs(v.mean() - expected[1]) < 0.6  # px
    np.testing.assert_allclose(res.depth[v, u], 500.0, rtol=1e-5)  # mm: depth is still z


def test_frames_alone_are_the_forward_transforms(layer64):
    """HandLayer.frames (the skeleton without the mesh, for solvers) is forward()'s transforms."""
    g = torch.Generator().manual_seed(3)
    theta = torch.randn(5, 26, generator=g, dtype=torch.float64) * 0.4
    alpha = 1.0 + 0.1 * torch.randn(5, 6, generator=g, dtype=torch.float64)
    beta = torch.randn(5, 7, generator=g, dtype=torch.float64)
    root = axis_angle_to_matrix(torch.randn(5, 3, generator=g, dtype=torch.float64))
    for r in (None, root):
        out = layer64(theta, alpha, beta, root_rotation=r)
        assert torch.allclose(layer64.frames(theta, alpha, beta, root_rotation=r), out.transforms, atol=1e-12)  # mm
