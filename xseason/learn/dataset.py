"""The correspondence dataset as a torch `Dataset`: image pairs, their matches, their labels.

One item is one image pair of a dataset folder (docs/FORMAT.md §3). Each image gets its own
geometric transform, and the matches move with the pixels (contract convention: the centre
of the top-left pixel is (0, 0)):

- resize by s (per axis):  x -> (x + 0.5) * s - 0.5   (cv2.resize uses the same centres);
- crop at integer offset (x0, y0):  x -> x - x0   (centred on one random match, the same match
  in both images, as the reference paper did; padded with 0 / label 255 if the image is smaller);
- horizontal flip of a width-W image:  x -> W - 1 - x;
then per-image photometric jitter. Matches that leave either image are dropped, and at most
`max_matches` are kept (random subset). `PadCollate` pads every pair to `max_matches` and adds a
validity mask. `PairBatchSampler` draws the batches of every training step deterministically
from (seed, step) (so a resumed run sees the same data), optionally balancing condition pairs.

Labels: an image's label PNG (uint8 class ids, 255 = ignore) is found by `label_paths` in the
optional `label` column of images.parquet (written by `xseason build` from the manifest's
`label` column); paths are relative to the dataset's image root. `max_labels` reads the largest
class id of label files (the trainer's check that they fit the network).
"""

from __future__ import annotations

import copy
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from xseason.core.errors import DatasetFormatError
from xseason.store import CorrespondenceStore, open_dataset

IGNORE = 255


@dataclass
class AugmentConfig:
    """Per-image transforms; defaults fit the CPU demo (160 px short side, 160x120 crops)."""

    short_side: int = 120  # resize so that the shorter side has this many pixels (0 = keep)
    scale_jitter: float = 0.0  # extra per-image scale factor exp(U(-j, j))
    crop: tuple[int, int] = (160, 120)  # (width, height) of a crop centred on a random match; (0, 0) = none
    hflip: float = 0.0  # probability of flipping an image horizontally (each image on its own)
    brightness: float = 0.0  # photometric jitter, each factor drawn in [1 - v, 1 + v] per image
    contrast: float = 0.0
    saturation: float = 0.0
    max_matches: int = 256  # matches kept per pair (random subset), and the padded length

    def validate(self) -> None:
        if self.short_side < 0 or min(self.crop) < 0 or self.max_matches < 1:
            raise ValueError("short_side, crop must be >= 0 and max_matches >= 1")
        if (
            not 0 <= self.hflip <= 1
            or min(self.brightness, self.contrast, self.saturation, self.scale_jitter) < 0
        ):
            raise ValueError("hflip must be in [0, 1] and jitter amounts >= 0")


@dataclass
class PairFilter:
    """Which pairs a dataset yields."""

    splits: list[str] | None = None  # e.g. ["train"]; None = all
    conditions: list[str] | None = None  # condition of the non-reference image (image 1); None = all
    min_matches: int = 1


def label_paths(store: CorrespondenceStore) -> dict[int, Path]:
    """{image_id: label PNG path} of the labelled images (see the module docstring for the sources)."""
    images = store.images
    if "label" not in images.columns:
        return {}
    out = {}
    for image_id, image, label in zip(images["image_id"], images["image"], images["label"]):
        if isinstance(label, str) and label:
            path = store.image_path(int(image_id))  # = image root / image
            out[int(image_id)] = Path(*path.parts[: len(path.parts) - len(Path(image).parts)]) / label
    return out


def read_image(path: Path) -> np.ndarray:
    """RGB uint8 (H, W, 3), or a clear error naming the file."""
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise DatasetFormatError(f"{path}: missing or not a readable image")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def read_store_image(store: CorrespondenceStore, image_id: int, size: tuple[int, int]) -> np.ndarray:
    """RGB uint8 (H, W, 3) of one image of the store, checked against `size` (W, H) of images.parquet."""
    path = store.image_path(image_id)
    img = read_image(path)
    if (img.shape[1], img.shape[0]) != tuple(size):
        raise DatasetFormatError(
            f"{path}: image is {img.shape[1]}x{img.shape[0]}, images.parquet says {size[0]}x{size[1]}"
        )
    return img


def with_image_root(store: CorrespondenceStore, image_root: str | Path) -> CorrespondenceStore:
    """A copy of `store` that reads its images (and labels) under `image_root`: for a dataset whose
    images moved without it (when both moved together, dataset.json's relative root finds them)."""
    root = Path(image_root).expanduser().resolve()
    if not root.is_dir():
        raise DatasetFormatError(f"{root}: image root is not a folder")
    out = copy.copy(store)  # shares the tables; file handles reopen lazily (the store's pickling)
    out.meta = {**store.meta, "image_root": str(root)}
    return out


