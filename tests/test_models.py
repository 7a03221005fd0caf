"""The networks: every arch's outputs, torchvision names, backbone weight files, checkpoints."""

from __future__ import annotations

import sys

import pytest
import torch

from xseason.core.config import from_dict
from xseason.core.errors import ConfigError
from xseason.learn.models import (
    ARCHS,
    CheckpointError,
    ModelConfig,
    ResNet,
    ResNetSeg,
    build_model,
    load_backbone_weights,
    load_model,
    load_weights,
    model_payload,
    state_digest,
)


def small(arch: str, **kw) -> ModelConfig:
    """A network of `arch` at a width that builds and runs in a fraction of a second."""
    return ModelConfig(**{"num_classes": 5, "base_width": 8, "head_width": 16, **kw}, arch=arch)


def test_outputs_at_quarter_resolution():
    model = build_model(ModelConfig(num_classes=5)).eval()
    out = model(torch.rand(2, 3, 120, 160))
    assert out["logits"].shape == (2, 5, 30, 40)
    assert out["features"].shape == (2, 48, 30, 40)
    assert sum(p.numel() for p in model.parameters()) < 500_000  # CPU-trainable
    model.train()
    model(torch.rand(1, 3, 48, 64))  # batch 1 trains (no BN on 1x1 pooled maps)


