"""Image pairs with intrinsics, relative poses and ground-truth matches, for training local-feature
matchers (LoFTR, LightGlue / glue-factory style).

One item is one pair of the chosen split whose two images are registered. Images are resized so
that their longer side is `resize` pixels (up or down; `resize=None` keeps the full resolution),
with no crop, flip or photometric change; with `divisible_by` (e.g. 8 for LoFTR's coarse grid)
each side is then rounded to the nearest multiple of it (so sx and sy may differ slightly; K and
`scale` hold both). Pixels follow xseason's convention (docs/FORMAT.md §1):
the centre of the top-left pixel is (0, 0). Everything in an item is in the resized images' pixels:

- `image0`, `image1`: float32 (1, H, W) grey in [0, 1] (cv2's RGB -> grey, then resized), or with
  `color=True` (3, H, W) RGB in [0, 1];
- `K0`, `K1`: float64 (3, 3) of the resized images in that convention: with the COLMAP camera's
  fx, fy, cx, cy, resize factors sx = W' / W, sy = H' / H: `[[fx sx, 0, cx sx - 0.5],
  [0, fy sy, cy sy - 0.5], [0, 0, 1]]` (at full resolution, cx - 0.5: OpenCV's K). Only the pinhole
  part: the distortion of the other camera models is **not** removed (a warning says so);
- `T_0to1`, `T_1to0`: float64 (4, 4) camera-1-from-camera-0 (= T1 T0^-1 of the world-to-camera
  poses) and its inverse: x0 at depth d in camera 0 is X0 = d K0^-1 (x0, 1), and x1 is the
  projection of T_0to1 (X0, 1) by K1;
- `original_size0/1`: int64 (H, W) of the files; `size0/1`: int64 (H', W') of the resized images;
- `scale0/1`: float64 (sx, sy) = (W / W', H / H'), LoFTR's `scale` (x first). A resized pixel x'
  is the original pixel `(x' + 0.5) * scale - 0.5` in this convention; LoFTR's plain product
  `x' * scale` is exact for pixel-corner coordinates (x + 0.5) and off by (scale - 1) / 2 px here;
- `kpts0`, `kpts1`: float32 (N, 2) ground-truth matches (x, y), `weights` float32 (N,): the pair's
  stored matches (all, or a random `max_matches` subset seeded by (seed, index), kept in order);
- `pair_id`, `image_id0`, `image_id1` (int), `condition0`, `condition1` (str; "" when unknown).

`collate_matcher` pads the images of a batch to its largest H, W (zeros at the bottom and right,
`mask0/1` true on image pixels) and the matches with `pad_sequence` (`valid` true on real ones).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.nn.utils.rnn import pad_sequence
from torch.utils.data import Dataset

from xseason.core.errors import DatasetFormatError
from xseason.core.geometry import Camera
from xseason.learn.dataset import ImageTransform, read_store_image, with_image_root
from xseason.store import CorrespondenceStore, open_dataset

log = logging.getLogger(__name__)

PINHOLE_MODELS = ("SIMPLE_PINHOLE", "PINHOLE")
POSE_COLUMNS = ["qw", "qx", "qy", "qz", "tx", "ty", "tz"]


def resize_transform(size: tuple[int, int], resize: int | None, divisible_by: int = 1) -> ImageTransform:
    """The transform of an image of `size` (W, H) to the longer side `resize` (None: unchanged), each
    side then rounded to the nearest multiple of `divisible_by` (at least one multiple)."""
    w, h = size
    s = resize / max(w, h) if resize else 1.0
    d = divisible_by
    rw, rh = max(d, round(w * s / d) * d), max(d, round(h * s / d) * d)
    return ImageTransform(rw / w, rh / h, (rw, rh), 0, 0, (rw, rh), False)


def resized_calibration(camera: Camera, t: ImageTransform) -> np.ndarray:
    """K (3, 3) of `camera`'s image after `t`'s resize, in xseason's pixel convention (module doc)."""
    pixels = np.array([[t.sx, 0, 0.5 * t.sx - 0.5], [0, t.sy, 0.5 * t.sy - 0.5], [0, 0, 1.0]])
    return pixels @ camera.calibration_matrix()  # the resize of `ImageTransform.points` as a matrix