def read_label(path: Path) -> np.ndarray:
    """uint8 (H, W) class ids, or a clear error naming the file."""
    lab = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if lab is None or lab.ndim != 2 or lab.dtype != np.uint8:
        raise DatasetFormatError(f"{path}: label must be a single-channel uint8 PNG")
    return lab


def max_labels(paths: Sequence[Path], workers: int = 8) -> np.ndarray:
    """The largest class id (IGNORE aside) of each label file, -1 for a file of IGNORE only; the files
    are decoded in `workers` threads (OpenCV releases the GIL)."""

    def largest(path: Path) -> int:  # IGNORE + 1 wraps to 0: the max of lab + 1 is that of the classes + 1
        return int((read_label(path) + np.uint8(1)).max()) - 1

    with ThreadPoolExecutor(max(1, workers)) as pool:
        return np.fromiter(pool.map(largest, paths), dtype=np.int64, count=len(paths))


# ----------------------------------------------------------------------------- geometry


@dataclass(frozen=True)
class ImageTransform:
    """Resize by (sx, sy) to `resized` (W, H), crop at integer (x0, y0) to `out` (W, H), then maybe flip."""

    sx: float
    sy: float
    resized: tuple[int, int]
    x0: int
    y0: int
    out: tuple[int, int]
    flip: bool

    def points(self, xy: np.ndarray) -> np.ndarray:
        """(N, 2) pixels of the original image -> pixels of the output image."""
        x = (xy[:, 0] + 0.5) * self.sx - 0.5 - self.x0
        y = (xy[:, 1] + 0.5) * self.sy - 0.5 - self.y0
        if self.flip:
            x = self.out[0] - 1 - x
        return np.stack([x, y], 1)

    def inside(self, xy: np.ndarray) -> np.ndarray:
        """Output pixels that lie on the image (not on padding, not outside)."""
        w, h = self.resized
        x = xy[:, 0] if not self.flip else self.out[0] - 1 - xy[:, 0]
        xr, yr = x + self.x0, xy[:, 1] + self.y0  # back to resized-image coordinates
        return (
            (x >= -0.5)
            & (x < self.out[0] - 0.5)
            & (xy[:, 1] >= -0.5)
            & (xy[:, 1] < self.out[1] - 0.5)
            & (xr >= -0.5)
            & (xr < w - 0.5)
            & (yr >= -0.5)
            & (yr < h - 0.5)
        )

    def resize(self, img: np.ndarray, nearest: bool = False) -> np.ndarray:
        """Resize an (H, W[, C]) array to `resized` (area/linear, or exact nearest for labels)."""
        h, w = img.shape[:2]
        rw, rh = self.resized
        if (rw, rh) == (w, h):
            return img
        if nearest:  # nearest source pixel centre: src = floor((dst + 0.5) / s)
            cols = np.minimum(((np.arange(rw) + 0.5) / self.sx).astype(np.int64), w - 1)
            rows = np.minimum(((np.arange(rh) + 0.5) / self.sy).astype(np.int64), h - 1)
            return img[rows[:, None], cols[None, :]]
        return cv2.resize(img, (rw, rh), interpolation=cv2.INTER_AREA if rw < w else cv2.INTER_LINEAR)

    def crop_flip(self, resized: np.ndarray, fill: int = 0) -> np.ndarray:
        """Crop and flip an array already resized by `resize`; always a new array."""
        out = crop(resized, self.x0, self.y0, *self.out, fill)
        return np.ascontiguousarray(out[:, ::-1]) if self.flip else out.copy()

    def image(self, img: np.ndarray, fill: int = 0, nearest: bool = False) -> np.ndarray:
        """Apply to an (H, W[, C]) array: resize, crop, flip."""
        return self.crop_flip(self.resize(img, nearest), fill)


def crop(img: np.ndarray, x0: int, y0: int, width: int, height: int, fill: int = 0) -> np.ndarray:
    """The (height, width) window at (x0, y0) of `img`; parts outside the image are `fill`."""
    h, w = img.shape[:2]
    if x0 >= 0 and y0 >= 0 and x0 + width <= w and y0 + height <= h:
        return img[y0 : y0 + height, x0 : x0 + width]
    out = np.full((height, width, *img.shape[2:]), fill, dtype=img.dtype)
    sx0, sy0, sx1, sy1 = max(x0, 0), max(y0, 0), min(x0 + width, w), min(y0 + height, h)
    if sx1 > sx0 and sy1 > sy0:
        out[sy0 - y0 : sy1 - y0, sx0 - x0 : sx1 - x0] = img[sy0:sy1, sx0:sx1]
    return out


