"""compose.yaml without Docker: the Compose schema, real entry points, and the hardening facts."""

from __future__ import annotations

import importlib.metadata
import importlib.resources
import importlib.util
import json
import re
import tomllib
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from ruamel.yaml import YAML

from service.core.contracts import ALL_QUEUES

ROOT = Path(__file__).resolve().parent.parent
COMPOSE_PATH = ROOT / "compose.yaml"
# `${VAR}`, `${VAR:-default}`, `${VAR-default}`, `${VAR:?message}`, `${VAR?message}`.
_VARIABLE = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}")
_SECRET_NAME = re.compile(r"PASSWORD|SECRET|TOKEN|API_KEY|BASIC_AUTH", re.IGNORECASE)


def load_compose(path: Path = COMPOSE_PATH) -> dict[str, Any]:
    """compose.yaml as Compose reads it (anchors and `<<` merges resolved), uninterpolated."""
    document: dict[str, Any] = YAML(typ="safe").load(path.read_text(encoding="utf-8"))
    return document


def interpolate(value: str) -> str:
    """`value` with each variable at its default, and each required one as `<NAME>`."""

    def replace(match: re.Match[str]) -> str:
        if match.group("op") and "-" in match.group("op"):
            return match.group("arg")
        return f"<{match.group('name')}>"

    return _VARIABLE.sub(replace, value).replace("$$", "$")


def compose_schema() -> dict[str, Any]:
    """The Compose specification's JSON schema, as vendored by check-jsonschema."""
    vendor = importlib.resources.files("check_jsonschema.builtin_schemas.vendor")
    schema: dict[str, Any] = json.loads((vendor / "compose-spec.json").read_text("utf-8"))
    return schema


def schema_errors(document: dict[str, Any]) -> list[str]:
    """Every violation of the Compose schema in `document`, as `path: message`."""
    schema = compose_schema()
    validator = jsonschema.validators.validator_for(schema)(schema)
    return [
        f"{'/'.join(map(str, error.absolute_path))}: {error.message}"
        for error in validator.iter_errors(document)
    ]


COMPOSE = load_compose()
SERVICES: dict[str, dict[str, Any]] = COMPOSE["services"]
OWN_SERVICES = sorted(name for name, service in SERVICES.items() if "build" in service)
WORKERS = sorted(name for name in SERVICES if name.startswith("worker"))


def command_of(service: str) -> list[str]:
    """The service's command with variables at their defaults."""
    return [interpolate(str(part)) for part in SERVICES[service]["command"]]


def one_shot(service: str) -> bool:
    """A job that runs to completion: never restarted, and waited for as completed."""
    waits = [
        spec["condition"]
        for other in SERVICES.values()
        for name, spec in other.get("depends_on", {}).items()
        if name == service
    ]
    return SERVICES[service].get("restart") == "no" and all(
        condition == "service_completed_successfully" for condition in waits
    )


LONG_RUNNING = [name for name in sorted(SERVICES) if not one_shot(name)]


def flag_values(argv: list[str], *flags: str) -> list[str]:
    """The value after each occurrence of any of `flags` (also `--flag=value`)."""
    values = []
    for index, part in enumerate(argv):
        for flag in flags:
            if part == flag and index + 1 < len(argv):
                values.append(argv[index + 1])
            elif part.startswith(flag + "="):
                values.append(part.split("=", 1)[1])
    return values


def strings_in(node: Any) -> list[str]:
    """Every string value in a loaded YAML document, at any depth."""
    if isinstance(node, str):
        return [node]
    if isinstance(node, dict):
        return [text for value in node.values() for text in strings_in(value)]
    if isinstance(node, list):
        return [text for value in node for text in strings_in(value)]
    return []


def click_options(command: Any) -> set[str]:
    """Every option spelling a click command accepts."""
    return {opt for param in command.params for opt in param.opts}


class TestInterpolate:
    """The test's own reading of Compose variables."""

    @pytest.mark.parametrize(
        ("raw", "expected"),
        [
            ("${A:-4}", "4"),
            ("${A-x}y", "xy"),
            ("${A:?set A}", "<A>"),
            ("${A}", "<A>"),
            ("redis://:${P:?set P in .env}@redis:6379/0", "redis://:<P>@redis:6379/0"),
            ("ping -d io@$$HOSTNAME", "ping -d io@$HOSTNAME"),
        ],
    )
    def test_variables_take_their_defaults_and_required_ones_a_placeholder(
        self, raw: str, expected: str
    ) -> None:
        """A default replaces its variable; a required variable becomes `<NAME>`; `$$` is `$`."""
        assert interpolate(raw) == expected


