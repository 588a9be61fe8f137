"""The `panther` console script: parses arguments and dispatches; the work lives in the modules it calls."""

from __future__ import annotations

import functools
import json
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from stream.console import stderr
from stream.errors import PantherError
from stream.settings import Settings

F = TypeVar("F", bound=Callable[..., Any])


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
    emit({k: str(v) if isinstance(v, Path) else v for k, v in status.__dict__.items()}, as_json)
    if not status.running:
        sys.exit(1)


@kafka.command("run", hidden=True)
@user_errors
def kafka_run() -> None:
    """Foreground broker (for Procfile/honcho): starts, then waits until interrupted, then stops."""
    from stream.broker import LocalKafka

    LocalKafka.from_settings(Settings()).run_foreground()


# ---------------------------------------------------------------- topics
@main.group()
def topics() -> None:
    """Kafka topics declared by PANTHER."""


@topics.command("create")
@click.option("--json", "as_json", is_flag=True)
@user_errors
def topics_create(as_json: bool) -> None:
    """Creates the declared topics (idempotent; checks co-partitioning)."""
    from stream.topics import create_topics

    emit(create_topics(Settings()), as_json)


# ---------------------------------------------------------------- data
@main.command()
@click.option("--users", default=20_000, show_default=True, type=click.IntRange(min=1))
@click.option("--days", default=60, show_default=True, type=click.IntRange(min=1))
@click.option("--seed", default=7, show_default=True, type=int)
@click.option("--fraud-rate", default=0.01, show_default=True, type=click.FloatRange(0.0, 0.5))
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True)
@user_errors
def simulate(users: int, days: int, seed: int, fraud_rate: float, out_dir: Path, as_json: bool) -> None:
    """Synthetic transactions + profiles with labeled fraud (transactions.parquet, profiles.parquet)."""
    from stream.simulation import run_simulation

    emit(run_simulation(users, days, seed, fraud_rate, out_dir), as_json)


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
@click.option("--json", "as_json", is_flag=True)
@user_errors
def produce(input_path: Path, topic: str | None, rate: float | None, record_time: str, as_json: bool) -> None:
    """Replays a CSV/Parquet file into Kafka, keyed by user_id."""
    from stream.files import model_for
    from stream.produce import produce_file

    settings = Settings()
    if topic is None:
        is_profiles = model_for(input_path).__name__ == "UserProfile"
        topic = settings.topic_profiles if is_profiles else settings.topic_transactions
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
@click.option("--json", "as_json", is_flag=True, help="Raw JSON lines on stdout.")
@user_errors
def tail(
    topic: str, from_beginning: bool, max_records: int | None, idle_timeout: float | None, as_json: bool
) -> None:
    """Prints records as they arrive."""
    from stream.tail import follow, render

    for record in follow(topic, Settings(), from_beginning, max_records, idle_timeout):
        if as_json:
            click.echo(record.value.decode("utf-8", "replace"))
        else:
            render(record)


if __name__ == "__main__":
    main()
