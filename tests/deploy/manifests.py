"""Helpers for the deploy checks: load the manifests, name the settings, resolve `panther` command lines.

No container engine runs on our machines, so these tests check what can be checked without one: the
files parse, match their published schemas, and agree with the code (settings names, defaults, CLI).
"""

from __future__ import annotations

import importlib.util
import json
import re
import shlex
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import click
import yaml

from stream.cli import main as panther_cli
from stream.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "deploy" / "compose" / "docker-compose.yml"
K8S = ROOT / "deploy" / "k8s"
PROCFILE = ROOT / "Procfile"

SETTINGS_ENV = {f"PANTHER_{name.upper()}" for name in Settings.model_fields}


def load_compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


def load_k8s() -> list[dict[str, Any]]:
    """Every resource of deploy/k8s (kustomization.yaml is kustomize's file, not a resource)."""
    docs: list[dict[str, Any]] = []
    for path in sorted(K8S.glob("*.yaml")):
        if path.name != "kustomization.yaml":
            docs.extend(doc for doc in yaml.safe_load_all(path.read_text()) if doc)
    return docs


def by_kind(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    found = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind} {name}, found {len(found)}"
    return found[0]


def compose_schema() -> dict[str, Any]:
    """The compose-spec JSON schema that check-jsonschema vendors (read as data; its CLI is not used)."""
    spec = importlib.util.find_spec("check_jsonschema")
    assert spec is not None and spec.submodule_search_locations, "check-jsonschema is not installed"
    path = Path(spec.submodule_search_locations[0]) / "builtin_schemas" / "vendor" / "compose-spec.json"
    return json.loads(path.read_text())


def panther_env_names(text: str) -> set[str]:
    return set(re.findall(r"\bPANTHER_[A-Z0-9_]+\b", text))


def settings_from(env: Mapping[str, str], monkeypatch: Any) -> Settings:
    """Settings as a process with exactly this PANTHER_* environment would read them."""
    import os

    for name in [n for n in os.environ if n.startswith("PANTHER_")]:
        monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, str(value))
    return Settings()


def expand(text: str, env: Mapping[str, str]) -> str:
    """Enough of sh parameter expansion for our command lines: $VAR, ${VAR} and ${VAR:-default}."""

    def one(match: re.Match[str]) -> str:
        name, default = match.group(1) or match.group(3), match.group(2)
        return env.get(name) or (default if default is not None else "")

    return re.sub(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}|\$([A-Za-z_][A-Za-z0-9_]*)", one, text)


def panther_invocations(command: str, env: Mapping[str, str]) -> Iterator[list[str]]:
    """The argument lists after `panther` in a shell command line (segments split at && and ;)."""
    for segment in re.split(r"&&|;", command):
        words = shlex.split(expand(segment, env))
        while words and (words[0] in {"exec", "env"} or re.fullmatch(r"[A-Z_]+=.*", words[0])):
            words.pop(0)
        if words and words[0] == "panther":
            yield words[1:]


def resolve(args: list[str]) -> click.Context:
    """Parses `panther ARGS` down to the leaf command; raises click.UsageError on an unknown option or a
    bad value, AssertionError on an unknown command. Nothing runs: make_context only parses."""
    ctx = click.Context(panther_cli, info_name="panther")
    command: click.Command = panther_cli
    name = "panther"
    while isinstance(command, click.Group):
        assert args and not args[0].startswith("-"), f"panther {name}: a subcommand is missing"
        name, args = args[0], args[1:]
        sub = command.get_command(ctx, name)
        assert sub is not None, f"no panther command {name!r}"
        if isinstance(sub, click.Group):
            ctx = click.Context(sub, info_name=name, parent=ctx)
        command = sub
    return command.make_context(name, list(args), parent=ctx)
