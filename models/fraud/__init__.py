"""Hybrid fraud detection on PANTHER (paper §3.5): per-user state, features, deviation, DCN head, reasons.

See docs/FRAUD.md. numpy-only (no torch): `txn`, `running`, `state`, `features`, `replay`, `live`, `metrics`.
"""

from models.fraud.features import FeatureSchema, transaction_features, transaction_features_batch
from models.fraud.live import (
    LiveEvent,
    LiveResult,
    build_request,
    score_events,
    tokenize_records,
    top_reasons,
)
from models.fraud.metrics import fraud_metrics, recall_at_threshold, threshold_for_rate
from models.fraud.state import StateConfig, UserState, update
from models.fraud.txn import TxnColumns, TxnView, stable_hash, txn_view

__all__ = [
    "FeatureSchema",
    "LiveEvent",
    "LiveResult",
    "StateConfig",
    "TxnColumns",
    "TxnView",
    "UserState",
    "build_request",
    "fraud_metrics",
    "recall_at_threshold",
    "score_events",
    "stable_hash",
    "threshold_for_rate",
    "tokenize_records",
    "top_reasons",
    "transaction_features",
    "transaction_features_batch",
    "txn_view",
    "update",
]