def plan_transform(
    size: tuple[int, int], centre: np.ndarray | None, cfg: AugmentConfig, rng: np.random.Generator
) -> ImageTransform:
    """Draw the geometric transform of one image of `size` (W, H); the crop is centred on `centre` (x, y)."""
    w, h = size
    s = cfg.short_side / min(w, h) if cfg.short_side else 1.0
    if cfg.scale_jitter:
        s *= float(np.exp(rng.uniform(-cfg.scale_jitter, cfg.scale_jitter)))
    rw, rh = max(1, round(w * s)), max(1, round(h * s))
    sx, sy = rw / w, rh / h
    cw, ch = cfg.crop if min(cfg.crop) > 0 else (rw, rh)
    x0 = y0 = 0
    if min(cfg.crop) > 0:
        cx, cy = ((centre + 0.5) * (sx, sy) - 0.5) if centre is not None else ((rw - 1) / 2, (rh - 1) / 2)
        x0 = int(np.clip(round(cx - (cw - 1) / 2), min(0, rw - cw), max(0, rw - cw)))
        y0 = int(np.clip(round(cy - (ch - 1) / 2), min(0, rh - ch), max(0, rh - ch)))
    return ImageTransform(sx, sy, (rw, rh), x0, y0, (cw, ch), bool(rng.random() < cfg.hflip))


def photometric(img: np.ndarray, cfg: AugmentConfig, rng: np.random.Generator) -> np.ndarray:
    """Brightness, contrast and saturation jitter of an RGB uint8 image."""
    if not (cfg.brightness or cfg.contrast or cfg.saturation):
        return img
    b, c, s = (rng.uniform(1 - v, 1 + v) for v in (cfg.brightness, cfg.contrast, cfg.saturation))
    x = img.astype(np.float32) * b
    gray = x @ np.array([0.299, 0.587, 0.114], np.float32)
    x = (x - gray.mean()) * c + gray.mean()
    gray = x @ np.array([0.299, 0.587, 0.114], np.float32)
    x = gray[..., None] + (x - gray[..., None]) * s
    return np.clip(x + 0.5, 0, 255).astype(np.uint8)


# ----------------------------------------------------------------------------- dataset


class ArrayCache:
    """Arrays kept in memory by key, least recently used dropped beyond `max_bytes` (0 = no cache).

    The dataset keeps each image (and label) decoded *and resized* here, so that a training step
    crops small uint8 arrays instead of decoding full-resolution PNGs. Entries are read-only.
    Every DataLoader worker holds its own cache (keep workers persistent to keep it warm).
    """

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.bytes = 0
        self._items: OrderedDict[Hashable, np.ndarray] = OrderedDict()

    def __len__(self) -> int:
        return len(self._items)

    def get(self, key: Hashable, make: Callable[[], np.ndarray]) -> np.ndarray:
        """The cached array of `key`, made (and cached when it fits) on a miss."""
        if key in self._items:
            self._items.move_to_end(key)
            return self._items[key]
        value = make()
        if value.nbytes <= self.max_bytes:
            value.flags.writeable = False
            self._items[key] = value
            self.bytes += value.nbytes
            while self.bytes > self.max_bytes:
                self.bytes -= self._items.popitem(last=False)[1].nbytes
        return value


