"""What the residual head's trees cost per call: `python bench/tree_logit.py [--json]`.

Trees of the fair baseline's size (`GBTConfig`: 400 trees of ≤ 31 leaves, all kept) over 80 numeric
columns and 6 categorical profile columns of random rows, evaluated for batches of 1 to 500 rows by
sklearn's `decision_function` (one OpenMP thread, as a worker would run it) and by the served
`TreeLogit` (treelite GTIL, one thread), alternately, `--rounds` times; the median per call of each.
Both give the same logits (checked here, and tested in tests/models/fraud/test_trees.py).
"""

from __future__ import annotations

import statistics
from typing import Any

import click
import numpy as np
from threadpoolctl import threadpool_limits
from timing import per_call_ms  # bench/timing.py

from models.fraud.baselines import GBTConfig
from models.fraud.trees import TreeLogit, tree_inputs
from stream.cli import emit
from triton_repo.synthetic import random_trees

NUMERIC, PROFILE = 80, (12, 8, 30, 6, 90, 40)


def fitted(rows: int, seed: int = 0) -> tuple[Any, TreeLogit, np.ndarray, np.ndarray]:
    c = GBTConfig()
    return random_trees(NUMERIC, PROFILE, np.random.default_rng(seed), rows, max_iter=c.max_iter,
                        learning_rate=c.learning_rate, max_leaf_nodes=c.max_leaf_nodes,
                        min_samples_leaf=c.min_samples_leaf, l2_regularization=c.l2_regularization,
                        random_state=seed)  # fmt: skip


@click.command()
@click.option("--sizes", default="1,8,64,250,500", show_default=True)
@click.option("--rounds", default=5, show_default=True)
@click.option("--json", "as_json", is_flag=True)
def main(sizes: str, rounds: int, as_json: bool) -> None:
    model, trees, features, profile = fitted(20_000)
    out: dict[str, object] = {"trees": int(model.n_iter_), "inputs": trees.n_inputs, "rows": {}}
    with threadpool_limits(1):
        for b in [int(s) for s in sizes.split(",")]:
            x, f, p = tree_inputs(features[:b], profile[:b]), features[:b], profile[:b]
            assert np.abs(trees(f, p) - model.decision_function(x)).max() < 1e-4
            calls = max(5, 2000 // b)
            sk, gtil = [], []
            for _ in range(rounds):
                sk.append(per_call_ms(lambda x=x: model.decision_function(x), calls))
                gtil.append(per_call_ms(lambda f=f, p=p: trees(f, p), calls))
            out["rows"][b] = {"sklearn_ms": round(statistics.median(sk), 3),  # type: ignore[index]
                              "gtil_ms": round(statistics.median(gtil), 3)}  # fmt: skip
    emit(out, as_json)


if __name__ == "__main__":
    main()
