"""A compact segmentation network with class logits and an embedding head.

`SegNet` is a small encoder-decoder (stride-8 encoder with a pyramid-pooling context block,
a stride-4 decoder with one skip connection) trained from scratch: it needs no downloaded
weights and trains on a CPU at 160x120 .. 320x240. Both heads predict at 1/4 of the input
resolution; `losses.sample_at` reads them at sub-pixel image coordinates and
`upsample_to` brings logits to full resolution for segmentation losses and metrics.

Checkpoints: `save_checkpoint`-style dicts hold {"model": state_dict, "model_config": {...}};
`load_model` rebuilds a network from one, `load_weights` loads a user's checkpoint (such a
dict or a bare state_dict) into an existing network, matching names and shapes.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from xseason.core.config import from_dict, to_dict
from xseason.core.errors import XSeasonError


class CheckpointError(XSeasonError):
    """A checkpoint file is missing, unreadable or does not fit the network."""


@dataclass
class ModelConfig:
    """Size of the network."""

    num_classes: int = 19
    embedding_dim: int = 32
    widths: tuple[int, int, int] = (16, 32, 64)  # channels at strides 2, 4, 8
    decoder_width: int = 48

    def validate(self) -> None:
        if self.num_classes < 2 or self.embedding_dim < 1:
            raise ValueError("num_classes must be >= 2 and embedding_dim >= 1")
        if min(self.widths) < 1 or self.decoder_width < 1:
            raise ValueError("widths and decoder_width must be positive")


def _conv(cin: int, cout: int, stride: int = 1, dilation: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride, padding=dilation, dilation=dilation, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class _Residual(nn.Module):
    def __init__(self, channels: int, dilation: int = 1) -> None:
        super().__init__()
        self.body = nn.Sequential(_conv(channels, channels, dilation=dilation), _conv(channels, channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class _PyramidPool(nn.Module):
    """PSP-style context: the feature map plus pooled summaries at 1x1 and 2x2 (and 4x4)."""

    def __init__(self, channels: int, bins: tuple[int, ...] = (1, 2, 4)) -> None:
        super().__init__()
        branch = max(channels // 4, 8)
        self.bins = bins
        self.branches = nn.ModuleList(
            nn.Sequential(nn.Conv2d(channels, branch, 1), nn.ReLU(inplace=True))  # no BN: 1x1 maps at batch 1
            for _ in bins
        )
        self.fuse = _conv(channels + branch * len(bins), channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[-2:]
        pooled = [
            F.interpolate(b(F.adaptive_avg_pool2d(x, n)), size=size, mode="bilinear", align_corners=False)
            for n, b in zip(self.bins, self.branches)
        ]
        return self.fuse(torch.cat([x, *pooled], 1))


class SegNet(nn.Module):
    """(B, 3, H, W) float RGB in [0, 1] -> {"logits": (B, K, H/4, W/4), "embedding": (B, D, H/4, W/4)}."""

    def __init__(self, cfg: ModelConfig | None = None) -> None:
        super().__init__()
        self.cfg = cfg = cfg or ModelConfig()
        c1, c2, c3 = cfg.widths
        self.stem = nn.Sequential(_conv(3, c1, stride=2), _conv(c1, c1))
        self.down4 = nn.Sequential(_conv(c1, c2, stride=2), _Residual(c2))
        self.down8 = nn.Sequential(_conv(c2, c3, stride=2), _Residual(c3), _Residual(c3, dilation=2))
        self.context = _PyramidPool(c3)
        self.decode = nn.Sequential(
            _conv(c3 + c2, cfg.decoder_width), _conv(cfg.decoder_width, cfg.decoder_width)
        )
        self.classifier = nn.Conv2d(cfg.decoder_width, cfg.num_classes, 1)
        self.embedder = nn.Conv2d(cfg.decoder_width, cfg.embedding_dim, 1)

    def forward(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        x = (image - 0.45) / 0.25
        s4 = self.down4(self.stem(x))
        s8 = self.context(self.down8(s4))
        up = F.interpolate(s8, size=s4.shape[-2:], mode="bilinear", align_corners=False)
        feat = self.decode(torch.cat([up, s4], 1))
        return {"logits": self.classifier(feat), "embedding": self.embedder(feat)}


def upsample_to(maps: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear resize of (B, C, h, w) prediction maps to (H, W), pixel centres aligned (our convention)."""
    if tuple(maps.shape[-2:]) == tuple(size):
        return maps
    return F.interpolate(maps, size=size, mode="bilinear", align_corners=False)


