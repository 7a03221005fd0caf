"""`xseason report`: one static HTML page about a build, with its PNGs beside it.

Sections: build summary (dataset.json), registration per sequence (the build folder's
registration.json, and a top view of the registered clouds coloured by condition), statistics
per condition pair (``stats.condition_pair_stats``), the class histogram of the matches
(reference label at x0, ``stats.match_class_histogram``, with a warning when one class holds
most of them), histograms (matches per pair, dist3d, weight, reprojection errors), optional
ground-truth pixel errors (synthetic scene), and example pairs per condition pair
(``show.draw_pair``). The folder is written atomically (replacing only an empty folder or an
earlier report, `is_report`) and only links to files inside it, so it can be moved or archived
as is.
"""

from __future__ import annotations

import html
import json
import os
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from xseason.core.errors import XSeasonError
from xseason.core.files import atomic_path
from xseason.core.log import progress
from xseason.core.plots import draw_histogram, short_number
from xseason.reports.exports import condition_colors, load_models, model_points, sequence_conditions
from xseason.reports.show import draw_pair, match_errors
from xseason.reports.stats import QUANTILES, condition_pair_stats, dominance_warnings, match_class_histogram
from xseason.store import SPLITS, UNKNOWN_CONDITION, CorrespondenceStore, open_dataset

UNKNOWN_RGB = (
    200,
    200,
    200,
)  # a condition that the dataset does not know (e.g. a sequence only in the build)


class ReportError(XSeasonError):
    """The report cannot be made from the given folders."""


@dataclass
class ReportConfig:
    """Sizes and samples of the report's figures."""

    example_max_matches: int = 150  # matches drawn per example pair
    example_width: int = 1280  # example drawings wider than this are scaled down (pixels)
    histogram_bins: int = 40
    histogram_size: tuple[int, int] = (480, 280)  # width, height in pixels
    upper_quantile: float = (
        0.995  # x range of unbounded histograms ends at this quantile (the rest: last bin)
    )
    top_view_size: int = 640  # pixels, longer side
    top_view_max_points: int = 300_000
    truth_max_pairs: int = 30  # pairs per condition pair checked against the ground truth
    max_listed_images: int = 200  # unregistered images listed by name
    seed: int = 0

    def validate(self) -> None:
        if not 0.5 < self.upper_quantile <= 1:
            raise ValueError(f"upper_quantile must be in (0.5, 1], got {self.upper_quantile}")
        if self.histogram_bins < 2 or min(self.histogram_size) < 120:
            raise ValueError("need histogram_bins >= 2 and histogram_size at least 120 x 120")


# ----------------------------------------------------------------------------- drawing


def draw_top_view(
    points: dict[str, np.ndarray],
    centres: dict[str, np.ndarray],
    colors: dict[str, tuple[int, int, int]],
    size: int = 640,
    max_points: int = 300_000,
    seed: int = 0,
) -> np.ndarray:
    """Points and camera centres (per condition, world frame) seen from 'above', as a BGR image.

    'Above' is the direction of least spread of all points (PCA): the view plane holds the
    scene's two main directions. Points are drawn in random order so no condition hides another;
    sparse clouds get 3 x 3 pixel dots.
    """
    names = [c for c in points if len(points[c])]
    if not names:
        raise ReportError("the registered models hold no 3D point to draw")
    xyz = np.concatenate([points[c] for c in names])
    label = np.repeat(np.arange(len(names)), [len(points[c]) for c in names])
    keep = np.random.default_rng(seed).permutation(len(xyz))[:max_points]
    xyz, label = xyz[keep], label[keep]
    mean = np.median(xyz, axis=0)
    axes = np.linalg.svd(xyz - mean, full_matrices=False)[2][:2]
    cams = np.concatenate([c for c in centres.values() if len(c)] or [np.zeros((0, 3))])
    uv, cam_uv = (xyz - mean) @ axes.T, (cams - mean) @ axes.T
    lo = np.minimum(np.quantile(uv, 0.005, axis=0), cam_uv.min(0, initial=np.inf))
    hi = np.maximum(np.quantile(uv, 0.995, axis=0), cam_uv.max(0, initial=-np.inf))
    scale = (size - 20) / max(float((hi - lo).max()), 1e-9)
    w, h = (np.ceil((hi - lo) * scale).astype(int) + 20).tolist()
    canvas = np.full((h, w, 3), 255, np.uint8)

    def to_px(q: np.ndarray) -> np.ndarray:
        q = (q - lo) * scale + 10
        return np.stack([q[:, 0], h - 1 - q[:, 1]], 1).round().astype(int)

    px = to_px(uv)
    bgr = np.array([colors[c][::-1] for c in names], np.uint8)[label]
    r = 1 if len(px) < 50_000 else 0
    for dx in range(-r, r + 1):  # dot footprint: at most 3 x 3 offsets, each vectorised over all points
        for dy in range(-r, r + 1):
            x, y = px[:, 0] + dx, px[:, 1] + dy
            inside = (x >= 0) & (x < w) & (y >= 0) & (y < h)
            canvas[y[inside], x[inside]] = bgr[inside]
    for cond, cc in centres.items():  # one marker per camera (images, not points)
        for x, y in to_px((cc - mean) @ axes.T).tolist() if len(cc) else []:
            cv2.circle(canvas, (x, y), 4, colors[cond][::-1], -1, cv2.LINE_AA)
            cv2.circle(canvas, (x, y), 4, (0, 0, 0), 1, cv2.LINE_AA)
    return canvas


