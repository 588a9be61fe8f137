"""The `panther` console script: parses arguments and dispatches; the work lives in the modules it calls."""

from __future__ import annotations

import dataclasses
import functools
import json
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click
from pydantic import ValidationError

from stream.console import stderr
from stream.errors import PantherError
from stream.settings import Settings

F = TypeVar("F", bound=Callable[..., Any])

WAIT = click.option(
    "--wait",
    "wait_s",
    default=0.0,
    show_default=True,
    type=click.FloatRange(min=0),
    help="Seconds to wait for the broker/topics/Triton this needs (process managers start all at once).",
)


def user_errors(func: F) -> F:
    """Turns user-fixable failures into one line on stderr and a non-zero exit, never a stack trace."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from confluent_kafka import KafkaException

        from stream.broker import BrokerError

        try:
            return func(*args, **kwargs)
        except (PantherError, BrokerError) as exc:
            stderr.print(f"[red]error:[/red] {exc}", highlight=False, markup=True)
            sys.exit(getattr(exc, "exit_code", 2))
        except KafkaException as exc:
            stderr.print(f"[red]kafka error:[/red] {exc.args[0].str() if exc.args else exc}")
            sys.exit(2)
        except ValidationError as exc:  # PANTHER_* settings that do not validate
            if exc.title != Settings.__name__:
                raise
            problems = "; ".join(
                f"PANTHER_{'_'.join(str(p) for p in e['loc']).upper()}: {e['msg']}" for e in exc.errors()
            )
            stderr.print(f"[red]error:[/red] invalid settings: {problems}", highlight=False, markup=True)
            sys.exit(2)
        except KeyboardInterrupt:
            stderr.print("interrupted")
            sys.exit(130)

    return wrapper  # type: ignore[return-value]


def emit(result: dict[str, Any], as_json: bool) -> None:
    """`--json`: one JSON object on stdout and nothing else there; otherwise a readable summary on stderr."""
    if as_json:
        click.echo(json.dumps(result, default=str, sort_keys=True))
    else:
        for key, value in result.items():
            stderr.print(f"[bold]{key}[/bold]: {value}", highlight=False)


def _warnings_to_stderr() -> None:
    def show(message: Warning | str, category: type[Warning], *_: Any, **__: Any) -> None:
        stderr.print(f"[yellow]warning:[/yellow] {message}", highlight=False)

    warnings.showwarning = show  # type: ignore[assignment]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """PANTHER — generative pretraining on transaction sequences, as a streaming fraud detector."""
    _warnings_to_stderr()


# ---------------------------------------------------------------- kafka
@main.group()
def kafka() -> None:
    """Local single-node KRaft broker on loopback (jars from Maven Central, no Docker)."""


@kafka.command("start")
@click.option("--wait", "wait_s", default=90.0, show_default=True, help="Seconds to wait for readiness.")
@user_errors
def kafka_start(wait_s: float) -> None:
    from stream.broker import LocalKafka

    broker = LocalKafka.from_settings(Settings())
    broker.start(wait_s=wait_s)
    stderr.print(f"kafka {broker.version} ready at {broker.bootstrap}")


@kafka.command("stop")
@user_errors
def kafka_stop() -> None:
    from stream.broker import LocalKafka

    broker = LocalKafka.from_settings(Settings())
    stopped = broker.stop()
    stderr.print("kafka stopped" if stopped else "kafka was not running")


@kafka.command("status")
@click.option("--json", "as_json", is_flag=True)
@user_errors
def kafka_status(as_json: bool) -> None:
    from stream.broker import LocalKafka

    status = LocalKafka.from_settings(Settings()).status()
    emit({k: str(v) if isinstance(v, Path) else v for k, v in dataclasses.asdict(status).items()}, as_json)
    if not status.running:
        sys.exit(1)


@kafka.command("run", hidden=True)
@click.option(
    "--grace",
    "grace_s",
    default=0.0,
    show_default=True,
    type=click.FloatRange(min=0),
    help="On SIGTERM keep serving this long before stopping, so that clients stopped at the same time "
    "(the worker: commit, leave its group) still find the broker.",
)
@user_errors
def kafka_run(grace_s: float) -> None:
    """Foreground broker (for Procfile/honcho): starts, then waits until interrupted, then stops."""
    from stream.broker import LocalKafka

    broker = LocalKafka.from_settings(Settings())
    if not grace_s:
        broker.run_foreground()
        return
    import signal

    def terminate(_signum: int, _frame: object) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # honcho signals the group once; ignore repeats
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, terminate)
    try:
        broker.start()
        while broker.status().running:
            time.sleep(2.0)
        raise PantherError(f"Kafka at {broker.bootstrap} exited unexpectedly (log: {broker.data_dir}/logs)")
    except KeyboardInterrupt:
        stderr.print(f"kafka: stopping in {grace_s:.0f} s, after its clients", highlight=False)
        time.sleep(grace_s)
    finally:
        broker.stop()


# ---------------------------------------------------------------- topics
@main.group()
def topics() -> None:
    """Kafka topics declared by PANTHER."""


@topics.command("create")
@WAIT
@click.option("--json", "as_json", is_flag=True)
@user_errors
def topics_create(wait_s: float, as_json: bool) -> None:
    """Creates the declared topics (idempotent; checks co-partitioning)."""
    from stream.topics import create_topics

    settings = Settings()
    if wait_s:
        from stream.readiness import wait_for_kafka

        wait_for_kafka(settings, wait_s)
    emit(create_topics(settings), as_json)


# ---------------------------------------------------------------- data
@main.command()
@click.option("--users", default=20_000, show_default=True, type=click.IntRange(min=1))
@click.option("--days", default=60, show_default=True, type=click.IntRange(min=1))
@click.option("--seed", default=7, show_default=True, type=int)
@click.option("--fraud-rate", default=0.01, show_default=True, type=click.FloatRange(0.0, 0.5))
@click.option("--scenario-mix", default=None,
              help='Fraud scenarios as name=weight,… ("default,routine_replay=0.2" adds one to the default).')
@click.option("--new-accounts", default=0.0, show_default=True,
              type=click.FloatRange(0.0, 1.0, max_open=True),
              help="Share of users whose account opens during the window (cold-start users; "
                   "needed by new_account_takeover).")  # fmt: skip
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True)
@user_errors
def simulate(users: int, days: int, seed: int, fraud_rate: float, scenario_mix: str | None,
             new_accounts: float, out_dir: Path, as_json: bool) -> None:  # fmt: skip
    """Synthetic transactions + profiles with labeled fraud (transactions.parquet, profiles.parquet)."""
    from stream.simulation import run_simulation

    emit(run_simulation(users, days, seed, fraud_rate, out_dir, scenario_mix, new_accounts), as_json)


@main.command()
@click.option("--input", "input_path", required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--topic", default=None, help="Default: transactions (user-profiles for a profiles.* file).")
@click.option(
    "--rate", default=None, type=click.FloatRange(min=0, min_open=True), help="Records/s (default: max)."
)
@click.option(
    "--record-time",
    type=click.Choice(["event", "now"]),
    default="event",
    show_default=True,
    help="Kafka record timestamp: the event's own time (replayed history) or the produce time (live).",
)
@click.option(
    "--loop",
    is_flag=True,
    help="Live traffic until stopped: replay transactions pass after pass, each with new txn ids and "
    "event times moved forward by whole weeks, no labels (needs --rate; implies --record-time now).",
)
@WAIT
@click.option("--json", "as_json", is_flag=True)
@user_errors
def produce(input_path: Path, topic: str | None, rate: float | None, record_time: str, loop: bool,
            wait_s: float, as_json: bool) -> None:  # fmt: skip
    """Replays a CSV/Parquet file into Kafka, keyed by user_id."""
    from stream.files import model_for
    from stream.produce import produce_file

    settings = Settings()
    is_profiles = model_for(input_path).__name__ == "UserProfile"
    if topic is None:
        topic = settings.topic_profiles if is_profiles else settings.topic_transactions
    if loop and (rate is None or is_profiles):
        raise PantherError("--loop replays transactions at a steady pace: give transactions and --rate")
    if wait_s:
        from stream.readiness import wait_for_topics

        wait_for_topics(settings, wait_s, [topic])
    if loop:
        from stream.live_traffic import produce_loop

        report = produce_loop(input_path, topic, settings, rate or 1.0)
    else:
        report = produce_file(
            input_path, topic, settings, rate, record_time == "event", show_progress=not as_json
        )
    emit({"topic": topic, **report.as_dict()}, as_json)
    if report.failed:
        raise PantherError(f"{report.failed} of {report.sent} records were not delivered: {report.errors}")


@main.command()
@click.option("--topic", required=True)
@click.option("--from-beginning", is_flag=True)
@click.option("--max", "max_records", type=int, default=None, help="Stop after this many records.")
@click.option(
    "--idle-timeout", type=float, default=None, help="Stop after this many seconds without a record."
)
@WAIT
@click.option("--json", "as_json", is_flag=True, help="Raw JSON lines on stdout.")
@user_errors
def tail(topic: str, from_beginning: bool, max_records: int | None, idle_timeout: float | None, wait_s: float,
         as_json: bool) -> None:  # fmt: skip
    """Prints records as they arrive."""
    from stream.tail import follow, render

    settings = Settings()
    if wait_s:
        from stream.readiness import wait_for_topics

        wait_for_topics(settings, wait_s, [topic])
    for record in follow(topic, settings, from_beginning, max_records, idle_timeout):
        if as_json:
            click.echo(record.value.decode("utf-8", "replace"))
        else:
            render(record)


# ---------------------------------------------------------------- models
DATA_FILE = click.Path(dir_okay=False, exists=True, path_type=Path)
MODEL_DIR = click.Path(file_okay=False, exists=True, path_type=Path)
DEVICE = click.Choice(["auto", "cpu", "cuda"])


@main.command()
@click.option("--transactions", required=True, type=DATA_FILE)
@click.option("--profiles", default=None, type=DATA_FILE)
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path))
@click.option("--epochs", default=5, show_default=True, type=click.IntRange(min=1))
@click.option("--max-len", default=100, show_default=True, type=click.IntRange(min=2))
@click.option("--device", default="auto", show_default=True, type=DEVICE)
@click.option("--ablations/--no-ablations", default=True, show_default=True, help="Ablation ladder too.")
@click.option("--seed", default=0, show_default=True)
@click.option("--cold-users", default=0.0, show_default=True, type=click.FloatRange(0.0, 1.0, max_open=True),
              help="Share of users held out of training; every model is also scored on their first events.")
@click.option("--json", "as_json", is_flag=True)
@user_errors
def pretrain(transactions: Path, profiles: Path | None, out_dir: Path, epochs: int, max_len: int, device: str,
             ablations: bool, seed: int, cold_users: float, as_json: bool) -> None:  # fmt: skip
    """Tokenizer + PANTHER pretraining (with SASRec, popularity and Markov side by side) → model artefact."""
    from models.training import pretrain_transactions

    emit(pretrain_transactions(transactions, profiles, out_dir, epochs, device, max_len, ablations=ablations,
                               seed=seed, cold_users=cold_users, progress=not as_json), as_json)  # fmt: skip


@main.command("fit-fraud")
@click.option("--model", "model_dir", required=True, type=MODEL_DIR)
@click.option("--transactions", required=True, type=DATA_FILE)
@click.option("--profiles", default=None, type=DATA_FILE)
@click.option("--epochs", default=8, show_default=True, type=click.IntRange(min=1))
@click.option("--device", default="auto", show_default=True, type=DEVICE)
@click.option("--fine-tune", is_flag=True, help="Also fine-tune the pretrained encoder (frozen by default).")
@click.option("--residual/--no-residual", default=True, show_default=True,
              help="Fit gradient-boosted trees first; the head learns what they miss (both are served).")
@click.option("--heads", default=None, type=click.IntRange(min=1),
              help="Heads fitted with consecutive seeds, logits averaged  [default: 3; 1 with --fine-tune]")
@click.option("--json", "as_json", is_flag=True)
@user_errors
def fit_fraud(model_dir: Path, transactions: Path, profiles: Path | None, epochs: int, device: str,
              fine_tune: bool, residual: bool, heads: int | None, as_json: bool) -> None:  # fmt: skip
    """Trains the hybrid fraud head (DCN, on top of gradient-boosted trees unless --no-residual) on
    labeled data and saves it into the artefact."""
    from models.fraud.api import fit_fraud as fit

    if fine_tune and heads is not None and heads > 1:
        raise click.UsageError("--fine-tune fits one head (each member would need its own encoder): "
                               "leave out --heads")
    report = fit(model_dir, transactions, profiles, epochs=epochs, device=device, fine_tune=fine_tune,
                 residual=residual, heads=heads, progress=True)  # the bar is on stderr: --json stays clean
    emit(report, as_json)


@main.command()
@click.option("--model", "model_dir", required=True, type=MODEL_DIR)
@click.option("--transactions", required=True, type=DATA_FILE)
@click.option("--profiles", default=None, type=DATA_FILE)
@click.option("--since", default=None, help="Evaluate events at/after this time (earlier ones build state).")
@click.option("--device", default="auto", show_default=True, type=DEVICE)
@click.option("--json", "as_json", is_flag=True)
@user_errors
def evaluate(model_dir: Path, transactions: Path, profiles: Path | None, since: str | None, device: str,
             as_json: bool) -> None:  # fmt: skip
    """Next-transaction metrics (full ranking) and, when labels and a fraud head exist, fraud metrics."""
    from models.training import evaluate_transactions

    next_txn = evaluate_transactions(
        model_dir, transactions, profiles, device, start=since, progress=not as_json
    )
    result = {"next_transaction": next_txn}
    if (model_dir / "fraud_head.json").is_file():
        from models.fraud.api import evaluate_fraud

        result["fraud"] = evaluate_fraud(model_dir, transactions, profiles, device, since=since)
    emit(result, as_json)


@main.group()
def bench() -> None:
    """Benchmarks (speed and quality); record results in docs/BENCHMARKS.md with the command."""


@bench.command("movielens")
@click.option("--path", default=None, type=click.Path(exists=True, path_type=Path), help="Default: ML-1M.")
@click.option("--epochs", default=3, show_default=True, type=click.IntRange(min=1))
@click.option("--device", default="auto", show_default=True, type=DEVICE)
@click.option("--max-len", default=200, show_default=True)
@click.option("--time-budget-s", default=None, type=float, help="Stop training each model after this long.")
@click.option("--sampler", default="uniform", show_default=True,
              type=click.Choice(["uniform", "uniform_shared", "in_batch"]),  # models.losses.SAMPLERS
              help="Negatives of the sampled softmax; uniform_shared is ~3x faster on CPU.")  # fmt: skip
@click.option("--loss", default="sampled", show_default=True, type=click.Choice(["sampled", "full"]),
              help="full: softmax over every item (memory-bounded chunks).")  # fmt: skip
@click.option("--relative-bias", default="none", show_default=True,
              type=click.Choice(["none", "position", "position_time"]),
              help="Learned attention bias over relative positions [and log time gaps].")  # fmt: skip
@click.option("--validation", is_flag=True,
              help="Hold out each user's second-to-last rating; stop early, keep the best.")  # fmt: skip
@click.option("--models", "model_names", default="panther,sasrec", show_default=True,
              help="Neural models to train (comma-separated); popularity and Markov always run.")  # fmt: skip
@click.option("--json", "as_json", is_flag=True)
@user_errors
def bench_movielens(path: Path | None, epochs: int, device: str, max_len: int, time_budget_s: float | None,
                    sampler: str, loss: str, relative_bias: str, validation: bool, model_names: str,
                    as_json: bool) -> None:  # fmt: skip
    """PANTHER vs SASRec vs popularity vs Markov on MovieLens, full ranking, leave-last-out."""
    from models.bench import run_movielens_bench
    from models.bench.movielens import ML1M_SETUP, MOVIELENS_MODELS

    models = tuple(name.strip() for name in model_names.split(",") if name.strip())
    if not models or set(models) - set(MOVIELENS_MODELS):
        choices = ", ".join(MOVIELENS_MODELS)
        raise click.BadParameter(f"{model_names!r}: choose from {choices}", param_hint="--models")
    setup = ML1M_SETUP.with_sampler(sampler).with_loss(loss).with_overrides(
        {"relative_bias": relative_bias, "validation": validation}
    )
    emit(run_movielens_bench(path, epochs, device, max_len, time_budget_s=time_budget_s, setup=setup,
                             models=models, progress=not as_json), as_json)  # fmt: skip


@bench.command("sprm-memory")
@click.option("--lengths", default="512,1024,2048,4096,8192", show_default=True)
@click.option("--device", default="auto", show_default=True, type=DEVICE)
@click.option("--budget-s", default=None, type=float)
@click.option("--json", "as_json", is_flag=True)
@user_errors
def bench_sprm_memory(lengths: str, device: str, budget_s: float | None, as_json: bool) -> None:
    """Peak memory and time per training step vs sequence length: SPRM-only vs full attention."""
    from models.bench import run_sprm_memory_bench

    sizes = tuple(int(part) for part in lengths.split(","))
    emit(run_sprm_memory_bench(sizes, device=device, budget_s=budget_s), as_json)


@bench.command("fraud")
@click.option("--transactions", required=True, type=DATA_FILE)
@click.option("--profiles", default=None, type=DATA_FILE)
@click.option("--model", "model_dir", default=None, type=MODEL_DIR, help="Default: pretrain one first.")
@click.option("--train-fraction", default=0.7, show_default=True, type=click.FloatRange(0.1, 0.95))
@click.option("--epochs", default=3, show_default=True, type=click.IntRange(min=1))
@click.option("--device", default="auto", show_default=True, type=DEVICE)
@click.option("--json", "as_json", is_flag=True)
@user_errors
def bench_fraud(transactions: Path, profiles: Path | None, model_dir: Path | None, train_fraction: float,
                epochs: int, device: str, as_json: bool) -> None:  # fmt: skip
    """Hybrid PANTHER+DCN vs rules, gradient boosting and DCN alone, on a chronological split."""
    from models.fraud.bench import run_fraud_bench

    emit(run_fraud_bench(transactions, profiles, model_dir, train_fraction, epochs, device,
                         progress=not as_json), as_json)  # fmt: skip


@bench.command("scorer")
@click.option("--sizes", default="demo,panther", show_default=True, help="demo and/or panther.")
@click.option("--scorers", default="inprocess,triton", show_default=True, help="inprocess and/or triton.")
@click.option("--events", default=2000, show_default=True, type=click.IntRange(min=8))
@click.option("--batch", default=256, show_default=True, type=click.IntRange(min=1))
@click.option("--device", type=click.Choice(["cpu", "gpu"]), default="cpu", show_default=True)
@click.option("--json", "as_json", is_flag=True)
@user_errors
def bench_scorer(sizes: str, scorers: str, events: int, batch: int, device: str, as_json: bool) -> None:
    """Full-window vs cached-state scoring on the same events: ev/s, refresh seq/s, max difference."""
    from stream.bench_scorer import run_scorer_bench

    chosen = _choices(sizes, ("demo", "panther"), "--sizes")
    kinds = _choices(scorers, ("inprocess", "triton"), "--scorers")
    emit(run_scorer_bench(chosen, kinds, events, batch, device, say=_say), as_json)


def _choices(text: str, allowed: tuple[str, ...], option: str) -> tuple[str, ...]:
    chosen = tuple(part.strip() for part in text.split(",") if part.strip())
    wrong = [c for c in chosen if c not in allowed]
    if wrong or not chosen:
        raise click.BadParameter(f"choose from {', '.join(allowed)} (got {text!r})", param_hint=option)
    return chosen


def _say(message: str) -> None:
    click.echo(message, err=True)


@bench.command("stream")
@click.option("--events", default=5000, show_default=True, type=click.IntRange(min=1), help="Per rate.")
@click.option("--rate", default=None, type=click.FloatRange(min=1), help="One fixed rate (records/s).")
@click.option(
    "--rates",
    default="1000,5000,max",
    show_default=True,
    help="Rates to run in turn (records/s; max = as fast as the producer goes); --rate overrides.",
)
@click.option("--delivery", "deliveries", default="exactly_once,at_least_once", show_default=True,
              help="Delivery modes to run (PANTHER_DELIVERY values, comma-separated).")
@click.option("--sizes", default="demo,panther", show_default=True,
              help="Model sizes (demo, panther); ignored with --model.")
@click.option("--processes", "process_counts", default="1,2", show_default=True,
              help="Worker process counts to run (panther worker --processes N), comma-separated.")
@click.option("--scorer", default="inprocess", show_default=True, type=click.Choice(["inprocess", "triton"]))
@click.option(
    "--model",
    "model_dir",
    default=None,
    type=MODEL_DIR,
    help="Default: a demo-sized model, trained once under $PANTHER_HOME/bench-stream.",
)
@click.option(
    "--data",
    "data_dir",
    default=None,
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="live.parquet (or transactions.parquet) and profiles.parquet; needed with --model.",
)
@click.option("--timeout-s", default=300.0, show_default=True, help="Longest wait for a run's last score.")
@click.option("--warmup-s", default=20.0, show_default=True, type=click.FloatRange(min=0),
              help="Paced traffic (at the lowest rate) before the broker's first measured run: its JIT.")
@click.option("--warmup-events", default=None, type=click.IntRange(min=1),
              help="Events at full speed before each configuration's measured runs (unmeasured): its "
                   "users' history. Default: users × the model's window L, so windows are full.")
@click.option("--json", "as_json", is_flag=True)
@user_errors
def bench_stream(events: int, rate: float | None, rates: str, deliveries: str, sizes: str,
                 process_counts: str, scorer: str, model_dir: Path | None, data_dir: Path | None,
                 timeout_s: float, warmup_s: float, warmup_events: int | None,
                 as_json: bool) -> None:  # fmt: skip
    """Scorer alone, engine alone, the worker end to end: each delivery mode, process count, rate, size."""
    from stream.bench_stream import parse_choices, parse_rates, run_stream_bench

    chosen = [rate] if rate else parse_rates(rates)
    result = run_stream_bench(
        events, chosen, scorer, model_dir, data_dir, timeout_s, say=_say,
        deliveries=parse_choices("--delivery", deliveries, ("exactly_once", "at_least_once")),
        sizes=parse_choices("--sizes", sizes, ("demo", "panther")),
        processes=tuple(int(p) for p in parse_choices("--processes", process_counts, None)),
        warmup_s=warmup_s, warmup_events=warmup_events,
    )  # fmt: skip
    emit(result, as_json)


# ---------------------------------------------------------------- serving


@main.command()
@click.option("--model", "model_dir", required=True, type=MODEL_DIR)
@click.option("--repo", "repo_dir", default=None, type=click.Path(file_okay=False, path_type=Path))
@click.option("--device", type=click.Choice(["cpu", "gpu"]), default="cpu", show_default=True)
@click.option("--version", "version", type=click.IntRange(min=1), default=None, help="Default: next free.")
@click.option("--reference", is_flag=True, help="Also the full-window panther_sprm (benchmarks, checks).")
@click.option("--json", "as_json", is_flag=True)
@user_errors
def export(model_dir: Path, repo_dir: Path | None, device: str, version: int | None, reference: bool,
           as_json: bool) -> None:  # fmt: skip
    """Writes versioned Triton models from a model artefact: panther_score (the fraud head on cached
    per-user state), panther_refresh (the encoder, batched), panther_user_encoder [, panther_sprm]."""
    from triton_repo.export import export_model_repository

    settings = Settings()
    result = export_model_repository(
        model_dir,
        repo_dir or settings.triton_repo,
        device=device,
        version=version,
        max_batch_size=settings.triton_max_batch_size,
        queue_delay_us=settings.triton_queue_delay_us,
        torch_threads=settings.triton_torch_threads,
        reference=reference,
    )
    emit(result, as_json)


@main.group()
def triton() -> None:
    """Local tritonserver (from the nvidia-pytriton wheel) on the exported triton_repo, loopback only."""


def _local_triton() -> Any:
    """Deferred import keeps `panther --help` light."""
    from triton_repo.server import LocalTriton

    return LocalTriton.from_settings(Settings())


@triton.command("start")
@click.option("--wait", "wait_s", default=120.0, show_default=True)
@user_errors
def triton_start(wait_s: float) -> None:
    status = _local_triton().start(wait_s=wait_s)
    stderr.print(f"tritonserver ready: {status.as_dict()}", highlight=False)


@triton.command("stop")
@user_errors
def triton_stop() -> None:
    stderr.print("tritonserver stopped" if _local_triton().stop() else "tritonserver was not running")


@triton.command("status")
@click.option("--json", "as_json", is_flag=True)
@user_errors
def triton_status(as_json: bool) -> None:
    status = _local_triton().status()
    emit(status.as_dict(), as_json)
    if not status.running:
        sys.exit(1)


@triton.command("run", hidden=True)
@user_errors
def triton_run() -> None:
    """Foreground tritonserver (for Procfile/honcho)."""
    _local_triton().run_foreground()


# ---------------------------------------------------------------- stream
@main.command()
@click.option("--model", "model_dir", default=None, type=MODEL_DIR, help="Default: PANTHER_MODEL_DIR.")
@click.option("--scorer", type=click.Choice(["triton", "inprocess"]), default=None, help="PANTHER_SCORER")
@click.option("--loglevel", default="info", show_default=True)
@click.option("--processes", type=click.IntRange(min=1), default=1, show_default=True,
              help="Workers of one group on this machine (web ports PANTHER_WEB_PORT, +1, …).")
@WAIT
@user_errors
def worker(model_dir: Path | None, scorer: str | None, loglevel: str, processes: int, wait_s: float) -> None:
    """The Faust worker: scores `transactions`, caches embeddings, emits scores, alerts and dead letters.

    `--wait` waits for the declared topics and, with the Triton scorer, for Triton and both models: the
    worker would run without Triton (degraded mode), but a fresh start should score through it.
    `--processes N` runs N workers of one group (stream/worker/processes.py): one Python process
    scores on about one core.
    """
    if processes > 1:
        from stream.worker.processes import run_processes

        args = [f"--loglevel={loglevel}", f"--wait={wait_s}"]
        args += [f"--model={model_dir}"] if model_dir is not None else []
        args += [f"--scorer={scorer}"] if scorer is not None else []
        sys.exit(run_processes(Settings(), processes, args))
    from stream.worker.runtime import run_worker

    overrides: dict[str, Any] = {}
    if model_dir is not None:
        overrides["model_dir"] = model_dir
    if scorer is not None:
        overrides["scorer"] = scorer
    settings = Settings(**overrides)
    if wait_s:
        from stream.readiness import wait_for_topics, wait_for_triton

        deadline = time.monotonic() + wait_s
        wait_for_topics(settings, wait_s)
        if settings.scorer == "triton":
            wait_for_triton(settings, max(1.0, deadline - time.monotonic()))
    run_worker(settings, loglevel=loglevel)


# ---------------------------------------------------------------- backtest
@main.command()
@click.option("--topic", default=None, help="Default: PANTHER_TOPIC_TRANSACTIONS.")
@click.option("--start", required=True, help="T0 (included): ISO-8601, UTC if no zone, or epoch ms.")
@click.option("--end", required=True, help="T1 (included): ISO-8601 or epoch ms.")
@click.option("--lookback", default="7d", show_default=True, help="Warm user state from T0 minus this.")
@click.option("--lateness", default="0s", show_default=True, help="Read past T1 for late records ≤ T1.")
@click.option("--model", "models", multiple=True, help="[LABEL=]DIR; repeat for A/B (PANTHER_MODEL_DIR)")
@click.option("--threshold", type=float, default=None, help="Alert on score ≥ X (PANTHER_ALERT_THRESHOLD)")
@click.option("--alert-rate", default=None, help="Alert on the top R of each model's scores (0.01 or 1%).")
@click.option("--report", "report_dir", required=True, type=click.Path(file_okay=False, path_type=Path))
@click.option("--scorer", type=click.Choice(["inprocess", "triton"]), default="inprocess", show_default=True)
@click.option("--profiles-topic", default=None, help="Default: PANTHER_TOPIC_PROFILES; '' for none.")
@click.option("--batch-size", default=None, type=click.IntRange(min=1), help="Default: PANTHER_BATCH_MAX.")
@click.option("--json", "as_json", is_flag=True)
@user_errors
def backtest(topic: str | None, start: str, end: str, lookback: str, lateness: str, models: tuple[str, ...],
             threshold: float | None, alert_rate: str | None, report_dir: Path, scorer: str,
             profiles_topic: str | None, batch_size: int | None, as_json: bool) -> None:  # fmt: skip
    """Replays a time range of a topic through the live scorer: scores.parquet, report.json, report.html."""
    from stream.backtest import BacktestConfig, ModelSpec, TimeRange, run_backtest
    from stream.backtest.config import parse_duration_ms, parse_rate, parse_time_ms

    settings = Settings()
    start_ms, end_ms = parse_time_ms(start, "--start"), parse_time_ms(end, "--end")
    lookback_ms, lateness_ms = parse_duration_ms(lookback), parse_duration_ms(lateness, "--lateness")
    time_range = TimeRange(start_ms, end_ms, lookback_ms, lateness_ms)
    config = BacktestConfig(
        topic=topic or settings.topic_transactions,
        time_range=time_range,
        models=ModelSpec.parse_all(models or (str(settings.model_dir or settings.home / "model"),)),
        report_dir=report_dir,
        threshold=threshold,
        alert_rate=parse_rate(alert_rate) if alert_rate is not None else None,
        scorer="triton" if scorer == "triton" else "inprocess",
        batch_size=batch_size or settings.batch_max,
        profiles_topic=settings.topic_profiles if profiles_topic is None else profiles_topic or None,
    )
    summary = run_backtest(config, settings, progress=not as_json)
    models_brief = {label: _backtest_brief(m) for label, m in summary["models"].items()}
    read = {k: v for k, v in summary["read"].items() if k != "partitions"}
    report = str(report_dir / "report.html")
    emit({"report": report, "read": read, "run": summary["run"], "models": models_brief}, as_json)


def _backtest_brief(model: dict[str, Any]) -> dict[str, Any]:
    brief = {k: model[k] for k in ("model_version", "scored", "alerts", "alert_rate", "threshold")}
    fraud = model.get("fraud", {})
    return brief | {k: fraud[k] for k in ("recall@1%", "precision@1%", "pr_auc", "roc_auc") if k in fraud}


if __name__ == "__main__":
    main()
