"""Training, evaluation and the pretraining pipeline (never imported by the layers in models/)."""

from models.training.compare import PreparedData, compare_models, evaluate_baselines, train_and_evaluate
from models.training.evaluate_file import evaluate_transactions
from models.training.evaluation import EvalData, evaluate_next_token, target_ranks_of
from models.training.pretrain import pretrain_transactions
from models.training.runtime import autocast, resolve_device, seed_everything
from models.training.trainer import TrainConfig, TrainResult, train_next_token

__all__ = [
    "EvalData",
    "PreparedData",
    "TrainConfig",
    "TrainResult",
    "autocast",
    "compare_models",
    "evaluate_baselines",
    "evaluate_next_token",
    "evaluate_transactions",
    "pretrain_transactions",
    "resolve_device",
    "seed_everything",
    "target_ranks_of",
    "train_and_evaluate",
    "train_next_token",
]
