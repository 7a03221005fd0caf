"""The image manifest (docs/FORMAT.md §2): validation messages, round trip, large files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from xseason.core.errors import ManifestError
from xseason.core.geometry import Pose, qvec_to_rotmat
from xseason.inputs.manifest import COLUMNS, read_manifest, write_manifest

HEADER = (
    "image,sequence,condition,timestamp,camera,camera_model,camera_params,qw,qx,qy,qz,tx,ty,tz,"
    "prior_x,prior_y,prior_z,mask"
)
GOOD = [
    "s1/a.png,s1,summer,0.5,,PINHOLE,500 501 320 240,1,0,0,0,0.1,0.2,0.3,1,2,3,",
    "s1/b.png,s1,summer,0.25,,PINHOLE,500 501 320 240,1,0,0,0,0.4,0.5,0.6,4,5,6,",
    "s2/a.png,s2,winter,,,,,,,,,,,,,,,",
]


def _write(tmp_path: Path, lines: list[str], header: str = HEADER, files: bool = True) -> Path:
    for line in lines:
        image = line.split(",")[0]
        if files and image and not image.startswith("/") and ".." not in image:
            (tmp_path / image).parent.mkdir(parents=True, exist_ok=True)
            (tmp_path / image).write_bytes(b"not decoded here")
    path = tmp_path / "manifest.csv"
    path.write_text("\n".join([header, *lines]) + "\n")
    return path


def _errors(path: Path, **kwargs) -> str:
    with pytest.raises(ManifestError) as info:
        read_manifest(path, **kwargs)
    return str(info.value)


def _row(line: int, **fields: str) -> str:
    """GOOD[line - 2] with some fields replaced (line = the CSV line number)."""
    values = dict(zip(HEADER.split(","), GOOD[line - 2].split(",")))
    values.update(fields)
    return ",".join(values[c] for c in HEADER.split(","))


def test_valid_manifest_is_typed(tmp_path):
    m = read_manifest(_write(tmp_path, GOOD))
    assert [r.row for r in m.images] == [2, 3, 4]
    a = m.images[0]
    assert a.path == (tmp_path / "s1/a.png").resolve() and a.camera == "s1"
    assert a.camera_model == "PINHOLE" and a.camera_params == (500.0, 501.0, 320.0, 240.0)
    np.testing.assert_array_equal(a.pose.t, [0.1, 0.2, 0.3])
    np.testing.assert_array_equal(a.prior, [1.0, 2.0, 3.0])
    assert m.images[2].pose is None and m.images[2].timestamp is None and m.images[2].camera_model is None
    # sequences in order of first appearance; images by timestamp
    assert [r.image for r in m.sequences()["s1"]] == ["s1/b.png", "s1/a.png"]
    assert list(m.sequences()) == ["s1", "s2"] and m.conditions() == ["summer", "winter"]
    assert m.is_posed("s1") and not m.is_posed("s2")
    assert len(m.checksum) == 64


# (name, lines replacing GOOD, line, column, text in message)
CASES = [
    ("empty required", [_row(2, condition=""), GOOD[1]], 2, "condition", "empty value"),
    ("absolute path", [_row(2, image="/etc/a.png"), GOOD[1]], 2, "image", "absolute path"),
    ("leaves root", [_row(2, image="s1/../../a.png"), GOOD[1]], 2, "image", "leaves the image root"),
    (
        "unknown model",
        [_row(2, camera_model="PINHOLEX"), GOOD[1]],
        2,
        "camera_model",
        "unknown camera model 'PINHOLEX'",
    ),
    (
        "param count",
        [_row(2, camera_model="SIMPLE_PINHOLE", camera="c1"), GOOD[1]],
        2,
        "camera_params",
        "takes 3 parameters, got 4",
    ),
    (
        "params not numbers",
        [_row(2, camera_params="500 501 cx 240"), GOOD[1]],
        2,
        "camera_params",
        "'cx' in '500 501 cx 240' is not a number",
    ),
    (
        "camera intrinsics differ",
        [GOOD[0], _row(3, camera_params="500 501 321 240")],
        3,
        "camera_params",
        "camera 's1' has other intrinsics on line 2",
    ),
    ("half pose", [_row(2, ty="", tz=""), GOOD[1]], 2, "ty", "pose is half-given: missing ty, tz"),
    ("quaternion norm", [_row(2, qw="1.1"), GOOD[1]], 2, "qw", "has norm 1.1, not 1"),
    ("non-finite", [_row(2, tx="nan"), GOOD[1]], 2, "tx", "'nan' is not a finite number"),
    ("half prior", [GOOD[0], _row(3, prior_z="")], 3, "prior_z", "prior is half-given: missing prior_z"),
    (
        "duplicate image",
        [GOOD[0], _row(3, image="s1/./a.png")],
        3,
        "image",
        "duplicate image 's1/./a.png' (first on line 2)",
    ),
    (
        "mixed conditions",
        [GOOD[0], _row(3, condition="winter")],
        3,
        "condition",
        "sequence 's1' mixes conditions",
    ),
    ("bad timestamp", [_row(2, timestamp="noon"), GOOD[1]], 2, "timestamp", "'noon' is not a number"),
    (
        "timestamps half-given",
        [GOOD[0], _row(3, timestamp="")],
        3,
        "timestamp",
        "missing, while other rows of sequence 's1' have timestamps",
    ),
    (
        "model without params",
        [_row(2, camera_params="", camera="c2"), GOOD[1]],
        2,
        "camera_params",
        "missing, while camera_model",
    ),
    (
        "negative focal",
        [_row(2, camera_params="-5 5 320 240", camera="c3"), GOOD[1]],
        2,
        "camera_params",
        "must be positive, got -5",
    ),
    (
        "zero fy",
        [_row(2, camera_params="500 0 320 240", camera="c4"), GOOD[1]],
        2,
        "camera_params",
        "focal lengths must be positive, got 0",
    ),
]


@pytest.mark.parametrize("name,lines,line,column,text", CASES, ids=[c[0] for c in CASES])
def test_each_error_names_file_row_and_column(tmp_path, name, lines, line, column, text):
    message = _errors(_write(tmp_path, lines))
    expected_prefix = f"{tmp_path / 'manifest.csv'}:{line}: column '{column}': "
    hits = [m for m in message.splitlines() if m.strip().startswith(expected_prefix)]
    assert hits, message
    assert any(text in h for h in hits), message


def test_missing_files_are_reported(tmp_path):
    path = _write(tmp_path, [GOOD[0], _row(3, mask="masks/b.png")])
    (tmp_path / "s1/a.png").unlink()
    message = _errors(path)
    assert f"{path}:2: column 'image': file not found" in message
    assert f"{path}:3: column 'mask': file not found" in message
    assert len(read_manifest(path, check_files=False).images) == 2


def test_missing_required_column_and_unknown_column(tmp_path):
    path = _write(tmp_path, ["s1/a.png,summer,0.5"], header="image,conditon,timestamp")
    message = _errors(path)
    assert f"{path}:1: column 'sequence': required column is missing" in message
    assert f"{path}:1: column 'conditon': unknown column (did you mean 'condition'?)" in message


def test_all_errors_are_collected_up_to_a_cap(tmp_path):
    lines = [f"s/{i}.png,s,c,{'bad' if i % 2 else i}" for i in range(100)]
    message = _errors(_write(tmp_path, lines, header="image,sequence,condition,timestamp"), check_files=False)
    assert "(50 error(s))" in message and "... and 30 more error(s)" in message
    assert message.count("is not a number") == 20


@pytest.mark.parametrize(
    "content,text",
    [
        (b"", "empty file"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "binary content"),
        (b"image,sequence\xff,condition\n", "not UTF-8"),
        (b'{"image": "a.png", "sequence": "s"}\n', "is this a manifest CSV?"),
        (b"image,sequence,condition\n", "no image rows"),
        (b"image,sequence,condition\na.png,s,c\nb.png,s\n", ":3: expected 3 comma-separated fields"),
    ],
    ids=["empty", "binary", "latin1", "json", "header-only", "short-row"],
)
def test_unreadable_files(tmp_path, content, text):
    path = tmp_path / "m.csv"
    path.write_bytes(content)
    assert text in _errors(path, check_files=False)


def test_not_a_file(tmp_path):
    assert "manifest not found" in _errors(tmp_path / "nope.csv")
    assert "not a file" in _errors(tmp_path)


def test_line_numbers_survive_blank_lines(tmp_path):
    path = tmp_path / "m.csv"
    path.write_text("image,sequence,condition,timestamp\n\na.png,s,c,1\n\n\nb.png,s,c,oops\n")
    assert f"{path}:6: column 'timestamp': 'oops' is not a number" in _errors(path, check_files=False)


def test_quaternion_within_tolerance_is_normalised(tmp_path):
    m = read_manifest(_write(tmp_path, [_row(2, qw="1.0005"), GOOD[1]]))
    np.testing.assert_allclose(m.images[0].pose.R, np.eye(3), atol=1e-15)


def test_image_root(tmp_path):
    images = tmp_path / "images"
    _write(images, GOOD)
    path = tmp_path / "lists" / "m.csv"
    path.parent.mkdir()
    path.write_text((images / "manifest.csv").read_text())
    m = read_manifest(path, image_root=images)
    assert m.root == images.resolve() and m.images[0].path == images.resolve() / "s1/a.png"


def test_round_trip_is_exact(tmp_path):
    rng = np.random.default_rng(3)
    rows = []
    for i in range(40):
        q = rng.normal(size=4)
        q /= np.linalg.norm(q)
        rows.append(
            {
                "image": f"seq{i % 3}/img {i}.png",
                "sequence": f"seq{i % 3}",
                "condition": ["day", "night", "snow"][i % 3],
                "weather": "snow, heavy" if i % 3 == 2 else None,
                "timestamp": float(rng.uniform(0, 1e9)),
                "camera_model": "OPENCV",
                "camera_params": [float(x) for x in rng.uniform(1, 900, size=8)] if i < 3 else None,
                "qw": q[0],
                "qx": q[1],
                "qy": q[2],
                "qz": q[3],
                "tx": rng.normal(),
                "ty": rng.normal() * 1e-7,
                "tz": 1e6 * rng.normal(),
                "prior": rng.normal(size=3),
            }
        )
    # one camera per sequence: share the first row's intrinsics within each sequence
    for i, row in enumerate(rows):
        row["camera_params"] = rows[i % 3]["camera_params"]
    for row in rows:
        (tmp_path / row["image"]).parent.mkdir(exist_ok=True)
        (tmp_path / row["image"]).touch()
    path = write_manifest(tmp_path / "m.csv", rows)
    header = path.read_text().splitlines()[0].split(",")
    assert header == [c for c in COLUMNS if c not in ("season", "daytime", "camera", "mask", "label")]
    m = read_manifest(path)
    by_image = {r.image: r for r in m.images}
    for row in rows:
        rec = by_image[row["image"]]
        assert rec.timestamp == row["timestamp"] and rec.weather == row["weather"]
        assert rec.camera_params == tuple(row["camera_params"])
        assert np.array_equal(rec.pose.t, [row["tx"], row["ty"], row["tz"]])
        assert np.array_equal(rec.pose.R, qvec_to_rotmat([row["qw"], row["qx"], row["qy"], row["qz"]]))
        assert np.array_equal(rec.prior, row["prior"])
    # the Pose convenience writes the same pose
    pose = Pose.from_qt([0.5, 0.5, -0.5, 0.5], [1.0, 2.0, 3.0])
    path2 = write_manifest(
        tmp_path / "m2.csv", [{"image": rows[0]["image"], "sequence": "s", "condition": "c", "pose": pose}]
    )
    got = read_manifest(path2).images[0].pose
    np.testing.assert_allclose(got.R, pose.R, atol=1e-15)
    assert np.array_equal(got.t, pose.t)


def test_write_rejects_unknown_columns(tmp_path):
    with pytest.raises(ManifestError, match="did you mean 'condition'"):
        write_manifest(tmp_path / "m.csv", [{"image": "a.png", "sequence": "s", "conditon": "c"}])
    assert not (tmp_path / "m.csv").exists()


def test_100k_rows_are_read_exactly_with_their_line_numbers(tmp_path):
    """A 100,000-row manifest (poses, priors, file checks) reads whole and exactly (bench_manifest.py)."""
    n = 100_000
    rng = np.random.default_rng(0)
    q = rng.normal(size=(n, 4))
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    t = rng.normal(size=(n, 3))
    seq = np.arange(n) % 10
    qs, ts = q.tolist(), t.tolist()
    lines = [HEADER.replace(",mask", "")]
    lines += [
        f"s{s}/{i:06d}.png,s{s},c{s % 3},{i * 0.1!r},,SIMPLE_RADIAL,500 320 240 0.01,"
        f"{qs[i][0]!r},{qs[i][1]!r},{qs[i][2]!r},{qs[i][3]!r},{ts[i][0]!r},{ts[i][1]!r},{ts[i][2]!r},1.0,2.0,3.0"
        for i, s in enumerate(seq.tolist())
    ]
    path = tmp_path / "big.csv"
    path.write_text("\n".join(lines) + "\n")
    for s in range(10):
        (tmp_path / f"s{s}").mkdir()
    for line in lines[1:]:
        (tmp_path / line.split(",", 1)[0]).touch()
    m = read_manifest(path)
    assert len(m.images) == n and [r.row for r in m.images] == list(range(2, n + 2))
    assert list(m.sequences()) == [f"s{s}" for s in range(10)] and m.conditions() == ["c0", "c1", "c2"]
    got_t = np.array([r.pose.t for r in m.images])
    got_R = np.array([r.pose.R for r in m.images[::997]])
    assert np.array_equal(got_t, t) and np.allclose(
        got_R, [qvec_to_rotmat(v) for v in q[::997]], atol=1e-15, rtol=0
    )
    assert all(r.timestamp == i * 0.1 and r.camera == f"s{i % 10}" for i, r in enumerate(m.images))