def build_model(cfg: ModelConfig | None = None) -> SegNet:
    """A freshly initialised network (seed torch first for reproducible weights)."""
    return SegNet(cfg)


def read_checkpoint(path: str | Path) -> dict:
    """Load a checkpoint file onto the CPU, with a clear error when it is not one."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    try:
        data = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # torch raises many types for a bad file
        raise CheckpointError(
            f"{path}: not a readable torch checkpoint ({exc.__class__.__name__}: {exc})"
        ) from None
    if not isinstance(data, dict):
        raise CheckpointError(f"{path}: expected a dict (a state_dict or {{'model': state_dict, ...}})")
    return data


def load_model(path: str | Path) -> SegNet:
    """Rebuild the network saved by `xseason train` (its config travels in the checkpoint)."""
    data = read_checkpoint(path)
    if "model_config" not in data:
        raise CheckpointError(f"{path}: no 'model_config'; build the model yourself and use load_weights")
    model = build_model(from_dict(ModelConfig, data["model_config"], where="model_config"))
    load_weights(model, path, strict=True)
    return model


def load_weights(model: nn.Module, path: str | Path, strict: bool = False) -> list[str]:
    """Load a user's checkpoint into `model`; returns the names left at their initial values.

    Accepts `{"model": state_dict}` (our format) or a bare state_dict; a `module.` prefix (DDP)
    is stripped. Tensors whose name or shape does not fit are skipped unless `strict`; fewer
    than half of the network's tensors fitting is an error (another architecture).
    """
    data = read_checkpoint(path)
    state = data.get("model", data)
    state = {k.removeprefix("module."): v for k, v in state.items() if isinstance(v, torch.Tensor)}
    own = model.state_dict()
    fits = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    missing = sorted(set(own) - set(fits))
    useful = [k for k in fits if not k.endswith("num_batches_tracked")]
    wanted = [k for k in own if not k.endswith("num_batches_tracked")]
    if 2 * len(useful) < len(wanted) or (strict and (missing or len(fits) != len(state))):
        wrong = sorted(set(state) - set(fits))[:5]
        raise CheckpointError(
            f"{path}: checkpoint does not fit the network ({len(fits)}/{len(own)} tensors fit; "
            f"e.g. missing {missing[:5]}, unusable {wrong})"
        )
    model.load_state_dict(fits, strict=False)
    return missing


def model_payload(model: nn.Module) -> dict:
    """{"model": state_dict, "model_config": dict} of a (possibly DDP-wrapped) SegNet."""
    net = model.module if hasattr(model, "module") else model
    return {"model": net.state_dict(), "model_config": to_dict(net.cfg)}


def state_digest(model: nn.Module) -> str:
    """SHA-256 of every parameter and buffer (names, dtypes, bytes): equal digests = identical networks."""
    net = model.module if hasattr(model, "module") else model
    h = hashlib.sha256()
    for name, tensor in sorted(net.state_dict().items()):
        t = tensor.detach().cpu().contiguous()
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


__all__ = [
    "state_digest",
    "ModelConfig",
    "SegNet",
    "CheckpointError",
    "build_model",
    "upsample_to",
    "read_checkpoint",
    "load_model",
    "load_weights",
    "model_payload",
]
