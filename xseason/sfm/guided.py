"""Feature matching along known epipolar lines (images whose poses the manifest gives).

Matching two posed images by descriptors alone, then verifying with a RANSAC-estimated two-view
geometry, throws away most true matches across a wide baseline or a change of season: a feature's
nearest neighbour among all of the other image's features is often a look-alike elsewhere, and the
ratio test then rejects the true one. With the relative pose known, a keypoint's partner can only
lie near its epipolar line: `epipolar_matches` compares each keypoint only with the other image's
keypoints within `max_error` pixels of that line (in both images), then applies the ratio test,
the descriptor distance limit and the mutual check among those. Measured on the real maupertuis
photographs (poses from their COLMAP model, 1919x1079, 8-11k SIFT features): 800-980 matches per
pair of different viewpoints where descriptor matching + RANSAC verification kept 37-49 (the
sample's own COLMAP matches: 537-1035).

Off by default (`matching.epipolar_guided`): a look-alike on the epipolar line (repeated windows,
repeated texture) passes when the true partner is missing, and two views cannot tell it from the
truth. Measured on scenes of the random family (seeds 7, 11, 12 at 320x240, posed): wrong matches
0.2-1.4 % without it, 4-6 % with it (mostly `misplaced`), and the planes fitted to those points
lost the densification of dusk-rain; on maupertuis, 2 of ~40 matches checkable against the
model's own tracks were off by > 5 px.

Without it, posed images of two sequences are matched by descriptors and verified by two-view
RANSAC, whose inliers are then checked against the geometry their poses give (`epipolar_errors`;
features._verify_with_poses): RANSAC settles on a wrong model where look-alikes outnumber the true
matches.

Descriptors are compared by angle (acos of the dot product of L2-normalised descriptors), as
COLMAP's SIFT matcher does, so `max_distance` and `max_ratio` mean what they mean there.
"""

from __future__ import annotations

import numpy as np

from xseason.core.geometry import Pose


def essential_matrix(pose0: Pose, pose1: Pose) -> np.ndarray:
    """E with x1^T E x0 = 0 for normalised image coordinates of cameras 0 and 1 (world-to-camera poses)."""
    rel = pose1 @ pose0.inverse()  # camera 1 from camera 0
    t = rel.t
    cross = np.array([[0.0, -t[2], t[1]], [t[2], 0.0, -t[0]], [-t[1], t[0], 0.0]])
    return cross @ rel.R


def epipolar_matches(
    x0: np.ndarray,
    x1: np.ndarray,
    desc0: np.ndarray,
    desc1: np.ndarray,
    essential: np.ndarray,
    focal: tuple[float, float],
    max_error: float,
    max_ratio: float,
    max_distance: float,
    chunk: int = 1 << 16,
) -> np.ndarray:
    """(M, 2) indices of mutual best matches between keypoints x0 and x1 (normalised image
    coordinates, (N0, 2) and (N1, 2)) that lie within `max_error` pixels of each other's epipolar
    line (distances scaled by `focal` = (f0, f1)), pass the ratio test among such candidates and are
    within `max_distance` (radians) in descriptor space. `desc0`, `desc1`: (N, D) descriptors;
    `chunk`: candidate pairs per block of descriptor comparisons (bounds the memory)."""
    n0, n1 = len(x0), len(x1)
    if n0 == 0 or n1 == 0:
        return np.zeros((0, 2), np.int64)
    h0, h1 = np.c_[x0, np.ones(n0)], np.c_[x1, np.ones(n1)]
    lines1 = _unit_lines(h0 @ essential.T)  # in image 1, one per keypoint of 0
    lines0 = _unit_lines(h1 @ essential)  # in image 0, one per keypoint of 1
    # candidates: near each other's epipolar line (a thin band: descriptors compared for those only)
    epipole = np.linalg.svd(essential)[0][:, 2]  # e^T E = 0: every line of image 1 passes through it
    px_lines = lines1 * [1.0, 1.0, focal[1]]  # in pixel units (points times f1)
    rows, cols = _near_line(px_lines, x1 * focal[1], epipole * [focal[1], focal[1], 1.0], max_error)
    near = np.abs(np.einsum("ij,ij->i", lines1[rows], h1[cols])) * focal[1] <= max_error
    near &= np.abs(np.einsum("ij,ij->i", h0[rows], lines0[cols])) * focal[0] <= max_error
    rows, cols = rows[near], cols[near]
    d0, d1 = _unit(desc0), _unit(desc1)
    dot = np.concatenate(
        [
            np.einsum("ij,ij->i", d0[rows[k : k + chunk]], d1[cols[k : k + chunk]])
            for k in range(0, len(rows), chunk)
        ]
        or [np.zeros(0, np.float32)]
    )
    angle = np.arccos(np.clip(dot, -1.0, 1.0))
    # per keypoint of 0: best and second-best candidate (ratio test); per keypoint of 1: its best
    by_row = np.lexsort((angle, rows))
    head = np.r_[True, rows[by_row][1:] != rows[by_row][:-1]]
    best = by_row[head]
    nxt = np.flatnonzero(head) + 1
    has_second = (nxt < len(by_row)) & ~np.r_[head[1:], True][np.flatnonzero(head)]
    second = np.full(len(best), np.inf)
    second[has_second] = angle[by_row[nxt[has_second]]]
    ok = (angle[best] <= max_distance) & (angle[best] < max_ratio * second)
    best = best[ok]
    by_col = np.lexsort((angle, cols))
    col_head = by_col[np.r_[True, cols[by_col][1:] != cols[by_col][:-1]]]
    best_of_col = np.full(n1, -1, np.int64)
    best_of_col[cols[col_head]] = rows[col_head]
    mutual = best_of_col[cols[best]] == rows[best]
    return np.stack([rows[best[mutual]], cols[best[mutual]]], axis=1).astype(np.int64)


