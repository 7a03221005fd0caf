"""Tables of the store made from the matching stage's objects (docs/FORMAT.md §3)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from xseason.matching.views import ImageView


def images_table(
    views: Sequence[ImageView],
    split: Sequence[str | None] | None = None,
    confidence: Sequence[float | None] | None = None,
) -> pd.DataFrame:
    """The images table of the store, image_id = position in `views`; with `split` (one per view:
    train / val / test, None = in no split), the optional `split` column; with `confidence` (one per
    view, None = unknown), the optional `registration_confidence` column."""
    poses = [v.pose for v in views]
    q = np.array([p.qvec if p is not None else [np.nan] * 4 for p in poses]).reshape(-1, 4)
    tv = np.array([p.t if p is not None else [np.nan] * 3 for p in poses]).reshape(-1, 3)
    df = pd.DataFrame(
        {
            "image_id": np.arange(len(views), dtype=np.int32),
            "image": [v.name for v in views],
            "sequence": [v.sequence for v in views],
            "condition": [v.condition for v in views],
            "season": [v.season for v in views],
            "daytime": [v.daytime for v in views],
            "weather": [v.weather for v in views],
            "camera_model": [v.camera.model for v in views],
            "width": np.array([v.camera.width for v in views], np.int32),
            "height": np.array([v.camera.height for v in views], np.int32),
            "params": [list(map(float, v.camera.params)) for v in views],
            "registered": np.array([p is not None for p in poses], bool),
        }
    )
    for k, name in enumerate(("qw", "qx", "qy", "qz")):
        df[name] = q[:, k]
    for k, name in enumerate(("tx", "ty", "tz")):
        df[name] = tv[:, k]
    if split is not None:
        df["split"] = pd.Series(list(split), dtype=object)
    if confidence is not None:
        df["registration_confidence"] = np.array([np.nan if c is None else c for c in confidence], np.float32)
    return df


__all__ = ["images_table"]
