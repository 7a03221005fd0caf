"""The compact network: output shapes, size, checkpoints (ours, bare state_dicts, mismatches)."""

from __future__ import annotations

import pytest
import torch

from xseason.learn.models import (
    CheckpointError,
    ModelConfig,
    build_model,
    load_model,
    load_weights,
    model_payload,
    state_digest,
)


def test_outputs_at_quarter_resolution():
    model = build_model(ModelConfig(num_classes=5, embedding_dim=7)).eval()
    out = model(torch.rand(2, 3, 120, 160))
    assert out["logits"].shape == (2, 5, 30, 40) and out["embedding"].shape == (2, 7, 30, 40)
    assert sum(p.numel() for p in model.parameters()) < 500_000  # CPU-trainable
    model.train()
    model(torch.rand(1, 3, 48, 64))  # batch 1 trains (no BN on 1x1 pooled maps)


def test_checkpoint_round_trip(tmp_path):
    torch.manual_seed(0)
    model = build_model(ModelConfig(num_classes=3, widths=(8, 8, 16), decoder_width=8)).eval()
    torch.save(model_payload(model), tmp_path / "m.pt")
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
    assert torch.equal(dst.embedder.weight, src.embedder.weight)
    with pytest.raises(CheckpointError, match="does not fit"):
        load_weights(dst, tmp_path / "bare.pt", strict=True)
    with pytest.raises(CheckpointError, match="does not fit"):
        load_weights(build_model(), tmp_path / "bare.pt")  # other widths: nothing fits
    (tmp_path / "junk.pt").write_text("not a checkpoint")
    with pytest.raises(CheckpointError, match="not a readable"):
        load_weights(dst, tmp_path / "junk.pt")
    with pytest.raises(CheckpointError, match="not found"):
        load_model(tmp_path / "none.pt")
    with pytest.raises(CheckpointError, match="model_config"):
        load_model(tmp_path / "bare.pt")
