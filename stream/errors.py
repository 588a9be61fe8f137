"""User-facing errors: the CLI prints their message on one line and exits non-zero, no stack trace."""

from __future__ import annotations

from panther_common.errors import PantherError

__all__ = ["KafkaUnreachable", "PantherError"]


class KafkaUnreachable(PantherError):
    def __init__(self, bootstrap: str, detail: str = "") -> None:
        hint = " (start one with `panther kafka start`, or set PANTHER_KAFKA_BOOTSTRAP)"
        super().__init__(f"Kafka is not reachable at {bootstrap}{': ' + detail if detail else ''}{hint}")
