"""`correspondences.pair_conditions: all` (issue 18): pairs between any two conditions, e.g. dusk vs
night, not only with the reference; each two conditions once, with the per-image cap per pair of them."""

from __future__ import annotations

from pathlib import Path

import pytest

from xseason.pipeline.build import load_build_config, run_build
from xseason.store import open_dataset

SETTINGS = [
    "matching.num_threads=1",
    "reconstruction.num_threads=1",
    "correspondences.split_fractions=[1.0, 0.0, 0.0]",  # every pair kept: this is about pairing
    "correspondences.max_pairs_per_image=3",
]


@pytest.fixture(scope="module")
def three_conditions(tiny_scene: Path, tmp_path_factory) -> Path:
    lines = (tiny_scene / "manifest.csv").read_text().splitlines(keepends=True)
    path = tmp_path_factory.mktemp("three") / "m3.csv"
    path.write_text("".join(lines[:25]))  # three sequences of 8 images, three conditions
    return path


def test_all_pairs_every_two_conditions_once(three_conditions, tiny_scene, tmp_path):
    reference = tmp_path / "reference"
    run_build(
        three_conditions,
        reference,
        load_build_config(overrides=SETTINGS),
        image_root=tiny_scene,
        progress=False,
    )
    every = tmp_path / "all"
    cfg = load_build_config(overrides=[*SETTINGS, "correspondences.pair_conditions=all"])
    run_build(three_conditions, every, cfg, image_root=tiny_scene, progress=False)

    ref_pairs = open_dataset(reference).pair_conditions()
    all_pairs = open_dataset(every).pair_conditions()
    conditions = sorted(open_dataset(every).images["condition"].unique())
    assert len(conditions) == 3
    first = open_dataset(every).images["condition"].iloc[0]
    assert set(ref_pairs["reference"]) == {first}
    combos = {tuple(sorted(c)) for c in all_pairs[["reference", "condition"]].itertuples(index=False)}
    assert len(combos) == 3  # each two of the three conditions, the two without the reference too
    # the pairs with the reference condition are those of the reference-only build
    with_ref = all_pairs[all_pairs["reference"] == first]
    assert len(with_ref) == len(ref_pairs)
    # at most max_pairs_per_image pairs per target image and condition pair
    per_image = all_pairs.groupby(["reference", "image_id1"]).size()
    assert per_image.max() <= 3
