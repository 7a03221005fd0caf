"""Issue 15, item 4: the real samples of ../shared/data built end to end (skipped when absent).

- robotcar-daynight (5 day + 3 night street photographs, no poses): not buildable with SIFT; the
  build must stop with the real causes, per sequence and per image, not a downstream symptom.
- maupertuis (4 photographs with their COLMAP model): poses and intrinsics from the model, split
  into two conditions; cross-condition matches from features matched along the known epipolar lines
  and triangulated together, checked against the model's own (independent) tracks; and the build
  from the sample's own kapture keypoints and matches (the feature back-end of issue 18).
(7-Scenes and Aachen are built or read in test_reconstruction.py, test_pipelines.py, test_layouts.py.)
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pycolmap
from scipy.spatial import cKDTree

from xseason.cli import main
from xseason.core.colmap import from_colmap_pixels
from xseason.inputs.layouts import Condition, LayoutRows, write_layout_manifest
from xseason.inputs.layouts.colmap import colmap_rows
from xseason.sfm.paths import BuildPaths
from xseason.store import open_dataset

SERIAL = ["--set", "matching.num_threads=1", "--set", "reconstruction.num_threads=1"]


def test_robotcar_day_night_fails_with_its_real_causes(shared_data, tmp_path, capsys):
    images = tmp_path / "robotcar"
    for part, pattern in (("day", "db*.jpg"), ("night", "query*.jpg")):
        (images / part).mkdir(parents=True)
        for path in sorted((shared_data / "robotcar-daynight").glob(pattern)):
            shutil.copy(path, images / part / path.name)
    manifest = images / "manifest.csv"
    assert (
        main(
            [
                "manifest",
                "folder",
                str(images),
                "--condition",
                "day=summer-day",
                "--condition",
                "night=night",
                "--out",
                str(manifest),
            ]
        )
        == 0
    )
    capsys.readouterr()
    code = main(["build", str(manifest), "--out", str(tmp_path / "ds"), "--quiet", *SERIAL])
    err = capsys.readouterr().err
    assert code == 2 and not (tmp_path / "ds").exists()
    # the causes, by sequence, with the settings to try -- not "no 3D points"
    assert "condition 'summer-day' lost all its 5 images" in err
    assert "incremental mapping found only models of [2, 2] images (< min_model_size 3)" in err
    assert "condition 'night' lost all its 3 images" in err
    assert "incremental mapping found no initial pair / model" in err
    assert "no 3D points" not in err
    # and per image, in the work folder's registration record
    reg = json.loads(BuildPaths.beside(tmp_path / "ds").registration.read_text())
    assert len(reg["images"]) == 8 and not any(v["registered"] for v in reg["images"].values())
    night = [v["reason"] for name, v in reg["images"].items() if name.startswith("night/")]
    assert night == ["sequence not aligned: no model: incremental mapping found no initial pair / model"] * 3


def _maupertuis_manifest(sample: Path, tmp_path: Path) -> Path:
    """The model's 4 images, 00/01 as summer-day (sequence a), 02/03 as autumn-overcast (sequence b); the
    manifest lies beside them, so that its image names are the model's and kapture's ("00.jpg")."""
    images = tmp_path / "images"
    shutil.copytree(sample / "images", images)
    layout = colmap_rows(sample / "reconstruction", {}, default=Condition("summer-day"), images=images)
    rows = []
    for row in layout.rows:
        second = row["image"] in ("02.jpg", "03.jpg")
        rows.append(
            row
            | {"sequence": "b" if second else "a", "condition": "autumn-overcast" if second else "summer-day"}
        )
    write_layout_manifest(images / "manifest.csv", LayoutRows(rows, images))
    return images / "manifest.csv"


def _model_tracks(model: pycolmap.Reconstruction, name: str) -> tuple[np.ndarray, np.ndarray]:
    """The model's observations in image `name`: (N, 2) pixels (our convention), (N,) point ids."""
    image = next(im for im in model.images.values() if im.name == name)
    seen = [p for p in image.points2D if p.has_point3D()]
    return from_colmap_pixels(np.array([p.xy for p in seen])), np.array([p.point3D_id for p in seen])


