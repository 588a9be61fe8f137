"""The demo's data and model: simulate, hold out the last days as live traffic, train a small model.

    python deploy/local/demo_model.py DEMO_DIR [demo|panther]   (deploy/local/demo.sh runs it; skips
                                                                what exists)

Writes DEMO_DIR/data/{transactions,profiles}.parquet (all simulated days), DEMO_DIR/data/train.parquet
(all but the last LIVE_DAYS), DEMO_DIR/data/live.parquet (the last LIVE_DAYS, what the live producer
replays: the model never saw them) and DEMO_DIR/model (PANTHER pretrained + the fraud head). Sized to
train in well under a minute on 2 CPU cores: a newcomer should see alerts, not a training run.
`panther` trains the paper's serving shape instead (d 64, 4 blocks, L 100; `panther bench stream
--sizes panther`), briefly: its numbers are for speed, its vocabulary is what the simulated data holds.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pandas as pd

USERS, DAYS, LIVE_DAYS, SEED, FRAUD_RATE = 1000, 16, 2, 7, 0.02
SIZES = {  # (model overrides, max_len, pretrain epochs, fraud epochs)
    "demo": ({"d_model": 32, "n_layers": 2, "n_heads": 2}, 32, 2, 3),
    "panther": ({"d_model": 64, "n_layers": 4, "n_heads": 2}, 100, 1, 1),
}


def say(message: str) -> None:
    print(f"== demo: {message}", file=sys.stderr, flush=True)


def make_data(data: Path) -> None:
    from stream.simulator import SimulatorConfig, simulate, write_dataset

    if (data / "live.parquet").is_file():
        return
    say(f"simulating {USERS} users × {DAYS} days (fraud rate {FRAUD_RATE})")
    txns, profiles = simulate(SimulatorConfig(users=USERS, days=DAYS, seed=SEED, fraud_rate=FRAUD_RATE))
    paths = write_dataset(txns, profiles, data)
    frame = pd.read_parquet(paths["transactions"])
    times = pd.to_datetime(frame["timestamp"], utc=True)
    cut = times.max().normalize() - pd.Timedelta(days=LIVE_DAYS - 1)
    frame[times < cut].to_parquet(data / "train.parquet", index=False)
    live = frame[times >= cut]
    live.to_parquet(data / "live.parquet", index=False)
    say(f"{int((times < cut).sum())} training transactions, {len(live)} held out as live traffic from {cut}")


def train(data: Path, model: Path, size: str = "demo") -> dict[str, object]:
    from models.fraud.api import fit_fraud
    from models.training.pretrain import pretrain_transactions

    shape, max_len, pretrain_epochs, fraud_epochs = SIZES[size]
    started = time.perf_counter()
    say(f"pretraining a {size}-sized PANTHER ({shape}, L={max_len}, {pretrain_epochs} epochs) into {model}")
    pretrain_transactions(
        data / "train.parquet", data / "profiles.parquet", model, epochs=pretrain_epochs, device="cpu",
        max_len=max_len, ablations=False, model_overrides=shape, progress=True,
    )  # fmt: skip
    say(f"fitting the fraud head ({fraud_epochs} epochs)")
    fit = fit_fraud(
        model, data / "train.parquet", data / "profiles.parquet", epochs=fraud_epochs, device="cpu"
    )
    summary = {
        "model": str(model),
        "val_pr_auc": fit.get("val_pr_auc"),
        "seconds": time.perf_counter() - started,
    }
    say(f"model ready in {summary['seconds']:.0f} s (validation PR-AUC {summary['val_pr_auc']:.3f})")
    return summary


def main(argv: list[str]) -> int:
    if len(argv) not in (1, 2) or (len(argv) == 2 and argv[1] not in SIZES):
        print(__doc__, file=sys.stderr)
        return 2
    root, size = Path(argv[0]), argv[1] if len(argv) == 2 else "demo"
    make_data(root / "data")
    model = root / "model"
    if (model / "fraud_head.json").is_file():
        say(f"using the model in {model} (delete it to retrain)")
        return 0
    print(json.dumps(train(root / "data", model, size), default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
