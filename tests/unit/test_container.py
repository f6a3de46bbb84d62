"""The Dockerfile and docker-compose.yml, checked as far as a machine without a Docker engine can:
what they copy exists, the entrypoint is our command and parses its arguments, the user is not
root, the ports, health check, config mount and secrets agree with each other and the config."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from connector.cli import build_parser
from connector.errors import ConfigError
from connector.settings import load_settings

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
COMPOSE = ROOT / "docker-compose.yml"
EXAMPLE = ROOT / "config" / "docker.example.toml"


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text(encoding="utf-8"))
    found = []
    for line in text.splitlines():
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            word, _, rest = stripped.partition(" ")
            found.append((word.upper(), rest.strip()))
    return found


def one(name: str) -> str:
    [value] = [rest for word, rest in instructions() if word == name]
    return value


def exec_form(name: str) -> list[str]:
    value = json.loads(one(name))
    assert isinstance(value, list), f"{name} must use the exec form"
    return value


def test_everything_the_dockerfile_copies_exists():
    copies = [rest for word, rest in instructions() if word == "COPY"]
    assert copies
    for rest in copies:
        *sources, _ = shlex.split(rest)
        for source in sources:
            assert (ROOT / source).exists(), f"COPY {source}: not in the project"


def test_the_image_runs_as_a_user_that_is_not_root_on_a_slim_base():
    assert one("FROM").startswith("python:3.1")
    assert "slim" in one("FROM")
    assert one("USER") not in ("root", "0")


def test_the_entrypoint_is_referral_sync_run_and_its_arguments_parse():
    entrypoint, command = exec_form("ENTRYPOINT"), exec_form("CMD")
    assert entrypoint == ["referral-sync", "run"]
    args = build_parser().parse_args([*entrypoint[1:], *command])
    assert args.command == "run"
    assert args.config == Path("/etc/referral-sync/config.toml")
    venv_command = Path(sys.executable).with_name("referral-sync")
    shown = subprocess.run(  # noqa: S603 - our own command
        [str(venv_command), "run", "--help"], capture_output=True, text=True, check=False
    )
    assert shown.returncode == 0, shown.stderr
    assert "--listen" in shown.stdout


def test_the_health_check_asks_healthz_on_the_port_the_daemon_listens_on():
    exposed = int(one("EXPOSE"))
    listen = exec_form("CMD")[exec_form("CMD").index("--listen") + 1]
    assert listen == f"0.0.0.0:{exposed}"
    health = one("HEALTHCHECK")
    assert f"127.0.0.1:{exposed}/healthz" in health


def test_compose_runs_two_replicas_of_the_image_on_postgres_with_the_same_ports():
    compose = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    services = compose["services"]
    exposed = int(one("EXPOSE"))
    replicas = [services["sync-1"], services["sync-2"]]
    published = []
    for replica in replicas:
        assert replica["build"] == "."
        assert replica["depends_on"]["postgres"]["condition"] == "service_healthy"
        assert replica["environment"]["REFERRAL_SYNC_STATE__URL"].startswith("postgresql://")
        [port] = replica["ports"]
        host, host_port, container_port = port.split(":")
        assert host == "127.0.0.1"  # published on the host's loopback only
        assert int(container_port) == exposed
        published.append(host_port)
        listen = replica["command"][replica["command"].index("--listen") + 1]
        assert listen == f"0.0.0.0:{exposed}"
        mounts = {m.split(":")[1]: m.split(":")[0] for m in replica["volumes"]}
        config = replica["command"][replica["command"].index("--config") + 1]
        assert config in mounts
        assert (ROOT / mounts[config].replace(".toml", ".example.toml")).is_file()
    assert len(set(published)) == 2  # two replicas, two host ports
    for secret in replicas[0]["secrets"]:
        assert secret in compose["secrets"]


def test_the_container_config_example_names_only_files_the_container_has(tmp_path):
    with pytest.raises(ConfigError) as caught:
        load_settings(EXAMPLE, {})
    problems = [str(p) for p in caught.value.problems]
    assert problems
    compose = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    secrets = {f"/run/secrets/{name}" for name in compose["secrets"]}
    for problem in problems:  # what is missing here is exactly the compose secrets
        missing = re.search(r"file not found: (\S+)", problem)
        assert missing is not None, problem
        assert missing.group(1) in secrets, problem
