"""Time of each SfM stage of a build on a generated scene, and its accuracy against the scene's ground truth.

    .venv/bin/python benchmarks/bench_build_stages.py [--scene DIR] [--preset demo] [--posed] [--work DIR]

Renders the preset into a temporary folder unless `--scene` names a folder written by
`xseason synth`; the build reads a copy of the scene's manifest with the true poses (`--posed`)
or without any (default), written into the work folder. Stages, each timed on its own:
features (SIFT), matching (verified pairs), sequence models (triangulation or incremental
mapping), registration (alignment, joint refinement, leftover images, per-sequence models).
Then, measured against the ground truth only:
- per condition, the share of images registered;
- poses hidden: median rotation and camera-centre errors after one similarity to the truth
  (`sfm.sim3.pose_errors`), the centre error also as a share of the scene's extent;
- poses given: triangulated points projected into each observing image vs the true depth at
  the keypoint (exact sub-pixel depth on planes), median |dz| as a share of the median depth.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from xseason.core.colmap import point_observations  # noqa: E402
from xseason.inputs.manifest import POSE_COLUMNS, read_manifest  # noqa: E402
from xseason.sfm.cachekeys import stage_keys  # noqa: E402
from xseason.sfm.config import SfMConfig  # noqa: E402
from xseason.sfm.features import extract, match  # noqa: E402
from xseason.sfm.pairs import candidate_pairs  # noqa: E402
from xseason.sfm.paths import BuildPaths  # noqa: E402
from xseason.sfm.reconstruction import SequenceModels, make_sequence_model, read_sequence_model  # noqa: E402
from xseason.sfm.registration import register  # noqa: E402
from xseason.sfm.sim3 import pose_errors  # noqa: E402
from xseason.synth.groundtruth import load_truth, sample_depth  # noqa: E402


def scene_manifest(scene: Path, posed: bool, out: Path) -> Path:
    """The scene's manifest with its poses set from the truth (`posed`) or removed, written to `out`."""
    rows = pd.read_csv(scene / "manifest.csv", dtype=str, keep_default_na=False)
    rows = rows.drop(columns=[c for c in POSE_COLUMNS if c in rows])
    if posed:
        truth = load_truth(scene)
        values = np.array([[*truth.images[n].pose.qvec, *truth.images[n].pose.t] for n in rows["image"]])
        rows = rows.assign(**{c: [f"{v:.17g}" for v in values[:, i]] for i, c in enumerate(POSE_COLUMNS)})
    out.parent.mkdir(parents=True, exist_ok=True)
    rows.to_csv(out, index=False)
    return out


def depth_error(models: dict, truth) -> tuple[float, int]:
    """Median |dz| of triangulated points over the median true depth, and the number of observations used."""
    err, depth = [], []
    for model in models.values():
        obs = point_observations(model)
        for k, name in enumerate(obs.image_names):
            rows = obs.obs_image == k
            z = sample_depth(truth.depth(name), truth.labels(name), obs.obs_xy[rows])
            err.append(np.abs(truth.images[name].pose.transform(obs.obs_xyz[rows])[:, 2] - z))
            depth.append(z)
    err, depth = np.concatenate(err), np.concatenate(depth)
    ok = np.isfinite(err)
    return float(np.median(err[ok]) / np.median(depth[ok])), int(ok.sum())


def run(scene: Path, posed: bool, work: Path) -> None:
    m = read_manifest(scene_manifest(scene, posed, work / "manifest.csv"), image_root=scene)
    ref = [m.images[0].condition]
    cfg, paths = SfMConfig(), BuildPaths(work)
    times: dict[str, float] = {}
    t0 = time.perf_counter()
    index = extract(m, paths, cfg)
    times["features"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    pairs = candidate_pairs(m, index, cfg.matching)
    n_pairs = match(index, pairs, paths.pair_list("sequences"), cfg.matching)
    times["matching"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    models = SequenceModels({}, {})
    key = stage_keys(m, cfg).reconstruction
    for seq, recs in m.sequences().items():
        models.status[seq] = make_sequence_model(m, index, seq, recs, paths, cfg.reconstruction, key)
        model = read_sequence_model(paths, seq, models.status[seq])
        if model is not None:
            models.models[seq] = model
    times["sequence models"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    reg = register(m, index, models, paths, cfg, ref)
    times["registration"] = time.perf_counter() - t0

    print(
        f"scene {scene} ({len(m.images)} images, {len(m.sequences())} sequences, "
        f"poses {'given' if posed else 'hidden'})"
    )
    print(f"  {n_pairs} image pairs matched")
    for stage, sec in times.items():
        print(f"  {stage:<16} {sec:8.1f} s")
    print(f"  {'total':<16} {sum(times.values()):8.1f} s")
    condition_of = {s: recs[0].condition for s, recs in m.sequences().items()}
    print("registered images per condition:")
    for cond, rate in reg.rate(condition_of).items():
        print(f"  {cond:<18} {100 * rate:6.1f} %")
    truth = load_truth(scene)
    registered = reg.models
    if posed:
        rel, n = depth_error(registered, truth)
        print(
            f"triangulated points vs true depth: median |dz| = {100 * rel:.3f} % of the median depth "
            f"({n} observations)"
        )
        return
    names, angle, centre = pose_errors(registered, {n: t.pose for n, t in truth.images.items()})
    extent = float(np.ptp(np.array([t.pose.center for t in truth.images.values()]), axis=0).max())
    print(f"pose accuracy after one similarity to the truth ({len(names)} images, extent {extent:.1f} m):")
    print(
        f"  median rotation error {np.median(angle):.3f} deg, median centre error {np.median(centre):.3f} m "
        f"= {100 * np.median(centre) / extent:.3f} % of the extent"
    )
    cond = np.array([truth.images[n].condition for n in names])
    for c in dict.fromkeys(cond):
        k = cond == c
        print(
            f"  {c:<18} rotation {np.median(angle[k]):.3f} deg, "
            f"centre {100 * np.median(centre[k]) / extent:.3f} %"
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--scene", type=Path, help="a scene folder written by `xseason synth` (default: render --preset)"
    )
    parser.add_argument("--preset", default="demo", choices=["tiny", "demo"])
    parser.add_argument("--posed", action="store_true", help="give the poses (default: hidden)")
    parser.add_argument(
        "--work", type=Path, help="build folder (default: temporary; an existing one is resumed)"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        scene = args.scene
        if scene is None:
            from xseason.synth import render_scene, synth_config

            scene = Path(tmp) / "scene"
            t0 = time.perf_counter()
            render_scene(scene, synth_config(args.preset), progress=False)
            print(f"rendered {args.preset} in {time.perf_counter() - t0:.1f} s")
        run(scene, args.posed, args.work or Path(tmp) / "build")


if __name__ == "__main__":
    main()
