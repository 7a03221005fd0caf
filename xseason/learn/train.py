"""Training: supervised segmentation on labelled images + lambda x correspondence loss.

`train(cfg)` runs `cfg.steps` optimisation steps. Each step takes a batch of image pairs
(`CorrespondenceDataset`, batches drawn by `PairBatchSampler` from (seed, step)); the images
of the `supervised_conditions` (by default the reference side's conditions) contribute a
cross-entropy against their labels, and every pair contributes `corr_weight` x the configured
correspondence loss (`losses.correspondence_loss`) once `step >= corr_start_step`. A network
with an auxiliary head (outputs `aux_logits`, `aux_features`, as PSPNet's) adds `aux_weight` x
the same losses on it (the reference paper: 0.4).

Fair baselines (BatchNorm statistics are the only thing the target images change without a loss):
`target_forward` forwards the target images of every batch too (no loss on them), so that a
baseline's BatchNorm statistics see the other conditions as the correspondence model's do;
`adabn` re-estimates every BatchNorm's running statistics after the last step over the training
images of all conditions, without gradient (AdaBN, `adapt_batchnorm`).

Before training, the labels are checked (`check_labels`): the supervised images must have label
files, and every label value of the dataset must be < `model.num_classes` (or 255 = ignore).

Outputs under `cfg.out`: `checkpoints/last.pt` (everything needed for an exact resume: model,
optimizer, scheduler, RNG states, step, cluster centroids), `model.pt` (the final network),
`metrics.jsonl` / `metrics.csv` (one row per `log_every` steps) and `curves.png`.
A rerun with the same `out` resumes from `last.pt` (`resume: true`; refused when the dataset was
rebuilt since: `dataset_fingerprint`); on CPU the result is bit-identical to an uninterrupted run.
Under `torchrun` (WORLD_SIZE > 1) it trains with DistributedDataParallel (NCCL on CUDA, gloo on
CPU), each rank taking its share of the batch.
"""

from __future__ import annotations

import json
import logging
import math
import os
import random
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.utils.data import DataLoader

from xseason.core.config import config_file, load_config, to_dict
from xseason.core.errors import ConfigError, DatasetFormatError
from xseason.core.files import atomic_path, sha256_file
from xseason.core.log import progress
from xseason.core.plots import draw_line_chart
from xseason.learn.dataset import (
    IGNORE,
    AugmentConfig,
    CorrespondenceDataset,
    PadCollate,
    PairBatchSampler,
    PairFilter,
    label_paths,
    max_labels,
)
from xseason.learn.losses import LossConfig, correspondence_loss, kmeans, loss_input, sample_at
from xseason.learn.models import (
    ModelConfig,
    build_model,
    load_weights,
    model_payload,
    read_checkpoint,
    state_digest,
    upsample_to,
)
from xseason.store import CorrespondenceStore

log = logging.getLogger(__name__)


@dataclass
class DataConfig:
    """Which pairs train, how they are augmented and loaded."""

    splits: list[str] = field(default_factory=lambda: ["train"])
    conditions: list[str] | None = None  # conditions of the non-reference image; None = all
    min_matches: int = 10
    balance: bool = True  # every condition pair equally likely
    num_workers: int = 1
    cache_mb: float = 512.0  # decoded, resized images kept in memory per loader process (0 = none)
    augment: AugmentConfig = field(default_factory=AugmentConfig)


