"""Issue 4's figures: accuracy and coverage of a correspondence dataset against a scene's ground truth.

Given a generated scene (`xseason synth`, with `truth.json`) and a dataset built from it, prints
per condition pair (reference -> other):

- matches, and the share of them whose exact sub-pixel ground truth is undefined (non-planar
  neighbourhood: corners, edges, leaves), for which the fallback GT was used (groundtruth.py);
- median / p95 error (px) over matches with an exact GT; a match whose point the GT says is
  not visible in the other image counts as an infinite error;
- share of ALL matches off by more than 5 px (fallback GT where needed; not visible or
  unknown = off), share on moving objects (either side) and on vegetation that is not there
  in the other image (vegetation in image 0 that the GT says image 1 does not see);
- coverage: of the (reference, other) image pairs whose true overlap (reference -> other,
  `true_overlap`) is >= 0.3, the share that has >= 100 matches.

True overlaps are cached in `<out>/overlaps.parquet` (keyed by image names; only pairs whose
true camera centres are within `--max-distance` metres are computed, farther ones count as 0).

    .venv/bin/python benchmarks/bench_accuracy.py --scene data/demo --dataset /tmp/lead/demo_ds
    .venv/bin/python benchmarks/bench_accuracy.py --scene data/demo --build posed --out /tmp/acc_posed
    .venv/bin/python benchmarks/bench_accuracy.py --scene data/demo --build hidden --out /tmp/acc_hidden \\
        --set correspondences.max_pairs_per_image=40
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from xseason.core.files import atomic_path
from xseason.synth.groundtruth import SceneTruth, exact_depth_known, load_truth, true_matches, true_overlap
from xseason.synth.world import VEGETATION

MIN_OVERLAP, MIN_MATCHES, OFF_PX = 0.3, 100, 5.0
POSE_COLUMNS = ["qw", "qx", "qy", "qz", "tx", "ty", "tz"]


def truth_names(images: pd.DataFrame, truth: SceneTruth) -> np.ndarray:
    """Scene image name of each dataset image (dataset names may carry a path prefix)."""
    return np.array([truth.resolve(name) for name in images["image"]], dtype=object)


def check_matches(truth: SceneTruth, a: str, b: str, p0: np.ndarray, p1: np.ndarray) -> dict[str, np.ndarray]:
    """Per match: error (fallback GT; inf when not visible), exact GT defined, moving, changed vegetation."""
    pb, visible = true_matches(truth, a, b, p0, fallback=True)
    err = np.where(visible, np.linalg.norm(pb - p1, axis=1), np.inf)
    exact = exact_depth_known(truth, a, p0)
    lab_a, mov_a, mov_b = truth.labels(a), truth.moving(a), truth.moving(b)
    ia = _pixel_index(p0, lab_a.shape)
    ib = _pixel_index(p1, mov_b.shape)
    moving = mov_a[ia] | mov_b[ib]
    changed_veg = (lab_a[ia] == VEGETATION) & ~visible
    return {"err": err, "exact": exact, "moving": moving, "changed_veg": changed_veg}


def _pixel_index(px: np.ndarray, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    ij = np.rint(np.nan_to_num(px)).astype(np.int64)
    return np.clip(ij[:, 1], 0, shape[0] - 1), np.clip(ij[:, 0], 0, shape[1] - 1)


def true_overlaps(truth: SceneTruth, pairs: list[tuple[str, str]], cache: Path, max_distance: float) -> dict:
    """(a, b) -> true_overlap(a, b), from/into the parquet cache; 0 beyond `max_distance`."""
    done = {}
    if cache.is_file():
        df = pd.read_parquet(cache)
        done = dict(zip(zip(df["a"], df["b"]), df["overlap"]))
    todo = [p for p in pairs if p not in done]
    if todo:
        for a, b in tqdm(todo, desc="true overlaps", leave=False):
            near = np.linalg.norm(truth.images[a].pose.center - truth.images[b].pose.center) <= max_distance
            done[(a, b)] = true_overlap(truth, a, b) if near else 0.0
        df = pd.DataFrame(
            {"a": [k[0] for k in done], "b": [k[1] for k in done], "overlap": list(done.values())}
        )
        with atomic_path(cache) as tmp:
            df.to_parquet(tmp)
    return done


def evaluate(dataset: Path, truth: SceneTruth, out: Path, max_distance: float = 20.0) -> pd.DataFrame:
    """The per-condition-pair table of the module doc (plus an 'all' row) for a dataset on disk."""
    from xseason.store import open_dataset

    store = open_dataset(dataset)
    return evaluate_tables(store.images, store.pairs, store.iter_matches(), truth, out, max_distance)


def evaluate_tables(
    images: pd.DataFrame,
    pairs: pd.DataFrame,
    match_batches,
    truth: SceneTruth,
    out: Path,
    max_distance: float = 20.0,
) -> pd.DataFrame:
    """Same from the tables: `match_batches` yields dicts/frames of match columns sorted by pair_id."""
    names = truth_names(images, truth)
    cond = images["condition"].to_numpy(object)
    refs = list(dict.fromkeys(cond[pairs["image_id0"]])) or [cond[0]]
    i0, i1 = pairs["image_id0"].to_numpy(), pairs["image_id1"].to_numpy()
    rows = []
    for batch in tqdm(match_batches, desc="checking matches", leave=False):
        by_pair = np.asarray(batch["pair_id"])
        starts = np.flatnonzero(np.r_[True, by_pair[1:] != by_pair[:-1]])
        xy = {k: np.asarray(batch[k], np.float64) for k in ("x0", "y0", "x1", "y1")}
        for s, e in zip(starts, np.r_[starts[1:], len(by_pair)]):
            i, j = int(i0[by_pair[s]]), int(i1[by_pair[s]])
            p0 = np.stack([xy["x0"][s:e], xy["y0"][s:e]], 1)
            p1 = np.stack([xy["x1"][s:e], xy["y1"][s:e]], 1)
            res = check_matches(truth, names[i], names[j], p0, p1)
            rows.append(pd.DataFrame({"reference": cond[i], "condition": cond[j], **res}))
    checked = (
        pd.concat(rows, ignore_index=True)
        if rows
        else pd.DataFrame(columns=["reference", "condition", "err", "exact", "moving", "changed_veg"])
    )
    # Coverage: every (reference image, other image) pair of the scene.
    got = {(names[a], names[b]): n for a, b, n in zip(i0, i1, pairs["num_matches"])}
    cand = [
        (names[a], names[b])
        for a in np.flatnonzero(np.isin(cond, refs))
        for b in np.flatnonzero(~np.isin(cond, refs))
    ]
    ov = true_overlaps(truth, cand, out / "overlaps.parquet", max_distance)
    cov = pd.DataFrame(
        {
            "reference": [truth.images[a].condition for a, _ in cand],
            "condition": [truth.images[b].condition for _, b in cand],
            "overlap": [ov[p] for p in cand],
            "covered": [got.get(p, 0) >= MIN_MATCHES for p in cand],
        }
    )
    cov = cov[cov.overlap >= MIN_OVERLAP]
    table = [
        _row(k, g, cov[(cov.reference == k[0]) & (cov.condition == k[1])])
        for k, g in checked.groupby(["reference", "condition"], sort=False)
    ]
    table.append(_row(("all", "all"), checked, cov))
    return pd.DataFrame(table)


def _row(key: tuple[str, str], g: pd.DataFrame, cov: pd.DataFrame) -> dict:
    err, exact = g["err"].to_numpy(float), g["exact"].to_numpy(bool)
    ex = err[exact]
    pct = lambda a, q: round(float(np.quantile(a, q)), 3) if len(a) else float("nan")
    return {
        "reference": key[0],
        "condition": key[1],
        "matches": len(g),
        "fallback_%": round(100 * float((~exact).mean()), 1) if len(g) else float("nan"),
        "median_px": pct(ex, 0.5),
        "p95_px": pct(ex, 0.95),
        ">5px_%": round(100 * float((err > OFF_PX).mean()), 3) if len(g) else float("nan"),
        "moving_%": round(100 * float(g["moving"].mean()), 3) if len(g) else float("nan"),
        "changed_veg_%": round(100 * float(g["changed_veg"].mean()), 3) if len(g) else float("nan"),
        "pairs_ov>=0.3": len(cov),
        "coverage_%": round(100 * float(cov["covered"].mean()), 1) if len(cov) else float("nan"),
    }


def build(scene: Path, mode: str, out: Path, overrides: list[str]) -> Path:
    """Build a dataset of the scene into `out/dataset` with its poses given (posed) or hidden."""
    from xseason.inputs.manifest import read_manifest
    from xseason.pipeline.build import load_build_config, run_build

    manifest = scene / "manifest.csv"
    if mode == "hidden":
        df = pd.read_csv(manifest)
        hidden = out / "manifest_hidden.csv"
        out.mkdir(parents=True, exist_ok=True)
        with atomic_path(hidden) as tmp:
            df.drop(columns=[c for c in POSE_COLUMNS if c in df]).to_csv(tmp, index=False)
        manifest = hidden
    dataset = out / "dataset"
    run_build(read_manifest(manifest, image_root=scene), dataset, load_build_config(None, overrides))
    return dataset


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scene", type=Path, default=Path("data/demo"))
    ap.add_argument("--dataset", type=Path, help="an existing dataset built from the scene")
    ap.add_argument("--build", choices=["posed", "hidden"], help="build a dataset first (into --out/dataset)")
    ap.add_argument(
        "--out", type=Path, help="output folder (overlap cache, table); default: beside the dataset"
    )
    ap.add_argument(
        "--set", dest="overrides", action="append", default=[], help="build config override section.key=value"
    )
    ap.add_argument(
        "--max-distance", type=float, default=20.0, help="true overlap computed within this camera distance"
    )
    args = ap.parse_args()
    if (args.dataset is None) == (args.build is None):
        ap.error("give exactly one of --dataset and --build")
    out = args.out or args.dataset.parent / f"{args.dataset.name}.accuracy"
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    dataset = args.dataset or build(args.scene, args.build, out, args.overrides)
    t_build = time.perf_counter() - t0
    table = evaluate(dataset, load_truth(args.scene), out, args.max_distance)
    with atomic_path(out / "accuracy.csv") as tmp:
        table.to_csv(tmp, index=False)
    pd.set_option("display.width", 200)
    print(f"dataset: {dataset}" + (f"  (built in {t_build:.0f} s)" if args.build else ""))
    print(table.to_string(index=False))


if __name__ == "__main__":
    main()
