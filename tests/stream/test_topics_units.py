"""`stream.topics` helpers that need no broker: how they behave when the broker does not answer."""

from __future__ import annotations

from concurrent.futures import Future

from stream.topics import topic_retention_ms


class _SilentAdmin:
    """An AdminClient whose broker went away: the describe future never completes."""

    def describe_configs(self, resources: list, request_timeout: float) -> dict:
        return {resource: Future() for resource in resources}


def test_retention_of_an_unanswering_broker_is_unknown_not_an_exception() -> None:
    # produce_file checks retention after its flush; a broker killed by a fault test at that moment
    # must not turn a delivered produce into a crashed thread (CI, 2026-12-04).
    assert topic_retention_ms(_SilentAdmin(), "transactions", timeout_s=0.05) is None