class TestSchema:
    """compose.yaml against the Compose specification's JSON schema."""

    def test_compose_file_validates(self) -> None:
        """compose.yaml has no property or value the Compose specification forbids."""
        assert schema_errors(COMPOSE) == []

    def test_the_schema_rejects_what_compose_rejects(self) -> None:
        """The validator is live: an unknown service key and a bad depends_on condition fail."""
        broken = load_compose()
        broken["services"]["api"]["healthcheck"]["retry"] = 3
        broken["services"]["api"]["depends_on"]["redis"]["condition"] = "service_ready"
        errors = schema_errors(broken)
        assert any("services/api/healthcheck" in error for error in errors), errors
        assert any("services/api/depends_on" in error for error in errors), errors


class TestEntryPoints:
    """Every command a findash container runs exists in this repository or its dependencies."""

    @pytest.mark.parametrize("service", OWN_SERVICES)
    def test_command_is_a_real_entry_point(self, service: str) -> None:
        """`python -m` names a module of this repo, `celery -A` an importable app module, and
        any other program is a console script of this project or a locked dependency."""
        argv = command_of(service)
        scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
        if argv[:2] == ["python", "-m"]:
            assert argv[2].split(".")[0] in {"service", "workers"}, argv
            assert importlib.util.find_spec(argv[2]) is not None, argv
        elif argv[0] not in scripts:
            console = {
                entry.name
                for entry in importlib.metadata.entry_points().select(group="console_scripts")
            }
            assert argv[0] in console, argv
        for app in flag_values(argv, "-A", "--app"):
            assert importlib.util.find_spec(app) is not None, app

    @pytest.mark.parametrize("service", WORKERS)
    def test_worker_options_exist_and_queues_are_known(self, service: str) -> None:
        """Every option a worker passes is one `celery worker` accepts, and every queue it
        consumes is one the contracts route to."""
        from celery.bin.celery import celery
        from celery.bin.worker import worker

        argv = command_of(service)
        position = argv.index("worker")
        known = click_options(celery) | click_options(worker)
        options = [part.split("=")[0] for part in argv[position + 1 :] if part.startswith("-")]
        assert set(options) <= known, set(options) - known
        for queues in flag_values(argv, "-Q", "--queues"):
            assert set(queues.split(",")) <= set(ALL_QUEUES), queues

    def test_every_queue_has_a_worker(self) -> None:
        """Each queue a contract or the scheduler sends to is consumed by some compose worker."""
        consumed = {
            queue
            for service in WORKERS
            for queues in flag_values(command_of(service), "-Q", "--queues")
            for queue in queues.split(",")
        }
        assert consumed == set(ALL_QUEUES)

    def test_worker_healthchecks_ping_their_own_node(self) -> None:
        """A worker's healthcheck pings the node name its command gives (`-n name@%h`)."""
        for service in WORKERS:
            node = flag_values(command_of(service), "-n", "--hostname")[0]
            check = interpolate(" ".join(SERVICES[service]["healthcheck"]["test"][1:]))
            assert f"-d {node.replace('%h', '$HOSTNAME')}" in check, (service, check)

    def test_flower_options_exist(self) -> None:
        """Flower's command-line options and FLOWER_* variables are ones Flower 2.x defines."""
        from flower.options import options

        flower = SERVICES["flower"]
        argv = command_of("flower")
        defined = set(options._options)
        passed = {part.split("=")[0].lstrip("-").replace("_", "-") for part in argv[4:]}
        from_env = {
            name.removeprefix("FLOWER_").lower().replace("_", "-")
            for name in flower["environment"]
            if name.startswith("FLOWER_")
        }
        assert passed | from_env <= defined, (passed | from_env) - defined
        assert {"basic-auth", "read-only"} <= from_env

    @pytest.mark.parametrize("service", sorted(SERVICES))
    def test_bind_mounts_exist(self, service: str) -> None:
        """Every repository path a service mounts exists."""
        for volume in SERVICES[service].get("volumes", []):
            source = str(volume).split(":")[0]
            if source.startswith("."):
                assert (ROOT / source).exists(), (service, source)


