"""`python -m models.bench movielens|sprm-memory [...]` — one JSON object on stdout, progress on stderr.

For machines without the `panther` CLI (e.g. a GPU box given only this checkout):

    python -m models.bench movielens --epochs 101 --device cuda > ml1m.json
    python -m models.bench movielens --epochs 101 --device cuda --panther-overrides '{"n_layers": 8}'
    python -m models.bench movielens --epochs 101 --loss full --setup-overrides '{"validation": true}'
    python -m models.bench sprm-memory --device cuda --batch-size 32 > sprm.json
"""

from __future__ import annotations

import argparse
import json
import sys

from models.bench.movielens import ML1M_SETUP, run_movielens_bench
from models.bench.sprm_memory import run_sprm_memory_bench
from models.losses import SAMPLERS


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m models.bench")
    sub = parser.add_subparsers(dest="bench", required=True)
    ml = sub.add_parser("movielens")
    ml.add_argument("--path", default=None)
    ml.add_argument("--epochs", type=int, default=3)
    ml.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    ml.add_argument("--max-len", type=int, default=200)
    ml.add_argument("--seed", type=int, default=0)
    ml.add_argument("--models", default="panther,sasrec")
    ml.add_argument("--time-budget-s", type=float, default=None)
    ml.add_argument("--sampler", default="uniform", choices=SAMPLERS)
    ml.add_argument("--loss", default="sampled", choices=("sampled", "full"))
    ml.add_argument(
        "--setup-overrides",
        default="{}",
        help='MovieLensSetup fields for every model as JSON, e.g. {"relative_bias": "position_time", '
        '"validation": true, "n_layers": 8}',
    )
    ml.add_argument(
        "--panther-overrides", default="{}", help='PantherConfig fields as JSON, e.g. {"n_layers": 8}'
    )
    mem = sub.add_parser("sprm-memory")
    mem.add_argument("--lengths", default="512,1024,2048,4096,8192")
    mem.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    mem.add_argument("--batch-size", type=int, default=4)
    mem.add_argument("--steps", type=int, default=3)
    mem.add_argument("--memory-cap-gb", type=float, default=4.0)
    mem.add_argument("--budget-s", type=float, default=None)
    args = parser.parse_args(argv)
    if args.bench == "movielens":
        result = run_movielens_bench(
            args.path,
            args.epochs,
            args.device,
            args.max_len,
            seed=args.seed,
            models=tuple(args.models.split(",")),
            time_budget_s=args.time_budget_s,
            setup=ML1M_SETUP.with_sampler(args.sampler)
            .with_loss(args.loss)
            .with_overrides(json.loads(args.setup_overrides)),
            **json.loads(args.panther_overrides),
        )
    else:
        result = run_sprm_memory_bench(
            tuple(int(x) for x in args.lengths.split(",")),
            device=args.device,
            batch_size=args.batch_size,
            steps=args.steps,
            memory_cap_gb=args.memory_cap_gb,
            budget_s=args.budget_s,
        )
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
