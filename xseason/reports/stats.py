"""Statistics of a built dataset per condition pair and split (`xseason stats`), and the class
histogram of its matches: every match counted at the class of the reference image's label at
(x0, y0) (images.parquet's optional `label` column), with a warning when one class holds
`DOMINANT_CLASS_SHARE` of the labelled matches or more (label agreement at such matches is
near-trivial: read kappa, `xseason eval`)."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pyarrow.dataset as pds

from xseason.learn.dataset import IGNORE, ArrayCache
from xseason.learn.evaluate import FullLabels
from xseason.store import SPLITS, CorrespondenceStore, open_dataset

QUANTILES = (5, 25, 50, 75, 95)
DOMINANT_CLASS_SHARE = 0.5  # one class holding this share of the labelled matches or more: a warning
KEYS = ["reference", "condition", "split"]


def condition_pair_stats(store: CorrespondenceStore | str | os.PathLike) -> pd.DataFrame:
    """One row per (reference condition, other condition, split), plus split 'all' per condition pair.

    Columns: reference, condition, split, pairs, matches, mpp_q5 ... mpp_q95 (matches per pair
    quantiles), densified_share (NaN when the dataset has no `densified` column).
    """
    store = store if isinstance(store, CorrespondenceStore) else open_dataset(store)
    pairs = store.pair_conditions().assign(densified=_densified_per_pair(store))
    both = pd.concat([pairs, pairs.assign(split="all")], ignore_index=True)
    grouped = both.groupby(["reference", "condition", "split"], sort=False)
    out = grouped.agg(
        pairs=("pair_id", "size"), matches=("num_matches", "sum"), densified=("densified", "sum")
    )
    for q in QUANTILES:
        out[f"mpp_q{q}"] = grouped["num_matches"].quantile(q / 100)
    has_densified = store.meta.get("storage", {}).get("densified_column", False)
    out["densified_share"] = (
        (out.pop("densified") / out["matches"].where(out["matches"] > 0)) if has_densified else np.nan
    )
    out = out.reset_index()
    order = {s: k for k, s in enumerate((*SPLITS, "all"))}
    return out.sort_values(
        ["reference", "condition", "split"],
        key=lambda c: c.map(order) if c.name == "split" else c,
        ignore_index=True,
    )


def _densified_per_pair(store: CorrespondenceStore) -> np.ndarray:
    """Number of densified matches of every pair (zeros when the column does not exist)."""
    out = np.zeros(len(store.pairs), dtype=np.int64)
    if not store.meta.get("storage", {}).get("densified_column", False):
        return out
    table = pds.dataset(store.root / "matches", format="parquet").to_table(columns=["pair_id", "densified"])
    sums = table.group_by("pair_id").aggregate([("densified", "sum")])
    pos = np.searchsorted(store.pairs["pair_id"].to_numpy(), sums.column("pair_id").to_numpy())
    out[pos] = sums.column("densified_sum").to_numpy()
    return out


def format_stats(stats: pd.DataFrame) -> str:
    """A readable fixed-width table of `condition_pair_stats`."""
    view = stats.copy()
    view["pair"] = view["reference"] + " -> " + view["condition"]
    cols = ["pair", "split", "pairs", "matches", *[f"mpp_q{q}" for q in QUANTILES], "densified_share"]
    view["densified_share"] = view["densified_share"].map(lambda v: "-" if pd.isna(v) else f"{100 * v:.1f}%")
    for q in QUANTILES:
        view[f"mpp_q{q}"] = view[f"mpp_q{q}"].map(lambda v: f"{v:.0f}")
    view = view[cols].rename(
        columns={"densified_share": "densified", **{f"mpp_q{q}": f"p{q}" for q in QUANTILES}}
    )
    return "matches per pair (p5 ... p95) by condition pair and split\n" + view.to_string(index=False)


def match_class_histogram(
    store: CorrespondenceStore | str | os.PathLike, cache_mb: float = 256.0
) -> pd.DataFrame:
    """Matches by the class of the reference image's label at (x0, y0): one row per (reference,
    condition, split) as in `condition_pair_stats` (split 'all' included), plus the totals over all
    condition pairs (reference = condition = 'all') per split.

    Columns: reference, condition, split, matches, labelled (matches on a labelled pixel), top_class,
    top_share (of the labelled matches; -1 and NaN when none), class_<c> (matches per class c, for
    every class that holds any). Empty when no image has a label. Labels are read once per chunk of
    matches that needs them and kept in an `ArrayCache` of `cache_mb` MiB.
    """
    store = store if isinstance(store, CorrespondenceStore) else open_dataset(store)
    labels = FullLabels(store, ArrayCache(int(cache_mb * 2**20)))
    if not labels.paths:
        return pd.DataFrame(columns=[*KEYS, "matches", "labelled", "top_class", "top_share"])
    pairs = store.pair_conditions()  # the rows of store.pairs, in its order
    pair_ids, image0 = pairs["pair_id"].to_numpy(), pairs["image_id0"].to_numpy()
    group = pairs.groupby(KEYS, sort=False).ngroup().to_numpy()
    sizes = store.images.set_index("image_id")[["height", "width"]]
    bins = IGNORE + 1  # class ids 0 .. 254, and IGNORE for an unlabelled pixel or image
    counts = np.zeros((int(group.max(initial=-1)) + 1, bins), np.int64)
    for chunk in store.iter_matches(batch_pairs=4096, columns=["x0", "y0"]):
        row = np.searchsorted(pair_ids, chunk["pair_id"])
        xy = np.stack([chunk["x0"], chunk["y0"]], 1).astype(np.float64)
        cls = np.full(len(row), IGNORE, np.int64)
        order = np.argsort(image0[row], kind="stable")
        ids, starts = np.unique(image0[row][order], return_index=True)
        for image_id, idx in zip(ids, np.split(order, starts[1:])):  # per reference image, not per match
            h, w = sizes.loc[image_id]
            cls[idx] = labels.at(image_id, xy[idx], (int(h), int(w)))
        counts += np.bincount(group[row] * bins + cls, minlength=counts.size).reshape(counts.shape)
    keys = pairs[KEYS].assign(group=group).drop_duplicates("group").sort_values("group")
    table = pd.concat([keys[KEYS].reset_index(drop=True), pd.DataFrame(counts)], axis=1)
    table = pd.concat([table, table.assign(split="all")]).groupby(KEYS, sort=False).sum().reset_index()
    totals = table.drop(columns=["reference", "condition"]).groupby("split", sort=False).sum().reset_index()
    table = pd.concat([table, totals.assign(reference="all", condition="all")], ignore_index=True)
    per_class = table[list(range(IGNORE))].to_numpy()
    labelled = per_class.sum(1)
    present = np.flatnonzero(per_class.sum(0))
    out = table[KEYS].assign(matches=labelled + table[IGNORE].to_numpy(), labelled=labelled)
    out["top_class"] = np.where(labelled > 0, per_class.argmax(1), -1)
    out["top_share"] = np.divide(
        per_class.max(1), labelled, out=np.full(len(out), np.nan), where=labelled > 0
    )
    out[[f"class_{c}" for c in present]] = per_class[:, present]
    split_order = {s: k for k, s in enumerate((*SPLITS, "all"))}
    out["total"] = (out["reference"] == "all") & (out["condition"] == "all")
    out = out.sort_values(
        ["total", *KEYS], key=lambda c: c.map(split_order) if c.name == "split" else c, ignore_index=True
    )
    return out.drop(columns="total")


def dominance_warnings(histogram: pd.DataFrame) -> list[str]:
    """One warning per condition pair (all splits) and for the total whose top class holds
    `DOMINANT_CLASS_SHARE` of the labelled matches or more."""
    rows = histogram[(histogram["split"] == "all") & (histogram["top_share"] >= DOMINANT_CLASS_SHARE)]
    return [
        f"WARNING: class {r.top_class} holds {100 * r.top_share:.6g} % of the {r.labelled:,} labelled "
        f"matches of {_pair_name(r.reference, r.condition)} (>= {100 * DOMINANT_CLASS_SHARE:.0f} %): label "
        "agreement at these matches is near-trivial; read the chance-corrected kappa of 'xseason eval'"
        for r in rows.itertuples(index=False)
    ]


def _pair_name(reference: str, condition: str) -> str:
    return "all condition pairs" if reference == condition == "all" else f"{reference} -> {condition}"


def _percent(share: float) -> str:
    """A share in percent: one decimal, or two significant digits below 0.1 % (never a bare 0.0 %)."""
    if pd.isna(share):
        return "-"
    return f"{100 * share:.1f}%" if share >= 1e-3 or share == 0 else f"{100 * share:.2g}%"


def format_match_classes(histogram: pd.DataFrame) -> str:
    """The class histogram of the matches (split 'all': per condition pair and in total, shares of the
    labelled matches), then its warnings."""
    title = "matches by the class of the reference image's label at (x0, y0)"
    if histogram.empty:
        return f"{title}: no image has a label (images.parquet 'label' column)"
    view = histogram[histogram["split"] == "all"]
    classes = [c for c in view.columns if c.startswith("class_")]
    shares = view[classes].div(view["labelled"].where(view["labelled"] > 0), axis=0)
    table = pd.DataFrame(
        {
            "pair": [_pair_name(r, c) for r, c in zip(view["reference"], view["condition"])],
            "matches": view["matches"],
            "labelled": view["labelled"],
            **{c.removeprefix("class_"): shares[c].map(_percent) for c in classes},
        }
    )
    lines = [f"{title} (share of the labelled matches per class)", table.to_string(index=False)]
    return "\n".join(lines + dominance_warnings(histogram))


__all__ = [
    "DOMINANT_CLASS_SHARE",
    "QUANTILES",
    "condition_pair_stats",
    "dominance_warnings",
    "format_match_classes",
    "format_stats",
    "match_class_histogram",
]