@dataclass
class TrainConfig:
    """Everything about one training run (`configs/train.yaml`)."""

    dataset: Path | None = None  # a dataset folder (docs/FORMAT.md §3); required
    out: Path = Path("runs/train")
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    corr_weight: float = 1.0  # lambda; 0 = supervised-only baseline
    aux_weight: float = 0.4  # losses on the auxiliary head, for networks that have one (PSPNet: 0.4)
    target_forward: bool = False  # forward every batch's target images too (BatchNorm sees them; no loss)
    adabn: bool = False  # after the last step: BatchNorm statistics re-estimated over all training images
    corr_start_step: int = 0  # correspondence loss from this step on (supervised warm-up before)
    supervised_weight: float = 1.0
    supervised_conditions: list[str] | None = None  # None = the reference (image 0) conditions of the pairs
    steps: int = 1500
    batch_size: int = 4  # pairs per step (per process under torchrun)
    optimizer: Literal["adamw", "sgd"] = "adamw"
    lr: float = 2e-3
    momentum: float = 0.9  # sgd
    weight_decay: float = 1e-4
    poly_power: float = 0.9  # lr = base * (1 - step / steps) ** power
    cluster_refresh: int = 100  # cluster loss: recompute the k-means centroids every n steps
    seed: int = 0
    device: str = "auto"  # auto = cuda when present, else cpu
    amp: bool = True  # bf16 autocast on CUDA
    channels_last: bool = True  # on CUDA
    threads: int = 0  # torch CPU threads; 0 = torch's default
    init_checkpoint: Path | None = None  # start from a user's weights (matching tensors only)
    resume: bool = True  # continue from out/checkpoints/last.pt when present
    max_steps_per_run: int = 0  # stop (with a checkpoint) after this many steps in one call; 0 = no limit
    log_every: int = 10
    checkpoint_every: int = 250
    progress: bool = True

    def validate(self) -> None:
        if self.steps < 1 or self.batch_size < 1 or self.log_every < 1 or self.checkpoint_every < 1:
            raise ValueError("steps, batch_size, log_every and checkpoint_every must be >= 1")
        if min(self.corr_weight, self.supervised_weight, self.aux_weight) < 0 or self.lr <= 0:
            raise ValueError("corr_weight, supervised_weight, aux_weight must be >= 0 and lr > 0")


@dataclass
class TrainResult:
    """What a run produced."""

    out: Path
    model_path: Path
    steps: int  # steps done so far (== cfg.steps once finished)
    steps_run: int  # steps trained by this call (0: the run was already finished)
    last_metrics: dict
    seconds_per_step: (
        float  # mean over the steps run in this call (after the first); else over the logged ones
    )
    images_per_second: float  # 2 x pairs per step / seconds per step (both images of a pair are loaded)
    weights_digest: str  # models.state_digest of the final network (of this rank)

    def summary(self) -> str:
        """One line for the command line: steps, how many were trained now, speed, the model file."""
        now = f"{self.steps_run} trained now" if self.steps_run else "already trained"
        return (
            f"{self.steps} steps ({now}), {self.seconds_per_step:.3f} s/step, "
            f"{self.images_per_second:.1f} images/s -> {self.model_path}"
        )


class _Runtime:
    """Device and process-group facts of this run."""

    def __init__(self, cfg: TrainConfig) -> None:
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.owns_group = False  # this run started the process group, so it ends it
        cuda = torch.cuda.is_available() if cfg.device == "auto" else cfg.device.startswith("cuda")
        if self.world > 1:
            if not dist.is_initialized():
                dist.init_process_group("nccl" if cuda else "gloo")
                self.owns_group = True
            local = int(os.environ.get("LOCAL_RANK", "0"))
            self.device = torch.device(f"cuda:{local}" if cuda else "cpu")
            if cuda:
                torch.cuda.set_device(self.device)
        else:
            self.device = (
                torch.device("cuda" if cuda else "cpu") if cfg.device == "auto" else torch.device(cfg.device)
            )
        self.cuda = self.device.type == "cuda"
        self.main = self.rank == 0