def _write_png(path: Path, image: np.ndarray) -> str:
    if not cv2.imwrite(str(path), image):
        raise ReportError(f"{path}: could not write the image")
    return path.name


# ----------------------------------------------------------------------------- page


def write_report(
    dataset_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    build_dir: str | os.PathLike | None = None,
    truth_dir: str | os.PathLike | None = None,
    examples_per_pair: int = 2,
    cfg: ReportConfig | None = None,
) -> Path:
    """Write the report folder `out_dir` (index.html + PNGs) about a dataset and, optionally, its build
    folder and the synthetic scene's ground truth. Returns the path of index.html."""
    cfg = cfg or ReportConfig()
    cfg.validate()
    store = open_dataset(dataset_dir)
    if build_dir is not None and not (Path(build_dir) / "registration.json").is_file():
        raise ReportError(
            f"{build_dir}: no registration.json (is this a build folder whose registration finished?)"
        )
    if truth_dir is not None and not Path(truth_dir).is_dir():
        raise ReportError(f"{truth_dir}: ground-truth scene folder not found")
    out_dir = Path(out_dir)
    with atomic_path(out_dir, "folder", replace_only_if=is_report, what="an xseason report") as tmp:
        (tmp / "img").mkdir(parents=True)
        sections = [_summary_section(store)]
        if build_dir is not None:
            sections.append(_registration_section(store, Path(build_dir), tmp, cfg))
        sections.append(_stats_section(store))
        sections.append(_classes_section(store))
        sections.append(_histogram_section(store, tmp, cfg))
        if truth_dir is not None:
            sections.append(_truth_section(store, Path(truth_dir), cfg))
        sections.append(_examples_section(store, tmp, truth_dir, examples_per_pair, cfg))
        title = f"{REPORT_TITLE}: {Path(dataset_dir).resolve().name}"
        (tmp / "index.html").write_text(_page(title, sections), encoding="utf-8")
    return out_dir / "index.html"


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _table(
    df: pd.DataFrame, markup: tuple[str, ...] = (), header: bool = True, floats: str = "{:.3g}"
) -> str:
    """An HTML table: text escaped, numbers right-aligned; columns named in `markup` hold ready markup."""
    head = (
        "<thead><tr>" + "".join(f"<th>{_e(c)}</th>" for c in df.columns) + "</tr></thead>" if header else ""
    )
    raw = [c in markup for c in df.columns]
    rows = []
    for rec in df.itertuples(index=False):  # table rows: one per condition pair / sequence
        cells = []
        for v, is_markup in zip(rec, raw):
            if isinstance(v, (bool, np.bool_)) or v is None or is_markup:
                text, cls = ("-" if v is None else (v if is_markup else _e(v))), ""
            elif isinstance(v, (int, np.integer)):
                text, cls = f"{v:,}", ' class="n"'
            elif isinstance(v, (float, np.floating)):
                text, cls = ("-" if pd.isna(v) else floats.format(v)), ' class="n"'
            else:
                text, cls = _e(v), ""
            cells.append(f"<td{cls}>{text}</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table>{head}<tbody>{''.join(rows)}</tbody></table>"


def _swatch(condition: str, colors: dict[str, tuple[int, int, int]]) -> str:
    """A colour square and the (escaped) condition name, as markup."""
    r, g, b = colors.get(condition, UNKNOWN_RGB)
    return f'<span class="sw" style="background:rgb({r},{g},{b})"></span>{_e(condition)}'


def _img(src: str, alt: str) -> str:
    return f'<img src="img/{_e(src)}" alt="{_e(alt)}">'


def _conditions(store: CorrespondenceStore) -> dict[str, tuple[int, int, int]]:
    return condition_colors(store.images["condition"].fillna(UNKNOWN_CONDITION))


def _summary_section(store: CorrespondenceStore) -> str:
    meta, images, pairs = store.meta, store.images, store.pairs
    counts = meta.get("counts", {})
    colors = _conditions(store)
    per_cond = (
        images.assign(condition=images["condition"].fillna(UNKNOWN_CONDITION))
        .groupby("condition")
        .agg(sequences=("sequence", "nunique"), images=("image_id", "size"), registered=("registered", "sum"))
    )
    per_cond.insert(0, "condition", [_swatch(c, colors) for c in per_cond.index])
    splits = " / ".join(str(int((pairs["split"] == s).sum())) for s in SPLITS)
    facts = pd.DataFrame(
        [
            ("dataset folder", str(store.root.resolve())),
            ("format", f"{meta.get('format')} v{meta.get('version')}"),
            ("created", (meta.get("created") or {}).get("utc", "-")),
            ("tool version", meta.get("tool_version", "-")),
            ("manifest sha256", (meta.get("manifest_sha256") or "-")[:16]),
            ("reference condition(s)", ", ".join(meta.get("references") or []) or "-"),
            ("images (registered)", f"{len(images):,} ({int(images['registered'].sum()):,})"),
            ("pairs (train / val / test)", f"{len(pairs):,} ({splits})"),
            ("matches", f"{counts.get('matches', 0):,}"),
            ("3D points", "-" if counts.get("points3d") is None else f"{counts['points3d']:,}"),
        ],
        columns=["fact", "value"],
    )
    config = _e(json.dumps(meta.get("config", {}), indent=2, default=str))
    return (
        "<section id='summary'><h2>Build summary</h2>"
        + _table(facts, header=False)
        + "<h3>Conditions</h3>"
        + _table(per_cond.reset_index(drop=True), markup=("condition",))
        + f"<details><summary>build configuration</summary><pre>{config}</pre></details></section>"
    )


def _registration_section(store: CorrespondenceStore, build_dir: Path, tmp: Path, cfg: ReportConfig) -> str:
    try:
        state = json.loads((build_dir / "registration.json").read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ReportError(f"{build_dir / 'registration.json'}: not valid JSON: {exc}") from None
    seq_cond = sequence_conditions(store.images)
    colors = _conditions(store)
    img_status = pd.DataFrame.from_dict(state.get("images", {}), orient="index")
    world = set(state.get("world", []))
    rows = []
    for seq, info in state.get("sequences", {}).items():  # one row per sequence
        mine = img_status[img_status["sequence"] == seq] if len(img_status) else img_status
        method = mine["method"].value_counts() if len(mine) else pd.Series(dtype=int)
        rows.append(
            {
                "sequence": seq,
                "condition": _swatch(seq_cond.get(seq, UNKNOWN_CONDITION), colors),
                "status": info.get("status", "-")
                + (" (world)" if seq in world and info.get("status") != "world" else ""),
                "images": len(mine),
                "registered": int(mine["registered"].sum()) if len(mine) else 0,
                "by absolute pose": int(method.get("absolute_pose", 0)),
                "3D points": (info.get("model") or {}).get("points", np.nan),
                "reproj. error px": (info.get("model") or {}).get("mean_reproj_error", np.nan),
                "scale": info.get("scale", np.nan),
                "3D-3D inliers": _fraction(info.get("inliers"), info.get("correspondences")),
                "3D residual median": info.get("residual_median", np.nan),
                "3D residual rmse": info.get("residual_rmse", np.nan),
                "reason": info.get("reason") or "",
            }
        )
    table = (
        _table(pd.DataFrame(rows), markup=("condition",))
        if rows
        else "<p>registration.json lists no sequence.</p>"
    )
    failed = img_status[~img_status["registered"].astype(bool)] if len(img_status) else img_status
    listed = failed.head(cfg.max_listed_images)
    missing = ""
    if len(failed):
        lst = _table(
            pd.DataFrame(
                {"image": listed.index, "sequence": listed["sequence"], "reason": listed["reason"].fillna("")}
            )
        )
        more = f"<p>... and {len(failed) - len(listed)} more.</p>" if len(failed) > len(listed) else ""
        missing = (
            f"<details><summary>{len(failed)} unregistered image(s) and why</summary>{lst}{more}</details>"
        )
    view = _top_view(build_dir, seq_cond, colors, tmp, cfg)
    return f"<section id='registration'><h2>Registration per sequence</h2>{table}{missing}{view}</section>"


def _fraction(num: object, den: object) -> str:
    return "-" if num is None else (f"{num} / {den}" if den is not None else str(num))


def _top_view(
    build_dir: Path,
    seq_cond: dict[str, str],
    colors: dict[str, tuple[int, int, int]],
    tmp: Path,
    cfg: ReportConfig,
) -> str:
    models = load_models(build_dir)
    points: dict[str, list[np.ndarray]] = {}
    centres: dict[str, list[np.ndarray]] = {}
    for seq, rec in models.items():  # one model per sequence
        cond = seq_cond.get(seq, UNKNOWN_CONDITION)
        points.setdefault(cond, []).append(model_points(rec))
        centres.setdefault(cond, []).append(
            np.array([rec.image(i).projection_center() for i in rec.reg_image_ids()], np.float64).reshape(
                -1, 3
            )
        )
    colors = {c: colors.get(c, UNKNOWN_RGB) for c in points}
    image = draw_top_view(
        {c: np.concatenate(v) for c, v in points.items()},
        {c: np.concatenate(v) for c, v in centres.items()},
        colors,
        cfg.top_view_size,
        cfg.top_view_max_points,
        cfg.seed,
    )
    name = _write_png(tmp / "img" / "top_view.png", image)
    legend = " ".join(f"{_swatch(c, colors)}" for c in sorted(points))
    return (
        f"<figure>{_img(name, 'top view of the registered clouds')}<figcaption>"
        f"Registered 3D points seen from above (plane of the two main directions), coloured by "
        f"condition; discs are camera centres. {legend}</figcaption></figure>"
    )


def _stats_section(store: CorrespondenceStore) -> str:
    stats = condition_pair_stats(store)
    colors = _conditions(store)
    view = pd.DataFrame(
        {
            "reference": [_swatch(c, colors) for c in stats["reference"]],
            "condition": [_swatch(c, colors) for c in stats["condition"]],
            "split": stats["split"],
            "pairs": stats["pairs"],
            "matches": stats["matches"],
            **{f"p{q}": stats[f"mpp_q{q}"] for q in QUANTILES},
            "densified": stats["densified_share"],
        }
    )
    return (
        "<section id='stats'><h2>Statistics per condition pair</h2>"
        "<p>Matches per pair: quantiles p5 ... p95; densified: share of matches added by densification.</p>"
        + _table(view, markup=("reference", "condition"))
        + "</section>"
    )


def _classes_section(store: CorrespondenceStore) -> str:
    hist = match_class_histogram(store)
    head = "<section id='classes'><h2>Classes of the matches</h2>"
    if hist.empty:
        return head + "<p>No image has a label (images.parquet 'label' column).</p></section>"
    view = hist[hist["split"] == "all"]
    colors = _conditions(store)
    classes = [c for c in view.columns if c.startswith("class_")]
    table = pd.DataFrame(
        {
            "reference": [_swatch(c, colors) if c != "all" else "all" for c in view["reference"]],
            "condition": [_swatch(c, colors) if c != "all" else "all" for c in view["condition"]],
            "matches": view["matches"],
            "labelled": view["labelled"],
            **{
                f"class {c.removeprefix('class_')} %": 100
                * view[c]
                / view["labelled"].where(view["labelled"] > 0)
                for c in classes
            },
        }
    )
    warnings = "".join(f"<p class='warn'>{_e(w)}</p>" for w in dominance_warnings(hist))
    return (
        head + "<p>Every match counted at the class of the reference image's label at (x0, y0); class "
        "columns: percent of the labelled matches (all splits).</p>"
        + warnings
        + _table(table.reset_index(drop=True), markup=("reference", "condition"))
        + "</section>"
    )


def _histogram_section(store: CorrespondenceStore, tmp: Path, cfg: ReportConfig) -> str:
    counts = store.pairs["num_matches"].to_numpy()
    figures = [("matches_per_pair", "matches per pair", "matches", counts, None)]
    for col, title, xlabel in (
        ("dist3d", "3D distance of associated points", "dist3d (world units)"),
        ("weight", "match weight", "weight"),
        ("err0", "reprojection error, reference image", "err0 (px)"),
        ("err1", "reprojection error, other image", "err1 (px)"),
    ):
        values = _column(store, col)
        finite = values[np.isfinite(values)]
        top = float(np.quantile(finite, cfg.upper_quantile)) if finite.size else 1.0
        figures.append((col, title, xlabel, values, 1.0 if col == "weight" else top))  # weight lies in (0, 1]
    cells = []
    for name, title, xlabel, values, top in figures:  # one PNG per histogram
        image = draw_histogram(
            values, title, xlabel, cfg.histogram_bins, None if top is None else (0.0, top), cfg.histogram_size
        )
        _write_png(tmp / "img" / f"{name}.png", image)
        nonfinite = int((~np.isfinite(np.asarray(values, np.float64))).sum())
        notes = []
        if top is not None and name != "weight":
            notes.append(f"Values above {short_number(top)} are counted in the last bin.")
        if nonfinite:
            notes.append(f"{nonfinite:,} non-finite value(s) left out.")
        caption = f"<figcaption>{_e(' '.join(notes))}</figcaption>" if notes else ""
        cells.append(f"<figure>{_img(f'{name}.png', title)}{caption}</figure>")
    return (
        "<section id='histograms'><h2>Histograms</h2><div class='grid'>" + "".join(cells) + "</div></section>"
    )


def _column(store: CorrespondenceStore, name: str) -> np.ndarray:
    """One match column of the whole dataset (4 bytes per match in memory)."""
    parts = [chunk[name] for chunk in store.iter_matches(batch_pairs=1 << 20, columns=[name])]
    return np.concatenate(parts) if parts else np.zeros(0, np.float32)


def truth_errors(
    store: CorrespondenceStore, truth_dir: str | os.PathLike, max_pairs: int = 30, seed: int = 0
) -> pd.DataFrame:
    """Per condition pair, on a random sample of at most `max_pairs` pairs: how far every match's
    (x1, y1) lies from the true position of (x0, y0) in the other image (synthetic scene only).

    Columns: reference, condition, pairs checked, matches, visible (share whose reference point is
    visible in the other image), median px, p90 px, < 1 px, < 3 px (shares of the visible ones).
    """
    pairs = store.pair_conditions()
    names = store.images.set_index("image_id")["image"]
    rows = []
    groups = list(pairs.groupby(["reference", "condition"], sort=True))
    for (ref, other), group in progress(groups, desc="ground truth", unit="condition pair", leave=False):
        chosen = group.sample(min(len(group), max_pairs), random_state=seed)
        errors = [np.zeros(0)]
        for pair in chosen.itertuples(index=False):  # a sample of pairs; matches vectorised inside
            m = store.matches(pair.pair_id)
            p0, p1 = np.stack([m["x0"], m["y0"]], 1), np.stack([m["x1"], m["y1"]], 1)
            errors.append(match_errors(truth_dir, names[pair.image_id0], names[pair.image_id1], p0, p1))
        err = np.concatenate(errors)
        seen = err[np.isfinite(err)]
        some = seen.size > 0
        rows.append(
            {
                "reference": ref,
                "condition": other,
                "pairs checked": len(chosen),
                "matches": err.size,
                "visible": seen.size / err.size if err.size else np.nan,
                "median px": float(np.median(seen)) if some else np.nan,
                "p90 px": float(np.quantile(seen, 0.9)) if some else np.nan,
                "< 1 px": float((seen < 1).mean()) if some else np.nan,
                "< 3 px": float((seen < 3).mean()) if some else np.nan,
            }
        )
    return pd.DataFrame(rows)


def _truth_section(store: CorrespondenceStore, truth_dir: Path, cfg: ReportConfig) -> str:
    table = truth_errors(store, truth_dir, cfg.truth_max_pairs, cfg.seed)
    colors = _conditions(store)
    table["reference"] = [_swatch(c, colors) for c in table["reference"]]
    table["condition"] = [_swatch(c, colors) for c in table["condition"]]
    return (
        "<section id='truth'><h2>Against the ground truth</h2><p>Distance of every match's (x1, y1) to the "
        "true position of (x0, y0) in the other image, on a random sample of at most "
        f"{cfg.truth_max_pairs} pairs per condition pair; 'visible': share of matches whose reference point "
        "is visible in the other image; the other columns are over the visible ones.</p>"
        + _table(table, markup=("reference", "condition"))
        + "</section>"
    )


def _examples_section(
    store: CorrespondenceStore,
    tmp: Path,
    truth_dir: str | os.PathLike | None,
    examples_per_pair: int,
    cfg: ReportConfig,
) -> str:
    pairs = store.pair_conditions()
    pairs = pairs[pairs["num_matches"] > 0]
    colour = "error" if truth_dir is not None else "weight"
    parts = []
    groups = list(pairs.groupby(["reference", "condition"], sort=True))
    for (ref, other), group in progress(groups, desc="example pairs", unit="condition pair", leave=False):
        chosen = group.sample(min(len(group), examples_per_pair), random_state=cfg.seed).sort_values(
            "pair_id"
        )
        figs = []
        for pair in chosen.itertuples(index=False):  # a few drawings per condition pair
            path = tmp / "img" / f"pair_{pair.pair_id}.png"
            draw_pair(
                store,
                pair.pair_id,
                path,
                max_matches=cfg.example_max_matches,
                color=colour,
                truth_dir=truth_dir,
                seed=cfg.seed,
            )
            _shrink(path, cfg.example_width)
            caption = (
                f"pair {pair.pair_id}: {pair.num_matches:,} matches, overlap {pair.overlap:.2f}, "
                f"split {pair.split}"
            )
            figs.append(
                f"<figure>{_img(path.name, f'pair {pair.pair_id}')}"
                f"<figcaption>{_e(caption)}</figcaption></figure>"
            )
        parts.append(f"<h3>{_e(ref)} &rarr; {_e(other)}</h3><div class='grid'>" + "".join(figs) + "</div>")
    legend = (
        "lines coloured by pixel error against the ground truth (green = 0 px ... red = 5 px or more; grey = "
        "not visible)"
        if truth_dir is not None
        else "lines coloured by match weight (blue = 0 ... red = 1)"
    )
    body = "".join(parts) if parts else "<p>No pair with matches.</p>"
    return (
        f"<section id='examples'><h2>Example pairs</h2><p>Reference image left, other condition right; "
        f"a random sample of at most {cfg.example_max_matches} matches, {legend}.</p>{body}</section>"
    )


def _shrink(path: Path, max_width: int) -> None:
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is not None and image.shape[1] > max_width:
        h = round(image.shape[0] * max_width / image.shape[1])
        _write_png(path, cv2.resize(image, (max_width, h), interpolation=cv2.INTER_AREA))


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px auto;max-width:1320px;
color:#222;padding:0 16px}
h1{font-size:1.6em}h2{border-bottom:1px solid #ccc;padding-bottom:4px;margin-top:1.6em}
table{border-collapse:collapse;margin:8px 0;font-size:.9em}
th,td{border:1px solid #ddd;padding:3px 8px;text-align:left}
th{background:#f3f3f3}td.n{text-align:right;font-variant-numeric:tabular-nums}
.sw{display:inline-block;width:.9em;height:.9em;margin-right:.35em;vertical-align:-.1em;border:1px solid #555}
figure{margin:10px 0}figcaption{font-size:.85em;color:#555}img{max-width:100%;height:auto}
.grid{display:flex;flex-wrap:wrap;gap:8px}.grid figure{margin:0}
pre{background:#f7f7f7;padding:8px;overflow:auto}
nav a{margin-right:1em}
.warn{color:#a00;font-weight:bold}
"""


REPORT_TITLE = "xseason report"


def is_report(folder: str | os.PathLike) -> bool:
    """True when `folder` holds a report `write_report` wrote (its index.html has the report's title)."""
    try:
        with open(Path(folder) / "index.html", encoding="utf-8", errors="replace") as f:
            head = f.read(4096)
    except OSError:
        return False
    return f"<title>{REPORT_TITLE}: " in head


def _page(title: str, sections: list[str]) -> str:
    links = [
        ("summary", "summary"),
        ("registration", "registration"),
        ("stats", "statistics"),
        ("classes", "classes"),
        ("histograms", "histograms"),
        ("truth", "ground truth"),
        ("examples", "examples"),
    ]
    nav = " ".join(f"<a href='#{a}'>{t}</a>" for a, t in links if f"id='{a}'" in "".join(sections))
    return (
        f"<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'><title>{_e(title)}</title>"
        f"<meta name='viewport' content='width=device-width, initial-scale=1'><style>{_CSS}</style></head>"
        f"<body><h1>{_e(title)}</h1><nav>{nav}</nav>{''.join(sections)}</body></html>\n"
    )


__all__ = ["ReportConfig", "ReportError", "draw_top_view", "truth_errors", "write_report"]
