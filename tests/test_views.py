"""Scene views and the point table from registered pycolmap models."""

from __future__ import annotations

import cv2
import numpy as np
import pycolmap
import pytest

from xseason.core.geometry import Camera, Pose
from xseason.inputs.manifest import read_manifest
from xseason.matching.association import AssociationError, decode_point_id, point_table_from_reconstructions
from xseason.matching.views import views_from_manifest

CAMERA = Camera("PINHOLE", 64, 48, (50.0, 51.0, 32.0, 24.0))
XYZ = np.array([[0.0, 0.0, 5.0], [1.0, 0.5, 6.0], [-1.0, -0.5, 4.0]])
POSES = {"s1/a.png": Pose(np.eye(3), np.zeros(3)), "s1/e.png": Pose(np.eye(3), np.array([-0.5, 0.0, 0.0]))}


def _model() -> pycolmap.Reconstruction:
    """Sequence s1's model: images a and e (plus one the manifest does not list), 3 points seen by a and e."""
    rec = pycolmap.Reconstruction()
    cam = CAMERA.to_pycolmap()
    cam.camera_id = 1
    rec.add_camera_with_trivial_rig(cam)
    extra = {"s1/not-listed.png": Pose(np.eye(3), np.array([0.5, 0.0, 0.0]))}
    for image_id, (name, pose) in enumerate({**POSES, **extra}.items(), start=1):
        uv = CAMERA.project(pose.transform(XYZ))
        keypoints = np.concatenate([[[3.0, 4.0]], uv[::-1]])  # keypoint 0 sees no point; then points 2, 1, 0
        image = pycolmap.Image(name=name, keypoints=keypoints + 0.5, camera_id=1, image_id=image_id)
        rec.add_image_with_trivial_frame(image, pycolmap.Rigid3d(np.c_[pose.R, pose.t]))
    for p in range(len(XYZ)):
        track = pycolmap.Track()
        track.add_elements([pycolmap.TrackElement(image_id, 3 - p) for image_id in (1, 2, 3)])
        rec.add_point3D(XYZ[p], track, np.array([90, 90, 90], np.uint8))
    return rec


@pytest.fixture
def manifest(tmp_path):
    rows = [
        "s1/a.png,s1,summer,,",
        "s1/b.png,s1,summer,,",
        "s1/e.png,s1,summer,,",
        "s2/c.png,s2,winter,,",
        "s3/d.png,s3,night,SIMPLE_PINHOLE,40 10 8",
    ]
    for row in rows:
        (tmp_path / row.split(",")[0]).parent.mkdir(exist_ok=True)
        cv2.imwrite(str(tmp_path / row.split(",")[0]), np.zeros((16, 20, 3), np.uint8))
    path = tmp_path / "manifest.csv"
    path.write_text("\n".join(["image,sequence,condition,camera_model,camera_params", *rows]) + "\n")
    return read_manifest(path)


def test_views_take_the_registered_camera_and_pose_else_a_default(manifest):
    views = views_from_manifest(manifest, {"s1": _model()}, default_focal_factor=2.0)
    assert [v.name for v in views] == ["s1/a.png", "s1/b.png", "s1/e.png", "s2/c.png", "s3/d.png"]
    a, b, e, c, d = views
    assert a.camera == CAMERA and e.camera == CAMERA
    np.testing.assert_allclose(e.pose.t, [-0.5, 0.0, 0.0], atol=1e-12)
    assert b.pose is None and b.camera == CAMERA  # unregistered: its sequence's camera
    # a sequence without any registered image: the manifest's camera at the file's size, else the default
    assert c.pose is None and c.camera == Camera("SIMPLE_RADIAL", 20, 16, (40.0, 10.0, 8.0, 0.0))
    assert d.camera == Camera("SIMPLE_PINHOLE", 20, 16, (40.0, 10.0, 8.0))


