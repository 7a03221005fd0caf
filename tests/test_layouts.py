"""Dataset layouts -> manifests: folder, 7-Scenes, kapture, COLMAP (exact pose conventions)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from xseason.cli import main
from xseason.core.errors import ManifestError
from xseason.core.geometry import Pose, qvec_to_rotmat, rotmat_to_qvec
from xseason.inputs.layouts import Condition, LayoutError, read_conditions_csv, write_layout_manifest
from xseason.inputs.layouts.folder import folder_rows
from xseason.inputs.layouts.kapture import kapture_rows, read_kapture
from xseason.inputs.layouts.sevenscenes import RGB_FROM_DEPTH, read_pose_file, sevenscenes_rows
from xseason.inputs.manifest import read_manifest

SEVEN = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "7scenes-stairs"
needs_7scenes = pytest.mark.skipif(
    not SEVEN.is_dir(), reason=f"sample data not found at {SEVEN} (../shared/data)"
)


def random_pose(rng: np.random.Generator) -> Pose:
    q = rng.normal(size=4)
    return Pose(qvec_to_rotmat(q / np.linalg.norm(q)), rng.normal(size=3) * 3)


def assert_same_pose(a: Pose, b: Pose, tol: float = 1e-9) -> None:
    assert np.abs(a.R - b.R).max() < tol and np.abs(a.t - b.t).max() < tol, (a, b)


def touch_image(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\x89PNG fixture")  # contents are not decoded by the manifest


# ---------------------------------------------------------------- folder
def test_folder_layout_order_timestamps_and_conditions(tmp_path):
    for name in ["img10.png", "img2.png", "img1.JPG", "notes.txt"]:
        touch_image(tmp_path / "run1" / name)
    for name in ["1500.5.jpg", "1499.jpg"]:
        touch_image(tmp_path / "run2" / name)
    (tmp_path / "cond.csv").write_text(
        "sequence,condition,season,daytime,weather\nrun1,summer-day,summer,day,\nrun2,winter-night,winter,night,snow\n"
    )
    layout = folder_rows(tmp_path, read_conditions_csv(tmp_path / "cond.csv"))
    images = [r["image"] for r in layout.rows]
    assert images == ["run1/img1.JPG", "run1/img2.png", "run1/img10.png", "run2/1499.jpg", "run2/1500.5.jpg"]
    assert [r["timestamp"] for r in layout.rows] == [0.0, 1.0, 2.0, 1499.0, 1500.5]
    m = write_layout_manifest(tmp_path / "manifest.csv", layout)
    assert m.conditions() == ["summer-day", "winter-night"]
    assert m.sequences()["run2"][0].weather == "snow" and m.sequences()["run1"][0].weather is None


def test_folder_layout_condition_errors(tmp_path):
    touch_image(tmp_path / "a" / "1.png")
    touch_image(tmp_path / "b" / "1.png")
    with pytest.raises(LayoutError, match="no condition for sequence"):
        folder_rows(tmp_path, {"a": Condition("day")})
    with pytest.raises(LayoutError, match="unknown sequence"):
        folder_rows(tmp_path, {"a": Condition("day"), "b": Condition("n"), "c": Condition("x")})
    (tmp_path / "bad.csv").write_text("sequence,cond\na,day\n")
    with pytest.raises(LayoutError, match=r"bad.csv:1: expected the header"):
        read_conditions_csv(tmp_path / "bad.csv")
    layout = folder_rows(tmp_path, {}, Condition("day"))
    with pytest.raises(LayoutError, match="must be written in"):
        write_layout_manifest(tmp_path / "a" / "m.csv", layout)  # would need '..' paths


def test_manifest_written_above_the_root_prefixes_paths(tmp_path):
    touch_image(tmp_path / "data" / "s" / "1.png")
    m = write_layout_manifest(tmp_path / "m.csv", folder_rows(tmp_path / "data", {"s": Condition("day")}))
    assert m.images[0].image == "data/s/1.png" and m.images[0].path.is_file()


# ---------------------------------------------------------------- 7-Scenes
def write_7scenes(root: Path, poses: dict[str, list[Pose]]) -> None:
    """A 7-Scenes folder whose pose files hold the given depth-camera poses (camera-to-world, %.17g)."""
    for seq, seq_poses in poses.items():
        for k, pose in enumerate(seq_poses):
            touch_image(root / seq / f"frame-{k:06d}.color.png")
            c2w = pose.inverse().matrix()
            text = "\n".join(" ".join(f"{v:.17g}" for v in row) for row in c2w)
            (root / seq / f"frame-{k:06d}.pose.txt").write_text(text + "\n")


def test_7scenes_synthetic_round_trip(tmp_path):
    rng = np.random.default_rng(1)
    poses = {"seq-01": [random_pose(rng) for _ in range(3)], "seq-02": [random_pose(rng) for _ in range(2)]}
    write_7scenes(tmp_path, poses)
    m = write_layout_manifest(tmp_path / "m.csv", sevenscenes_rows(tmp_path, {"seq-02": Condition("dark")}))
    got = m.sequences()
    assert m.conditions() == ["indoor", "dark"] and all(m.is_posed(s) for s in got)
    for seq, seq_poses in poses.items():
        for rec, depth_pose in zip(got[seq], seq_poses):
            assert_same_pose(rec.pose, RGB_FROM_DEPTH @ depth_pose)
            assert rec.camera == "kinect_rgb" and rec.camera_params == (525.0, 320.0, 240.0)


def test_7scenes_rgb_offset_direction():
    # The RGB camera centre in the depth camera frame is -R^T t: about 2.5 cm along +x (to the right),
    # where the Kinect v1 has its colour camera relative to its IR camera (cf. the openni/ROS frames).
    centre = RGB_FROM_DEPTH.center
    assert 0.02 < centre[0] < 0.03 and abs(centre[1]) < 0.005 and abs(centre[2]) < 0.005
    assert np.linalg.norm(RGB_FROM_DEPTH.R @ RGB_FROM_DEPTH.R.T - np.eye(3)) < 1e-15


def _rejects(read, file: Path, text: str, match: str) -> None:
    """`read()` raises a LayoutError matching `match` once `file` holds `text`."""
    file.write_text(text)
    with pytest.raises(LayoutError, match=match):
        read()


def test_7scenes_bad_pose_files(tmp_path):
    write_7scenes(tmp_path, {"seq-01": [Pose(np.eye(3), np.zeros(3))]})
    pose_file = tmp_path / "seq-01" / "frame-000000.pose.txt"
    read = lambda: sevenscenes_rows(tmp_path)
    _rejects(read, pose_file, "1 0 0 0\n0 1 0 0\n0 0 x 0\n0 0 0 1\n", f"{pose_file}:3: expected 4 numbers")
    _rejects(read, pose_file, "1 0 0 0\n0 1 0 0\n0 0 1\n0 0 0 1\n", f"{pose_file}:3: expected a 4x4 matrix")
    pose_file.unlink()
    with pytest.raises(LayoutError, match=f"{pose_file}: file not found"):
        sevenscenes_rows(tmp_path)
    with pytest.raises(LayoutError, match="no seq-XX folders"):
        sevenscenes_rows(tmp_path / "seq-01")


@needs_7scenes
def test_7scenes_sample_agrees_with_its_kapture_files():
    seven = sevenscenes_rows(SEVEN)
    kap = kapture_rows(SEVEN / "kapture", default=Condition("indoor"))
    assert [r["image"] for r in seven.rows] == [r["image"] for r in kap.rows] and len(seven.rows) == 12
    for a, b in zip(seven.rows, kap.rows):
        assert_same_pose(a["pose"], b["pose"])
        assert (a["camera_model"], tuple(a["camera_params"])) == (b["camera_model"], b["camera_params"])
    # our 7-Scenes depth poses are kapture's rig trajectories, to 1e-9
    data = read_kapture(SEVEN / "kapture")
    rig, rgb_from_rig = data.rig_of["kinect_rgb"]
    assert_same_pose(rgb_from_rig, RGB_FROM_DEPTH)
    for timestamp, (_, _, image) in enumerate(data.records):
        depth = read_pose_file(SEVEN / image.replace(".color.jpg", ".pose.txt"))
        assert_same_pose(depth, data.trajectories[(timestamp, rig)])
    # and the pose file's camera centre is kept exactly
    m = np.loadtxt(SEVEN / "seq-01" / "frame-000000.pose.txt")
    np.testing.assert_allclose(
        read_pose_file(SEVEN / "seq-01" / "frame-000000.pose.txt").center, m[:3, 3], atol=1e-12
    )


@needs_7scenes
def test_cli_writes_valid_7scenes_manifest(tmp_path, capsys):
    import shutil

    root = tmp_path / "stairs"
    shutil.copytree(SEVEN, root)
    assert main(["manifest", "7scenes", str(root), "--out", str(root / "manifest.csv")]) == 0
    m = read_manifest(root / "manifest.csv")
    assert len(m.images) == 12 and m.conditions() == ["indoor"] and all(m.is_posed(s) for s in m.sequences())
    rows = {r["image"]: r["pose"] for r in sevenscenes_rows(SEVEN).rows}
    for rec in m.images:  # through the CSV text: still exact to 1e-9
        assert_same_pose(rec.pose, rows[rec.image])
    assert main(["manifest", "folder", str(root), "--out", str(root / "f.csv")]) == 2
    assert "no condition for sequence(s) seq-01" in capsys.readouterr().err
    # the same folders as plain sequences: --pattern keeps the colour images (not the depth PNGs)
    assert (
        main(
            [
                "manifest",
                "folder",
                str(root),
                "--pattern",
                "*.color.jpg",
                "--condition",
                "seq-02=night",
                "--default-condition",
                "indoor",
                "--out",
                str(root / "f.csv"),
            ]
        )
        == 0
    )
    f = read_manifest(root / "f.csv")
    assert sorted(r.image for r in f.images) == sorted(rows) and not any(f.is_posed(s) for s in f.sequences())
    assert [f.sequences()[s][0].condition for s in ("seq-01", "seq-02")] == ["indoor", "night"]


# ---------------------------------------------------------------- kapture
def write_kapture(
    root: Path, rig_from_world: list[Pose], cam_from_rig: dict[str, Pose], extra_traj: str = ""
) -> None:
    s = root / "sensors"
    s.mkdir(parents=True)
    (s / "sensors.txt").write_text(
        "# kapture format: 1.1\n# sensor_id, name, sensor_type, [sensor_params]+\n"
        "cam_l, left, camera, OPENCV, 64, 48, 50, 51, 32, 24, 0.01, -0.002, 0.0001, 0.0002\n"
        "cam_r, right, camera, PINHOLE, 64, 48, 50, 50, 32.5, 24\n"
        "gps, , gnss, EPSG:4326\n"
    )

    def q_t(p: Pose) -> str:
        return ", ".join(repr(float(v)) for v in (*rotmat_to_qvec(p.R), *p.t))

    (s / "rigs.txt").write_text(
        "# rig_id, sensor_id, qw, qx, qy, qz, tx, ty, tz\n"
        + "".join(f"car, {cam}, {q_t(p)}\n" for cam, p in cam_from_rig.items())
    )
    (s / "trajectories.txt").write_text(
        "# timestamp, device_id, qw, qx, qy, qz, tx, ty, tz\n"
        + "".join(f"{100 + k}, car, {q_t(p)}\n" for k, p in enumerate(rig_from_world))
        + extra_traj
    )
    records = []
    for k in range(len(rig_from_world)):
        for cam in cam_from_rig:
            records.append(f"{100 + k}, {cam}, run_{k % 2}/{cam}/{k:04d}.png\n")
            touch_image(s / "records_data" / f"run_{k % 2}" / cam / f"{k:04d}.png")
    (s / "records_camera.txt").write_text("# timestamp, device_id, image_path\n" + "".join(records))


def test_kapture_rig_composition_is_exact(tmp_path):
    rng = np.random.default_rng(7)
    rig_poses = [random_pose(rng) for _ in range(4)]
    cam_from_rig = {"cam_l": random_pose(rng), "cam_r": random_pose(rng)}
    own = random_pose(rng)  # a direct trajectory entry for one camera wins over its rig
    extra = f"103, cam_r, {', '.join(repr(float(v)) for v in (*rotmat_to_qvec(own.R), *own.t))}\n"
    write_kapture(tmp_path / "kap", rig_poses, cam_from_rig, extra)
    layout = kapture_rows(tmp_path / "kap", {"run_0": Condition("summer"), "run_1": Condition("winter")})
    assert layout.image_root == tmp_path / "kap" / "sensors" / "records_data"
    m = write_layout_manifest(tmp_path / "kap" / "sensors" / "records_data" / "m.csv", layout)
    assert list(m.sequences()) == ["run_0", "run_1"] and m.conditions() == ["summer", "winter"]
    by_image = {r.image: r for r in m.images}
    for k, rig_pose in enumerate(rig_poses):
        for cam, offset in cam_from_rig.items():
            rec = by_image[f"run_{k % 2}/{cam}/{k:04d}.png"]
            expected = own if (k, cam) == (3, "cam_r") else offset @ rig_pose
            assert_same_pose(rec.pose, expected)
            # world points land where the composed transform says (a convention check, not only algebra)
            x_world = rng.normal(size=(5, 3))
            x_cam = (
                offset.transform(rig_pose.transform(x_world))
                if (k, cam) != (3, "cam_r")
                else own.transform(x_world)
            )
            np.testing.assert_allclose(rec.pose.transform(x_world), x_cam, atol=1e-9)
            assert rec.timestamp == 100 + k and rec.camera == cam
    assert by_image["run_0/cam_l/0000.png"].camera_params == (50, 51, 32, 24, 0.01, -0.002, 0.0001, 0.0002)
    assert by_image["run_0/cam_r/0000.png"].camera_model == "PINHOLE"


@pytest.mark.parametrize(
    "file,line,content,text",
    [
        ("sensors.txt", 2, "cam_l, l, camera, OPENCV, 64, 48, 50, 51\n", "OPENCV takes 8 parameters"),
        ("sensors.txt", 2, "cam_l, l, camera, KB4, 64, 48, 50\n", "unknown camera model 'KB4'"),
        ("rigs.txt", 2, "car, cam_l, 1, 0, 0, 0, 0, 0\n", "expected 'rig_id, sensor_id"),
        ("trajectories.txt", 2, "100, car, 2, 0, 0, 0, 0, 0, 0\n", "quaternion has norm 2"),
        ("trajectories.txt", 2, "1e2, car, 1, 0, 0, 0, 0, 0, 0\n", "timestamp '1e2' is not an integer"),
        ("trajectories.txt", 2, "100, car, 1, 0, 0, 0, 0, zero, 0\n", "expected qw, qx, qy, qz, tx, ty, tz"),
        ("records_camera.txt", 2, "100, gps, a.png\n", "sensor 'gps' is not a camera"),
    ],
)
def test_kapture_bad_lines_name_file_and_line(tmp_path, file, line, content, text):
    rng = np.random.default_rng(0)
    write_kapture(tmp_path, [random_pose(rng)], {"cam_l": random_pose(rng)})
    path = tmp_path / "sensors" / file
    path.write_text("# header\n" + content)
    with pytest.raises(LayoutError) as info:
        kapture_rows(tmp_path, default=Condition("c"))
    assert f"{path}:{line}: " in str(info.value) and text in str(info.value)


def test_kapture_missing_files(tmp_path):
    with pytest.raises(LayoutError, match="not a kapture dataset"):
        read_kapture(tmp_path)
    rng = np.random.default_rng(0)
    write_kapture(tmp_path, [random_pose(rng)], {"cam_l": random_pose(rng)})
    (tmp_path / "sensors" / "records_camera.txt").unlink()
    with pytest.raises(LayoutError, match="records_camera.txt: file not found"):
        read_kapture(tmp_path)


def test_kapture_missing_image_is_a_manifest_error(tmp_path):
    rng = np.random.default_rng(0)
    write_kapture(tmp_path, [random_pose(rng), random_pose(rng)], {"cam_l": random_pose(rng)})
    (tmp_path / "sensors" / "records_data" / "run_1" / "cam_l" / "0001.png").unlink()
    out = tmp_path / "sensors" / "records_data" / "m.csv"
    with pytest.raises(ManifestError, match=r"m.csv:3: column 'image': file not found"):
        write_layout_manifest(out, kapture_rows(tmp_path, default=Condition("c")))
    assert not out.exists()


# ---------------------------------------------------------- public benchmarks (fixtures in their formats)
def qc_line(name: str, pose: Pose) -> str:
    """`name qw qx qy qz cx cy cz`: rotation of world-to-camera, camera centre (CMU / NVM style)."""
    return " ".join([name, *(repr(float(v)) for v in (*rotmat_to_qvec(pose.R), *pose.center))])


CMU_INTRINSICS = (
    "# Camera ID, model, width, height, params\n"
    "c0 OPENCV 1024 768 868.993378 866.063001 525.942323 420.042529 -0.399431 0.188924 0.000153 0.000571\n"
    "c1 OPENCV 1024 768 873.382641 876.489513 529.324138 397.272397 -0.397066 0.181925 0.000176 -0.000579\n"
)


def write_cmu(root: Path, rng) -> dict[str, Pose]:
    """Slice 2: two reference images and two snowy queries (one with ground truth)."""
    truth = {}
    (root / "slice2" / "camera-poses").mkdir(parents=True)
    (root / "intrinsics.txt").write_text(CMU_INTRINSICS)
    db = ["img_00122_c0_1303398475046031us.jpg", "img_00123_c1_1303398475046031us.jpg"]
    queries = ["img_01000_c0_1292943600000000us.jpg", "img_01001_c1_1292943601000000us.jpg"]  # 21 Dec 2010
    for part, names in (("database", db), ("query", queries)):
        for name in names:
            touch_image(root / "slice2" / part / name)
            truth[name] = random_pose(rng)
    (root / "slice2" / "ground-truth-database-images-slice2.txt").write_text(
        "\n".join(qc_line(n, truth[n]) for n in db) + "\n"
    )
    (root / "slice2" / "camera-poses" / "slice2.txt").write_text(
        qc_line(queries[0], truth[queries[0]]) + "\n"
    )
    (root / "slice2" / "test-images-slice2.txt").write_text("\n".join(queries) + "\n")
    return truth


def test_cmu_poses_intrinsics_and_conditions(tmp_path):
    from xseason.inputs.layouts.cmu import cmu_rows

    truth = write_cmu(tmp_path, np.random.default_rng(11))
    m = write_layout_manifest(tmp_path / "m.csv", cmu_rows(tmp_path))
    assert list(m.sequences()) == ["slice2/reference", "slice2/2010-12-21"]
    assert m.conditions() == ["sunny-nofoliage", "lowsun-nofoliage-snow"]
    for rec in m.images:
        assert_same_pose(rec.pose, truth[Path(rec.image).name])
        # a world point projects as the benchmark's convention says: x_cam = R (X - C)
        X = np.array([[1.0, -2.0, 30.0]])
        pose = truth[Path(rec.image).name]
        np.testing.assert_allclose(rec.pose.transform(X), (X - pose.center) @ pose.R.T, atol=1e-9)
    c0 = m.images[0]
    assert (
        c0.camera == "c0"
        and c0.camera_model == "OPENCV"
        and c0.camera_params[2:4] == (525.942323, 420.042529)
    )
    assert c0.timestamp == 1303398475.046031 and m.sequences()["slice2/2010-12-21"][0].weather == "snow"
    assert len(m.images) == 3 and all(m.is_posed(s) for s in m.sequences())
    everything = cmu_rows(tmp_path, queries="all")
    assert len(everything.rows) == 4 and sum(r["pose"] is None for r in everything.rows) == 1


def test_cmu_errors(tmp_path):
    from xseason.inputs.layouts.cmu import cmu_rows

    write_cmu(tmp_path, np.random.default_rng(0))
    with pytest.raises(LayoutError, match=r"unknown slice\(s\) \[7\]; found slices \[2\]"):
        cmu_rows(tmp_path, slices=[7])
    gt = tmp_path / "slice2" / "camera-poses" / "slice2.txt"
    read = lambda: cmu_rows(tmp_path)
    _rejects(
        read,
        gt,
        "# comment\nimg_01000_c0_1292943600000000us.jpg 1 0 0 0 1 2\n",
        f"{gt}:2: expected 'name qw qx qy qz cx cy cz', got 7 fields",
    )
    _rejects(
        read, gt, "img_01000_c0_1292943600000000us.jpg 0.5 0 0 0 1 2 3\n", f"{gt}:1: quaternion has norm 0.5"
    )
    (tmp_path / "intrinsics.txt").unlink()
    with pytest.raises(LayoutError, match="intrinsics.txt: file not found"):
        cmu_rows(tmp_path)


def write_robotcar(root: Path, rng) -> dict[str, Pose]:
    truth = {}
    ref = ["overcast-reference/rear/1417176458999821.jpg", "overcast-reference/rear/1417176459999821.jpg"]
    night = ["night/rear/1418235223450115.jpg", "night/rear/1418235224450115.jpg"]
    for name in ref + night:
        touch_image(root / "images" / name)
        truth[name] = random_pose(rng)
    (root / "intrinsics").mkdir()
    (root / "intrinsics" / "rear_intrinsics.txt").write_text(
        "fx 400.000000\nfy 400.000000\ncx 508.222931\ncy 498.187378\n"
    )
    nvm = root / "3D-models" / "all-merged" / "all.nvm"
    nvm.parent.mkdir(parents=True)
    cams = [qc_line(n.replace(".jpg", ".png"), truth[n]).split(" ") for n in ref]
    nvm.write_text("NVM_V3\n\n2\n" + "".join(f"{c[0]} 400 {' '.join(c[1:])} 0 0\n" for c in cams) + "\n0\n")
    c2w = truth[night[0]].inverse().matrix()
    (root / "robotcar_v2_train.txt").write_text(
        night[0].replace(".jpg", ".png") + " " + " ".join(repr(float(v)) for v in c2w.ravel()) + "\n"
    )
    return truth


def test_robotcar_reference_nvm_and_training_poses(tmp_path):
    from xseason.inputs.layouts.robotcar import robotcar_rows

    truth = write_robotcar(tmp_path, np.random.default_rng(5))
    m = write_layout_manifest(tmp_path / "images" / "m.csv", robotcar_rows(tmp_path, cameras=["rear"]))
    assert m.conditions() == ["overcast-reference", "night"] and len(m.images) == 3
    for rec in m.images:
        assert_same_pose(rec.pose, truth[rec.image])
    night = m.sequences()["night"][0]
    assert night.daytime == "night" and night.timestamp == 1418235223.450115
    assert night.camera_model == "PINHOLE" and night.camera_params == (400.0, 400.0, 508.222931, 498.187378)
    rows = robotcar_rows(tmp_path, cameras=["rear"], queries="all", principal_point_offset=0.5).rows
    assert len(rows) == 4 and rows[-1]["pose"] is None and rows[0]["camera_params"][2] == 508.722931


def test_robotcar_errors(tmp_path):
    from xseason.inputs.layouts.robotcar import robotcar_rows

    write_robotcar(tmp_path, np.random.default_rng(5))
    with pytest.raises(LayoutError, match="missing condition folder"):
        robotcar_rows(tmp_path, conditions=["snow"], cameras=["rear"])
    train = tmp_path / "robotcar_v2_train.txt"
    train.write_text("night/rear/1418235223450115.png 1 0 0\n")
    with pytest.raises(LayoutError, match=f"{train}:1: expected 'name' and 12 or 16 matrix entries, got 3"):
        robotcar_rows(tmp_path, cameras=["rear"])
    nvm = tmp_path / "3D-models" / "all-merged" / "all.nvm"
    nvm.write_text("NVM_V3\n\n3\nx.png 400 1 0 0 0 0 0 0 0 0\n")
    with pytest.raises(LayoutError, match="ends before its 3 cameras"):
        robotcar_rows(tmp_path, cameras=["rear"])


def test_aachen_model_and_night_queries(tmp_path):
    from xseason.inputs.layouts.aachen import aachen_rows

    rng = np.random.default_rng(9)
    truth = {"db/1.jpg": random_pose(rng), "db/2.jpg": random_pose(rng)}
    model = tmp_path / "3D-models" / "aachen_v_1_1"
    model.mkdir(parents=True)
    (model / "cameras.txt").write_text(
        "1 SIMPLE_RADIAL 1600 1200 1500.5 800 600 0.01\n2 PINHOLE 1000 800 900 901 500.5 400\n"
    )
    (model / "images.txt").write_text(
        "".join(
            f"{k} {' '.join(repr(float(v)) for v in (*rotmat_to_qvec(p.R), *p.t))} {k} {n}\n\n"
            for k, (n, p) in enumerate(truth.items(), start=1)
        )
    )
    (model / "points3D.txt").write_text("")
    (tmp_path / "queries").mkdir()
    query = "query/night/nexus5x/IMG_1.jpg"
    (tmp_path / "queries" / "night_time_queries_with_intrinsics.txt").write_text(
        f"{query} SIMPLE_RADIAL 1600 1200 1469.2 800 600 -0.0353\n"
    )
    for name in [*truth, query]:
        touch_image(tmp_path / "images_upright" / name)
    m = write_layout_manifest(tmp_path / "m.csv", aachen_rows(tmp_path))
    assert m.conditions() == ["day", "night"] and m.is_posed("db") and not m.is_posed("query-night")
    by_image = {r.image: r for r in m.images}
    for name, pose in truth.items():
        assert_same_pose(by_image["images_upright/" + name].pose, pose, tol=1e-12)
    assert by_image["images_upright/db/2.jpg"].camera_params == (900.0, 901.0, 500.5, 400.0)
    q = by_image["images_upright/" + query]
    assert (
        q.camera_model == "SIMPLE_RADIAL"
        and q.camera_params == (1469.2, 800.0, 600.0, -0.0353)
        and q.pose is None
    )
    (tmp_path / "queries" / "night_time_queries_with_intrinsics.txt").write_text(
        f"{query} SIMPLE_RADIAL 1600 1200 1469.2\n"
    )
    with pytest.raises(LayoutError, match="night_time_queries_with_intrinsics.txt:1: expected 'name MODEL"):
        aachen_rows(tmp_path)


def write_fourseasons(root: Path, rng, recordings: list[str]) -> dict[tuple[str, int], Pose]:
    """cam0 world-to-camera truths per (recording, timestamp); GNSSPoses.txt holds the inverses (TUM)."""
    calib = root / "calibration"
    calib.mkdir(parents=True)
    pinhole = (
        "Pinhole 501.4757919305817 501.4757919305817 421.7953735163109 167.65799492501083 0\n"
        "800 400\ncrop\n800 400\n"
    )
    (calib / "undistorted_calib_0.txt").write_text(pinhole)
    (calib / "undistorted_calib_1.txt").write_text(pinhole)
    stereo = "0.9999 -0.0141 0.0003 -0.30\n0.0141 0.9999 0.0002 0.001\n-0.0003 -0.0002 1.0 0.002\n0 0 0 1\n"
    (calib / "undistorted_calib_stereo.txt").write_text(
        stereo.replace("0.9999", repr(float(np.sqrt(1 - 0.0141**2))))
    )
    truth = {}
    for rec in recordings:
        lines = ["# timestamp, tx, ty, tz, qx, qy, qz, qw, scale, fusion_quality, v3"]
        for k in range(3):
            ts = 1585071000000000000 + k * 100_000_000
            truth[(rec, ts)] = pose = random_pose(rng)
            c2w = pose.inverse()
            qw, qx, qy, qz = rotmat_to_qvec(c2w.R)
            lines.append(
                ", ".join([str(ts), *(repr(float(v)) for v in (*c2w.t, qx, qy, qz, qw)), "1.0", "1", "0"])
            )
            for cam in ("cam0", "cam1"):
                touch_image(root / rec / "undistorted_images" / cam / f"{ts}.png")
        touch_image(
            root / rec / "undistorted_images" / "cam0" / "1585071009999999999.png"
        )  # no pose: left out
        (root / rec / "GNSSPoses.txt").write_text("\n".join(lines) + "\n")
    return truth


def test_fourseasons_poses_stereo_and_principal_point(tmp_path):
    from xseason.inputs.layouts.fourseasons import fourseasons_rows, read_calibration, read_stereo

    recs = ["recording_2020-03-24_17-36-22", "recording_2020-12-22_11-54-24"]
    truth = write_fourseasons(tmp_path, np.random.default_rng(4), recs)
    stereo = read_stereo(tmp_path / "calibration" / "undistorted_calib_stereo.txt")
    m = write_layout_manifest(
        tmp_path / "m.csv", fourseasons_rows(tmp_path, conditions={recs[1]: Condition("winter-sunny")})
    )
    assert m.conditions() == ["spring", "winter-sunny"] and len(m.images) == 12
    for rec in m.images:
        seq, _, cam, name = rec.image.split("/")
        cam0 = truth[(seq, int(name[:-4]))]
        assert_same_pose(rec.pose, cam0 if cam == "cam0" else stereo @ cam0)
        assert rec.timestamp == int(name[:-4]) / 1e9
    # DSO puts pixel centres at integers: COLMAP's principal point is +0.5
    assert m.images[0].camera_params == (
        501.4757919305817,
        501.4757919305817,
        421.7953735163109 + 0.5,
        167.65799492501083 + 0.5,
    )
    rel = tmp_path / "rel.txt"
    rel.write_text("Pinhole 0.6 0.9 0.5 0.45 0\n800 400\n")
    assert read_calibration(rel) == (0.6 * 800, 0.9 * 400, 400.0, 180.0)
    with pytest.raises(LayoutError, match="unknown recording"):
        fourseasons_rows(tmp_path, recordings=["recording_2021-01-01"])
    gnss = tmp_path / recs[0] / "GNSSPoses.txt"
    gnss.write_text("# header\n1585071000000000000, 1, 2, 3, 0, 0, 0\n")
    with pytest.raises(
        LayoutError, match=f"{gnss}:2: expected 'timestamp tx ty tz qx qy qz qw', got 7 fields"
    ):
        fourseasons_rows(tmp_path)


def test_cli_subcommands_for_benchmarks(tmp_path, capsys):
    write_cmu(tmp_path / "cmu", np.random.default_rng(1))
    assert (
        main(
            [
                "manifest",
                "cmu",
                str(tmp_path / "cmu"),
                "--out",
                str(tmp_path / "cmu" / "m.csv"),
                "--condition",
                "2010-12-21=winter-snow",
            ]
        )
        == 0
    )
    m = read_manifest(tmp_path / "cmu" / "m.csv")
    assert m.conditions() == ["sunny-nofoliage", "winter-snow"]
    assert (
        main(
            [
                "manifest",
                "cmu",
                str(tmp_path / "cmu"),
                "--slice",
                "3",
                "--out",
                str(tmp_path / "cmu" / "x.csv"),
            ]
        )
        == 2
    )
    assert "unknown slice(s) [3]" in capsys.readouterr().err


# ---------------------------------------------------------------- pipelines/
REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("config", sorted((REPO / "configs").glob("pipeline_*.yaml")), ids=lambda p: p.name)
def test_pipeline_configs_are_valid_build_configs(config):
    from xseason.pipeline.build import load_build_config

    cfg = load_build_config(config)
    assert cfg.features.max_num_features >= 1024


def test_pipeline_script_writes_the_manifest(tmp_path):
    import subprocess
    import sys

    truth = write_cmu(tmp_path, np.random.default_rng(2))
    result = subprocess.run(
        [
            sys.executable,
            str(REPO / "pipelines" / "cmu_seasons.py"),
            str(tmp_path),
            "--out",
            str(tmp_path / "out"),
            "--manifest-only",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    m = read_manifest(tmp_path / "xseason_manifest.csv")
    assert len(m.images) == 3 and "slice2/2010-12-21: 1 images, lowsun-nofoliage-snow, posed" in result.stdout
    for rec in m.images:
        assert_same_pose(rec.pose, truth[Path(rec.image).name])
    bad = subprocess.run(
        [
            sys.executable,
            str(REPO / "pipelines" / "cmu_seasons.py"),
            str(tmp_path / "nope"),
            "--out",
            str(tmp_path / "o"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bad.returncode == 2 and "no slice<N> folders" in bad.stderr


def test_colmap_layout_reads_the_maupertuis_sample(shared_data):
    import pycolmap

    from xseason.inputs.layouts.colmap import colmap_rows

    sample = shared_data / "maupertuis"
    layout = colmap_rows(sample / "reconstruction", {}, default=Condition("summer-day"))
    assert layout.image_root == sample / "images"
    rows = layout.rows
    assert [r["image"] for r in rows] == ["00.jpg", "01.jpg", "02.jpg", "03.jpg"]
    assert {r["sequence"] for r in rows} == {"model"} and all("pose" in r for r in rows)
    # the poses are the model's own, byte for byte through the manifest's text
    model = pycolmap.Reconstruction(str(sample / "reconstruction"))
    by_name = {im.name: im for im in model.images.values()}
    for r in rows:
        world = by_name[r["image"]].cam_from_world()
        assert np.allclose(r["pose"].R, world.rotation.matrix(), atol=1e-12)
        assert np.allclose(r["pose"].t, world.translation, atol=1e-12)
        cam = model.cameras[by_name[r["image"]].camera_id]
        assert r["camera_model"] == cam.model.name and np.allclose(r["camera_params"], cam.params)
