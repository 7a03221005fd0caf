"""The reference paper's .mat files: reading their exact layout, import, export, round trip, bad files."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
from test_store import make_tables, write

from xseason.cli import main
from xseason.core.errors import DatasetFormatError
from xseason.store import open_dataset
from xseason.store.interop import ImportConfig, MatPair, import_mat, parse_mat_name, read_mat, write_mat


def paper_file(path, im_i="run1/a.jpg", im_j="run2/b.jpg", pts_i=None, pts_j=None, dist=None, drop=()):
    """A .mat written directly with h5py in the layout MATLAB v7.3 gives the paper's variables."""
    rng = np.random.default_rng(len(str(path)))
    pts_i = rng.uniform(0, 1000, (2, 30)) if pts_i is None else pts_i  # MATLAB 2 x N, row 0 = x
    pts_j = rng.uniform(0, 1000, pts_i.shape) if pts_j is None else pts_j
    dist = rng.exponential(0.3, (pts_i.shape[1], 1)) if dist is None else dist  # MATLAB N x 1
    with h5py.File(path, "w", userblock_size=512) as f:
        for name, text in (("im_i_path", im_i), ("im_j_path", im_j)):
            if name not in drop:
                ds = f.create_dataset(
                    name, data=np.array([ord(c) for c in text], np.uint16)[:, None]
                )  # 1 x L
                ds.attrs["MATLAB_class"] = np.bytes_("char")
                ds.attrs["MATLAB_int_decode"] = np.int32(2)
        for name, value in (("pt_i", pts_i), ("pt_j", pts_j), ("dist_from_center", dist)):
            if name not in drop:
                f.create_dataset(name, data=np.asarray(value, np.float64).T).attrs["MATLAB_class"] = (
                    np.bytes_("double")
                )
    return pts_i, pts_j, dist


def test_reads_the_paper_layout_in_our_orientation(tmp_path):
    pts_i, pts_j, dist = paper_file(tmp_path / "x.mat", im_i="overcast-reference/rear/1.jpg")
    pair = read_mat(tmp_path / "x.mat")
    assert pair.im_i_path == "overcast-reference/rear/1.jpg" and pair.im_j_path == "run2/b.jpg"
    assert (
        pair.pt_i.shape == (30, 2)
        and np.array_equal(pair.pt_i, pts_i.T)
        and np.array_equal(pair.pt_j, pts_j.T)
    )
    assert np.array_equal(pair.dist_from_center, dist.ravel())
    # what their loader does: swapaxes of the h5py arrays -> 2 x N with row 0 = x
    with h5py.File(tmp_path / "x.mat") as f:
        assert np.array_equal(np.swapaxes(f["pt_i"][()], 0, 1)[0], pair.pt_i[:, 0])
    assert np.allclose(read_mat(tmp_path / "x.mat", pixel_offset=-1).pt_j, pts_j.T - 1)


def test_written_files_are_matlab_v73_and_follow_the_layout(tmp_path):
    pair = MatPair(
        "ref/é.png",
        "other/b.png",
        np.array([[1.5, 2.25], [3.0, 4.0]]),
        np.array([[5.0, 6.0], [7.0, 8.0]]),
        np.array([0.1, 0.2]),
    )
    write_mat(tmp_path / "p.mat", pair)
    head = (tmp_path / "p.mat").read_bytes()[:128]
    assert head.startswith(b"MATLAB 7.3 MAT-file") and head[124:128] == b"\x00\x02IM"
    with h5py.File(tmp_path / "p.mat") as f:
        assert f.userblock_size == 512
        assert (
            f["pt_i"].shape == (2, 2)
            and f["dist_from_center"].shape == (1, 2)
            and f["im_i_path"].shape == (9, 1)
        )
        assert (
            f["pt_i"].attrs["MATLAB_class"] == b"double" and f["im_i_path"].attrs["MATLAB_class"] == b"char"
        )
        assert f["im_i_path"].attrs["MATLAB_int_decode"] == 2 and f["im_i_path"].dtype == np.uint16
        assert np.array_equal(f["pt_i"][()], pair.pt_i)  # h5py (N, 2) = MATLAB 2 x N
    back = read_mat(tmp_path / "p.mat")
    assert back.im_i_path == "ref/é.png" and np.array_equal(back.pt_j, pair.pt_j)
    write_mat(tmp_path / "empty.mat", MatPair("a", "b", np.zeros((0, 2)), np.zeros((0, 2)), np.zeros(0)))
    with h5py.File(tmp_path / "empty.mat") as f:
        assert f["pt_i"].attrs["MATLAB_empty"] == 1 and list(f["pt_i"][()]) == [2, 0]
    assert read_mat(tmp_path / "empty.mat").pt_i.shape == (0, 2)


def test_file_names_give_conditions_and_places():
    n = parse_mat_name("correspondence_run1_overcast-reference_run2_night-rain_000123.mat")
    assert (n.reference, n.condition, n.place) == ("overcast-reference", "night-rain", None)
    s = parse_mat_name("correspondence_slice22_00042.mat")
    assert (s.reference, s.condition, s.place) == (None, None, "slice22")


