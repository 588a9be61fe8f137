"""Cost of the event contract per record: CPU time of `decode` (and of a dead letter), in microseconds.

    python -m bench.contract_bench                 # current contract
    python -m bench.contract_bench --against HEAD  # interleaved with the contract at a git revision

CPU time (`time.process_time`), not wall time, so a shared machine inflates it less; best of
`--repeat` rounds of `--number` decodes, the variants interleaved round by round.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import subprocess
import sys
import tempfile
import time
import timeit
from pathlib import Path
from types import ModuleType

TRANSACTION = {
    "txn_id": "t-000123456", "user_id": "u-00042", "timestamp": "2026-01-02T03:04:05.123Z", "amount": 12.5,
    "currency": "USD", "merchant_id": "m-991", "merchant_category": "grocery", "merchant_risk": "low",
    "channel": "online", "country": "US", "city": "San Francisco", "device_id": "d-1234567",
}  # fmt: skip
PROFILE = {
    "user_id": "u-00042", "age": 31, "gender": "F", "region": "north", "occupation": "engineer",
    "account_age_days": 400, "attributes": {f"k{i}": "value" if i % 2 else 1.5 for i in range(8)},
}  # fmt: skip
BAD = {"txn_id": 5, "user_id": "u", "timestamp": "x", "amount": -1, "merchant_id": "m"}


def _module_at(revision: str, folder: Path) -> ModuleType:
    source = subprocess.run(
        ["git", "show", f"{revision}:stream/events.py"], capture_output=True, text=True, check=True
    ).stdout
    path = folder / "events_at_revision.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("events_at_revision", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _cases(events: ModuleType) -> dict[str, object]:
    def dead_letter() -> object:
        raw = json.dumps(BAD).encode()
        try:
            events.decode(events.Transaction, raw)
        except events.ContractError as error:
            return events.dead_letter(raw, error, topic="t", partition=0, offset=0, key=b"u")
        raise AssertionError("BAD decoded")

    transaction, profile = json.dumps(TRANSACTION).encode(), json.dumps(PROFILE).encode()
    return {
        "transaction": lambda: events.decode(events.Transaction, transaction),
        "profile": lambda: events.decode(events.UserProfile, profile),
        "dead_letter": dead_letter,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--against", help="a git revision whose stream/events.py runs interleaved")
    parser.add_argument("--number", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=15)
    args = parser.parse_args()
    import stream.events as current

    with tempfile.TemporaryDirectory() as folder:
        variants = {"current": current}
        if args.against:
            variants = {args.against: _module_at(args.against, Path(folder)), **variants}
        best: dict[str, dict[str, float]] = {name: {} for name in variants}
        for _ in range(args.repeat):
            for name, module in variants.items():
                for case, call in _cases(module).items():
                    number = args.number // 4 if case == "dead_letter" else args.number
                    seconds = timeit.Timer(call, timer=time.process_time).timeit(number) / number
                    best[name][case] = min(best[name].get(case, seconds), seconds)
    result = {name: {case: round(s * 1e6, 2) for case, s in cases.items()} for name, cases in best.items()}
    print(json.dumps({"us_per_record_cpu": result}, indent=2))


if __name__ == "__main__":
    main()
