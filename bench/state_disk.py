"""Disk per stored user: full 100-event `UserState`s written to RocksDB as the worker's store opens it.

    python -m bench.state_disk [--users 20000]   # one JSON object: value bytes and disk bytes per user

Each user has a realistic window (30 merchants, 2 devices, 3 cities, random amounts, tokens and txn
ids: hashes do not compress), with and without the cached prediction (h_u of 64 floats and a 96-float
head input). Disk is `du` of the database after a flush and a full compaction (RocksDB's default
compression); docs/RELIABILITY.md ("State retention") quotes it per million users.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import tempfile

import numpy as np
from rocksdict import Options, Rdict

from models.fraud.state import Prediction, UserState, update
from models.fraud.txn import TxnView, stable_hash


def full_state(user: int, rng: np.random.Generator, prediction: bool) -> bytes:
    state = UserState()
    merchants = [stable_hash(f"m{user}-{i}") for i in range(30)]
    devices = [stable_hash(f"d{user}-{i}") for i in range(2)]
    cities = [stable_hash(f"c{user}-{i}") for i in range(3)]
    t = 1_700_000_000_000
    for _ in range(100):
        t += int(rng.integers(60_000, 86_400_000))
        txn = TxnView(t, float(np.round(rng.lognormal(3, 1), 2)), int(rng.integers(1, 5000)),
                      merchants[rng.integers(30)], devices[rng.integers(2)], stable_hash("US"),
                      cities[rng.integers(3)], stable_hash("grocery"), stable_hash("online"), 1,
                      int(rng.integers(1, 2**62)))  # fmt: skip
        update(state, txn, p=float(rng.random()))
    if prediction:
        state.prediction = Prediction(state.n, 1, 2, -3.0, rng.standard_normal(64).astype(np.float32),
                                      rng.standard_normal(96).astype(np.float32))  # fmt: skip
    return state.to_bytes()


def measure(users: int, prediction: bool) -> dict[str, float]:
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as path:
        options = Options(raw_mode=True)
        options.create_if_missing(True)
        db = Rdict(path, options=options)
        total = 0
        for user in range(users):
            raw = full_state(user, rng, prediction)
            total += len(raw)
            db.put(f"u{user:07d}".encode(), raw)
        db.flush()
        db.compact_range(None, None)
        db.close()
        disk = int(subprocess.check_output(["du", "-sb", path]).split()[0])
    return {"value_bytes_per_user": round(total / users), "disk_bytes_per_user": round(disk / users),
            "disk_gb_per_million_users": round(disk / users * 1e6 / 1e9, 2)}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=20_000)
    args = parser.parse_args()
    print(json.dumps({"users": args.users, "without_prediction": measure(args.users, False),
                      "with_prediction": measure(args.users, True)}))  # fmt: skip


if __name__ == "__main__":
    main()
