"""The lag bound (`PANTHER_MAX_STATE_LAG`) in a real `panther worker` against a real broker: every
transaction scored exactly once, no score further than the bound behind its user's last encoder
refresh, and the lagging ones counted and marked (`state_lag` on the score)."""

from __future__ import annotations

from pathlib import Path

import pytest

from stream.produce import produce_file
from tests.stream.model_fixtures import tiny_model
from tests.stream.worker_harness import (
    cache_profiles,
    exactly_once,
    offline,
    running_worker,
    worker_settings,
)

__all__ = ["offline", "tiny_model"]  # fixtures, imported for pytest
pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.worker]
MAX_LAG = 2


def test_no_score_lags_its_users_refresh_by_more_than_the_bound(
    kafka_bootstrap: str, unique_topic, tmp_path: Path, tiny_model, offline
) -> None:
    model, data = tiny_model
    settings = worker_settings(kafka_bootstrap, unique_topic, tmp_path, model, offline.threshold,
                               max_state_lag=MAX_LAG, batch_max=256)  # fmt: skip
    with running_worker(settings, tmp_path / "worker.log", profiles_from=None) as worker:
        cache_profiles(settings, worker, data)
        produce_file(offline.path, settings.topic_transactions, settings, show_progress=False)
        scores = exactly_once(settings, settings.topic_scores, [t.txn_id for t in offline.txns])
        lagged = worker.metric("panther_lagged_scores_total")
    lags = [s["state_lag"] for s in scores]
    assert max(lags) == MAX_LAG, sorted(set(lags))  # all at once: users with several events per batch
    assert lagged == sum(1 for lag in lags if lag) > 0
    assert not any(s["degraded"] for s in scores)
