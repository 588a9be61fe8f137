"""`ArtefactRunner`: value checks and the encoder-only mode (no fraud head yet)."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from models.fraud.scorer import FraudScorer
from tests.triton_repo.fixtures import MAX_LEN, tiny_artifact
from triton_repo.runner import ArtefactRunner, InvalidRequest


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("runner")
    return tiny_artifact(root / "head"), tiny_artifact(root / "plain", with_head=False)


def arrays(rng: np.random.Generator, b: int = 4) -> dict[str, np.ndarray]:
    lengths = rng.integers(0, MAX_LEN + 1, b)
    return {
        "tokens": np.where(np.arange(MAX_LEN) < lengths[:, None], rng.integers(4, 400, (b, MAX_LEN)), 0),
        "lengths": lengths,
        "profile": np.zeros((b, 5), dtype=np.int64),
        "new_token": rng.integers(4, 400, b),
        "txn_features": rng.normal(size=(b, 40)).astype(np.float32),
        "prob_stats": np.tile([10.0, 0.2, 0.05, -2.0, 0.5], (b, 1)),
    }


def test_runner_with_head_is_the_fraud_scorer(models: tuple[Path, Path]) -> None:
    runner = ArtefactRunner.from_artifact(models[0])
    data = arrays(np.random.default_rng(0))
    ours = runner.score(data)
    theirs = FraudScorer.from_artifact(models[0]).score(**data)
    assert ours.keys() == theirs.keys()
    for key in ours:
        np.testing.assert_array_equal(ours[key], theirs[key])
    assert runner.info.has_head and len(runner.info.signal_names) == ours["reasons"].shape[1]


def test_encoder_only_runner_serves_what_exists(models: tuple[Path, Path]) -> None:
    runner = ArtefactRunner.from_artifact(models[1])
    out = runner.score(arrays(np.random.default_rng(1)))
    assert sorted(out) == ["logp_new", "seq_embedding", "surprise", "user_embedding"]
    assert (out["logp_new"] < 0).all() and np.allclose(out["surprise"], -out["logp_new"])
    assert out["seq_embedding"].shape == (4, 16) and not runner.info.has_head


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"tokens": np.full((4, MAX_LEN), 10**6)}, "tokens out of"),
        ({"tokens": np.zeros((4, MAX_LEN + 1), np.int64)}, "tokens must be"),
        ({"lengths": np.full(4, MAX_LEN + 1)}, "lengths out of"),
        ({"profile": np.full((4, 5), 99)}, "profile ids out of range"),
        ({"txn_features": np.full((4, 40), np.nan, np.float32)}, "NaN"),
        ({"prob_stats": np.zeros((4, 4))}, "prob_stats must be"),
    ],
)
def test_validate_names_the_bad_input(models: tuple[Path, Path], change: dict, message: str) -> None:
    runner = ArtefactRunner.from_artifact(models[0])
    with pytest.raises(InvalidRequest, match=message):
        runner.validate(arrays(np.random.default_rng(2)) | change)


def test_one_setting_caps_torch_and_blas_threads() -> None:
    """`set_compute_threads` (PANTHER_TORCH_THREADS, Triton's `torch_threads`): the head in numpy runs on
    BLAS, whose default of a thread per core oversubscribes a small shared CPU as torch's does."""
    script = ("import torch; from threadpoolctl import threadpool_info; "
              "from triton_repo.runner import set_compute_threads; set_compute_threads(1); "
              "blas = [i['num_threads'] for i in threadpool_info() if i['user_api'] == 'blas']; "
              "print(torch.get_num_threads(), blas)")  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "4", "OPENBLAS_NUM_THREADS": "4"}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True, env=env)
    torch_threads, blas = done.stdout.split(" ", 1)
    assert torch_threads == "1" and set(json.loads(blas)) == {1}, done.stdout  # every BLAS loaded


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="tunes glibc's malloc")
def test_retained_memory_spares_the_page_faults_of_each_call() -> None:
    """`retain_freed_memory` (PANTHER_MALLOC_RETAIN_MB, default 512; Triton's backend the same): a
    forward pass holds its activations at once and frees them; with it, the next call reuses that
    memory instead of faulting fresh pages in. Whether glibc's own defaults give it back depends on the
    process's history (its thresholds move with what was freed before): run alone here they did, every
    call (~123,000 faults in these five), and inside the whole suite they did not, so only 0 = "leave
    glibc alone" is checked for them; the time it costs is measured in docs/BENCHMARKS.md."""
    script = ("import resource, sys, torch; from triton_repo.runner import retain_freed_memory\n"
              "applied = retain_freed_memory(int(sys.argv[1]))\n"
              "def call():  # 24 tensors of 4 MB alive at once, then freed\n"
              "    held = [torch.ones(1 << 20) for _ in range(24)]\n"
              "    del held\n"
              "for _ in range(2): call()\n"
              "before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt\n"
              "for _ in range(5): call()\n"
              "print(applied, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)")  # fmt: skip

    def run(megabytes: int) -> list[str]:
        done = subprocess.run([sys.executable, "-c", script, str(megabytes)], capture_output=True, text=True,
                              check=True)  # fmt: skip
        return done.stdout.split()

    runs = {mb: run(mb) for mb in (0, 512)}
    (applied_off, _), (applied_on, faults_on) = runs[0], runs[512]
    assert (applied_off, applied_on) == ("False", "True"), runs
    pages = 5 * 24 * 1024  # 4 KB pages written by the five measured calls
    assert int(faults_on) < pages // 20, runs  # at most a tensor's pages: the rest reused


def test_the_in_process_scorer_applies_the_memory_setting(
    models: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    import triton_repo.runner
    from stream.scoring import InProcessScorer
    from stream.settings import Settings

    calls: list[int] = []
    monkeypatch.setattr(triton_repo.runner, "retain_freed_memory", calls.append)
    InProcessScorer.from_artifact(models[0], threads=1, retain_mb=64)
    assert calls == [64] and Settings().malloc_retain_mb == 512
    InProcessScorer.from_settings(models[0], Settings(malloc_retain_mb=32))  # the worker's, the backtest's
    assert calls == [64, 32]