class TestHardening:
    """The deployment facts issue 12 asks for."""

    def test_redis_requires_a_password_persists_and_never_evicts(self) -> None:
        """Redis runs with requirepass from .env, AOF on and maxmemory-policy noeviction."""
        argv = [str(part) for part in SERVICES["redis"]["command"]]
        assert flag_values(argv, "--requirepass")[0].startswith("${REDIS_PASSWORD:?")
        assert flag_values(argv, "--appendonly") == ["yes"]
        assert flag_values(argv, "--maxmemory-policy") == ["noeviction"]

    def test_every_client_url_carries_the_passwords_from_env(self) -> None:
        """Every findash process reaches Redis and Postgres with the passwords from .env."""
        for service in OWN_SERVICES:
            environment = SERVICES[service]["environment"]
            assert environment["REDIS_URL"].startswith("redis://:${REDIS_PASSWORD:?"), service
            assert ":${POSTGRES_PASSWORD:?" in environment["DATABASE_URL"], service
        postgres = SERVICES["postgres"]["environment"]["POSTGRES_PASSWORD"]
        assert postgres.startswith("${POSTGRES_PASSWORD:?")

    def test_no_secret_is_written_in_the_file(self) -> None:
        """Secret-named variables and URL passwords are `${VAR}` references without defaults."""
        for name, service in SERVICES.items():
            for key, raw in (service.get("environment") or {}).items():
                value = str(raw)
                for userinfo in re.findall(r"://[^/@\s]*:([^/@\s]+)@", value):
                    assert _VARIABLE.fullmatch(userinfo), (name, key)
                if _SECRET_NAME.search(key) and value:
                    match = _VARIABLE.fullmatch(value)
                    assert match, (name, key)
                    assert not match.group("arg") or "?" in (match.group("op") or ""), (name, key)

    def test_required_variables_are_listed_in_env_example(self) -> None:
        """Every variable compose refuses to start without has a placeholder in .env.example."""
        required = {
            match.group("name")
            for text in strings_in(COMPOSE)
            for match in _VARIABLE.finditer(text)
            if "?" in (match.group("op") or "")
        }
        example = (ROOT / ".env.example").read_text(encoding="utf-8")
        listed = set(re.findall(r"^([A-Z_]+)=", example, flags=re.MULTILINE))
        assert required, "compose requires no variable"
        assert required <= listed, required - listed

    def test_flower_is_loopback_only_profiled_authenticated_and_read_only(self) -> None:
        """Flower starts only with its profile, publishes on 127.0.0.1, needs basic auth from
        .env and defaults to read-only."""
        flower = SERVICES["flower"]
        assert flower["profiles"] == ["flower"]
        assert flower["ports"]
        assert all(str(p).startswith("127.0.0.1:") for p in flower["ports"])
        assert flower["environment"]["FLOWER_BASIC_AUTH"].startswith("${FLOWER_BASIC_AUTH:?")
        assert interpolate(flower["environment"]["FLOWER_READ_ONLY"]) == "true"

    def test_monitoring_is_an_optional_profile_on_loopback(self) -> None:
        """Prometheus and Grafana run only under `--profile monitoring`, on 127.0.0.1."""
        for service in ("prometheus", "grafana"):
            assert SERVICES[service]["profiles"] == ["monitoring"]
            assert all(str(p).startswith("127.0.0.1:") for p in SERVICES[service]["ports"])

    @pytest.mark.parametrize("service", LONG_RUNNING)
    def test_every_long_running_service_has_a_healthcheck(self, service: str) -> None:
        """Each service but a run-to-completion job (migrate) declares a healthcheck command."""
        test = SERVICES[service]["healthcheck"]["test"]
        assert test[0] in {"CMD", "CMD-SHELL"}
        assert len(test) > 1

    @pytest.mark.parametrize("service", sorted(SERVICES))
    def test_dependencies_wait_on_a_condition_that_can_be_met(self, service: str) -> None:
        """Every depends_on names a condition: healthy for services with a healthcheck,
        completed for one-shot jobs."""
        for name, spec in SERVICES[service].get("depends_on", {}).items():
            expected = "service_completed_successfully" if one_shot(name) else "service_healthy"
            assert spec["condition"] == expected, (service, name)

    @pytest.mark.parametrize("service", WORKERS)
    def test_workers_scale_and_recycle_their_children(self, service: str) -> None:
        """A worker service has no fixed name or host port (so `--scale` works), and recycles
        its pool children by task count and by memory."""
        worker = SERVICES[service]
        assert "container_name" not in worker
        assert "ports" not in worker
        argv = command_of(service)
        assert int(flag_values(argv, "--max-tasks-per-child")[0]) > 0
        assert int(flag_values(argv, "--max-memory-per-child")[0]) > 0

    def test_io_and_cpu_work_run_on_separate_workers(self) -> None:
        """worker-io consumes market_data only, worker-cpu analytics only."""
        assert flag_values(command_of("worker-io"), "-Q") == ["market_data"]
        assert flag_values(command_of("worker-cpu"), "-Q") == ["analytics"]

    def test_two_scheduler_replicas(self) -> None:
        """The scheduler runs as two replicas of one service (one leads, one stands by)."""
        scheduler = SERVICES["scheduler"]
        assert scheduler["deploy"]["replicas"] == 2
        assert "container_name" not in scheduler
        assert "ports" not in scheduler

    def test_api_listens_on_every_interface_inside_the_network(self) -> None:
        """The API binds 0.0.0.0 in its container, so the network and the proxy reach it."""
        assert SERVICES["api"]["environment"]["API_HOST"] == "0.0.0.0"  # noqa: S104
