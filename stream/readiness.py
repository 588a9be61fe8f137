"""Waiting for dependencies (`--wait`): the broker, the declared topics, Triton.

Process managers start everything at once (honcho, docker compose, Kubernetes); a process whose broker
or model server is not up yet should wait for it and then run, not crash and take its siblings down
(honcho stops the whole Procfile when one process exits). Each probe returns None when ready or a
one-line reason; `wait_until` polls it and, past the deadline, raises a PantherError with the last reason.
"""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable

from stream.console import stderr
from stream.errors import PantherError
from stream.settings import KafkaSecurityConfigError, Settings
from stream.topics import admin_client, declared_topics, existing_partitions

Probe = Callable[[], str | None]

TRITON_MODELS = ("panther_score", "panther_refresh", "panther_user_encoder")  # schema.WORKER_MODELS


class NotReady(PantherError):
    """A dependency did not become ready within the `--wait` deadline."""


def wait_until(probe: Probe, what: str, timeout_s: float, interval_s: float = 1.0) -> float:
    """Polls `probe` until it returns None; → seconds waited. Says once on stderr what it waits for.

    >>> wait_until(lambda: None, "nothing", timeout_s=1.0)
    0.0
    """
    started = time.monotonic()
    reason = probe()
    if reason is None:
        return 0.0
    stderr.print(f"waiting up to {timeout_s:.0f} s for {what}: {reason}", highlight=False)
    while reason is not None:
        if time.monotonic() - started >= timeout_s:
            raise NotReady(f"{what} not ready after {timeout_s:.0f} s: {reason}")
        time.sleep(interval_s)
        reason = probe()
    waited = time.monotonic() - started
    stderr.print(f"{what} ready after {waited:.1f} s", highlight=False)
    return round(waited, 3)


def topics_probe(settings: Settings, names: Iterable[str]) -> Probe:
    """Ready when the broker answers and every topic in `names` exists."""
    wanted = tuple(names)

    def probe() -> str | None:
        quick = settings.model_copy(update={"kafka_timeout_s": 2.0})
        try:
            present = existing_partitions(admin_client(quick), quick)
        except KafkaSecurityConfigError:
            raise  # a configuration mistake: waiting will not fix it
        except PantherError:
            return f"no broker answers at {settings.kafka_bootstrap}"
        missing = [name for name in wanted if name not in present]
        return f"missing topics {', '.join(missing)}" if missing else None

    return probe


def kafka_probe(settings: Settings) -> Probe:
    """Ready when the broker answers a metadata request."""
    return topics_probe(settings, ())


def triton_probe(settings: Settings, models: Iterable[str] = TRITON_MODELS) -> Probe:
    """Ready when Triton's HTTP endpoint says the server and each model are ready (strict readiness)."""
    base = f"http://{settings.triton_host}:{settings.triton_http_port}"
    paths = ["/v2/health/ready", *(f"/v2/models/{m}/ready" for m in models)]

    def probe() -> str | None:
        for path in paths:
            try:
                with urllib.request.urlopen(base + path, timeout=2.0) as response:
                    if response.status != 200:
                        return f"{base}{path} answered {response.status}"
            except urllib.error.HTTPError as exc:
                return f"{base}{path} answered {exc.code}"
            except (urllib.error.URLError, OSError, ValueError):
                return f"no Triton answers at {base}"
        return None

    return probe


def wait_for_kafka(settings: Settings, timeout_s: float) -> float:
    return wait_until(kafka_probe(settings), f"Kafka at {settings.kafka_bootstrap}", timeout_s)


def wait_for_topics(settings: Settings, timeout_s: float, names: Iterable[str] | None = None) -> float:
    """Waits for `names` (default: every declared topic) to exist."""
    wanted = tuple(names) if names is not None else tuple(spec.name for spec in declared_topics(settings))
    return wait_until(topics_probe(settings, wanted), f"topics at {settings.kafka_bootstrap}", timeout_s)


def wait_for_triton(settings: Settings, timeout_s: float) -> float:
    where = f"Triton at {settings.triton_host}:{settings.triton_http_port}"
    return wait_until(triton_probe(settings), where, timeout_s)