@pytest.mark.parametrize("arch", ARCHS)
def test_every_arch(arch):
    torch.manual_seed(0)
    cfg = small(arch, aux_head=arch != "segnet")
    model = build_model(cfg).eval()
    out = model(torch.rand(2, 3, 64, 96))
    stride = 4 if arch in ("segnet", "resnet50_deeplabv3plus", "resnet101_deeplabv3plus") else 8
    hw = (64 // stride, 96 // stride)
    channels = 48 if arch == "segnet" else 16
    assert out["logits"].shape == (2, 5, *hw)
    assert out["features"].shape == (2, channels, *hw)
    assert set(out) == {"logits", "features"} | ({"aux_logits"} if cfg.aux_head else set())
    if cfg.aux_head:
        assert out["aux_logits"].shape == (2, 5, 8, 12)  # layer3, stride 8
    assert all(torch.isfinite(v).all() for v in out.values())
    model.train()
    loss = sum(v.float().mean() for v in model(torch.rand(1, 3, 64, 96)).values())
    loss.backward()  # batch 1 trains; every output reaches the parameters
    assert model.classifier.weight.grad is not None


def test_output_stride_16():
    out = build_model(small("resnet50_deeplabv3", output_stride=16)).eval()(torch.rand(1, 3, 64, 96))
    assert out["logits"].shape == (1, 5, 4, 6)


def test_torchvision_parameter_names():
    """The names and shapes of torchvision's resnet50 state_dict (less `fc`): its ImageNet files load."""
    state = ResNet(50).state_dict()
    assert len(state) == 318 and len(ResNet(101, base_width=8).state_dict()) == 624
    shapes = {
        "conv1.weight": (64, 3, 7, 7),
        "bn1.running_var": (64,),
        "layer1.0.downsample.0.weight": (256, 64, 1, 1),
        "layer2.3.conv2.weight": (128, 128, 3, 3),
        "layer3.5.bn3.num_batches_tracked": (),
        "layer4.0.downsample.1.running_mean": (2048,),
        "layer4.2.conv3.weight": (2048, 512, 1, 1),
    }
    assert {k: tuple(state[k].shape) for k in shapes} == shapes
    dilated = ResNet(50, base_width=8, output_stride=8)
    assert dilated.layer3[1].conv2.dilation == (2, 2) and dilated.layer4[1].conv2.dilation == (4, 4)
    assert dilated.layer4[0].conv2.dilation == (2, 2) and dilated.layer4[0].downsample[0].stride == (1, 1)


def _backbone_file(tmp_path, model: ResNetSeg, name: str = "r50.pth", wrap=lambda s: s):
    """An ImageNet-style file of `model`'s backbone: its tensors plus a classifier `fc`."""
    state = {**model.backbone.state_dict(), "fc.weight": torch.rand(10, 256), "fc.bias": torch.rand(10)}
    torch.save(wrap(state), tmp_path / name)
    return tmp_path / name


def test_backbone_weights_load_into_another_network(tmp_path):
    torch.manual_seed(0)
    src = build_model(small("resnet50_psp")).eval()
    for i, bn in enumerate(m for m in src.backbone.modules() if isinstance(m, torch.nn.BatchNorm2d)):
        bn.running_mean.fill_(0.01 * i)  # statistics that are not the initial ones
    x = torch.rand(2, 3, 64, 96)
    for name, wrap in [
        ("bare.pth", lambda s: s),
        ("wrapped.pth", lambda s: {"state_dict": {f"module.backbone.{k}": v for k, v in s.items()}}),
    ]:
        path = _backbone_file(tmp_path, src, name, wrap)
        torch.manual_seed(1)
        dst = build_model(small("resnet50_deeplabv3plus", backbone_weights=path)).eval()
        assert all(torch.equal(a, b) for a, b in zip(dst.backbone(x), src.backbone(x)))
        report = load_backbone_weights(dst, path)
        assert len(report.loaded) == 318 and report.missing == [] and report.mismatched == []
        assert report.unexpected == ["fc.bias", "fc.weight"]
    # A ResNet-50 file in a ResNet-101: the shared blocks load, the rest is reported missing.
    partial = load_backbone_weights(build_model(small("resnet101_psp")), tmp_path / "bare.pth")
    assert len(partial.loaded) == 318 and len(partial.missing) == 17 * (
        3 + 3 * 4
    )  # 17 blocks: 3 convs, 3 BNs
    assert "layer3.6.conv1.weight" in partial.missing and "missing" in partial.summary()
    # Same names, other width: shapes differ, nothing fits.
    with pytest.raises(CheckpointError, match="no tensor of the file fits"):
        load_backbone_weights(build_model(small("resnet50_psp", base_width=16)), tmp_path / "bare.pth")


def test_backbone_weights_safetensors(tmp_path, monkeypatch):
    torch.manual_seed(0)
    src = build_model(small("resnet101_deeplabv3")).eval()
    path = tmp_path / "r101.safetensors"
    path.write_bytes(b"")
    monkeypatch.setitem(sys.modules, "safetensors", None)  # as if not installed
    with pytest.raises(CheckpointError, match="needs the safetensors package"):
        load_backbone_weights(src, path)
    monkeypatch.undo()
    save_file = pytest.importorskip("safetensors.torch").save_file
    save_file(src.backbone.state_dict(), path)
    dst = build_model(small("resnet101_deeplabv3", backbone_weights=path)).eval()
    x = torch.rand(1, 3, 64, 96)
    assert torch.equal(dst.backbone(x)[-1], src.backbone(x)[-1])


def test_weights_that_do_not_fit_are_refused(tmp_path):
    torch.save(
        {"encoder.blocks.0.weight": torch.rand(3, 3), "head.bias": torch.rand(3)}, tmp_path / "other.pth"
    )
    model = build_model(small("resnet50_psp"))
    with pytest.raises(CheckpointError, match=r"no tensor of the file fits .*conv1.weight.*blocks.0.weight"):
        load_backbone_weights(model, tmp_path / "other.pth")
    with pytest.raises(CheckpointError, match="not found"):
        load_backbone_weights(model, tmp_path / "none.pth")
    with pytest.raises(CheckpointError, match="no standard backbone"):
        load_backbone_weights(build_model(ModelConfig(num_classes=19)), tmp_path / "other.pth")
    with pytest.raises(ConfigError, match="resnet50_psp"):
        from_dict(ModelConfig, {"arch": "resnet18"}, where="model")
    with pytest.raises(ConfigError, match="need a ResNet arch"):
        from_dict(ModelConfig, {"backbone_weights": "x.pth"}, where="model")


def test_checkpoint_keeps_the_arch(tmp_path):
    torch.manual_seed(0)
    src = build_model(small("resnet50_psp"))
    weights = _backbone_file(tmp_path, src)
    model = build_model(small("resnet50_deeplabv3plus", backbone_weights=weights, aux_head=True)).eval()
    torch.save(model_payload(model), tmp_path / "m.pt")
    weights.unlink()  # the checkpoint holds the trained backbone; the ImageNet file is not needed again
    again = load_model(tmp_path / "m.pt").eval()
    assert isinstance(again, ResNetSeg) and again.cfg.arch == "resnet50_deeplabv3plus" and again.cfg.aux_head
    assert state_digest(again) == state_digest(model)
    x = torch.rand(1, 3, 64, 96)
    assert torch.equal(again(x)["logits"], model(x)["logits"])


def test_checkpoint_round_trip(tmp_path):
    torch.manual_seed(0)
    model = build_model(ModelConfig(num_classes=3, widths=(8, 8, 16), decoder_width=8)).eval()
    payload = model_payload(model)
    assert payload["arch"] == payload["model_config"]["arch"] == "segnet"
    del payload["model_config"]["arch"]  # a checkpoint from before the registry: segnet
    torch.save(payload, tmp_path / "m.pt")
    again = load_model(tmp_path / "m.pt").eval()
    assert state_digest(again) == state_digest(model)
    x = torch.rand(1, 3, 32, 32)
    assert torch.equal(again(x)["logits"], model(x)["logits"])


def test_user_checkpoints(tmp_path):
    torch.manual_seed(0)
    src = build_model(ModelConfig(num_classes=3, widths=(8, 8, 16), decoder_width=8))
    # A bare DDP-style state_dict with another number of classes: all but the classifier load.
    torch.save({f"module.{k}": v for k, v in src.state_dict().items()}, tmp_path / "bare.pt")
    dst = build_model(ModelConfig(num_classes=6, widths=(8, 8, 16), decoder_width=8))
    missing = load_weights(dst, tmp_path / "bare.pt")
    assert missing == ["classifier.bias", "classifier.weight"]
    assert torch.equal(dst.stem[0][0].weight, src.stem[0][0].weight)
    with pytest.raises(CheckpointError, match="does not fit"):
        load_weights(dst, tmp_path / "bare.pt", strict=True)
    with pytest.raises(CheckpointError, match="does not fit"):
        load_weights(
            build_model(ModelConfig(num_classes=19)), tmp_path / "bare.pt"
        )  # other widths: nothing fits
    with pytest.raises(CheckpointError, match="does not fit"):
        load_weights(build_model(small("resnet50_psp")), tmp_path / "bare.pt")  # another arch
    (tmp_path / "junk.pt").write_text("not a checkpoint")
    with pytest.raises(CheckpointError, match="not a readable"):
        load_weights(dst, tmp_path / "junk.pt")
    with pytest.raises(CheckpointError, match="not found"):
        load_model(tmp_path / "none.pt")
    with pytest.raises(CheckpointError, match="model_config"):
        load_model(tmp_path / "bare.pt")