def epipolar_errors(
    x0: np.ndarray, x1: np.ndarray, essential: np.ndarray, focal: tuple[float, float]
) -> np.ndarray:
    """(N,) pixels from the farther of its two epipolar lines (scaled by `focal` = (f0, f1)) of each
    match x0[k] <-> x1[k] (normalised image coordinates, (N, 2) each)."""
    h0, h1 = np.c_[x0, np.ones(len(x0))], np.c_[x1, np.ones(len(x1))]
    in1 = np.abs(np.einsum("ij,ij->i", _unit_lines(h0 @ essential.T), h1)) * focal[1]
    in0 = np.abs(np.einsum("ij,ij->i", _unit_lines(h1 @ essential), h0)) * focal[0]
    return np.maximum(in0, in1)


def _near_line(
    lines: np.ndarray, points: np.ndarray, epipole: np.ndarray, tol: float
) -> tuple[np.ndarray, np.ndarray]:
    """(line, point) index pairs with the point within about `tol` of the line (a superset: the
    caller checks the exact distance). `lines` (L, 3): unit lines (a^2 + b^2 = 1), all through the
    homogeneous `epipole` (3,); `points` (N, 2), in the lines' units.

    Around a finite epipole, points are binned by their distance r to it (radii growing by sqrt 2) and
    sorted by the angle of their direction from it within each bin; a line at angle t can only hold
    points of a bin r >= R whose angle is within asin(tol / R) of t, so each line visits one short
    run of sorted points per bin instead of all N. With the epipole at infinity (parallel lines)
    points are sorted by their offset along the lines' common normal."""
    if abs(epipole[2]) < 1e-9 * np.linalg.norm(epipole[:2]):  # parallel lines: one sorted offset
        normal = np.array([-epipole[1], epipole[0]]) / np.linalg.norm(epipole[:2])
        offset = points @ normal
        order = np.argsort(offset, kind="stable")
        sign = np.sign(lines[:, :2] @ normal)  # a line (a, b) = sign * normal holds n.x = -c * sign
        return _runs(-lines[:, 2] * sign, offset[order], order, tol)
    centre = epipole[:2] / epipole[2]
    rel = points - centre
    radius = np.linalg.norm(rel, axis=1)
    angle = np.arctan2(rel[:, 1], rel[:, 0]) % np.pi
    line_angle = np.arctan2(lines[:, 0], -lines[:, 1]) % np.pi  # direction (-b, a) of each line
    edges = tol * 2.0 ** np.arange(1, 64, 0.5)
    edges = edges[: np.searchsorted(edges, radius.max(initial=0.0)) + 1]
    bin_of = np.searchsorted(edges, radius)  # bin 0: r < 2 tol, bin k: edges[k - 1] <= r < edges[k]
    out_rows, out_cols = [], []
    for k in np.unique(bin_of):
        members = np.flatnonzero(bin_of == k)
        if k == 0:  # near the epipole every line passes within 2 tol: all are candidates
            out_rows.append(np.repeat(np.arange(len(lines)), len(members)))
            out_cols.append(np.tile(members, len(lines)))
            continue
        width = float(np.arcsin(tol / edges[k - 1]))  # <= 30 degrees: no point is met twice
        order = members[np.argsort(angle[members], kind="stable")]
        wrapped = np.concatenate([angle[order] - np.pi, angle[order], angle[order] + np.pi])
        rows, cols = _runs(line_angle, wrapped, np.tile(order, 3), width)
        out_rows.append(rows)
        out_cols.append(cols)
    return np.concatenate(out_rows), np.concatenate(out_cols)


def _runs(
    centres: np.ndarray, keys: np.ndarray, ids: np.ndarray, half: float
) -> tuple[np.ndarray, np.ndarray]:
    """(i, ids[k]) for every query i and sorted key k with |keys[k] - centres[i]| <= half."""
    lo = np.searchsorted(keys, centres - half, side="left")
    hi = np.searchsorted(keys, centres + half, side="right")
    count = hi - lo
    rows = np.repeat(np.arange(len(centres)), count)
    at = np.repeat(lo - np.cumsum(count) + count, count) + np.arange(count.sum())
    return rows, ids[at]


def _unit_lines(lines: np.ndarray) -> np.ndarray:
    """Lines (a, b, c) scaled so that |a x + b y + c| is the distance of (x, y) to them."""
    return lines / np.maximum(np.linalg.norm(lines[:, :2], axis=1, keepdims=True), 1e-12)


def _unit(desc: np.ndarray) -> np.ndarray:
    d = np.asarray(desc, np.float32)
    return d / np.maximum(np.linalg.norm(d, axis=1, keepdims=True), 1e-12)


__all__ = ["epipolar_errors", "epipolar_matches", "essential_matrix"]
