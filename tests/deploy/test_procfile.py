"""The Procfile and `make demo`: processes parse, run real `panther` commands, and wait."""

from __future__ import annotations

import subprocess

import click
import pytest
from honcho.environ import parse_procfile

from tests.deploy.manifests import PROCFILE, ROOT, panther_invocations, resolve

ENV = {"DEMO_DIR": "/tmp/demo"}


@pytest.fixture(scope="module")
def processes() -> dict[str, str]:
    return dict(parse_procfile(PROCFILE.read_text()).processes)


def test_the_stack_is_all_there(processes: dict[str, str]) -> None:
    assert set(processes) == {"kafka", "triton", "worker", "producer", "alerts"}


def test_every_panther_invocation_resolves(processes: dict[str, str]) -> None:
    leaves = []
    for name, command in processes.items():
        invocations = list(panther_invocations(command, ENV))
        assert invocations, f"{name}: runs no panther command"
        for args in invocations:
            leaves.append(resolve(args).command.name)
    assert {"run", "worker", "produce", "tail", "create"} <= set(leaves)


def test_clients_wait_for_their_dependencies(processes: dict[str, str]) -> None:
    """honcho stops every process when one exits: none may fail because Kafka or Triton is not up yet."""
    for name in ("worker", "producer", "alerts"):
        for args in panther_invocations(processes[name], ENV):
            assert resolve(args).params["wait_s"] > 0, f"{name}: `panther {' '.join(args)}` does not wait"


def test_the_long_running_process_is_execed(processes: dict[str, str]) -> None:
    """`exec` makes the last panther the shell itself, so honcho's SIGTERM reaches it directly."""
    for name, command in processes.items():
        assert command.split("&&")[-1].strip().startswith("exec "), name


def test_the_producer_is_live_and_paced(processes: dict[str, str]) -> None:
    last = list(panther_invocations(processes["producer"], ENV))[-1]
    params = resolve(last).params
    assert params["loop"] and params["rate"] == 20.0
    assert params["input_path"].name == "live.parquet"


def test_kafka_outlives_its_clients_on_stop(processes: dict[str, str]) -> None:
    (args,) = panther_invocations(processes["kafka"], ENV)
    assert resolve(args).params["grace_s"] > 0


def test_a_misspelled_option_is_caught() -> None:
    """The resolver itself can fail: an option that does not exist is a usage error."""
    with pytest.raises(click.UsageError):
        resolve(["produce", "--input", "x.parquet", "--loops"])
    with pytest.raises(AssertionError):
        resolve(["kafka", "sprint"])


def test_demo_script_is_valid_bash_and_finds_its_files() -> None:
    script = ROOT / "deploy" / "local" / "demo.sh"
    subprocess.run(["bash", "-n", str(script)], check=True)
    text = script.read_text()
    assert "deploy/local/demo_model.py" in text and "--procfile Procfile" in text
    assert (ROOT / "deploy" / "local" / "demo_model.py").is_file()
    assert "trap cleanup EXIT" in text  # stops a broker/server a SIGKILLed process manager left behind
