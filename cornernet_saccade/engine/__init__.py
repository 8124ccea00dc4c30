"""Training engine: config, training loop (DDP, accumulation, autocast, checkpoints, resume) and
COCO evaluation. See ``docs/training.md``."""
from __future__ import annotations

from .config import DataConfig, OptimConfig, TrainConfig, load_train_config, train_config_from_dict
from .evaluate import EvaluationResult, evaluate, evaluate_detector
from .trainer import Trainer, TrainResult, run_training

__all__ = [
    "DataConfig",
    "EvaluationResult",
    "OptimConfig",
    "TrainConfig",
    "TrainResult",
    "Trainer",
    "evaluate",
    "evaluate_detector",
    "load_train_config",
    "run_training",
    "train_config_from_dict",
]
