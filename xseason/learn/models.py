"""Segmentation networks: class logits and the features that feed the classifier.

`ModelConfig.arch` picks one from the registry `ARCHS`:

- `segnet` (the default, trains on a CPU): a small encoder-decoder (stride-8 encoder with a
  pyramid-pooling context block, a stride-4 decoder with one skip connection) trained from
  scratch; it needs no downloaded weights and trains at 160x120 .. 320x240.
- `resnet{50,101}_{psp,deeplabv3,deeplabv3plus}`: a dilated ResNet-50/101 (`output_stride` 8 or
  16) with a PSPNet pyramid-pooling head, a DeepLabV3 ASPP head, or ASPP plus the DeepLabV3+
  stride-4 decoder. The backbone's parameter names are torchvision's (and timm's), so an ImageNet
  state_dict file given as `backbone_weights` loads into it; nothing is ever downloaded.

Every network maps (B, 3, H, W) float RGB in [0, 1] to a dict of "features" (B, C, h, w), the map
that feeds the classifier and the feature losses, "logits" (B, K, h, w), and with `aux_head`
(ResNet archs) "aux_logits" of PSPNet's auxiliary classifier on layer3. h, w = H/4, W/4 for
segnet and deeplabv3plus, H/output_stride, W/output_stride for psp and deeplabv3;
`losses.sample_at` reads the maps at sub-pixel image coordinates and `upsample_to` brings logits
to full resolution.

Checkpoints: `save_checkpoint`-style dicts hold {"model": state_dict, "model_config": {...}} (the
config names the arch); `load_model` rebuilds a network from one, `load_weights` loads a user's
checkpoint (such a dict or a bare state_dict) into an existing network, matching names and shapes.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, replace
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from xseason.core.config import from_dict, to_dict
from xseason.core.errors import XSeasonError

logger = logging.getLogger(__name__)

RESNET_BLOCKS = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3)}  # bottleneck blocks per stage
HEADS = ("psp", "deeplabv3", "deeplabv3plus")
ARCHS = ("segnet", *(f"resnet{depth}_{head}" for depth in RESNET_BLOCKS for head in HEADS))
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class CheckpointError(XSeasonError):
    """A checkpoint or weights file is missing, unreadable or does not fit the network."""


@dataclass
class ModelConfig:
    """Which network and its size. `widths`/`decoder_width` size segnet; the rest the ResNet archs."""

    arch: str = "segnet"  # one of ARCHS
    num_classes: int | None = None  # None: from the training dataset's labels (largest class id + 1)
    widths: tuple[int, int, int] = (16, 32, 64)  # segnet: channels at strides 2, 4, 8
    decoder_width: int = 48  # segnet
    base_width: int = 64  # ResNet stem channels; 64 = the standard network (stages 256 .. 2048)
    output_stride: int = 8  # ResNet: 16 or 8 (layer4, or layer3 and layer4, dilated), or 32
    head_width: int = 0  # PSP fuse / ASPP channels; 0 = the papers' (512 PSP, 256 DeepLab)
    aux_head: bool = False  # ResNet: PSPNet's auxiliary classifier on layer3 ("aux_logits")
    backbone_weights: Path | None = None  # an ImageNet ResNet state_dict (.pth, .pt, .safetensors)

    def validate(self) -> None:
        if self.arch not in ARCHS:
            raise ValueError(f"arch '{self.arch}' is not one of {', '.join(ARCHS)}")
        if self.num_classes is not None and self.num_classes < 2:
            raise ValueError("num_classes must be >= 2 (or null: from the dataset)")
        if min(self.widths) < 1 or self.decoder_width < 1 or self.base_width < 1 or self.head_width < 0:
            raise ValueError("widths, decoder_width and base_width must be positive, head_width >= 0")
        if self.output_stride not in (8, 16, 32):
            raise ValueError("output_stride must be 8, 16 or 32")
        if self.arch == "segnet" and (self.backbone_weights is not None or self.aux_head):
            raise ValueError(
                "backbone_weights and aux_head need a ResNet arch (segnet has no standard backbone)"
            )


def _conv(cin: int, cout: int, stride: int = 1, dilation: int = 1, kernel: int = 3) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, kernel, stride, padding=dilation * (kernel // 2), dilation=dilation, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


def _resize(x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, size=like.shape[-2:], mode="bilinear", align_corners=False)


class _Residual(nn.Module):
    def __init__(self, channels: int, dilation: int = 1) -> None:
        super().__init__()
        self.body = nn.Sequential(_conv(channels, channels, dilation=dilation), _conv(channels, channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class _PyramidPool(nn.Module):
    """PSP context: the feature map plus pooled summaries at `bins` x `bins`, fused to `cout` channels."""

    def __init__(self, channels: int, cout: int | None = None, bins: tuple[int, ...] = (1, 2, 4)) -> None:
        super().__init__()
        branch = max(channels // 4, 8)
        self.bins = bins
        self.branches = nn.ModuleList(
            nn.Sequential(nn.Conv2d(channels, branch, 1), nn.ReLU(inplace=True))  # no BN: 1x1 maps at batch 1
            for _ in bins
        )
        self.fuse = _conv(channels + branch * len(bins), cout or channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = [_resize(b(F.adaptive_avg_pool2d(x, n)), x) for n, b in zip(self.bins, self.branches)]
        return self.fuse(torch.cat([x, *pooled], 1))


class _ASPP(nn.Module):
    """DeepLabV3 atrous spatial pyramid pooling: 1x1, three dilated 3x3 and an image-pool branch."""

    def __init__(self, channels: int, cout: int, rates: tuple[int, ...]) -> None:
        super().__init__()
        self.convs = nn.ModuleList(
            [_conv(channels, cout, kernel=1), *(_conv(channels, cout, dilation=r) for r in rates)]
        )
        self.pool = nn.Sequential(nn.Conv2d(channels, cout, 1), nn.ReLU(inplace=True))  # no BN: 1x1 map
        self.project = _conv(cout * (len(rates) + 2), cout, kernel=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = _resize(self.pool(F.adaptive_avg_pool2d(x, 1)), x)
        return self.project(torch.cat([*(c(x) for c in self.convs), pooled], 1))


class _PlusDecoder(nn.Module):
    """DeepLabV3+: the context map upsampled to stride 4 and fused with reduced layer1 features."""

    def __init__(self, low_channels: int, width: int, reduced: int = 48) -> None:
        super().__init__()
        self.reduce = _conv(low_channels, reduced, kernel=1)
        self.fuse = nn.Sequential(_conv(width + reduced, width), _conv(width, width))

    def forward(self, x: torch.Tensor, low: torch.Tensor) -> torch.Tensor:
        return self.fuse(torch.cat([_resize(x, low), self.reduce(low)], 1))


class SegNet(nn.Module):
    """The small CPU network: "logits" and "features" at H/4, W/4."""

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

    def forward(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        x = (image - 0.45) / 0.25
        s4 = self.down4(self.stem(x))
        s8 = self.context(self.down8(s4))
        feat = self.decode(torch.cat([_resize(s8, s4), s4], 1))
        return {"logits": self.classifier(feat), "features": feat}


class _Bottleneck(nn.Module):
    """torchvision's ResNet v1.5 bottleneck (stride on the 3x3 conv), same parameter names."""

    def __init__(
        self, cin: int, width: int, stride: int, dilation: int, downsample: nn.Module | None
    ) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride, padding=dilation, dilation=dilation, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, width * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(width * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + (x if self.downsample is None else self.downsample(x)))


