"""Training and evaluating a segmentation network on a correspondence dataset (torch).

Modules: `dataset` (`CorrespondenceDataset`: pairs, matches and labels with per-image
transforms; `PadCollate`, `PairBatchSampler`), `models` (`SegNet`, `build_model`, `load_model`),
`matcher_dataset` (`MatcherDataset`, `collate_matcher`: pairs with K, relative poses and matches
for matcher training), `losses` (`correspondence_loss` and its kinds), `train` (`train(cfg) ->
TrainResult`, DDP under torchrun), `evaluate` (`evaluate(checkpoints, dataset, cfg) -> EvalReport`).
"""

from xseason.learn.dataset import (
    AugmentConfig,
    CorrespondenceDataset,
    PadCollate,
    PairBatchSampler,
    PairFilter,
)
from xseason.learn.evaluate import EvalConfig, EvalReport, evaluate, load_eval_config
from xseason.learn.losses import LossConfig, correspondence_loss
from xseason.learn.matcher_dataset import MatcherDataset, collate_matcher
from xseason.learn.models import ModelConfig, SegNet, build_model, load_model
from xseason.learn.train import DataConfig, TrainConfig, TrainResult, load_train_config, train

__all__ = [
    "AugmentConfig",
    "CorrespondenceDataset",
    "DataConfig",
    "EvalConfig",
    "EvalReport",
    "LossConfig",
    "MatcherDataset",
    "ModelConfig",
    "PadCollate",
    "PairBatchSampler",
    "PairFilter",
    "SegNet",
    "TrainConfig",
    "TrainResult",
    "build_model",
    "collate_matcher",
    "correspondence_loss",
    "evaluate",
    "load_eval_config",
    "load_model",
    "load_train_config",
    "train",
]
