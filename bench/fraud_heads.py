"""Fraud head variants against the fair tree baseline, several seeds, on one pretrained model and file.

    python bench/fraud_heads.py --transactions T --profiles P --model DIR [--seeds 0,1,2]
                                [--variants dcn,dcn_ple,…] [--cache data.pkl] [--json]

`panther bench fraud` answers "does the shipped hybrid beat the baselines" once, with one seed. This
answers "which change to the head would", without pretraining again: the inputs are built once (the
PANTHER pass and the state replay, optionally cached with --cache), then every variant is fitted with
each seed on the same chronological split as the bench (train / validation / test = 0.7 · 0.85 /
0.7 · 0.15 / 0.3 of the time range). Each variant reports its test metrics per seed, those of the
average of its seeds' standardized logits ("ensemble"), and — for the ensemble — the frauds only it
and only the fair baseline catch at each budget, with the sign test's p-value
(`models.fraud.metrics.paired_at_budget`). Nothing is chosen on the test period.
"""

from __future__ import annotations

import argparse
import pickle
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from models.fraud.api import fit_variant, load_inputs, prepare_data
from models.fraud.baselines import GBTBaseline, GBTConfig
from models.fraud.bench import gbt_profile_inputs, train_rows
from models.fraud.dataset import FraudData, chronological_split
from models.fraud.deviation import DeviationConfig
from models.fraud.features import FeatureSchema
from models.fraud.metrics import DEFAULT_KS, fraud_metrics, paired_at_budget
from models.fraud.train import FitConfig, predict_logits
from models.fraud.trees import residual_base
from stream.cli import emit

FAIR = "gbt_profile"


@dataclass(frozen=True)
class Variant:
    """One row: trees (`trees=True`, optional extra inputs) or a head (`variant` + overrides)."""

    trees: bool = False
    tree_extra: tuple[str, ...] = ()  # "deviation": Δ, Δ_log, surprise, P, cold as tree inputs
    variant: str = "dcn"
    head: dict[str, Any] = field(default_factory=dict)
    fit: dict[str, Any] = field(default_factory=dict)
    stacked: bool = False  # the head also reads an out-of-fold tree logit (a fifth input column)
    residual: bool = False  # the head's logit is added to that tree logit: it learns what the trees miss


VARIANTS: dict[str, Variant] = {
    FAIR: Variant(trees=True),
    "gbt_profile_deviation": Variant(trees=True, tree_extra=("deviation",)),
    "dcn": Variant(),
    "dcn_16_epochs": Variant(fit={"epochs": 16, "patience": 4}),
    "dcn_ple": Variant(head={"numeric_encoding": "ple"}),
    "dcn_stacked": Variant(stacked=True),
    "hybrid_textcnn": Variant(variant="hybrid_textcnn", fit={"legit_keep": 0.3}),
    "hybrid_textcnn_ple": Variant(variant="hybrid_textcnn", fit={"legit_keep": 0.3},
                                  head={"numeric_encoding": "ple"}),
    "hybrid_textcnn_stacked": Variant(variant="hybrid_textcnn", fit={"legit_keep": 0.3}, stacked=True),
    "hybrid_panther": Variant(variant="hybrid_panther"),
    "hybrid_panther_stacked": Variant(variant="hybrid_panther", stacked=True),
    "dcn_residual": Variant(residual=True),
    "hybrid_textcnn_residual": Variant(variant="hybrid_textcnn", fit={"legit_keep": 0.3}, residual=True),
    "hybrid_panther_residual": Variant(variant="hybrid_panther", residual=True),
}


def _logit(p: np.ndarray) -> np.ndarray:
    return np.log(p + 1e-9) - np.log1p(-p + 1e-9)