class ResNet(nn.Module):
    """ResNet-50/101 feature extractor (torchvision names, no `fc`): the outputs of layer1 .. layer4.

    Strides 4, 8, 16, 32, or with `output_stride` 16 / 8 the later stages dilated instead of
    strided (torchvision's `replace_stride_with_dilation`).
    """

    def __init__(self, depth: int, base_width: int = 64, output_stride: int = 32) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, base_width, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(base_width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        self.channels = [base_width * 4 * 2**i for i in range(4)]
        cin, dilation = base_width, 1
        for i, blocks in enumerate(RESNET_BLOCKS[depth]):
            stride = 1 if i == 0 else 2
            first_dilation = dilation
            if stride == 2 and 4 * 2**i > output_stride:  # dilate instead of striding
                dilation, stride = dilation * 2, 1
            width = base_width * 2**i
            down = None
            if stride != 1 or cin != width * 4:
                down = nn.Sequential(
                    nn.Conv2d(cin, width * 4, 1, stride, bias=False), nn.BatchNorm2d(width * 4)
                )
            layer = [_Bottleneck(cin, width, stride, first_dilation, down)]
            layer += [_Bottleneck(width * 4, width, 1, dilation, None) for _ in range(blocks - 1)]
            self.add_module(f"layer{i + 1}", nn.Sequential(*layer))
            cin = width * 4
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        stages = []
        for layer in (self.layer1, self.layer2, self.layer3, self.layer4):
            x = layer(x)
            stages.append(x)
        return stages


class ResNetSeg(nn.Module):
    """A dilated ResNet with a PSP, DeepLabV3 or DeepLabV3+ head (`cfg.arch`, e.g. "resnet50_psp")."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        depth, head = cfg.arch.removeprefix("resnet").split("_")
        self.backbone = ResNet(int(depth), cfg.base_width, cfg.output_stride)
        c1, _, c3, c4 = self.backbone.channels
        width = cfg.head_width or (512 if head == "psp" else 256)
        if head == "psp":
            self.head: nn.Module = _PyramidPool(c4, width, bins=(1, 2, 3, 6))
        else:
            self.head = _ASPP(c4, width, tuple(r * 16 // cfg.output_stride for r in (6, 12, 18)))
        self.decoder = _PlusDecoder(c1, width) if head == "deeplabv3plus" else None
        self.classifier = nn.Conv2d(width, cfg.num_classes, 1)
        self.aux = (
            nn.Sequential(_conv(c3, c3 // 4), nn.Conv2d(c3 // 4, cfg.num_classes, 1))
            if cfg.aux_head
            else None
        )
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def forward(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        stages = self.backbone((image - self.mean) / self.std)
        feat = self.head(stages[-1])
        if self.decoder is not None:
            feat = self.decoder(feat, stages[0])
        out = {"logits": self.classifier(feat), "features": feat}
        if self.aux is not None:
            out["aux_logits"] = self.aux(stages[2])
        return out


def upsample_to(maps: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear resize of (B, C, h, w) prediction maps to (H, W), pixel centres aligned (our convention)."""
    if tuple(maps.shape[-2:]) == tuple(size):
        return maps
    return F.interpolate(maps, size=size, mode="bilinear", align_corners=False)


def build_model(cfg: ModelConfig | None = None) -> nn.Module:
    """A freshly initialised network of `cfg.arch` (seed torch first for reproducible weights),
    its backbone loaded from `cfg.backbone_weights` when set."""
    cfg = cfg or ModelConfig()
    cfg.validate()
    if cfg.num_classes is None:
        raise ValueError("model.num_classes is null (from the dataset, resolved by training): give a number")
    if cfg.arch == "segnet":
        return SegNet(cfg)
    model = ResNetSeg(cfg)
    if cfg.backbone_weights is not None:
        load_backbone_weights(model, cfg.backbone_weights)
    return model


def read_checkpoint(path: str | Path, weights_only: bool = False) -> dict:
    """Load a checkpoint file onto the CPU, with a clear error when it is not one.

    `weights_only`: refuse pickled objects other than tensors and plain containers (for files
    from elsewhere, e.g. ImageNet weights)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    try:
        data = torch.load(path, map_location="cpu", weights_only=weights_only)
    except Exception as exc:  # torch raises many types for a bad file
        raise CheckpointError(
            f"{path}: not a readable torch checkpoint ({exc.__class__.__name__}: {exc})"
        ) from None
    if not isinstance(data, dict):
        raise CheckpointError(f"{path}: expected a dict (a state_dict or {{'model': state_dict, ...}})")
    return data


def load_model(path: str | Path) -> nn.Module:
    """Rebuild the network saved by `xseason train` (its config, arch included, travels in the checkpoint)."""
    data = read_checkpoint(path)
    if "model_config" not in data:
        raise CheckpointError(f"{path}: no 'model_config'; build the model yourself and use load_weights")
    cfg = from_dict(ModelConfig, data["model_config"], where="model_config")
    model = build_model(replace(cfg, backbone_weights=None))  # the checkpoint holds the trained backbone
    load_weights(model, path, strict=True)
    return model


def _fitting(state: dict, own: dict) -> dict:
    """The tensors of `state` whose name and shape are those of a tensor in `own`."""
    return {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}


def _counted(names) -> list[str]:
    """Names without BatchNorm's step counters (which say nothing about whether weights fit)."""
    return [k for k in names if not k.endswith("num_batches_tracked")]


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
    fits = _fitting(state, own)
    missing = sorted(set(own) - set(fits))
    if 2 * len(_counted(fits)) < len(_counted(own)) or (strict and (missing or len(fits) != len(state))):
        wrong = sorted(set(state) - set(fits))[:5]
        raise CheckpointError(
            f"{path}: checkpoint does not fit the network ({len(fits)}/{len(own)} tensors fit; "
            f"e.g. missing {missing[:5]}, unusable {wrong})"
        )
    model.load_state_dict(fits, strict=False)
    return missing


@dataclass
class WeightsReport:
    """What `load_backbone_weights` did with a weights file."""

    path: Path
    loaded: list[str]  # backbone tensors set from the file
    missing: list[str]  # backbone tensors the file lacks, left as they were (BatchNorm step counters aside)
    unexpected: list[str]  # file tensors with no place in the backbone (e.g. an ImageNet `fc.*`)
    mismatched: list[str]  # names in both whose shapes differ (skipped)

    def summary(self) -> str:
        """One line: counts and a few names of each kind."""
        parts = [f"{self.path}: {len(self.loaded)} backbone tensors loaded"]
        for label, names in (("missing", self.missing), ("unexpected", self.unexpected)):
            if names:
                parts.append(f"{len(names)} {label} (e.g. {', '.join(names[:3])})")
        if self.mismatched:
            parts.append(f"{len(self.mismatched)} of another shape (e.g. {', '.join(self.mismatched[:3])})")
        return "; ".join(parts)


_WRAPPERS = ("state_dict", "model")  # {"state_dict": {...}} (many trainers), {"model": {...}} (ours)
_PREFIXES = ("module.", "backbone.", "encoder.")  # DDP, ours and mmseg's, segmentation-models'


def _read_tensors(path: Path) -> dict[str, torch.Tensor]:
    """A weights file's tensors: .safetensors (with the safetensors package) or a torch file."""
    if path.suffix == ".safetensors":
        if not path.is_file():
            raise CheckpointError(f"{path}: weights file not found")
        try:
            from safetensors.torch import load_file
        except ImportError:
            raise CheckpointError(
                f"{path}: reading .safetensors needs the safetensors package (pip install 'xseason[nets]'), "
                "or convert the file to .pth"
            ) from None
        try:
            return load_file(path)
        except Exception as exc:  # safetensors raises its own error types
            raise CheckpointError(f"{path}: not a readable safetensors file ({exc})") from None
    data = read_checkpoint(path, weights_only=True)
    for key in _WRAPPERS:
        if isinstance(data.get(key), dict):
            data = data[key]
            break
    return {k: v for k, v in data.items() if isinstance(v, torch.Tensor)}


def _strip_prefixes(name: str) -> str:
    while name.startswith(_PREFIXES):
        name = name.split(".", 1)[1]
    return name


def load_backbone_weights(model: nn.Module, path: str | Path) -> WeightsReport:
    """Load an ImageNet ResNet state_dict (torchvision / timm names) into `model.backbone`.

    Name and shape must agree; the rest is reported (logged, and returned) rather than refused,
    so that a classifier's `fc.*` or a ResNet-50 file in a ResNet-101 are fine, but a file of
    which no tensor fits is an error.
    """
    path = Path(path)
    net = model.module if hasattr(model, "module") else model
    backbone = getattr(net, "backbone", None)
    if backbone is None:
        raise CheckpointError(f"{path}: {type(net).__name__} has no standard backbone to load weights into")
    state = {_strip_prefixes(k): v for k, v in _read_tensors(path).items()}
    own = backbone.state_dict()
    fits = _fitting(state, own)
    if not _counted(fits):
        raise CheckpointError(
            f"{path}: no tensor of the file fits the {net.cfg.arch} backbone (a ResNet with torchvision "
            f"names, e.g. {', '.join(list(own)[:3])}; the file has e.g. {', '.join(list(state)[:3])})"
        )
    backbone.load_state_dict(fits, strict=False)
    report = WeightsReport(
        path,
        loaded=sorted(fits),
        missing=sorted(_counted(set(own) - set(fits))),
        unexpected=sorted(set(state) - set(own)),
        mismatched=sorted(k for k in state if k in own and k not in fits),
    )
    (logger.warning if report.missing or report.mismatched else logger.info)(report.summary())
    return report


def model_payload(model: nn.Module) -> dict:
    """{"model": state_dict, "model_config": dict, "arch": name} of a (possibly DDP-wrapped) network."""
    net = model.module if hasattr(model, "module") else model
    return {"model": net.state_dict(), "model_config": to_dict(net.cfg), "arch": net.cfg.arch}


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
    "ARCHS",
    "state_digest",
    "ModelConfig",
    "SegNet",
    "ResNet",
    "ResNetSeg",
    "CheckpointError",
    "WeightsReport",
    "build_model",
    "upsample_to",
    "read_checkpoint",
    "load_model",
    "load_weights",
    "load_backbone_weights",
    "model_payload",
]
