"""End to end on a scene of the random family, drawn anew in every run: the posed build's matches
checked against the scene's exact ground truth (`classify_matches`, both directions).

The seed is printed and named in every failure message; ``XSEASON_SEED=N pytest ...`` replays it.
The scene is small (5 conditions x 10 images at 320 x 240), so the figures asserted are the
accuracy targets (share of wrong matches, median error) and a floor on the matches per condition;
coverage at full size is the benchmark's (benchmarks/bench_seeds.py).
"""

from __future__ import annotations

import os
import random

import numpy as np
import pytest

from xseason.core.config import load_config
from xseason.pipeline.build import BuildConfig, run_build
from xseason.store import open_dataset
from xseason.synth import render_scene, synth_config
from xseason.synth.groundtruth import MATCH_CLASSES, classify_matches, load_truth

SEED = int(os.environ.get("XSEASON_SEED") or random.SystemRandom().randrange(1, 1_000_000))
MAX_WRONG = 0.003  # share of matches off by > 5 px or not visible in either image
MAX_MEDIAN_PX = 0.3


@pytest.mark.xfail(
    reason="issue 14 is open: the visibility model does not meet the targets on every scene of the random "
    "family yet (benchmarks/README.md, bench_seeds); this test reports the figures of each run",
    strict=False,
)
def test_matches_of_a_random_scene_are_right(tmp_path):
    print(f"random scene seed {SEED} (replay: XSEASON_SEED={SEED})")
    scene = tmp_path / "scene"
    cfg = synth_config("random", overrides=["width=320", "height=240", "images_per_sequence=10"], seed=SEED)
    render_scene(scene, cfg, progress=False)
    build_cfg = load_config(BuildConfig, overrides=["matching.num_threads=1", "reconstruction.num_threads=1"])
    run_build(scene / "manifest.csv", tmp_path / "ds", build_cfg, progress=False, allow_partial=True)
    store = open_dataset(tmp_path / "ds")
    truth = load_truth(scene)
    names = np.array([truth.resolve(n) for n in store.images["image"]], dtype=object)
    pairs = store.pairs.set_index("pair_id")
    errors, codes = [], []
    for batch in store.iter_matches(columns=["pair_id", "x0", "y0", "x1", "y1"]):
        for pair_id in np.unique(batch["pair_id"]):
            k = batch["pair_id"] == pair_id
            a, b = names[pairs.at[pair_id, "image_id0"]], names[pairs.at[pair_id, "image_id1"]]
            p0 = np.stack([batch["x0"][k], batch["y0"][k]], 1).astype(np.float64)
            p1 = np.stack([batch["x1"][k], batch["y1"][k]], 1).astype(np.float64)
            err, code = classify_matches(truth, a, b, p0, p1)
            errors.append(err)
            codes.append(code)
    err, code = np.concatenate(errors or [np.zeros(0)]), np.concatenate(codes or [np.zeros(0, np.int64)])
    matches = store.pair_conditions().groupby("condition")["num_matches"].sum()
    classes = {MATCH_CLASSES[c]: int(n) for c, n in zip(*np.unique(code[code > 0], return_counts=True))}
    report = (
        f"seed {SEED}: {len(err)} matches, wrong {np.mean(code > 0):.3%} {classes}, "
        f"median {np.median(err) if len(err) else np.nan:.3f} px, per condition {matches.to_dict()}"
    )
    print(report)
    assert len(err) >= 300, report
    assert np.mean(code > 0) <= MAX_WRONG, report
    assert np.median(err) <= MAX_MEDIAN_PX, report
