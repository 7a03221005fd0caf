"""File and folder names with spaces, non-ASCII characters and a leading '#' build like plain names.

COLMAP's matcher reads its pairs from a text file split at spaces, where '#' starts a comment
(xseason.sfm.features.match gives it aliases for such names). Three conditions of the `tiny` scene
(the first posed, the others unposed: triangulation, incremental mapping and registration one by one
all see the names) are built twice, with the original names and renamed, into folders whose names have
spaces too: the pairs, matches and 3D points are the same, the dataset and every model name the
images by the manifest's strings, and no alias is left in the database.
"""

from __future__ import annotations

import shutil
from pathlib import Path, PurePosixPath

import pandas as pd
import pycolmap
import pytest

from xseason.pipeline.build import load_build_config, run_build
from xseason.sfm.features import FeatureIndex, _alias_unlistable, match
from xseason.sfm.paths import BuildPaths
from xseason.sfm.registration import load_registered
from xseason.store import content_digests, open_dataset

POSES = ["qw", "qx", "qy", "qz", "tx", "ty", "tz"]
# Single-threaded SfM: the unposed sequences' models are then the same run to run.
SETTINGS = ["matching.num_threads=1", "reconstruction.num_threads=1"]


def _renamed(path: str) -> str:
    """images/00-summer-day/0003.png -> '# Images ü/00 summer-day Straße/0003 copy 日本.png' (masks alike)."""
    top, folder, file = PurePosixPath(path).parts
    stem, suffix = file.rsplit(".", 1)
    return f"# {top.capitalize()} ü/{folder.replace('-', ' ', 1)} Straße/{stem} copy 日本.{suffix}"


def _scene(tiny_scene: Path, root: Path, rename) -> Path:
    """Three conditions of `tiny_scene` (poses of the second and third hidden), files named by `rename`."""
    rows = pd.read_csv(tiny_scene / "manifest.csv", dtype=str, keep_default_na=False)
    rows = rows[rows["sequence"].isin(rows["sequence"].unique()[:3])].copy()
    rows.loc[rows["sequence"] != rows["sequence"].iloc[0], POSES] = ""
    for column in ("image", "mask", "label"):
        new = rows[column].map(rename)
        for old, name in zip(rows[column], new, strict=True):
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(tiny_scene / old, root / name)
        rows[column] = new
    rows.to_csv(root / "manifest.csv", index=False)
    return root / "manifest.csv"


def _build(manifest: Path, out: Path) -> None:
    run_build(manifest, out, load_build_config(overrides=SETTINGS), progress=False)


@pytest.fixture(scope="module")
def builds(tiny_scene: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """(plain dataset, renamed dataset, renamed manifest)."""
    tmp = tmp_path_factory.mktemp("names")
    plain = _scene(tiny_scene, tmp / "plain", str)
    renamed = _scene(tiny_scene, tmp / "scène à noms", _renamed)
    _build(plain, tmp / "plain-out")
    _build(renamed, tmp / "données out")
    return tmp / "plain-out", tmp / "données out", renamed


def test_renamed_files_give_the_same_pairs_and_matches(builds):
    plain, renamed, manifest = builds
    a, b = content_digests(plain), content_digests(renamed)
    assert {k: a[k] == b[k] for k in a} == {"images": False, "pairs": True, "points3d": True, "matches": True}
    store = open_dataset(renamed)
    images, pairs = store.images, store.pairs
    condition = pairs["image_id1"].map(images.set_index("image_id")["condition"])
    assert len(pairs) > 25 and condition.nunique() == 2  # both unposed conditions pair with the reference
    names = pd.read_csv(manifest, dtype=str, keep_default_na=False)["image"]
    assert sorted(images["image"]) == sorted(names) and images["registered"].all()
    assert all((manifest.parent / name).is_file() for name in images["image"])


def test_models_and_database_keep_the_manifest_names(builds):
    _, renamed, manifest = builds
    names = set(pd.read_csv(manifest, dtype=str, keep_default_na=False)["image"])
    paths = BuildPaths.beside(renamed)
    models = load_registered(paths)
    assert {im.name for m in models.values() for im in m.images.values()} == names
    db = pycolmap.Database.open(paths.database)
    try:
        assert {im.name for im in db.read_all_images()} == names
    finally:
        db.close()


def test_aliases_left_by_a_killed_matcher_are_restored(builds, tmp_path):
    """As if killed while COLMAP matched: the database holds aliases; the next `match` restores the names."""
    _, renamed, manifest = builds
    database = tmp_path / "database.db"
    shutil.copyfile(BuildPaths.beside(renamed).database, database)
    names = pd.read_csv(manifest, dtype=str, keep_default_na=False)["image"]
    index = FeatureIndex(database, {name: i + 1 for i, name in enumerate(names)}, {})
    db = pycolmap.Database.open(database)
    try:
        aliases = _alias_unlistable(db, index, set(names[:3]))
        assert len(aliases) == 3 and {im.name for im in db.read_all_images()} >= set(aliases.values())
    finally:
        db.close()
    cfg = load_build_config(overrides=SETTINGS).matching
    assert match(index, [(names[0], names[1])], tmp_path / "pairs.txt", cfg) == 0  # matched already
    db = pycolmap.Database.open(database)
    try:
        assert {im.name for im in db.read_all_images()} == set(names)
    finally:
        db.close()
