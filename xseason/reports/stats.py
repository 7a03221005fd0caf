"""Statistics of a built dataset per condition pair and split (`xseason stats`)."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pyarrow.dataset as pds

from xseason.store import SPLITS, CorrespondenceStore, open_dataset

QUANTILES = (5, 25, 50, 75, 95)


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


__all__ = ["QUANTILES", "condition_pair_stats", "format_stats"]