def test_import_folder(tmp_path):
    mats = tmp_path / "mats"
    mats.mkdir()
    truth = {}
    for k in range(12):
        cond = ("snow", "night")[k % 2]
        name = f"correspondence_run1_overcast-reference_run2_{cond}_{k:04d}.mat"
        truth[name] = paper_file(
            mats / name, im_i=f"overcast-reference/{k // 2:03d}.jpg", im_j=f"{cond}/{k:03d}.jpg"
        )
    out = import_mat(mats, tmp_path / "ds", tmp_path, ImportConfig(place_block=2, read_image_sizes=False))
    store = open_dataset(out)
    assert len(store.pairs) == 12 and len(store.images) == 6 + 12
    conditions = dict(zip(store.images["image"], store.images["condition"]))
    assert (
        conditions["overcast-reference/000.jpg"] == "overcast-reference"
        and conditions["night/001.jpg"] == "night"
    )
    for name, (pts_i, pts_j, dist) in truth.items():
        m = store.matches(int(name[-8:-4]))  # pair_id = the number ending the file name
        assert (
            np.abs(m["x0"] - pts_i[0]).max() <= 1 / 512 + 1e-4
            and np.abs(m["y1"] - pts_j[1]).max() <= 1 / 512 + 1e-4
        )
        assert np.allclose(m["weight"], np.exp(-dist.ravel()), rtol=2**-12)
        assert np.isnan(m["err0"]).all() and (m["point3d_id"] == -1).all()
    # a reference image (= a place block) never lands in two splits
    per_ref = store.pairs.groupby("image_id0")["split"].nunique()
    assert (per_ref == 1).all()


def test_slice_names_take_conditions_from_options(tmp_path):
    mats = tmp_path / "mats"
    mats.mkdir()
    for k in range(4):
        paper_file(
            mats / f"correspondence_slice{k % 2 + 2}_{k:03d}.mat", im_i=f"db/{k}.jpg", im_j=f"q/{k}.jpg"
        )
    with pytest.raises(
        DatasetFormatError, match=r"correspondence_slice2_000.mat: the file name does not name"
    ):
        import_mat(mats, tmp_path / "ds", tmp_path, ImportConfig(read_image_sizes=False))
    store = open_dataset(
        import_mat(
            mats,
            tmp_path / "ds",
            tmp_path,
            ImportConfig(reference_condition="ref", condition="autumn", read_image_sizes=False),
        )
    )
    assert set(store.images["sequence"]) == {"slice2/ref", "slice3/ref", "slice2/autumn", "slice3/autumn"}
    assert (
        store.pairs.groupby(store.pairs["pair_id"] % 2)["split"].nunique().max() == 1
    )  # one split per slice


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda p: paper_file(p, drop=("pt_j",)), "missing field(s) pt_j"),
        (lambda p: paper_file(p, dist=np.ones((29, 1))), "different lengths (30, 30, 29)"),
        (lambda p: paper_file(p, pts_i=np.ones((3, 30))), "field 'pt_i' has shape (30, 3)"),
        (lambda p: paper_file(p, dist=-np.ones((30, 1))), "negative values"),
        (
            lambda p: p.write_bytes(b"MATLAB 5.0 MAT-file, not HDF5" + bytes(200)),
            "not a MATLAB v7.3 (HDF5) file",
        ),
        (lambda p: (paper_file(p), p.write_bytes(p.read_bytes()[:1500])), "bad.mat"),
    ],
)
def test_bad_files_get_clear_errors_naming_the_file(tmp_path, make, message):
    make(tmp_path / "bad.mat")
    with pytest.raises(DatasetFormatError, match="bad.mat") as info:
        read_mat(tmp_path / "bad.mat")
    assert message in str(info.value)


def test_export_then_import_round_trip(tmp_path):
    images, pairs, matches = make_tables(n_pairs=9, mean=40)
    root = write(tmp_path, images, pairs, matches)
    assert main(["export-mat", str(root), "--out", str(tmp_path / "mats")]) == 0
    files = sorted((tmp_path / "mats").glob("*.mat"))
    assert len(files) == 9 and files[0].name.startswith("correspondence_run1_")
    assert (
        main(
            [
                "import-mat",
                str(tmp_path / "mats"),
                "--out",
                str(tmp_path / "back"),
                "--image-root",
                str(tmp_path),
                "--no-image-sizes",
            ]
        )
        == 0
    )
    a, b = open_dataset(root), open_dataset(tmp_path / "back")
    names_a = a.images.set_index("image_id")["image"]
    names_b = b.images.set_index("image_id")["image"]
    cond_b = b.images.set_index("image_id")["condition"]
    assert b.pairs["pair_id"].tolist() == a.pairs["pair_id"].tolist()  # ids kept through the file names
    for (_, pa_), (_, pb) in zip(a.pairs.iterrows(), b.pairs.iterrows()):
        assert (
            names_a[pa_.image_id0] == names_b[pb.image_id0]
            and names_a[pa_.image_id1] == names_b[pb.image_id1]
        )
        assert cond_b[pb.image_id1] == a.images.set_index("image_id").at[pa_.image_id1, "condition"]
        ma, mb = a.matches(pa_.pair_id), b.matches(pb.pair_id)
        for c in ("x0", "y0", "x1", "y1", "weight"):  # float32 -> float64 file -> float32: bit for bit
            assert mb[c].dtype == np.float32 and np.array_equal(ma[c], mb[c]), c
        assert np.array_equal(mb["dist3d"], (-np.log(ma["weight"].astype(np.float64))).astype(np.float32))
    assert (
        main(["import-mat", str(tmp_path / "nothing"), "--out", str(tmp_path / "x"), "--image-root", "."])
        == 2
    )
