"""The live viewer (app/viewer.py) and the video writer (app/video.py).

The OpenGL window runs under an Xvfb server that the ``display`` fixture starts (skipped
with the reason when Xvfb is not installed); the software viewer and the video path need no
display. Pixel positions: (u, v) = (column, row); colours RGB.
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

cv2 = pytest.importorskip("cv2")

from app.video import VideoWriter  # noqa: E402
from app.viewer import (  # noqa: E402
    BONE_COLORS, JOINT_COLORS, LAYERS, SoftwareViewer, ViewState, demo_states, depth_panel, layout,
    point_stride, render_software, scene_points, sensor_view,
)
from calib import get_preset, project  # noqa: E402

W, H = 1280, 720


# ------------------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module")
def hand_state() -> ViewState:
    """The hand model ray-cast at D435 640x480 in front of a wall, as the app would pass it."""
    return next(demo_states(1, hud="test hud"))


@pytest.fixture(scope="module")
def empty_state(hand_state: ViewState) -> ViewState:
    """No depth and no hand."""
    return ViewState(np.zeros_like(hand_state.depth_mm), hand_state.intrinsics, hud="no hand")


@pytest.fixture(scope="module")
def viewer(display, hand_state):
    from app.viewer import Viewer

    v = Viewer(W, H, faces=hand_state.faces)
    yield v
    v.close()


@pytest.fixture()
def fresh(viewer):
    """The module's viewer with every layer shown, not paused, at the sensor's viewpoint."""
    viewer.show.update({name: True for name in LAYERS})
    viewer.paused = False
    viewer.reset_view()
    while viewer.step_requested() or viewer.recording_toggled():
        pass
    return viewer


# ------------------------------------------------------------------------------ pixel helpers


def _skin(img: np.ndarray) -> np.ndarray:
    """Mask of mesh-coloured pixels (shaded skin: red > green > blue, warm but not saturated
    like the yellow and red finger colours)."""
    r, g, b = (img[..., i].astype(int) for i in range(3))
    return (r > 90) & (r > g + 10) & (g > b + 5) & (r - b > 40) & (r - b < 0.55 * r)


def _finger(img: np.ndarray) -> np.ndarray:
    """Mask of pixels near one of the skeleton's finger colours (lit spheres vary: loose match)."""
    colors = np.unique(np.round(BONE_COLORS * 255), axis=0)
    hsv = cv2.cvtColor(img, cv2.COLOR_RGB2HSV).astype(int)
    want = cv2.cvtColor(colors.astype(np.uint8)[None], cv2.COLOR_RGB2HSV)[0].astype(int)
    saturated = (hsv[..., 1] > 120) & (hsv[..., 2] > 90)
    dh = np.abs(hsv[..., None, 0] - want[None, None, :, 0])
    dh = np.minimum(dh, 180 - dh).min(-1)
    return saturated & (dh < 8)


def _scene_mask(width: int, height: int, state: ViewState) -> np.ndarray:
    """The 3D view without the overlays (depth panel, heads-up band)."""
    lay = layout(width, height, state.depth_mm.shape)
    mask = np.ones((height, width), bool)
    for r in (lay.panel, lay.hud):
        mask[r.y:r.y + r.h, r.x:r.x + r.w] = False
    return mask


def _joints_on_screen(state: ViewState, width: int = W, height: int = H) -> np.ndarray:
    return sensor_view(state.intrinsics, width, height).project(state.joints_mm.astype(np.float64))[:, :2]


def _hand_box(state: ViewState, width: int = W, height: int = H, margin: int = 12) -> tuple[slice, slice]:
    uv = sensor_view(state.intrinsics, width, height).project(state.vertices_mm.astype(np.float64))[:, :2]
    (u0, v0), (u1, v1) = uv.min(0), uv.max(0)
    return (slice(max(int(v0) - margin, 0), int(v1) + margin + 1), slice(max(int(u0) - margin, 0), int(u1) + margin + 1))