def train(cfg: TrainConfig) -> TrainResult:
    """Run (or resume) a training run; see the module docstring."""
    if cfg.dataset is None:
        raise ConfigError("train: 'dataset' is required (a dataset folder made by 'xseason build')")
    rt = _Runtime(cfg)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    _seed_everything(cfg.seed + rt.rank)
    out = Path(cfg.out)
    ckpt_path = out / "checkpoints" / "last.pt"

    ds = CorrespondenceDataset(
        cfg.dataset,
        PairFilter(cfg.data.splits, cfg.data.conditions, cfg.data.min_matches),
        cfg.data.augment,
        seed=cfg.seed,
        cache_mb=cfg.data.cache_mb,
    )
    supervised = set(
        cfg.supervised_conditions if cfg.supervised_conditions is not None else ds.conditions[:, 0]
    )
    if cfg.model.num_classes is None:
        cfg = replace(cfg, model=replace(cfg.model, num_classes=dataset_num_classes(ds.store)))
    if len(ds) and cfg.supervised_weight > 0:
        check_labels(ds, supervised, cfg.model.num_classes)
    torch.manual_seed(cfg.seed)  # identical initial weights on every rank
    model = build_model(cfg.model)
    if cfg.init_checkpoint is not None:
        load_weights(model, cfg.init_checkpoint)
    model.to(
        rt.device,
        memory_format=torch.channels_last if (rt.cuda and cfg.channels_last) else torch.preserve_format,
    )
    optimizer = _optimizer(model, cfg)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: max(1.0 - s / cfg.steps, 0.0) ** cfg.poly_power
    )
    state = {"step": 0, "centroids": None}
    fingerprint = dataset_fingerprint(cfg.dataset)
    if cfg.resume and ckpt_path.is_file():
        trained_on = checkpoint_dataset(ckpt_path)
        if trained_on not in (None, fingerprint):
            raise ConfigError(
                f"{ckpt_path} was trained on another dataset than {cfg.dataset} (rebuilt since?): "
                "train into a new 'out', or set resume=false to start over"
            )
        state = _load_state(ckpt_path, model, optimizer, scheduler, rt)
    net = model
    if rt.world > 1:
        net = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[rt.device.index] if rt.cuda else None, find_unused_parameters=True
        )

    start = state["step"]
    sampler = PairBatchSampler(
        ds.condition_pairs(),
        cfg.batch_size,
        cfg.steps,
        seed=cfg.seed,
        balance=cfg.data.balance,
        start_step=start,
        rank=rt.rank,
        world_size=rt.world,
    )
    loader = DataLoader(
        ds,
        batch_sampler=sampler,
        collate_fn=PadCollate(cfg.data.augment.max_matches),
        num_workers=cfg.data.num_workers,
        pin_memory=rt.cuda,
        persistent_workers=cfg.data.num_workers > 0,
    )
    log = _MetricLog(out, start, enabled=rt.main)
    centroids = state["centroids"]
    model.train()
    bar = progress(
        total=cfg.steps, initial=start, enabled=cfg.progress and rt.main, desc="train", unit="step"
    )
    times: list[float] = []
    metrics: dict = {}
    t_last = time.perf_counter()
    end = min(cfg.steps, start + cfg.max_steps_per_run) if cfg.max_steps_per_run else cfg.steps
    for step, batch in zip(range(start, end), loader):
        use_corr = cfg.corr_weight > 0 and step >= cfg.corr_start_step
        if use_corr and cfg.loss.kind == "cluster" and (centroids is None or step % cfg.cluster_refresh == 0):
            centroids = _refresh_centroids(net, batch, cfg, rt, step)
        losses = _step_losses(net, batch, cfg, rt, supervised, use_corr, centroids)
        total = cfg.supervised_weight * losses["supervised"] + (
            cfg.corr_weight * losses["corr"] if use_corr else 0.0
        )
        optimizer.zero_grad(set_to_none=True)
        total.backward()
        optimizer.step()
        scheduler.step()
        now = time.perf_counter()
        times.append(now - t_last)
        t_last = now
        bar.update(1)
        if (step + 1) % cfg.log_every == 0 or step + 1 == cfg.steps:
            metrics = {
                "step": step + 1,
                "lr": scheduler.get_last_lr()[0],
                "loss": float(total.detach()),
                **{k: float(v.detach()) for k, v in losses.items()},
                "seconds_per_step": float(np.mean(times[-cfg.log_every :])),
            }
            log.write(metrics)
            bar.set_postfix(loss=f"{metrics['loss']:.3f}")
        if rt.main and ((step + 1) % cfg.checkpoint_every == 0 or step + 1 == end):
            _save_state(ckpt_path, model, optimizer, scheduler, step + 1, centroids, cfg, fingerprint)
    bar.close()
    if cfg.adabn and end == cfg.steps:
        adapt_batchnorm(model, ds, rt.device, cfg.seed)
    if rt.world > 1:  # BN statistics differ per rank; make every rank hold rank 0's
        for buf in model.buffers():
            dist.broadcast(buf, 0)
    model_path = out / "model.pt"
    if rt.main:
        with atomic_path(model_path) as tmp:
            torch.save({**model_payload(model), "centroids": centroids, "train_config": to_dict(cfg)}, tmp)
        log.finish()
    if rt.world > 1:
        dist.barrier()
        if rt.owns_group:  # a group left to the interpreter's exit can abort a rank (gloo threads)
            dist.destroy_process_group()
    logged = log.rows()
    spp = float(np.mean(times[1:] or times)) if times else _logged_seconds_per_step(logged)
    return TrainResult(
        out,
        model_path,
        end,
        len(times),
        metrics or (logged[-1] if logged else {}),
        spp,
        2 * cfg.batch_size * rt.world / spp,
        state_digest(model),
    )