def test_point_table_from_the_registered_models(manifest):
    models = {"s1": _model()}
    views = views_from_manifest(manifest, models)
    table = point_table_from_reconstructions(models, views)
    np.testing.assert_array_equal(table.xyz, XYZ)
    sequence, local = decode_point_id(table.point_id)
    assert sequence.tolist() == [0, 0, 0] and local.tolist() == [1, 2, 3]  # sorted by point3D id
    # views a (0) and e (2) observe the points 2, 1, 0 at their keypoints 1..3, in our pixel convention
    assert np.diff(table.image_ptr).tolist() == [3, 0, 3, 0, 0]
    assert table.obs_point.tolist() == [2, 1, 0, 2, 1, 0]
    for k, name in ((0, "s1/a.png"), (2, "s1/e.png")):
        lo, hi = table.image_ptr[k], table.image_ptr[k + 1]
        np.testing.assert_allclose(table.obs_xy[lo:hi], CAMERA.project(POSES[name].transform(XYZ))[::-1])
    assert table.track_length.tolist() == [2, 2, 2] and np.all(table.error < 1e-9)


def test_point_table_needs_observed_points(manifest):
    views = views_from_manifest(manifest, {})
    with pytest.raises(AssociationError, match="no 3D points"):
        point_table_from_reconstructions({"s1": pycolmap.Reconstruction()}, views)


def _joint_model() -> pycolmap.Reconstruction:
    """All sequences in one model: summer a, e and winter c; point 0 seen by a, e, c (a track across
    the conditions), point 1 by a and e, point 2 by e and c."""
    rec = pycolmap.Reconstruction()
    cam = CAMERA.to_pycolmap()
    cam.camera_id = 1
    rec.add_camera_with_trivial_rig(cam)
    poses = {**POSES, "s2/c.png": Pose(np.eye(3), np.array([0.3, 0.1, 0.0]))}
    for image_id, (name, pose) in enumerate(poses.items(), start=1):
        keypoints = CAMERA.project(pose.transform(XYZ)) + 0.5
        image = pycolmap.Image(name=name, keypoints=keypoints, camera_id=1, image_id=image_id)
        rec.add_image_with_trivial_frame(image, pycolmap.Rigid3d(np.c_[pose.R, pose.t]))
    for p, images in enumerate(((1, 2, 3), (1, 2), (2, 3))):
        track = pycolmap.Track()
        track.add_elements([pycolmap.TrackElement(image_id, p) for image_id in images])
        rec.add_point3D(XYZ[p], track, np.array([90, 90, 90], np.uint8))
    return rec


def test_a_joint_model_gives_each_condition_its_points_and_tracks_across_conditions(manifest):
    from xseason.matching.association import AssociationConfig, associate

    joint = _joint_model()
    views = views_from_manifest(manifest, {"s1": _model(), "s2": joint})  # c registered
    table = point_table_from_reconstructions({"s1": _model()}, views, joint=joint)
    # one copy per (point, condition observing it): point 0 and 2 in summer and winter, point 1 in summer
    summer, winter = table.condition_index("summer"), table.condition_index("winter")
    copies = list(zip(decode_point_id(table.point_id)[1].tolist(), table.point_condition.tolist()))
    assert sorted(copies) == [(1, summer), (1, winter), (2, summer), (3, summer), (3, winter)]
    assert len(set(table.point_id.tolist())) == 5  # each copy its own id (its sequence differs)
    # every copy holds all observations of its point, at the keypoints (our pixel convention)
    assert dict(zip(copies, table.track_length.tolist())) == {
        (1, summer): 3,
        (1, winter): 3,
        (2, summer): 2,
        (3, summer): 2,
        (3, winter): 2,
    }
    assert np.all(table.error < 1e-9)
    # image c (winter) observes point 0's summer copy: the track is its own association at distance 0
    assoc = associate(table, "summer", AssociationConfig(radius_max=0.0))
    p0_summer = np.flatnonzero((decode_point_id(table.point_id)[1] == 1) & (table.point_condition == summer))[
        0
    ]
    at = np.flatnonzero(assoc.ref_points == p0_summer)[0]
    assert assoc.partner["winter"][at] == p0_summer and assoc.partner_dist["winter"][at] == 0.0
