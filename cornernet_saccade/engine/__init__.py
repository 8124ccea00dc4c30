"""Training engine: config, training loop (DDP, accumulation, autocast, checkpoints, resume) and
COCO evaluation. See ``docs/training.md``."""
from __future__ import annotations

from cornernet_saccade.engine.evaluate import EvaluationResult, evaluate
from cornernet_saccade.engine.train_config import (
    DataConfig,
    OptimConfig,
    TrainConfig,
    load_train_config,
    train_config_from_dict,
)
from cornernet_saccade.engine.trainer import Trainer, TrainResult, run_training

__all__ = [
    "DataConfig",
    "EvaluationResult",
    "OptimConfig",
    "TrainConfig",
    "TrainResult",
    "Trainer",
    "evaluate",
    "load_train_config",
    "run_training",
    "train_config_from_dict",
]