def _logged_seconds_per_step(rows: list[dict]) -> float:
    """Mean seconds per step of a run's metrics.jsonl rows (NaN without any), for a call that trained none."""
    values = [r["seconds_per_step"] for r in rows if "seconds_per_step" in r]
    return float(np.mean(values)) if values else math.nan


def _optimizer(model: torch.nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(
            model.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay
        )
    return torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)


def _images(batch: dict, key: str, rt: _Runtime, cfg: TrainConfig) -> torch.Tensor:
    img = batch[key].to(rt.device, non_blocking=True).float().div_(255)
    return img.contiguous(memory_format=torch.channels_last) if (rt.cuda and cfg.channels_last) else img


def _supervised_labels(
    batch: dict, side: int, supervised: set[str], device: torch.device
) -> torch.Tensor | None:
    """Labels of the batch's images of side 0/1, IGNORE for images whose condition is not supervised."""
    keep = torch.tensor([c in supervised for c in batch[f"condition{side}"]])
    if not keep.any():
        return None
    labels = batch[f"label{side}"].clone()
    labels[~keep] = IGNORE
    return labels.to(device, non_blocking=True).long()


def _step_losses(
    net,
    batch: dict,
    cfg: TrainConfig,
    rt: _Runtime,
    supervised: set[str],
    use_corr: bool,
    centroids: torch.Tensor | None,
) -> dict[str, torch.Tensor]:
    labels = [_supervised_labels(batch, s, supervised, rt.device) for s in (0, 1)]
    both = use_corr or labels[1] is not None or cfg.target_forward
    images = [_images(batch, "image0", rt, cfg)] + ([_images(batch, "image1", rt, cfg)] if both else [])
    size = tuple(images[0].shape[-2:])
    with torch.autocast(rt.device.type, dtype=torch.bfloat16, enabled=rt.cuda and cfg.amp):
        outs = net(torch.cat(images))
    b = len(images[0])
    count = sum(int((lab != IGNORE).sum()) for lab in labels if lab is not None)
    result = {"supervised": torch.zeros((), device=rt.device)}
    if use_corr:
        result["corr"] = torch.zeros((), device=rt.device)
        m = batch["matches"].to(rt.device, non_blocking=True)
        w = batch["weights"].to(rt.device, non_blocking=True)
        v = batch["valid"].to(rt.device, non_blocking=True)
    for i, (weight, head) in enumerate(_heads(outs, cfg.aux_weight)):
        halves = [{k: t[j * b : (j + 1) * b].float() for k, t in head.items()} for j in range(len(images))]
        for out, lab in zip(halves, labels):
            if lab is not None:
                logits = upsample_to(out["logits"], lab.shape[-2:])
                ce = F.cross_entropy(logits, lab, ignore_index=IGNORE, reduction="sum")
                result["supervised"] = result["supervised"] + weight * ce / max(count, 1)
        # An auxiliary head adds the correspondence loss when it has the output the loss reads
        # (and for the cluster loss never: the centroids are of the main features).
        if use_corr and (i == 0 or (cfg.loss.kind != "cluster" and loss_input(cfg.loss.kind) in head)):
            corr = correspondence_loss(*halves, m, w, v, size, cfg.loss, centroids)
            result["corr"] = result["corr"] + weight * corr
    return result