class CorrespondenceDataset(Dataset):
    """Image pairs of a dataset folder with their matches (see the module docstring).

    An item is a dict: `image0`, `image1` uint8 (3, H, W); `label0`, `label1` uint8 (H, W)
    (255 where unknown); `matches` float32 (n, 4) = x0 y0 x1 y1; `weights` float32 (n,);
    `pair_id`, `image_id0`, `image_id1`, `condition0`, `condition1`, `split`.
    Index with an int (transforms seeded by `seed` and the index) or with `(index, seed)`
    as `PairBatchSampler` does. With `load_images=False` only the matches are read (the
    images' sizes come from images.parquet), which is what the loader benchmark compares.
    Decoded, resized images and labels are kept in an `ArrayCache` of `cache_mb` MiB.
    """

    def __init__(
        self,
        path: str | Path | CorrespondenceStore,
        filter: PairFilter | None = None,
        augment: AugmentConfig | None = None,
        seed: int = 0,
        load_images: bool = True,
        with_labels: bool = True,
        cache_mb: float = 512.0,
    ) -> None:
        self.store = path if isinstance(path, CorrespondenceStore) else open_dataset(path)
        self.filter = filter or PairFilter()
        self.augment = augment or AugmentConfig()
        self.seed = seed
        self.load_images = load_images
        self.with_labels = with_labels
        images = self.store.images.set_index("image_id")
        pairs = self.store.pair_conditions(unknown="")
        cond0 = pairs["reference"].to_numpy(dtype=object)
        cond1 = pairs["condition"].to_numpy(dtype=object)
        keep = pairs["num_matches"].to_numpy() >= self.filter.min_matches
        if self.filter.splits is not None:
            keep &= pairs["split"].isin(self.filter.splits).to_numpy()
        if self.filter.conditions is not None:
            keep &= np.isin(cond1, self.filter.conditions)
        self.pair_ids = pairs["pair_id"].to_numpy()[keep]
        self.image_ids = pairs[["image_id0", "image_id1"]].to_numpy()[keep]
        self.conditions = np.stack([cond0[keep], cond1[keep]], 1)
        self.splits = pairs["split"].to_numpy(dtype=object)[keep]
        self._size = {
            int(i): (int(r.width), int(r.height)) for i, r in images[["width", "height"]].iterrows()
        }
        self._labels = label_paths(self.store) if with_labels else {}
        self.cache = ArrayCache(int(cache_mb * 2**20))

    def __len__(self) -> int:
        return len(self.pair_ids)

    def condition_pairs(self) -> list[str]:
        """'<cond0>|<cond1>' of every item, for balancing and reports."""
        return [f"{a}|{b}" for a, b in self.conditions]

    def __getitem__(self, item: int | tuple[int, int]) -> dict:
        index, seed = item if isinstance(item, tuple) else (item, None)
        rng = np.random.default_rng([self.seed, index] if seed is None else [self.seed, index, seed])
        pair_id = int(self.pair_ids[index])
        m = self.store.matches(pair_id)
        xy0 = np.stack([m["x0"], m["y0"]], 1).astype(np.float64)
        xy1 = np.stack([m["x1"], m["y1"]], 1).astype(np.float64)
        centre = int(rng.integers(len(xy0))) if len(xy0) else None
        sample: dict = {"pair_id": pair_id, "split": self.splits[index]}
        keep = np.ones(len(xy0), dtype=bool)
        out_xy = []
        for side, xy in ((0, xy0), (1, xy1)):
            image_id = int(self.image_ids[index, side])
            t = plan_transform(
                self._size[image_id], None if centre is None else xy[centre], self.augment, rng
            )
            p = t.points(xy)
            keep &= t.inside(p)
            out_xy.append(p)
            sample[f"image_id{side}"] = image_id
            sample[f"condition{side}"] = self.conditions[index, side]
            if self.load_images:
                img, lab = self._resized(image_id, t)
                img = photometric(t.crop_flip(img), self.augment, rng)
                sample[f"image{side}"] = torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1)))
                sample[f"label{side}"] = torch.from_numpy(t.crop_flip(lab, fill=IGNORE))
        idx = np.flatnonzero(keep)
        if len(idx) > self.augment.max_matches:
            idx = np.sort(rng.choice(idx, self.augment.max_matches, replace=False))
        sample["matches"] = torch.from_numpy(
            np.concatenate([out_xy[0][idx], out_xy[1][idx]], 1).astype(np.float32)
        )
        sample["weights"] = torch.from_numpy(m["weight"][idx].astype(np.float32))
        return sample

    def view(self, image_id: int) -> tuple[np.ndarray, np.ndarray]:
        """RGB image (H, W, 3) and label (H, W) of one image resized to `short_side`, without crop,
        flip, jitter or photometric change (for evaluation; matches of a dataset built with
        `crop=(0, 0), hflip=0, scale_jitter=0` are in these pixels). Read-only cached arrays."""
        return self._resized(image_id, self._view_transform(image_id))

    def view_batches(
        self, image_ids: Sequence[int], batch_size: int = 16
    ) -> Iterator[tuple[list[int], torch.Tensor]]:
        """The `view` images in batches of equal size: (image ids, uint8 (B, 3, H, W)); the order of
        `image_ids` is kept within each size."""
        by_size: dict[tuple[int, int], list[int]] = {}
        for image_id in image_ids:
            by_size.setdefault(self._view_transform(image_id).resized, []).append(int(image_id))
        for ids in by_size.values():
            for k in range(0, len(ids), batch_size):
                chunk = ids[k : k + batch_size]
                yield chunk, torch.from_numpy(np.stack([self.view(i)[0] for i in chunk])).permute(0, 3, 1, 2)

    def _view_transform(self, image_id: int) -> ImageTransform:
        plain = replace(self.augment, crop=(0, 0), hflip=0.0, scale_jitter=0.0)
        return plan_transform(self._size[image_id], None, plain, np.random.default_rng(0))

    def _resized(self, image_id: int, t: ImageTransform) -> tuple[np.ndarray, np.ndarray]:
        """(image, label) of `image_id` resized by `t` (label all IGNORE when unknown), from the cache."""
        img = self.cache.get(
            (image_id, "image", t.resized),
            lambda: t.resize(read_store_image(self.store, image_id, self._size[image_id])),
        )
        label = self._labels.get(image_id)
        lab = self.cache.get(
            (image_id, "label", t.resized),
            lambda: (
                t.resize(read_label(label), nearest=True)
                if label is not None
                else np.full(t.resized[::-1], IGNORE, np.uint8)
            ),
        )
        return img, lab


