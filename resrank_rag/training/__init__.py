"""Dual-stage, multi-task ResRank training (``resrank train --config train.yaml``)."""

from resrank_rag.training.config import DatasetSpec, LoraSettings, StageConfig, TrainConfig
from resrank_rag.training.trainer import Trainer

__all__ = ["DatasetSpec", "LoraSettings", "StageConfig", "TrainConfig", "Trainer"]
