"""What the head costs per call, in torch and in numpy: `python bench/numpy_head.py [--json]`.

`FraudScorer.score_state` (the cached path's call per micro-batch: Δ, the head, the trees of a
residual head; no reasons) on `panther bench stream`'s demo model, for batches of 1 to 250 rows, with
the eager torch head (the reference) and with the head in numpy (`models.fraud.numpy_head`, what
`trace_for_serving` serves), alternately, `--rounds` times, one torch and one BLAS thread (as the worker
runs); the median per call of each. The model's head as fitted (an ensemble of three since
`fit-fraud`'s default changed), or with `--heads N` N copies of its first head: the cost of N members
whatever the model was fitted with. Both give the same
outputs (checked here; tested in tests/models/fraud/test_numpy_head.py).
"""

from __future__ import annotations

import copy
import statistics
from typing import Any

import click
import numpy as np
import torch
from threadpoolctl import threadpool_limits
from timing import per_call_ms  # bench/timing.py

from models.fraud.ensemble import HeadEnsemble
from models.fraud.head import FraudHead
from models.fraud.numpy_head import NumpyHead
from models.fraud.scorer import FraudScorer
from stream.bench_stream import default_model
from stream.cli import emit
from stream.settings import Settings
from triton_repo.synthetic import state_score_inputs


def inputs(scorer: FraudScorer, b: int, rng: np.random.Generator) -> dict[str, Any]:
    """What the worker's cached path sends: random head inputs, e_u from the profile cache."""
    config = scorer.encoder.config
    request = state_score_inputs(scorer.n_features, config.d_model, len(config.profile_cardinalities),
                                 scorer.sequence_dim, b, rng)  # fmt: skip
    return request | {"user_embedding": rng.normal(size=(b, config.d_model)).astype(np.float32)}


@click.command()
@click.option("--sizes", default="1,10,30,250", show_default=True)
@click.option("--rounds", default=5, show_default=True)
@click.option("--heads", default=None, type=click.IntRange(min=1), help="Default: as fitted.")
@click.option("--json", "as_json", is_flag=True)
def main(sizes: str, rounds: int, heads: int | None, as_json: bool) -> None:
    model, _ = default_model(Settings().home, "demo")
    torch.set_num_threads(1)
    reference = FraudScorer.from_artifact(model)
    head = reference.head
    single: FraudHead = head.members[0] if isinstance(head, HeadEnsemble) else head  # type: ignore[assignment]
    if heads is not None:
        copies = [copy.deepcopy(single) for _ in range(heads)]
        reference.head = single if heads == 1 else HeadEnsemble(copies).eval()
    served = copy.copy(reference)
    served.numpy_head = NumpyHead(reference.head)
    rng = np.random.default_rng(0)
    members = len(reference.head) if isinstance(reference.head, HeadEnsemble) else 1
    out: dict[str, Any] = {"model": str(model), "heads": members, "trees": reference.trees is not None,
                           "rows": {}}  # fmt: skip
    with threadpool_limits(1):
        for b in [int(s) for s in sizes.split(",")]:
            x = inputs(reference, b, rng)
            want, got = reference.score_state(**x), served.score_state(**x)
            assert np.abs(want["p_fraud"] - got["p_fraud"]).max() < 1e-5
            calls = max(20, 4000 // b)
            eager, fast = [], []
            for _ in range(rounds):
                eager.append(per_call_ms(lambda x=x: reference.score_state(**x), calls))
                fast.append(per_call_ms(lambda x=x: served.score_state(**x), calls))
            torch_ms, numpy_ms = statistics.median(eager), statistics.median(fast)
            out["rows"][b] = {"torch_ms": round(torch_ms, 4), "numpy_ms": round(numpy_ms, 4),
                              "speedup": round(torch_ms / numpy_ms, 2)}  # fmt: skip
    emit(out, as_json)


if __name__ == "__main__":
    main()
