"""Issue 4's figures: accuracy and coverage of a correspondence dataset against a scene's ground truth.

Given a generated scene (`xseason synth`, with `truth.json`) and a dataset built from it, prints
per condition pair (reference -> other) and over all matches:

- matches, and the share of them whose exact sub-pixel ground truth is undefined (non-planar
  neighbourhood: corners, edges, leaves), for which the fallback GT was used (groundtruth.py);
- median / p95 error (px) over matches with an exact GT; a match whose point the GT says is
  not visible in the other image counts as an infinite error;
- wrong: share of ALL matches off by more than 5 px (fallback GT where needed; not visible or
  unknown = off), and its breakdown into failure classes (`classify_matches`, each wrong match
  one class, checked from both ends; figures are shares of all matches, summing to wrong):
  sky, behind, outside, hidden_moving, changed_vegetation, hidden_static, misplaced;
- coverage: of the (reference, other) image pairs whose true overlap (reference -> other,
  `true_overlap`) is >= 0.3, the share that has >= 100 matches (a condition without any
  match has its row too);
- surface classes: share of point matches (`densified` false or absent) and densified ones,
  and of each value of a `surface` column where the matches table has one, with the wrong
  share within each.

True overlaps are cached in `<out>/overlaps.parquet` (keyed by image names; only pairs whose
true camera centres are within `--max-distance` metres are computed, farther ones count as 0).
The table goes to `<out>/accuracy.csv`; `--json FILE` also writes the figures as JSON
(`bench_seeds.py` reads it).

    .venv/bin/python benchmarks/bench_accuracy.py --scene data/demo --dataset /tmp/lead/demo_ds
    .venv/bin/python benchmarks/bench_accuracy.py --scene data/demo --build posed --out /tmp/acc_posed
    .venv/bin/python benchmarks/bench_accuracy.py --scene data/demo --build hidden --out /tmp/acc_hidden \\
        --set correspondences.max_pairs_per_image=40
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
from tqdm import tqdm

from xseason.core.files import atomic_path, write_json
from xseason.synth.groundtruth import (
    FAILURE_CLASSES,
    MATCH_CLASSES,
    SceneTruth,
    classify_matches,
    exact_depth_known,
    load_truth,
    true_overlap,
)

MIN_OVERLAP, MIN_MATCHES, OFF_PX = 0.3, 100, 5.0
POSE_COLUMNS = ["qw", "qx", "qy", "qz", "tx", "ty", "tz"]
SURFACE_COLUMNS = ("densified", "surface")  # optional match columns the surface classes come from


def truth_names(images: pd.DataFrame, truth: SceneTruth) -> np.ndarray:
    """Scene image name of each dataset image (dataset names may carry a path prefix)."""
    return np.array([truth.resolve(name) for name in images["image"]], dtype=object)


def check_matches(truth: SceneTruth, a: str, b: str, p0: np.ndarray, p1: np.ndarray) -> dict[str, np.ndarray]:
    """Per match: error (fallback GT; inf when not visible), exact GT defined, class (MATCH_CLASSES code)."""
    err, code = classify_matches(truth, a, b, p0, p1, off_px=OFF_PX)
    return {"err": err, "exact": exact_depth_known(truth, a, p0), "code": code}


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
    files = sorted((Path(dataset) / "matches").glob("*.parquet"))
    stored = set(pq.read_schema(files[0]).names) if files else set()
    columns = ["pair_id", "x0", "y0", "x1", "y1", *(c for c in SURFACE_COLUMNS if c in stored)]
    return evaluate_tables(
        store.images, store.pairs, store.iter_matches(columns=columns), truth, out, max_distance
    )


def evaluate_tables(
    images: pd.DataFrame,
    pairs: pd.DataFrame,
    match_batches: Iterable,
    truth: SceneTruth,
    out: Path,
    max_distance: float = 20.0,
) -> pd.DataFrame:
    """Same from the tables: `match_batches` yields dicts/frames of match columns sorted by pair_id
    (x0, y0, x1, y1, pair_id; `densified` and `surface` where the dataset has them)."""
    names = truth_names(images, truth)
    cond = images["condition"].to_numpy(object)
    refs = list(dict.fromkeys(cond[pairs["image_id0"]])) or [cond[0]]
    i0, i1 = pairs["image_id0"].to_numpy(), pairs["image_id1"].to_numpy()
    rows = []
    for batch in tqdm(match_batches, desc="checking matches", leave=False):
        by_pair = np.asarray(batch["pair_id"])
        if len(by_pair) == 0:  # an empty dataset (no pair) yields one empty batch
            continue
        starts = np.flatnonzero(np.r_[True, by_pair[1:] != by_pair[:-1]])
        xy = {k: np.asarray(batch[k], np.float64) for k in ("x0", "y0", "x1", "y1")}
        densified = (
            np.asarray(batch["densified"], bool) if "densified" in batch else np.zeros(len(by_pair), bool)
        )
        surface = np.asarray(batch["surface"], object) if "surface" in batch else None
        for s, e in zip(starts, np.r_[starts[1:], len(by_pair)]):
            i, j = int(i0[by_pair[s]]), int(i1[by_pair[s]])
            p0 = np.stack([xy["x0"][s:e], xy["y0"][s:e]], 1)
            p1 = np.stack([xy["x1"][s:e], xy["y1"][s:e]], 1)
            res = check_matches(truth, names[i], names[j], p0, p1)
            rows.append(
                pd.DataFrame(
                    {
                        "reference": cond[i],
                        "condition": cond[j],
                        **res,
                        "densified": densified[s:e],
                        **({} if surface is None else {"surface": surface[s:e]}),
                    }
                )
            )
    checked = (
        pd.concat(rows, ignore_index=True)
        if rows
        else pd.DataFrame(columns=["reference", "condition", "err", "exact", "code", "densified"])
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
    keys = list(dict.fromkeys(zip(checked["reference"], checked["condition"])))
    keys += [k for k in dict.fromkeys(zip(cov["reference"], cov["condition"])) if k not in keys]
    cov = cov[cov.overlap >= MIN_OVERLAP]
    surfaces = sorted(checked["surface"].dropna().unique()) if "surface" in checked else []
    table = [
        _row(
            k,
            checked[(checked.reference == k[0]) & (checked.condition == k[1])],
            cov[(cov.reference == k[0]) & (cov.condition == k[1])],
            surfaces,
        )
        for k in keys
    ]
    table.append(_row(("all", "all"), checked, cov, surfaces))
    return pd.DataFrame(table)


def _share(mask: np.ndarray) -> float:
    """Percentage of True in `mask` (NaN when empty)."""
    return round(100 * float(mask.mean()), 3) if len(mask) else float("nan")


def _row(key: tuple[str, str], g: pd.DataFrame, cov: pd.DataFrame, surfaces: list) -> dict:
    err, exact = g["err"].to_numpy(float), g["exact"].to_numpy(bool)
    code = g["code"].to_numpy(np.int64)
    ex = err[exact]
    pct = lambda a, q: round(float(np.quantile(a, q)), 3) if len(a) else float("nan")
    densified = g["densified"].to_numpy(bool)
    kinds = {"point": ~densified, "densified": densified}
    if surfaces:
        kinds |= {f"surface={v}": (g["surface"] == v).to_numpy() for v in surfaces}
    return {
        "reference": key[0],
        "condition": key[1],
        "matches": len(g),
        "fallback_%": _share(~exact),
        "median_px": pct(ex, 0.5),
        "p95_px": pct(ex, 0.95),
        "wrong_%": _share(code > 0),
        **{f"{c}_%": _share(code == MATCH_CLASSES.index(c)) for c in FAILURE_CLASSES},
        "pairs_ov>=0.3": len(cov),
        "coverage_%": round(100 * float(cov["covered"].mean()), 1) if len(cov) else float("nan"),
        **{f"{k}_%": _share(m) for k, m in kinds.items()},
        **{f"{k}_wrong_%": _share(code[m] > 0) for k, m in kinds.items()},
    }


def summary_json(table: pd.DataFrame, scene: Path, dataset: Path) -> dict:
    """The table as JSON-ready figures: one record per condition pair, the 'all' row apart (NaN -> None)."""
    records = [
        {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in rec.items()}
        for rec in table.to_dict("records")
    ]
    return {
        "scene": str(scene),
        "dataset": str(dataset),
        "off_px": OFF_PX,
        "min_overlap": MIN_OVERLAP,
        "min_matches": MIN_MATCHES,
        "failure_classes": list(FAILURE_CLASSES),
        "all": records[-1],
        "condition_pairs": records[:-1],
    }


def print_table(table: pd.DataFrame) -> None:
    """The table in three parts: accuracy and coverage, failure classes, surface classes."""
    key = ["reference", "condition"]
    acc = ["matches", "fallback_%", "median_px", "p95_px", "wrong_%", "pairs_ov>=0.3", "coverage_%"]
    failures = ["wrong_%", *(f"{c}_%" for c in FAILURE_CLASSES)]
    surface = [c for c in table.columns if c not in key + acc + failures]
    with pd.option_context("display.width", 250, "display.max_columns", None):
        for title, cols in [
            ("accuracy and coverage", acc),
            ("failure classes, % of all matches", failures),
            ("surface classes: % of matches, and % wrong within each", surface),
        ]:
            print(f"\n{title}:")
            print(table[key + cols].to_string(index=False))


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
    ap.add_argument("--json", type=Path, metavar="OUT", help="also write the figures as JSON to OUT")
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
    if args.json:
        write_json(args.json, summary_json(table, args.scene, dataset))
    print(f"dataset: {dataset}" + (f"  (built in {t_build:.0f} s)" if args.build else ""))
    print_table(table)


if __name__ == "__main__":
    main()