class MatcherDataset(Dataset):
    """Registered image pairs of one split for matcher training (items: module docstring).

    `root` is a dataset folder or an opened store; `split` one of the pairs' splits (None = all);
    `resize` the longer side of the returned images (None = full resolution), `divisible_by` the
    multiple their sides are rounded to, `color` RGB instead of grey; `image_root` overrides the
    dataset's image root (`with_image_root`); `max_matches` keeps a random subset of at most that
    many matches per item (None = all), drawn from (`seed`, index).
    """

    def __init__(
        self,
        root: str | Path | CorrespondenceStore,
        split: str | None = "train",
        resize: int | None = 640,
        image_root: str | Path | None = None,
        max_matches: int | None = None,
        seed: int = 0,
        divisible_by: int = 1,
        color: bool = False,
    ) -> None:
        if resize is not None and resize < 1:
            raise ValueError(f"resize must be None or >= 1, got {resize}")
        if divisible_by < 1:
            raise ValueError(f"divisible_by must be >= 1, got {divisible_by}")
        if max_matches is not None and max_matches < 0:
            raise ValueError(f"max_matches must be None or >= 0, got {max_matches}")
        store = root if isinstance(root, CorrespondenceStore) else open_dataset(root)
        self.store = with_image_root(store, image_root) if image_root is not None else store
        self.resize, self.max_matches, self.seed = resize, max_matches, seed
        self.divisible_by, self.color = divisible_by, color
        images = self.store.images.set_index("image_id")
        images["condition"] = images["condition"].fillna("")
        pairs = self.store.pairs
        registered = images["registered"].to_numpy(bool) & images[POSE_COLUMNS].notna().all(axis=1).to_numpy()
        ids = pairs[["image_id0", "image_id1"]].to_numpy()
        keep = registered[images.index.get_indexer(ids.ravel())].reshape(-1, 2).all(axis=1)
        in_split = pairs["split"].eq(split).to_numpy() if split is not None else np.ones(len(pairs), bool)
        if not (keep & in_split).any():
            splits = sorted(pairs["split"].unique())
            raise DatasetFormatError(
                f"{self.store.root}: no pair of registered images in split {split!r} (splits: {splits})"
            )
        if (in_split & ~keep).any():
            log.info(
                "%d pairs of split %s left out: an image is not registered", (in_split & ~keep).sum(), split
            )
        self.pair_ids = pairs["pair_id"].to_numpy()[keep & in_split]
        self.image_ids = ids[keep & in_split]
        self._images = images
        used = images.loc[np.unique(self.image_ids), "camera_model"]
        distorted = sorted(set(used) - set(PINHOLE_MODELS))
        if distorted:
            log.warning(
                "camera models %s: K is their pinhole part; the images and matches keep the distortion",
                ", ".join(distorted),
            )

    def __len__(self) -> int:
        return len(self.pair_ids)

    def __getitem__(self, index: int) -> dict:
        pair_id = int(self.pair_ids[index])
        m = self.store.matches(pair_id)
        keep = np.arange(len(m["x0"]))
        if self.max_matches is not None and len(keep) > self.max_matches:
            rng = np.random.default_rng([self.seed, index])
            keep = np.sort(rng.choice(keep, self.max_matches, replace=False))
        item: dict = {"pair_id": pair_id}
        poses = []
        for side in (0, 1):
            image_id = int(self.image_ids[index, side])
            row = self._images.loc[image_id]
            size = (int(row["width"]), int(row["height"]))
            t = resize_transform(size, self.resize, self.divisible_by)
            camera = self.store.camera(image_id)
            rgb = read_store_image(self.store, image_id, size)
            pixels = t.resize(rgb if self.color else cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY))
            xy = np.stack([m[f"x{side}"][keep], m[f"y{side}"][keep]], 1).astype(np.float64)
            poses.append(self.store.pose(image_id))
            item |= {
                f"image{side}": torch.from_numpy(
                    np.atleast_3d(pixels).transpose(2, 0, 1).astype(np.float32) / 255
                ),
                f"K{side}": torch.from_numpy(resized_calibration(camera, t)),
                f"original_size{side}": torch.tensor([size[1], size[0]]),
                f"size{side}": torch.tensor(t.resized[::-1]),
                f"scale{side}": torch.tensor([1 / t.sx, 1 / t.sy], dtype=torch.float64),
                f"kpts{side}": torch.from_numpy(t.points(xy).astype(np.float32)),
                f"image_id{side}": image_id,
                f"condition{side}": row["condition"],
            }
        item["T_0to1"] = torch.from_numpy((poses[1] @ poses[0].inverse()).matrix())
        item["T_1to0"] = torch.from_numpy((poses[0] @ poses[1].inverse()).matrix())
        item["weights"] = torch.from_numpy(m["weight"][keep].astype(np.float32))
        return item


STACKED = "K0 K1 T_0to1 T_1to0 original_size0 original_size1 size0 size1 scale0 scale1".split()


def collate_matcher(batch: Sequence[dict]) -> dict:
    """A batch of `MatcherDataset` items: images zero-padded (bottom, right) to the batch's largest
    (B, 1, H, W) with `mask0/1` (B, H, W) true on image pixels; `kpts0/1` (B, N, 2) and `weights`
    (B, N) padded with zeros to the batch's most matches, `valid` (B, N) true on real matches;
    K, T, sizes, scales stacked; ids as int64 tensors; conditions as lists."""
    out: dict = {}
    for side in (0, 1):
        images = [item[f"image{side}"] for item in batch]
        h = max(img.shape[1] for img in images)
        w = max(img.shape[2] for img in images)
        padded = torch.zeros(len(batch), images[0].shape[0], h, w)
        mask = torch.zeros(len(batch), h, w, dtype=torch.bool)
        for i, img in enumerate(images):
            padded[i, :, : img.shape[1], : img.shape[2]] = img
            mask[i, : img.shape[1], : img.shape[2]] = True
        out[f"image{side}"], out[f"mask{side}"] = padded, mask
        out[f"kpts{side}"] = pad_sequence([item[f"kpts{side}"] for item in batch], batch_first=True)
        out[f"image_id{side}"] = torch.tensor([item[f"image_id{side}"] for item in batch])
        out[f"condition{side}"] = [item[f"condition{side}"] for item in batch]
    out["weights"] = pad_sequence([item["weights"] for item in batch], batch_first=True)
    counts = torch.tensor([len(item["weights"]) for item in batch])
    out["valid"] = torch.arange(out["weights"].shape[1])[None] < counts[:, None]
    out["pair_id"] = torch.tensor([item["pair_id"] for item in batch])
    out |= {key: torch.stack([item[key] for item in batch]) for key in STACKED}
    return out


__all__ = ["MatcherDataset", "collate_matcher", "resize_transform", "resized_calibration"]