def _near(mask: np.ndarray, uv: np.ndarray, r: int = 5) -> np.ndarray:
    """Per point: does ``mask`` have a pixel within r px of it?"""
    out = []
    for u, v in np.round(uv).astype(int):
        out.append(bool(mask[max(v - r, 0):v + r + 1, max(u - r, 0):u + r + 1].any()))
    return np.array(out)


# ------------------------------------------------------------------------------ state and pure stages


def test_view_state_checks_its_fields(hand_state):
    s = hand_state
    with pytest.raises(TypeError, match="float32"):
        ViewState(s.depth_mm.astype(np.float64), s.intrinsics)
    with pytest.raises(ValueError, match="shape"):
        ViewState(s.depth_mm[:-1], s.intrinsics)
    with pytest.raises(ValueError, match=r"joints_mm: expected a \(21, 3\)"):
        replace(s, joints_mm=s.joints_mm[:20])
    with pytest.raises(ValueError, match="non-finite"):
        replace(s, joints_mm=np.full((21, 3), np.nan, np.float32))
    with pytest.raises(ValueError, match="faces"):
        replace(s, faces=s.faces.astype(np.float32))
    with pytest.raises(ValueError, match="indices"):
        replace(s, faces=s.faces + len(s.vertices_mm))
    with pytest.raises(ValueError, match="com_mm"):
        replace(s, com_mm=np.zeros(2))
    with pytest.raises(ValueError, match="cube_mm"):
        replace(s, cube_mm=0.0)
    with pytest.raises(TypeError, match="hud"):
        replace(s, hud=None)