def test_maupertuis_cross_condition_matches_agree_with_the_models_tracks(shared_data, tmp_path, capsys):
    """Features matched along the known epipolar lines and triangulated together."""
    overrides = ["matching.epipolar_guided=true", "correspondences.trust_observed_tracks=true"]
    store = _build_maupertuis(shared_data / "maupertuis", tmp_path, overrides, capsys)
    errors = _errors_at_model_tracks(store, shared_data / "maupertuis")
    # measured: 4 pairs, 2,602 matches; 40 at a keypoint of the model's tracks, median 0.79 px,
    # 12.5 % > 5 px (2-view cross tracks along repeated windows)
    assert len(store.pairs) == 4 and store.pairs["num_matches"].sum() >= 2000
    assert len(errors) >= 20 and np.median(errors) <= 1.0 and np.mean(errors > 5) <= 0.2


def test_maupertuis_from_its_kapture_keypoints_and_matches(shared_data, tmp_path, capsys):
    """The sample's own kapture SIFT keypoints and pairwise matches as the feature back-end (defaults
    otherwise): its cross-condition matches verify under the model's poses and tie the conditions."""
    kapture = shared_data / "maupertuis" / "kapture" / "reconstruction"
    overrides = [
        f"features.kapture_keypoints={kapture / 'keypoints' / 'SIFT'}",
        f"matching.kapture_matches={kapture / 'matches' / 'SIFT'}",
    ]
    store = _build_maupertuis(shared_data / "maupertuis", tmp_path, overrides, capsys)
    errors = _errors_at_model_tracks(store, shared_data / "maupertuis")
    # measured: 4 pairs, 4,137 matches; 2,009 at a keypoint of the model's tracks, median 0.23 px, none
    # > 5 px (the model was made from these matches: agreement, not an independent accuracy)
    assert len(store.pairs) == 4 and store.pairs["num_matches"].sum() >= 3000
    assert len(errors) >= 1500 and np.median(errors) <= 0.5 and np.mean(errors > 5) <= 0.01


def _build_maupertuis(sample: Path, tmp_path: Path, overrides: list[str], capsys):
    """The 4 photographs as two conditions (`_maupertuis_manifest`), built with `overrides`; the store."""
    manifest = _maupertuis_manifest(sample, tmp_path)
    out = tmp_path / "ds"
    overrides = [*overrides, "correspondences.split_blocks=1"]  # 4 photographs: one place, no held-out split
    args = ["build", str(manifest), "--out", str(out), "--quiet", *SERIAL]
    assert main([*args, *[a for o in overrides for a in ("--set", o)]]) == 0
    capsys.readouterr()
    return open_dataset(out)


def _errors_at_model_tracks(store, sample: Path) -> np.ndarray:
    """Per match whose x0 is within 1 px of a keypoint of the sample model's tracks that also holds a
    keypoint of image 1: the distance of x1 to that keypoint (px); printed with the counts."""
    pairs = store.pairs
    names = store.images.set_index("image_id")["image"].str.split("/").str[-1]
    model = pycolmap.Reconstruction(sample / "reconstruction")
    errors = []
    for pair in pairs.itertuples():
        m = pd.DataFrame(store.matches(int(pair.pair_id)))
        xa, ida = _model_tracks(model, names[pair.image_id0])
        xb, idb = _model_tracks(model, names[pair.image_id1])
        at_b = dict(zip(idb.tolist(), range(len(idb))))
        dist, near = cKDTree(xa).query(m[["x0", "y0"]].to_numpy(), distance_upper_bound=1.0)
        for row in np.flatnonzero(np.isfinite(dist)):
            k = at_b.get(int(ida[near[row]]))
            if k is not None:
                errors.append(np.linalg.norm(m.loc[row, ["x1", "y1"]].to_numpy(float) - xb[k]))
    errors = np.array(errors)
    print(
        f"maupertuis: {pairs['num_matches'].sum()} matches in {len(pairs)} pairs; {len(errors)} at a "
        f"keypoint of the model's tracks: median {np.median(errors):.2f} px, {np.mean(errors > 5):.1%} > 5 px"
    )
    return errors