class Bench:
    def __init__(self, data: FraudData, encoder: Any) -> None:
        self.data, self.encoder = data, encoder
        self.train, self.val, self.test, _ = chronological_split(data.times, 0.7, 0.15)
        self.labels = data.labels if data.labels is not None else np.zeros(len(data), bool)
        self._stack: dict[int, np.ndarray] = {}
        self.tree_inputs = gbt_profile_inputs(data)  # (N, F + P) features + profile, (F + P,) categorical

    def trees(self, extra: tuple[str, ...], seed: int) -> np.ndarray:
        x, categorical = self.tree_inputs
        if "deviation" in extra:
            x = np.concatenate([x, self.data.deviation], axis=1)
            categorical = np.concatenate([categorical, np.zeros(self.data.deviation.shape[1], bool)])
        gbt = GBTBaseline(GBTConfig(seed=seed), categorical)
        y, tr, va = self.labels, self.train, self.val
        return _logit(gbt.fit(x[tr], y[tr], x[va], y[va]).score(x[self.test]))

    def stack_column(self, seed: int) -> np.ndarray:
        """(N,) a tree logit per event that no training event's own label shaped: out of fold on the
        training period (chronological blocks), the full-train trees on validation and test — the base
        `fit-fraud` trains its residual head on (`models.fraud.trees.residual_base`)."""
        if seed not in self._stack:
            self._stack[seed], _ = residual_base(self.data.features, self.data.event_profiles, self.labels,
                                                 self.train, self.val, seed=seed)
        return self._stack[seed]

    def head(self, v: Variant, seed: int) -> np.ndarray:
        data = self.data
        if v.stacked:
            column = self.stack_column(seed)[:, None]
            data = replace(data, features=np.concatenate([data.features, column], axis=1))
        if v.residual:
            data = replace(data, base_logit=self.stack_column(seed))
        fit = FitConfig(**({"seed": seed, "device": "cpu"} | v.fit))
        result = fit_variant(data, self.train, self.val, v.variant, fit, self.encoder, **v.head)
        return predict_logits(result.head, data, self.test)

    def run(self, name: str, seed: int) -> np.ndarray:
        v = VARIANTS[name]
        return self.trees(v.tree_extra, seed) if v.trees else self.head(v, seed)

    def metrics(self, scores: np.ndarray) -> dict[str, Any]:
        m = fraud_metrics(scores, self.labels[self.test], self.data.scenarios[self.test])
        keys = [f"recall@{k:g}%" for k in DEFAULT_KS]
        return {k: round(m[k], 4) for k in [*keys, "pr_auc"]} | {
            "per_scenario": {s: {"fraud": row["fraud"], **{k: round(row[k], 4) for k in keys}}
                             for s, row in m["per_scenario"].items()}}  # fmt: skip

    def paired(self, scores: np.ndarray, fair: np.ndarray) -> dict[str, Any]:
        y = self.labels[self.test]
        scen = self.data.scenarios[self.test]
        out: dict[str, Any] = {f"{k:g}%": paired_at_budget(scores, fair, y, k) for k in DEFAULT_KS}
        out["per_scenario"] = {
            s: {f"{k:g}%": paired_at_budget(scores, fair, y & (scen == s), k) for k in DEFAULT_KS}
            for s in sorted({str(s) for s in scen[y]})}  # fmt: skip
        return out


def ensemble(scores: list[np.ndarray]) -> np.ndarray:
    return np.mean([(s - s.mean()) / max(float(s.std()), 1e-9) for s in scores], axis=0)


def load_data(model: Path, transactions: Path, profiles: Path | None,
              cache: Path | None) -> tuple[FraudData, Any]:
    loaded = load_inputs(model, transactions, profiles)
    if cache is not None and cache.is_file():
        with cache.open("rb") as f:
            return pickle.load(f), loaded.encoder
    schema = FeatureSchema.fit(loaded.frame[train_rows(loaded, 0.7)])
    data = prepare_data(loaded, schema, DeviationConfig(), torch.device("cpu"))
    if cache is not None:
        with cache.open("wb") as f:
            pickle.dump(data, f)
    return data, loaded.encoder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--transactions", type=Path, required=True)
    parser.add_argument("--profiles", type=Path)
    parser.add_argument("--model", type=Path, required=True, help="a pretrained artefact (panther pretrain)")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--cache", type=Path, help="pickle of the built inputs, reused when present")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    names = [n for n in args.variants.split(",") if n]
    unknown = sorted(set(names) - set(VARIANTS))
    if unknown:
        sys.exit(f"unknown variants {unknown}; known: {sorted(VARIANTS)}")
    seeds = [int(s) for s in args.seeds.split(",")]
    start = time.perf_counter()
    bench = Bench(*load_data(args.model, args.transactions, args.profiles, args.cache))
    if FAIR not in names:
        names.insert(0, FAIR)
    scores: dict[str, list[np.ndarray]] = {}
    rows: dict[str, Any] = {}
    for name in names:
        began = time.perf_counter()
        scores[name] = [_progress(name, seed, lambda n=name, s=seed: bench.run(n, s)) for seed in seeds]
        rows[name] = {"seeds": {str(s): bench.metrics(x) for s, x in zip(seeds, scores[name], strict=True)},
                      "ensemble": bench.metrics(ensemble(scores[name])),
                      "wall_s": round(time.perf_counter() - began, 1)}  # fmt: skip
    fair = ensemble(scores[FAIR])
    for name in names:
        if name != FAIR:
            rows[name]["ensemble_vs_fair"] = bench.paired(ensemble(scores[name]), fair)
    y = bench.labels
    emit({"command": "bench/fraud_heads.py", "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
          "model": str(args.model), "transactions": str(args.transactions), "seeds": seeds,
          "torch_threads": torch.get_num_threads(),
          "split": {"train_fraud": int(y[bench.train].sum()), "val_fraud": int(y[bench.val].sum()),
                    "test_fraud": int(y[bench.test].sum()), "test_events": len(bench.test)},
          "variants": rows, "wall_s": round(time.perf_counter() - start, 1)}, args.json)


def _progress(name: str, seed: int, run: Callable[[], np.ndarray]) -> np.ndarray:
    began = time.perf_counter()
    out = run()
    took = time.perf_counter() - began
    print(f"[fraud heads] {name} seed {seed}: {took:.0f} s", file=sys.stderr, flush=True)
    return out


if __name__ == "__main__":
    main()