class PadCollate:
    """Stack samples; pad matches to `max_matches` rows with a `valid` mask (picklable for workers)."""

    def __init__(self, max_matches: int) -> None:
        self.max_matches = max_matches

    def __call__(self, samples: Sequence[dict]) -> dict:
        b, n = len(samples), self.max_matches
        matches = torch.zeros(b, n, 4)
        weights = torch.zeros(b, n)
        valid = torch.zeros(b, n, dtype=torch.bool)
        for i, s in enumerate(samples):
            k = min(len(s["matches"]), n)
            matches[i, :k], weights[i, :k], valid[i, :k] = s["matches"][:k], s["weights"][:k], True
        out = {"matches": matches, "weights": weights, "valid": valid}
        for key in samples[0]:
            if key in out:
                continue
            values = [s[key] for s in samples]
            if isinstance(
                values[0], torch.Tensor
            ):  # numpy's one-thread copy: torch.stack's threads stall on a busy CPU
                out[key] = torch.from_numpy(np.stack([v.numpy() for v in values]))
            else:
                out[key] = torch.tensor(values) if isinstance(values[0], int) else list(values)
        return out


class PairBatchSampler(Sampler[list[tuple[int, int]]]):
    """Batches of `(index, seed)` for training steps `start_step .. num_steps - 1`.

    Every step's global batch (batch_size x world_size items) depends only on (seed, step):
    with `balance`, items are drawn so that every condition pair is equally likely; otherwise
    each epoch is a permutation. Rank r takes every world_size-th item of the global batch.
    """

    def __init__(
        self,
        groups: Sequence[str],
        batch_size: int,
        num_steps: int,
        seed: int = 0,
        balance: bool = True,
        start_step: int = 0,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        if len(groups) == 0:
            raise DatasetFormatError("no image pairs to sample from (check the split / condition filters)")
        self.n = len(groups)
        self.batch_size, self.num_steps, self.seed = batch_size, num_steps, seed
        self.start_step, self.rank, self.world_size = start_step, rank, world_size
        self.prob = None
        if balance:
            _, inverse, counts = np.unique(
                np.asarray(groups, dtype=object).astype(str), return_inverse=True, return_counts=True
            )
            self.prob = 1.0 / (counts[inverse] * len(counts))

    def __len__(self) -> int:
        return max(self.num_steps - self.start_step, 0)

    def global_batch(self, step: int) -> np.ndarray:
        """Dataset indices of one step's global batch."""
        g = self.batch_size * self.world_size
        if self.prob is not None:
            return np.random.default_rng([self.seed, step]).choice(self.n, g, p=self.prob)
        start = step * g
        epochs = range(start // self.n, (start + g - 1) // self.n + 1)
        order = np.concatenate(
            [np.random.default_rng([self.seed, 1 << 20, e]).permutation(self.n) for e in epochs]
        )
        offset = start - epochs[0] * self.n
        return order[offset : offset + g]

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        for step in range(self.start_step, self.num_steps):
            batch = self.global_batch(step)
            slots = range(self.rank, len(batch), self.world_size)
            yield [(int(batch[k]), step * len(batch) + k) for k in slots]


__all__ = [
    "AugmentConfig",
    "PairFilter",
    "ArrayCache",
    "CorrespondenceDataset",
    "PadCollate",
    "PairBatchSampler",
    "ImageTransform",
    "plan_transform",
    "photometric",
    "crop",
    "label_paths",
    "max_labels",
    "read_image",
    "read_label",
    "read_store_image",
    "with_image_root",
    "IGNORE",
]