def test_scene_points_keep_the_region_around_the_hand(hand_state):
    s = hand_state
    pts = scene_points(s, max_points=40_000)
    stride = point_stride(s.intrinsics, 40_000)
    assert stride == 3                                               # 640 x 480 / 40k -> every 3rd pixel
    assert 1000 < len(pts.points_mm) <= (480 // 3) * (640 // 3)
    dist = np.linalg.norm(pts.points_mm - s.com_mm, axis=1)
    assert dist.max() <= 1.5 * s.cube_mm + 1e-6                      # mm
    # Every kept point re-projects onto a decimated pixel whose depth it carries (calib round trip).
    uvd = project(pts.points_mm, s.intrinsics)
    u, v = np.round(uvd[:, 0]).astype(int), np.round(uvd[:, 1]).astype(int)
    assert np.allclose(uvd[:, :2], np.stack([u, v], -1), atol=1e-6)   # px
    assert np.all(u % stride == 0) and np.all(v % stride == 0)
    assert np.allclose(s.depth_mm[v, u], uvd[:, 2], atol=1e-3)        # mm
    # Without a hand: the nearest 1.2 m of the scene.
    no_hand = scene_points(replace(s, joints_mm=None, com_mm=None), max_points=40_000)
    assert no_hand.points_mm[:, 2].max() <= 1200.0
    assert len(no_hand.points_mm) > len(pts.points_mm)
    assert ((pts.colors >= 0) & (pts.colors <= 1)).all()


def test_depth_panel_draws_the_projected_joints(hand_state):
    s = hand_state
    panel = depth_panel(s, (320, 240))
    assert panel.shape == (240, 320, 3) and panel.dtype == np.uint8
    uv = (project(s.joints_mm.astype(np.float64), s.intrinsics)[:, :2] + 0.5) * 0.5 - 0.5
    for j, (u, v) in enumerate(np.round(uv).astype(int)):
        patch = panel[v - 1:v + 2, u - 1:u + 2].reshape(-1, 3).astype(int)
        want = np.round(JOINT_COLORS[j] * 255)
        assert np.abs(patch - want).sum(1).min() < 40, f"joint {j} not drawn at ({u}, {v})"
    blank = depth_panel(ViewState(np.zeros_like(s.depth_mm), s.intrinsics), (320, 240))
    assert (blank[5:-20, 5:-5] == 0).all()                            # no depth, no hand: black


def test_sensor_view_is_the_depth_camera_scaled_into_the_window(hand_state):
    intr = hand_state.intrinsics
    cam = sensor_view(intr, W, H)
    assert np.allclose(cam.cam_from_world, np.eye(4))
    pts = hand_state.joints_mm.astype(np.float64)
    uv_sensor = project(pts, intr)[:, :2]
    uv_view = cam.project(pts)[:, :2]
    # Same pinhole up to scale and shift: the 4:3 frame fits the 16:9 window by its height.
    scale = H / intr.height
    expected = np.stack([(uv_sensor[:, 0] - intr.cx) * intr.fy / intr.fx, uv_sensor[:, 1] - intr.cy], -1) * scale \
        + (cam.cx, cam.cy)
    assert np.allclose(uv_view, expected, atol=0.5)                   # px


# ------------------------------------------------------------------------------ the OpenGL window


def test_viewer_draws_the_hand_where_the_joints_project(fresh, hand_state):
    fresh.update(hand_state)
    img = fresh.capture()
    assert img.shape == (H, W, 3) and img.dtype == np.uint8
    scene = _scene_mask(W, H, hand_state)
    hand = (_skin(img) | _finger(img)) & scene
    uv = _joints_on_screen(hand_state)
    assert _near(hand, uv).sum() >= 20, "mesh or skeleton colours missing at the projected joints"
    rows, cols = _hand_box(hand_state)
    outside = hand.copy()
    outside[rows, cols] = False
    assert outside.sum() < 50, f"{outside.sum()} hand-coloured pixels away from the hand"
    assert hand[rows, cols].sum() > 5000                               # the mesh covers the hand's area


def test_viewer_empty_state_draws_no_hand(fresh, empty_state):
    fresh.update(empty_state)
    img = fresh.capture()
    scene = _scene_mask(W, H, empty_state)
    assert ((_skin(img) | _finger(img)) & scene).sum() == 0
    background = np.round(np.array((0.08, 0.09, 0.11)) * 255)
    assert np.abs(img[scene].astype(int) - background).max() <= 2      # nothing but the background


def test_toggling_the_mesh_reveals_the_skeleton(fresh, hand_state):
    fresh.update(hand_state)
    with_mesh = fresh.capture()
    assert fresh.handle_key("m") and not fresh.show["mesh"]
    assert fresh.poll()                                                # a key redraws the last state
    without = fresh.capture()
    rows, cols = _hand_box(hand_state)
    skin_before, skin_after = _skin(with_mesh)[rows, cols].sum(), _skin(without)[rows, cols].sum()
    assert skin_after < 0.05 * skin_before, (skin_before, skin_after)
    uv = _joints_on_screen(hand_state)
    assert _near(_finger(without), uv, r=4).sum() >= 18                 # bones and joints in finger colours
    changed = np.abs(with_mesh.astype(int) - without.astype(int)).sum(-1) > 30
    assert changed[rows, cols].mean() > 0.1
    fresh.handle_key("m")
    fresh.poll()
    assert np.abs(fresh.capture().astype(int) - with_mesh.astype(int)).mean() < 1.0


def test_depth_panel_and_hud_are_overlaid(fresh, hand_state):
    fresh.update(hand_state)
    img = fresh.capture()
    lay = layout(W, H, hand_state.depth_mm.shape)
    p = lay.panel
    expected = depth_panel(hand_state, (p.w, p.h))
    shown = img[p.y:p.y + p.h, p.x:p.x + p.w]
    assert np.abs(shown.astype(int) - expected.astype(int)).mean() < 3.0   # one texel per pixel
    hud = img[lay.hud.y:lay.hud.y + lay.hud.h, lay.hud.x:lay.hud.x + lay.hud.w]
    assert (hud.min(-1) > 200).sum() > 100                                  # white text
    fresh.handle_key("d")
    fresh.poll()
    hidden = fresh.capture()[p.y:p.y + p.h, p.x:p.x + p.w]
    assert np.abs(hidden.astype(int) - expected.astype(int)).mean() > 30
    fresh.handle_key("d")


def test_overlays_follow_the_camera(fresh, hand_state):
    fresh.update(hand_state)
    before = fresh.capture()
    fresh.orbit(25.0, 7.0)                                            # as a mouse drag does
    assert fresh.poll()
    after = fresh.capture()
    p = layout(W, H, hand_state.depth_mm.shape).panel
    panel = (slice(p.y, p.y + p.h), slice(p.x, p.x + p.w))
    assert np.abs(after[panel].astype(int) - before[panel].astype(int)).mean() < 3.0
    assert np.abs(after.astype(int) - before.astype(int)).mean() > 2.0  # the 3D view did move
    fresh.handle_key("v")
    fresh.poll()
    assert np.allclose(fresh.view_camera().cam_from_world, np.eye(4), atol=1e-9)


def test_keys_become_flags_for_the_app(fresh, hand_state, tmp_path):
    v = fresh
    v.update(hand_state)
    assert not v.step_requested()
    v.handle_key("n")
    assert not v.step_requested()                                       # steps only while paused
    v.handle_key(" ")
    assert v.paused
    v.handle_key("n")
    v.handle_key(".")
    assert v.step_requested() and v.step_requested() and not v.step_requested()
    v.handle_key("r")
    assert v.recording_toggled() and not v.recording_toggled()
    for key, layer in (("p", "points"), ("s", "skeleton")):
        v.handle_key(key)
        assert not v.show[layer]
        v.handle_key(key)
    v.handle_key(" ")
    assert not v.paused
    v.screenshot(tmp_path / "shot.png")
    shot = cv2.imread(str(tmp_path / "shot.png"))
    assert shot.shape == (H, W, 3)


def test_quit_key_closes_the_window(display, hand_state):
    from app.viewer import Viewer

    v = Viewer(320, 240, faces=hand_state.faces, visible=False)
    v.update(hand_state)
    assert v.poll()
    v.handle_key("q")
    assert not v.poll() and not v.poll()
    v.update(hand_state)                                                # a closed viewer ignores frames
    v.close()


def test_software_rendering_matches_the_window(fresh, hand_state):
    # Points hidden: in the window they z-fight with the mesh they were rendered from.
    fresh.handle_key("p")
    fresh.update(hand_state)
    gl = fresh.capture()
    sw = SoftwareViewer(W, H, faces=hand_state.faces)
    sw.handle_key("p")
    sw.update(replace(hand_state, faces=None))
    soft = sw.capture()
    scene = _scene_mask(W, H, hand_state)
    a, b = _skin(gl) & scene, _skin(soft) & scene
    assert (a & b).sum() / (a | b).sum() > 0.9                          # the same silhouette
    lay = layout(W, H, hand_state.depth_mm.shape)
    p = lay.panel
    assert np.abs(gl[p.y:p.y + p.h, p.x:p.x + p.w].astype(int) - soft[p.y:p.y + p.h, p.x:p.x + p.w]).mean() < 3.0


# ------------------------------------------------------------------------------ headless video


def test_software_viewer_draws_the_hand(hand_state, empty_state):
    v = SoftwareViewer(640, 360, faces=hand_state.faces)
    v.update(hand_state)
    img = v.capture()
    hand = (_skin(img) | _finger(img)) & _scene_mask(640, 360, hand_state)
    assert _near(hand, _joints_on_screen(hand_state, 640, 360), r=3).sum() >= 20
    v.update(empty_state)
    assert ((_skin(v.capture()) | _finger(v.capture())) & _scene_mask(640, 360, empty_state)).sum() == 0
    v.handle_key("q")
    assert not v.poll()


@pytest.mark.parametrize("suffix", [".mp4", ".mkv"])
def test_headless_video_writes_every_frame(hand_state, tmp_path, suffix, read_video_frames):
    n, size = 12, (640, 360)
    viewer = SoftwareViewer(*size, faces=hand_state.faces)
    path = tmp_path / f"out{suffix}"
    with VideoWriter(path, 30.0, size) as writer:
        for i in range(n):
            viewer.update(replace(hand_state, hud=f"frame {i}"))
            writer.write(viewer.capture())
    assert writer.frames_written == n and writer.closed
    frames = read_video_frames(path)
    assert len(frames) == n
    assert frames[0].shape == (size[1], size[0], 3)
    first = cv2.cvtColor(frames[0], cv2.COLOR_BGR2RGB)
    assert np.abs(first.astype(int) - viewer.capture().astype(int)).mean() < 8   # lossy codec


def test_video_writer_checks_its_input(tmp_path):
    with pytest.raises(ValueError, match="ending"):
        VideoWriter(tmp_path / "out.gif", 30, (64, 48))
    with pytest.raises(ValueError, match="fps"):
        VideoWriter(tmp_path / "out.mp4", 0, (64, 48))
    with VideoWriter(tmp_path / "out.mp4", 30, (64, 48)) as w:
        with pytest.raises(ValueError, match=r"\(48, 64, 3\) uint8"):
            w.write(np.zeros((64, 48, 3), np.uint8))
        w.write(np.zeros((48, 64, 3), np.uint8))
    with pytest.raises(ValueError, match="closed"):
        w.write(np.zeros((48, 64, 3), np.uint8))


def test_render_software_respects_the_layers(hand_state):
    cam = sensor_view(hand_state.intrinsics, 640, 360)
    on = {name: True for name in LAYERS}
    scene = _scene_mask(640, 360, hand_state)
    full = render_software(hand_state, cam, on)
    no_mesh = render_software(hand_state, cam, {**on, "mesh": False})
    assert (_skin(no_mesh) & scene).sum() < 0.05 * (_skin(full) & scene).sum()
    assert (_finger(no_mesh) & scene).sum() > 3 * (_finger(full) & scene).sum()
    nothing = render_software(hand_state, cam, {name: False for name in LAYERS})
    assert ((_skin(nothing) | _finger(nothing)) & scene).sum() == 0
    lay = layout(640, 360, hand_state.depth_mm.shape)
    panel = (slice(lay.panel.y, lay.panel.y + lay.panel.h), slice(lay.panel.x, lay.panel.x + lay.panel.w))
    assert (full[panel] == depth_panel(hand_state, (lay.panel.w, lay.panel.h))).all()
    assert (nothing[panel] != full[panel]).any()


def test_skeleton_mesh_wraps_the_bones(hand_state):
    from app.viewer import BONE_RADIUS_MM, JOINT_RADIUS_MM, SkeletonMesh
    from models.joints import CONNECTIONS

    sk = SkeletonMesh()
    joints = hand_state.joints_mm.astype(np.float64)
    verts, normals = sk.pose(joints)
    assert verts.shape == normals.shape == (sk.num_vertices, 3) == sk.colors.shape
    assert np.allclose(np.linalg.norm(normals, axis=1), 1.0)
    tri = verts[sk.triangles]
    face_n = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    vert_n = normals[sk.triangles].sum(1)
    assert (np.einsum("fc,fc->f", face_n, vert_n) > 0).all()           # counter-clockwise = outward
    # Every tube vertex lies BONE_RADIUS_MM from its bone's segment, every sphere vertex on its sphere.
    ns = (sk.num_vertices - len(CONNECTIONS) * 16) // 21
    sphere = verts[:21 * ns].reshape(21, ns, 3)
    assert np.allclose(np.linalg.norm(sphere - joints[:, None], axis=-1), JOINT_RADIUS_MM)   # mm
    tubes = verts[21 * ns:].reshape(len(CONNECTIONS), 16, 3)
    for (a, b), tube in zip(CONNECTIONS, tubes):
        d = (joints[b] - joints[a]) / np.linalg.norm(joints[b] - joints[a])
        rel = tube - joints[a]
        radial = rel - np.outer(rel @ d, d)
        assert np.allclose(np.linalg.norm(radial, axis=1), BONE_RADIUS_MM)                     # mm
        assert np.allclose(sorted(set(np.round(rel @ d, 6))), [0.0, np.linalg.norm(joints[b] - joints[a])])
    # A bone pointing along -z (the Rodrigues special case) still works.
    flipped = joints.copy()
    flipped[1] = flipped[0] + (0, 0, -30)
    v2, _ = sk.pose(flipped)
    assert np.isfinite(v2).all()


def test_open_viewer_without_a_display_draws_in_software(monkeypatch, hand_state):
    from app.viewer import open_viewer

    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    v = open_viewer(320, 180, faces=hand_state.faces)
    assert isinstance(v, SoftwareViewer)
    v.update(hand_state)
    assert v.capture().shape == (180, 320, 3)