def _heads(outs: dict[str, torch.Tensor], aux_weight: float) -> list[tuple[float, dict[str, torch.Tensor]]]:
    """(weight, {"logits", "features"}) of the network's main head and, when it has one and
    `aux_weight` > 0, of its auxiliary head (`aux_logits`, and `aux_features` where given)."""
    heads = [(1.0, {k: outs[k] for k in ("logits", "features")})]
    if aux_weight > 0 and "aux_logits" in outs:
        aux = {k.removeprefix("aux_"): v for k, v in outs.items() if k in ("aux_logits", "aux_features")}
        heads.append((aux_weight, aux))
    return heads


@torch.no_grad()
def _refresh_centroids(net, batch: dict, cfg: TrainConfig, rt: _Runtime, step: int) -> torch.Tensor:
    """k-means of the reference features at this batch's matches (rank 0's, broadcast)."""
    img = _images(batch, "image0", rt, cfg)
    with torch.autocast(rt.device.type, dtype=torch.bfloat16, enabled=rt.cuda and cfg.amp):
        maps = net(img)["features"].float()
    m, v = batch["matches"].to(rt.device), batch["valid"].to(rt.device)
    feats = sample_at(maps, m[..., :2], tuple(img.shape[-2:]))[v]
    centroids = kmeans(feats, cfg.loss.num_clusters, cfg.loss.kmeans_iters, seed=cfg.seed + step)
    if rt.world > 1:
        dist.broadcast(centroids, 0)
    return centroids


@torch.no_grad()
def adapt_batchnorm(
    model: torch.nn.Module, ds: CorrespondenceDataset, device: torch.device, seed: int
) -> int:
    """AdaBN: every BatchNorm's running statistics re-estimated over the images of `ds` (both sides
    of its pairs, each image once, as `ds.view` shows it: resized, no augmentation), as the
    cumulative average of per-batch statistics, without gradient; the rest of the network in eval
    mode (no dropout). Returns how many images were seen."""
    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    image_ids = np.unique(ds.image_ids)
    if not norms or not len(image_ids):
        return 0
    was_training = model.training
    model.eval()
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average
        m.train()
    order = np.random.default_rng(seed).permutation(image_ids)  # conditions mixed within batches
    for _, images in ds.view_batches(order.tolist()):
        model(images.to(device).float().div_(255))
    for m, momentum in zip(norms, momenta):
        m.momentum = momentum
    model.train(was_training)
    log.info("AdaBN: BatchNorm statistics re-estimated over %d training images", len(image_ids))
    return len(image_ids)


def dataset_num_classes(store: CorrespondenceStore) -> int:
    """The classes of `store`'s labels: the largest class id of all its label files + 1 (at least 2)."""
    files = list(label_paths(store).values())
    values = max_labels(files) if files else np.zeros(0, np.int64)
    if not len(values) or values.max() < 0:
        raise DatasetFormatError(
            f"{store.root}: model.num_classes is null (from the labels) but the dataset has no label "
            "values: give model.num_classes"
        )
    num_classes = max(int(values.max()) + 1, 2)
    log.info("model.num_classes = %d (the largest label id of %d label files + 1)", num_classes, len(files))
    return num_classes


def check_labels(ds: CorrespondenceDataset, supervised: set[str], num_classes: int) -> None:
    """Stop before training when the supervised images of `ds` (those of the `supervised` conditions)
    have no label file, or when a label file of the dataset holds a value >= `num_classes` (255 =
    ignore is allowed). A few supervised images without labels are only logged."""
    store = ds.store
    paths = label_paths(store)
    ids = np.unique(ds.image_ids[np.isin(ds.conditions, list(supervised))])
    names = sorted(supervised)
    what = f"the {len(ids)} supervised training images (condition{'s' * (len(names) > 1)} {', '.join(names)})"
    if "label" not in store.images.columns:
        raise DatasetFormatError(
            f"{store.root}: no labels to train on: images.parquet has no 'label' column, and {what} need "
            "label PNGs (give the manifest a 'label' column and rebuild, or set supervised_weight=0)"
        )
    unlabelled = [int(i) for i in ids if int(i) not in paths]
    if len(unlabelled) == len(ids):
        raise DatasetFormatError(
            f"{store.root}: none of {what} has a label in images.parquet's 'label' column "
            f"(e.g. {store.images.set_index('image_id').at[unlabelled[0], 'image']}); label them or set "
            "supervised_conditions / supervised_weight=0"
        )
    if unlabelled:
        log.warning("%s: %d of %s have no label (not supervised)", store.root, len(unlabelled), what)
    files = list(paths.values())
    values = max_labels(files)
    bad = np.flatnonzero(values >= num_classes)
    if len(bad):
        top = int(values.max())
        raise DatasetFormatError(
            f"{files[bad[0]]}: label value {int(values[bad[0]])} >= model.num_classes = {num_classes} "
            f"(class ids must be 0..{num_classes - 1}, or 255 = ignore); {len(bad)} of {len(files)} label "
            f"files of {store.root} exceed it, the largest value is {top}: set model.num_classes={top + 1} "
            "or fix the labels"
        )


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def dataset_fingerprint(dataset: str | os.PathLike) -> str:
    """Identity of a dataset build: the SHA-256 of its dataset.json (which records when it was written)."""
    return sha256_file(Path(dataset) / "dataset.json")


