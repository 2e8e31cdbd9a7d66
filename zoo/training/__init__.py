"""Training: the trainer, optimizer + learning-rate schedule, metrics, and the demo."""

from zoo.training.config import TrainConfig, TrainResult
from zoo.training.metrics import JsonlLogger, ProgressBar, read_jsonl
from zoo.training.optim import lr_at, make_optimizer, param_groups
from zoo.training.trainer import Trainer, count_params

__all__ = [
    "JsonlLogger",
    "ProgressBar",
    "TrainConfig",
    "TrainResult",
    "Trainer",
    "count_params",
    "lr_at",
    "make_optimizer",
    "param_groups",
    "read_jsonl",
]
