"""Batch decoding at the stream's edge: valid transactions on, everything else to the DLQ with a reason."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Generic

from stream.events import ContractError, DeadLetter, E, dead_letter, decode_keyed
from stream.worker.transactions import Output


@dataclass
class Decoded(Generic[E]):
    valid: list[tuple[Any, E]] = field(default_factory=list)  # (faust event, decoded record)
    dead: list[tuple[Any, DeadLetter]] = field(default_factory=list)  # (faust event, letter)


def dead_letter_outputs(dlq_topic: str, letters: list[tuple[Any, DeadLetter]]) -> list[Output]:
    """Each dead letter on the DLQ, on its source partition (in the input's transaction, exactly once)."""
    return [Output(event, dlq_topic, letter.key.encode() if letter.key else None, letter.to_json_bytes())
            for event, letter in letters]  # fmt: skip


def decode_events(events: list[Any], model: type[E], topic: str, max_bytes: int) -> Decoded[E]:
    """Faust events with raw values → validated records and dead letters (one per bad record, a record
    not keyed by its user_id among them: `stream.events.decode_keyed`)."""
    out: Decoded[E] = Decoded()
    for event in events:
        message = event.message
        raw = event.value if isinstance(event.value, bytes | bytearray) else bytes(event.value or b"")
        try:
            out.valid.append((event, decode_keyed(model, bytes(raw), message.key, max_bytes)))
        except ContractError as error:
            letter = dead_letter(bytes(raw), error, topic=topic, partition=message.partition,
                                 offset=message.offset, key=message.key)  # fmt: skip
            out.dead.append((event, letter))
    return out