def checkpoint_dataset(path: Path) -> str | None:
    """The `dataset_fingerprint` a checkpoint was trained on (None: a checkpoint older than the record)."""
    return read_checkpoint(path).get("dataset_sha256")


def _save_state(
    path: Path, model, optimizer, scheduler, step: int, centroids, cfg: TrainConfig, dataset_sha256: str
) -> None:
    state = {
        **model_payload(model),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "step": step,
        "centroids": centroids,
        "train_config": to_dict(cfg),
        "dataset_sha256": dataset_sha256,
        "rng": {
            "torch": torch.get_rng_state(),
            "numpy": np.random.get_state(),
            "python": random.getstate(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
        },
    }
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def _load_state(path: Path, model, optimizer, scheduler, rt: _Runtime) -> dict:
    data = read_checkpoint(path)
    model.load_state_dict(data["model"])
    optimizer.load_state_dict(data["optimizer"])
    scheduler.load_state_dict(data["scheduler"])
    rng = data["rng"]
    torch.set_rng_state(rng["torch"])
    np.random.set_state(rng["numpy"])
    random.setstate(rng["python"])
    if rt.cuda and rng.get("cuda") is not None:
        torch.cuda.set_rng_state_all(rng["cuda"])
    centroids = data.get("centroids")
    return {"step": int(data["step"]), "centroids": None if centroids is None else centroids.to(rt.device)}


class _MetricLog:
    """metrics.jsonl (appended as training goes; trimmed to the resume step), then CSV + PNG curves."""

    def __init__(self, out: Path, start: int, enabled: bool) -> None:
        self.path = out / "metrics.jsonl"
        self.enabled = enabled
        if not enabled:
            return
        out.mkdir(parents=True, exist_ok=True)
        rows = self.rows()
        with atomic_path(self.path) as tmp:
            tmp.write_text("".join(json.dumps(r) + "\n" for r in rows if r["step"] <= start))

    def rows(self) -> list[dict]:
        if not self.path.is_file():
            return []
        return [json.loads(line) for line in self.path.read_text().splitlines() if line.strip()]

    def write(self, row: dict) -> None:
        if self.enabled:
            with self.path.open("a") as f:
                f.write(json.dumps(row) + "\n")

    def finish(self) -> None:
        df = pd.DataFrame(self.rows())
        if df.empty:
            return
        with atomic_path(self.path.with_name("metrics.csv")) as tmp:
            df.to_csv(tmp, index=False)
        series = {
            k: (df["step"].to_numpy(), df[k].to_numpy()) for k in ("loss", "supervised", "corr") if k in df
        }
        draw_line_chart(series, self.path.with_name("curves.png"), title="training loss", xlabel="step")


def load_train_config(path: str | Path | None = None, overrides: list[str] | None = None) -> TrainConfig:
    """TrainConfig from a YAML file, or a packaged config by name (`train`: `core.config.config_file`),
    and `key=value` overrides; no `path` = the defaults."""
    return load_config(TrainConfig, None if path is None else config_file(path), overrides)


__all__ = [
    "TrainConfig",
    "DataConfig",
    "TrainResult",
    "train",
    "load_train_config",
    "dataset_fingerprint",
    "checkpoint_dataset",
    "adapt_batchnorm",
    "check_labels",
]
